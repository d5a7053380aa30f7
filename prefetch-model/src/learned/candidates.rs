//! Candidate generators: each proposes byte ranges that may be read soon, with the generator id
//! and a depth bucket the model scores. Generators remember what they already proposed so a
//! byte range is considered once per depth bucket, and every structure here is bounded.

use std::collections::HashMap;
use std::sync::Arc;

use super::projection::{Projection, ProjectionTable};
use crate::prefetcher::{FileRef, Layout};
use crate::trace::{FormatClass, TraceRecord};

const MIB: u64 = 1 << 20;

/// Depth buckets of the sequential generator: next 1, 2, 4, ... 128 MiB past the read.
pub const SEQ_DEPTHS: usize = 8;

/// How far ahead of a sequential run its candidates reach, in multiples of the run's bytes
/// (at least [`SEQ_MIN_REACH`]).
pub const SEQ_GROWTH: u64 = 8;

/// Reach of sequential candidates whatever the run's length so far.
pub const SEQ_MIN_REACH: u64 = 32 * MIB;
/// Extents the layout generators look ahead.
pub const LAYOUT_AHEAD: usize = 4;
/// Records a sparse (or backward) stride is followed ahead.
pub const STRIDE_AHEAD: u64 = 4;
/// Largest stride followed as dense depth buckets.
pub const DENSE_STRIDE: u64 = MIB;
/// Depth buckets of a dense stride (up to 64 strides ahead).
pub const STRIDE_DEPTHS: usize = 7;
/// Largest file proposed whole on open.
pub const WHOLE_FILE_MAX: u64 = 16 * MIB;
/// Largest successor / sibling prefix proposed.
pub const NEXT_FILE_MAX: u64 = 8 * MIB;
/// Sibling files proposed per open.
pub const SIBLINGS_AHEAD: usize = 2;

/// Which generator proposed a candidate (also a model feature).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Gen {
    /// The next bytes of a sequential handle, one candidate per depth bucket.
    Sequential = 1,
    /// Continuation of the handle's majority read-offset delta.
    Stride = 2,
    /// The whole (small) file, on open.
    WholeFile = 3,
    /// The next format extents (column chunks, tensors, members) in file order.
    LayoutNext = 4,
    /// The extents the reader's own extent-index pattern predicts.
    LayoutPattern = 5,
    /// The file that followed this one last time (successor table).
    Successor = 6,
    /// Unread files of the same directory, in listing order after this one.
    DirSibling = 7,
}

impl Gen {
    /// Every generator.
    pub const ALL: [Gen; 7] = [
        Gen::Sequential,
        Gen::Stride,
        Gen::WholeFile,
        Gen::LayoutNext,
        Gen::LayoutPattern,
        Gen::Successor,
        Gen::DirSibling,
    ];
    /// Dense index 0..7.
    pub fn index(self) -> usize {
        self as usize - 1
    }
}

/// A proposed range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Who proposed it.
    pub gen: Gen,
    /// Depth bucket (0 = nearest).
    pub depth: u8,
    /// The file.
    pub inode: u64,
    /// First byte.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
    /// Size of that file (for the size feature).
    pub file_size: u64,
}

/// Coarse access shape of a handle (a model feature and half of the bandit's class key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Shape {
    /// Nothing read yet, or a single read.
    Fresh = 0,
    /// Reads continue each other.
    Sequential = 1,
    /// A repeating non-sequential delta.
    Strided = 2,
    /// Reads land on format extents out of file order.
    Extents = 3,
    /// None of the above.
    Random = 4,
}

/// Per-handle access state the generators keep.
#[derive(Clone, Debug)]
pub struct HandleState {
    /// The file.
    pub inode: u64,
    /// Its size.
    pub file_size: u64,
    /// Its format.
    pub format: FormatClass,
    /// Consecutive sequential reads.
    pub run: u64,
    /// Where the current sequential run started (its bytes are `frontier - run_from`).
    pub run_from: u64,
    /// Reads on this handle.
    pub reads: u64,
    /// Length of the last read.
    pub last_len: u64,
    /// Highest byte read so far + 1 (the sequential frontier).
    pub frontier: u64,
    /// Sequential bytes already emitted up to here.
    pub emitted_until: u64,
    /// Start of the emitted sequential range ending at `emitted_until`.
    pub emitted_from: u64,
    /// Last access number (for least-recently-used eviction of handle states).
    pub touched: u64,
    last_off: Option<u64>,
    considered: [u64; SEQ_DEPTHS],
    deltas: [i64; 8],
    /// Length of the read each delta started from.
    lens: [u64; 8],
    ndeltas: usize,
    stride_until: u64,
    stride_considered: [u64; STRIDE_DEPTHS],
    extents: [u32; 16],
    nextents: usize,
    layout_next_until: Option<u32>,
    pattern_until: Option<u32>,
    shape: Shape,
    /// Column projection of a grouped layout.
    proj: Projection,
    /// Sequential candidates end here (the end of a projected unit whose successor is not).
    seq_limit: u64,
}

impl HandleState {
    /// State of a newly seen handle.
    pub fn new(rec: &TraceRecord) -> Self {
        Self {
            inode: rec.inode,
            file_size: rec.file_size,
            format: rec.format,
            run: 0,
            run_from: 0,
            reads: 0,
            last_len: 0,
            frontier: 0,
            emitted_until: 0,
            emitted_from: 0,
            touched: 0,
            last_off: None,
            considered: [0; SEQ_DEPTHS],
            deltas: [0; 8],
            lens: [0; 8],
            ndeltas: 0,
            stride_until: 0,
            stride_considered: [0; STRIDE_DEPTHS],
            extents: [0; 16],
            nextents: 0,
            layout_next_until: None,
            pattern_until: None,
            shape: Shape::Fresh,
            proj: Projection::default(),
            seq_limit: u64::MAX,
        }
    }

    /// The handle's access shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Records a read: updates run length, deltas and the frontier. Returns whether it was
    /// sequential.
    pub fn observe_read(&mut self, offset: u64, len: u64) -> bool {
        let end = offset + len;
        let sequential = match self.last_off {
            None => offset == 0,
            // Slack scaled by the read size: several threads preading one handle arrive out of
            // order, but a small read a stride away is not sequential.
            Some(_) => {
                offset + (8 * len).min(4 * MIB) >= self.frontier
                    && offset <= self.frontier + (4 * len).min(MIB)
            }
        };
        if let Some(last) = self.last_off {
            let d = offset as i64 - last as i64;
            self.deltas[self.ndeltas % 8] = d;
            self.lens[self.ndeltas % 8] = self.last_len;
            self.ndeltas += 1;
        }
        if sequential {
            self.run += 1;
            self.frontier = self.frontier.max(end);
        } else {
            self.run = 0;
            self.run_from = offset;
            self.frontier = end;
            self.considered = [end; SEQ_DEPTHS];
            // A jump inside the range already emitted keeps it (strided readers); any other
            // jump starts a new emitted range at this read's end.
            if !(offset >= self.emitted_from && end <= self.emitted_until) {
                self.emitted_from = end;
                self.emitted_until = end;
            }
        }
        self.last_off = Some(offset);
        self.last_len = len;
        self.reads += 1;
        self.shape = if self.reads <= 1 && sequential {
            Shape::Fresh
        } else if sequential {
            Shape::Sequential
        } else if self.majority_delta().is_some() {
            Shape::Strided
        } else if self.nextents >= 2 {
            Shape::Extents
        } else {
            Shape::Random
        };
        sequential
    }

    /// Forgets what was emitted from `offset` on, if that lies ahead of the reader (the
    /// blocks were evicted unused before it got there): the depth buckets propose it again.
    pub fn rewind(&mut self, offset: u64) {
        if offset < self.frontier || offset >= self.emitted_until {
            return;
        }
        self.emitted_until = offset.max(self.emitted_from);
        for c in &mut self.considered {
            *c = (*c).min(offset);
        }
    }

    /// Sequential candidates past the frontier, one per depth bucket not yet considered there.
    pub fn sequential(&mut self, out: &mut Vec<Candidate>) {
        let base = self.frontier;
        // After a jump only the nearest 2 MiB are proposed: deeper ranges of a handle that is
        // not reading sequentially are speculation the model cannot learn from one read.
        let depths = if self.run == 0 { 2 } else { SEQ_DEPTHS };
        // Like a readahead window, the depth grows with the run: past SEQ_MIN_REACH a bucket is
        // proposed once the run has read 1/SEQ_GROWTH of the distance to it (a short run of
        // small reads in a random stream is not evidence for 128 MiB ahead).
        let reach =
            SEQ_MIN_REACH.max(SEQ_GROWTH * (self.frontier - self.run_from.min(self.frontier)));
        for k in 0..depths {
            let lo = if k == 0 { 0 } else { MIB << (k - 1) };
            if lo >= reach {
                break;
            }
            let hi = MIB << k;
            let limit = self.file_size.min(self.seq_limit);
            let start = (base + lo).max(self.considered[k]).max(self.emitted_until);
            let end = (base + hi).min(limit);
            // New bytes are proposed in grains of up to 1 MiB (fewer candidates per read);
            // the file's (or the unit's) tail is proposed whatever its size.
            let grain = (hi - lo).min(MIB);
            if end > start && (end - start >= grain || end == limit) {
                out.push(self.cand(Gen::Sequential, k as u8, start, end - start));
                self.considered[k] = end;
            }
        }
    }

    /// The delta most of the last 8 reads moved by (at least 3 of them), if it is not sequential.
    pub fn majority_delta(&self) -> Option<i64> {
        let n = self.ndeltas.min(8);
        if n < 3 {
            return None;
        }
        let ds = &self.deltas[..n];
        let mut best = (0i64, 0usize);
        for &d in ds {
            let c = ds.iter().filter(|&&x| x == d).count();
            if c > best.1 {
                best = (d, c);
            }
        }
        let (d, c) = best;
        // While the handle reads sequentially, a delta no longer than a recent read continues
        // it (a short last read of a sequential run must not turn the run into a stride).
        let longest = if self.run > 0 {
            self.lens[..n].iter().copied().max().unwrap_or(0)
        } else {
            0
        };
        let seq = d > 0 && (d as u64) <= self.last_len.max(longest);
        (c >= 3 && d != 0 && !seq).then_some(d)
    }

    /// Stride continuation candidates. A forward stride of at most [`DENSE_STRIDE`] gets one
    /// candidate per depth bucket (the records 1, 2, 3-4, 5-8, ... 33-64 strides ahead, as one
    /// range: at that density every cache block holds a record); other strides get the next
    /// [`STRIDE_AHEAD`] records one by one.
    pub fn stride(&mut self, out: &mut Vec<Candidate>) {
        let (Some(d), Some(last)) = (self.majority_delta(), self.last_off) else {
            return;
        };
        let len = self.last_len.max(1);
        if d > 0 && d as u64 <= DENSE_STRIDE {
            let d = d as u64;
            for k in 0..STRIDE_DEPTHS {
                let lo = if k == 0 { 1 } else { (1u64 << (k - 1)) + 1 };
                let hi = 1u64 << k;
                let start = (last + d * lo).max(self.stride_considered[k]);
                let end = (last + d * hi + len).min(self.file_size);
                if end > start {
                    out.push(self.cand(Gen::Stride, k as u8, start, end - start));
                    self.stride_considered[k] = end;
                }
            }
            return;
        }
        for k in 1..=STRIDE_AHEAD {
            let off = last as i64 + d * k as i64;
            if off < 0 || off as u64 >= self.file_size {
                break;
            }
            let off = off as u64;
            let fresh = if d > 0 {
                off >= self.stride_until
            } else {
                off < self.stride_until || self.stride_until == 0
            };
            if fresh {
                out.push(self.cand(
                    Gen::Stride,
                    (k - 1) as u8,
                    off,
                    len.min(self.file_size - off),
                ));
                self.stride_until = if d > 0 { off + 1 } else { off };
            }
        }
    }

    /// Candidates of a grouped layout (Parquet row groups) for a read at `offset`: the units
    /// of the columns the reader projects, ahead of the one read ([`Projection`], remembered
    /// across the dataset's files in `table` under `key`). While a projection is known, the
    /// sequential candidates stop at the end of the run of consecutive projected units the
    /// read is in (adjacent projected columns, the last column then the next row group's
    /// first), and a sequential run that spilled into a unit outside the projection (kernel
    /// readahead past a projected chunk) gets none. Returns whether a projection is
    /// known. Call after [`Self::observe_read`] of the same read.
    pub fn projected(
        &mut self,
        layout: &Layout,
        offset: u64,
        table: &mut ProjectionTable,
        key: u64,
        out: &mut Vec<Candidate>,
    ) -> bool {
        self.seq_limit = u64::MAX;
        let (ex, g) = (&layout.extents, layout.group);
        let Some(i) = extent_at(ex, offset) else {
            return self.proj.projection().is_some();
        };
        let sequential = self.run > 0;
        let to_end = self.frontier >= ex[i].end;
        let counted = self.proj.observe(i, g, sequential, to_end, table, key);
        let Some(p) = self.proj.projection() else {
            return false;
        };
        if !counted && !p.contains(i % g) {
            self.seq_limit = ex[i].start;
        } else {
            // The end of the run of projected units from this one (at most a group: a
            // projection of every column does not limit).
            let mut j = i;
            while j + 1 < ex.len() && j - i < g && p.contains((j + 1) % g) {
                j += 1;
            }
            if j + 1 < ex.len() && j - i < g {
                self.seq_limit = ex[j].end;
            }
        }
        self.proj
            .propose(layout, i, self.inode, self.file_size, out);
        true
    }

    /// Layout candidates for a read at `offset`: the next extents in file order, and the
    /// extents the reader's index pattern predicts (e.g. the same columns of the next row group).
    pub fn layout(&mut self, layout: &Layout, offset: u64, out: &mut Vec<Candidate>) {
        let ex = &layout.extents;
        if ex.is_empty() {
            return;
        }
        let cur = extent_at(ex, offset);
        if let Some(i) = cur {
            let i = i as u32;
            let last = (self.nextents > 0).then(|| self.extents[(self.nextents - 1) % 16]);
            if last != Some(i) {
                self.extents[self.nextents % 16] = i;
                self.nextents += 1;
            }
        } else if !overlaps(&layout.source, offset) {
            return;
        }
        // Index pattern: periodic deltas of the extent indices read so far.
        if let Some(pred) = self.pattern_predict() {
            for (k, idx) in pred.iter().enumerate() {
                let idx = *idx;
                if (idx as usize) < ex.len() && self.pattern_until.is_none_or(|u| idx > u) {
                    let r = &ex[idx as usize];
                    out.push(self.cand(Gen::LayoutPattern, k as u8, r.start, r.end - r.start));
                    self.pattern_until = Some(idx);
                }
            }
        }
        // Next extents in file order (from the first one when the footer/header was read).
        let first = cur.map(|i| i + 1).unwrap_or(0);
        for k in 0..LAYOUT_AHEAD {
            let idx = first + k;
            if idx >= ex.len() {
                break;
            }
            if self.layout_next_until.is_none_or(|u| idx as u32 > u) {
                let r = &ex[idx];
                out.push(self.cand(Gen::LayoutNext, k as u8, r.start, r.end - r.start));
                self.layout_next_until = Some(idx as u32);
            }
        }
    }

    /// The next `LAYOUT_AHEAD` extent indices if the deltas between the extents read repeat
    /// with a period of 1..=4 (the last deltas match the ones a period earlier).
    fn pattern_predict(&self) -> Option<[u32; LAYOUT_AHEAD]> {
        let n = self.nextents.min(16);
        if n < 3 {
            return None;
        }
        let idx = |k: usize| self.extents[(self.nextents - n + k) % 16] as i64;
        let mut deltas = [0i64; 15];
        for (k, d) in deltas.iter_mut().enumerate().take(n - 1) {
            *d = idx(k + 1) - idx(k);
        }
        let m = n - 1;
        for p in 1..=4usize {
            if m <= p {
                break;
            }
            if (0..p.min(m - p)).all(|j| deltas[m - 1 - j] == deltas[m - 1 - j - p]) {
                let mut cur = idx(n - 1);
                let mut out = [0u32; LAYOUT_AHEAD];
                for (k, o) in out.iter_mut().enumerate() {
                    cur += deltas[m - p + (k % p)];
                    if cur < 0 {
                        return None;
                    }
                    *o = cur as u32;
                }
                return Some(out);
            }
        }
        None
    }

    fn cand(&self, gen: Gen, depth: u8, offset: u64, len: u64) -> Candidate {
        Candidate {
            gen,
            depth,
            inode: self.inode,
            offset,
            len,
            file_size: self.file_size,
        }
    }
}

/// Index of the extent holding `offset` (extents are in file order).
pub fn extent_at(ex: &[std::ops::Range<u64>], offset: u64) -> Option<usize> {
    let i = ex.partition_point(|r| r.start <= offset);
    (i > 0 && ex[i - 1].end > offset).then(|| i - 1)
}

fn overlaps(r: &std::ops::Range<u64>, offset: u64) -> bool {
    r.start <= offset && offset < r.end
}

/// The whole file on open, if it is small.
pub fn whole_file(rec: &TraceRecord, out: &mut Vec<Candidate>) {
    if rec.file_size > 0 && rec.file_size <= WHOLE_FILE_MAX {
        out.push(Candidate {
            gen: Gen::WholeFile,
            depth: 0,
            inode: rec.inode,
            offset: 0,
            len: rec.file_size,
            file_size: rec.file_size,
        });
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct SuccSlot {
    tag: u64,
    next: FileRef2,
    conf: u8,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FileRef2 {
    inode: u64,
    size: u64,
    path_hash: u64,
}

/// Learned next-file table: the file a stream opened after file A, keyed by A's path hash.
/// Direct-mapped with a 2-bit confidence, so its size is fixed.
#[derive(Clone, Debug)]
pub struct SuccessorTable {
    slots: Vec<SuccSlot>,
    last_open: Vec<(u32, u64, FileRef2)>,
}

impl SuccessorTable {
    /// A table with `2^bits` slots.
    pub fn new(bits: u32) -> Self {
        let n = 1usize << bits.clamp(4, 20);
        Self {
            slots: vec![SuccSlot::default(); n],
            last_open: vec![(u32::MAX, 0, FileRef2::default()); 1024],
        }
    }

    fn slot(&self, path_hash: u64) -> usize {
        (path_hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20) as usize & (self.slots.len() - 1)
    }

    /// Records that `rec`'s stream opened `rec`'s file (learning `previous -> this`).
    pub fn observe_open(&mut self, rec: &TraceRecord) {
        let me = FileRef2 {
            inode: rec.inode,
            size: rec.file_size,
            path_hash: rec.path_hash,
        };
        let si = rec.stream as usize % self.last_open.len();
        let (stream, prev, _) = self.last_open[si];
        if stream == rec.stream && prev != rec.path_hash {
            let i = self.slot(prev);
            let s = &mut self.slots[i];
            if s.tag == prev && s.next.path_hash == me.path_hash {
                s.conf = (s.conf + 1).min(3);
            } else if s.tag != prev || s.conf == 0 {
                *s = SuccSlot {
                    tag: prev,
                    next: me,
                    conf: 1,
                };
            } else {
                s.conf -= 1;
            }
        }
        self.last_open[si] = (rec.stream, rec.path_hash, me);
    }

    /// The remembered successor of a file and its confidence (1..=3).
    pub fn successor(&self, path_hash: u64) -> Option<(u64, u64, u64, u8)> {
        let s = &self.slots[self.slot(path_hash)];
        (s.tag == path_hash && s.conf > 0).then_some((
            s.next.inode,
            s.next.size,
            s.next.path_hash,
            s.conf,
        ))
    }

    /// Proposes the successor (depth 0) and its successor (depth 1) of the opened file.
    pub fn propose(&self, rec: &TraceRecord, out: &mut Vec<Candidate>) {
        let mut key = rec.path_hash;
        for depth in 0..2u8 {
            let Some((inode, size, ph, _conf)) = self.successor(key) else {
                return;
            };
            if inode == rec.inode || size == 0 {
                return;
            }
            out.push(Candidate {
                gen: Gen::Successor,
                depth,
                inode,
                offset: 0,
                len: size.min(NEXT_FILE_MAX),
                file_size: size,
            });
            key = ph;
        }
    }

    /// Slots (fixed memory).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }
}

/// A fast deterministic hasher for integer keys (inodes, handles, directory hashes).
#[derive(Clone, Copy, Debug, Default)]
pub struct IntHasher(u64);

impl std::hash::Hasher for IntHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ *b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(29) ^ n).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }
}

/// Builds [`IntHasher`]s (the same on every run, unlike std's seeded hasher).
pub type IntMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IntHasher>>;

struct DirState {
    files: Vec<FileRef>,
    index: IntMap<u64, u32>,
    read: Vec<bool>,
    nread: usize,
    touched: u64,
}

/// Directories being read file by file: which of their files were read this epoch.
pub struct DirTracker {
    dirs: IntMap<u64, DirState>,
    max_dirs: usize,
    max_files: usize,
    clock: u64,
}

impl DirTracker {
    /// Tracks at most `max_dirs` directories of at most `max_files` files each.
    pub fn new(max_dirs: usize, max_files: usize) -> Self {
        Self {
            dirs: IntMap::default(),
            max_dirs: max_dirs.max(1),
            max_files,
            clock: 0,
        }
    }

    /// Directories tracked.
    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    /// Whether no directory is tracked.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// Marks the opened file read and proposes the next unread small files after it in listing order.
    pub fn open(
        &mut self,
        rec: &TraceRecord,
        siblings: impl FnOnce() -> Vec<FileRef>,
        out: &mut Vec<Candidate>,
    ) {
        if rec.file_size > NEXT_FILE_MAX {
            return;
        }
        self.clock += 1;
        if !self.dirs.contains_key(&rec.dir_hash) {
            let files = siblings();
            if files.is_empty() || files.len() > self.max_files {
                return;
            }
            if self.dirs.len() >= self.max_dirs {
                if let Some(old) = self
                    .dirs
                    .iter()
                    .min_by_key(|(_, d)| d.touched)
                    .map(|(k, _)| *k)
                {
                    self.dirs.remove(&old);
                }
            }
            let index = files
                .iter()
                .enumerate()
                .map(|(i, f)| (f.inode, i as u32))
                .collect();
            let n = files.len();
            self.dirs.insert(
                rec.dir_hash,
                DirState {
                    files,
                    index,
                    read: vec![false; n],
                    nread: 0,
                    touched: 0,
                },
            );
        }
        let Some(d) = self.dirs.get_mut(&rec.dir_hash) else {
            return;
        };
        d.touched = self.clock;
        let Some(&pos) = d.index.get(&rec.inode) else {
            return;
        };
        let pos = pos as usize;
        if !d.read[pos] {
            d.read[pos] = true;
            d.nread += 1;
            if d.nread == d.files.len() {
                d.read.iter_mut().for_each(|r| *r = false);
                d.nread = 0;
            }
        }
        let n = d.files.len();
        let mut depth = 0u8;
        for step in 1..n.min(64) {
            let j = (pos + step) % n;
            if d.read[j] {
                continue;
            }
            let f = d.files[j];
            if f.size == 0 || f.size > NEXT_FILE_MAX {
                continue;
            }
            out.push(Candidate {
                gen: Gen::DirSibling,
                depth,
                inode: f.inode,
                offset: 0,
                len: f.size,
                file_size: f.size,
            });
            depth += 1;
            if depth as usize >= SIBLINGS_AHEAD {
                break;
            }
        }
    }
}

/// Convenience for tests and the catalog: a layout from extents.
pub fn layout_of(source: std::ops::Range<u64>, extents: Vec<std::ops::Range<u64>>) -> Arc<Layout> {
    Arc::new(Layout {
        source,
        extents,
        group: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Op;

    fn rec(op: Op, inode: u64, offset: u64, len: u32, size: u64) -> TraceRecord {
        TraceRecord {
            time_ns: 0,
            stream: 1,
            program_hash: 0,
            handle: inode * 10,
            inode,
            path_hash: inode * 1000 + 7,
            dir_hash: 99,
            offset,
            len,
            format: FormatClass::Other,
            op,
            file_size: size,
        }
    }

    #[test]
    fn sequential_depth_buckets_then_only_new_bytes() {
        let r = rec(Op::Read, 1, 0, 1 << 18, 1 << 30);
        let mut h = HandleState::new(&r);
        assert!(h.observe_read(0, 1 << 18));
        let mut out = vec![];
        h.sequential(&mut out);
        let ranges: Vec<_> = out.iter().map(|c| (c.depth, c.offset, c.len)).collect();
        let e = 1u64 << 18;
        assert_eq!(ranges[0], (0, e, MIB));
        assert_eq!(ranges[1], (1, e + MIB, MIB));
        assert_eq!(ranges[2], (2, e + 2 * MIB, 2 * MIB));
        // a run of 256 KiB reaches SEQ_MIN_REACH (32 MiB) ahead: buckets up to 16..32 MiB
        assert_eq!(ranges.len(), 6);
        assert_eq!(ranges[5], (5, e + 16 * MIB, 16 * MIB));
        // next reads: each bucket only proposes bytes it has not considered, in 1 MiB grains
        for k in 1..4u64 {
            out.clear();
            assert!(h.observe_read(k * e, 1 << 18));
            h.sequential(&mut out);
            assert!(out.is_empty(), "{out:?}");
        }
        out.clear();
        assert!(h.observe_read(4 * e, 1 << 18));
        h.sequential(&mut out);
        let ranges: Vec<_> = out.iter().map(|c| (c.depth, c.offset, c.len)).collect();
        assert_eq!(ranges[0], (0, 5 * e, MIB)); // moved into bucket 0
        assert_eq!(*ranges.last().unwrap(), (5, e + 32 * MIB, MIB));
        assert_eq!(ranges.len(), 6);
        assert!(h.run >= 5);
    }

    #[test]
    fn sequential_clips_at_file_end_and_resets_on_jump() {
        let r = rec(Op::Read, 1, 0, 4096, 3 * MIB);
        let mut h = HandleState::new(&r);
        h.observe_read(0, 4096);
        let mut out = vec![];
        h.sequential(&mut out);
        assert!(out.iter().all(|c| c.offset + c.len <= 3 * MIB));
        assert_eq!(out.iter().map(|c| c.len).sum::<u64>(), 3 * MIB - 4096);
        assert!(!h.observe_read(2 * MIB + 100_000, 10) || h.run > 0);
    }

    #[test]
    fn rewind_reproposes_evicted_bytes_ahead_of_the_reader() {
        let r = rec(Op::Read, 1, 0, MIB as u32, 1 << 30);
        let mut h = HandleState::new(&r);
        let mut out = vec![];
        for k in 0..4u64 {
            h.observe_read(k * MIB, MIB);
            h.sequential(&mut out);
        }
        h.emitted_until = 40 * MIB; // the stream emitted up to 40 MiB
        h.rewind(2 * MIB); // behind the reader: ignored
        assert_eq!(h.emitted_until, 40 * MIB);
        h.rewind(10 * MIB);
        assert_eq!(h.emitted_until, 10 * MIB);
        out.clear();
        h.observe_read(4 * MIB, MIB);
        h.sequential(&mut out);
        // the evicted bytes come back in the shallow buckets
        assert!(
            out.iter()
                .any(|c| c.offset <= 10 * MIB && c.offset + c.len > 10 * MIB),
            "{out:?}"
        );
    }

    #[test]
    fn sequential_reach_grows_with_the_run() {
        // a short run of small reads proposes up to SEQ_MIN_REACH ahead, not 128 MiB
        let r = rec(Op::Read, 1, 0, 4096, 1 << 40);
        let mut h = HandleState::new(&r);
        let mut out = vec![];
        h.observe_read(500 * MIB, 4096);
        h.observe_read(500 * MIB + 4096, 4096);
        h.sequential(&mut out);
        let far = out.iter().map(|c| c.offset + c.len).max().unwrap();
        assert!(far <= h.frontier + SEQ_MIN_REACH, "{out:?}");
        assert!(far > h.frontier + SEQ_MIN_REACH / 2, "{out:?}");
        // a long run reaches the deepest bucket
        let mut out = vec![];
        for k in 1..=16u64 {
            h.observe_read(500 * MIB + 8192 + (k - 1) * MIB, MIB as u32 as u64);
            h.sequential(&mut out);
        }
        let far = out.iter().map(|c| c.offset + c.len).max().unwrap();
        assert!(far >= h.frontier + 64 * MIB, "{}", (far - h.frontier) / MIB);
    }

    #[test]
    fn sparse_stride_continues_majority_delta() {
        let r = rec(Op::Read, 1, 0, 4096, 1 << 30);
        let mut h = HandleState::new(&r);
        for k in 0..5u64 {
            h.observe_read(k * 4 * MIB, 4096);
        }
        assert_eq!(h.majority_delta(), Some(4 * MIB as i64));
        assert_eq!(h.shape(), Shape::Strided);
        let mut out = vec![];
        h.stride(&mut out);
        let offs: Vec<_> = out.iter().map(|c| (c.offset / MIB, c.len)).collect();
        assert_eq!(offs, vec![(20, 4096), (24, 4096), (28, 4096), (32, 4096)]);
        out.clear();
        h.observe_read(20 * MIB, 4096);
        h.stride(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].offset, 36 * MIB);
    }

    #[test]
    fn a_short_last_read_does_not_make_a_sequential_run_a_stride() {
        let r = rec(Op::Read, 1, 0, 4096, 1 << 30);
        let mut h = HandleState::new(&r);
        for k in 0..5u64 {
            h.observe_read(k * MIB, MIB);
        }
        h.observe_read(5 * MIB, 4096); // the end of a chunk
        assert_eq!(h.majority_delta(), None);
        let mut out = vec![];
        h.stride(&mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn dense_stride_gets_depth_buckets() {
        let r = rec(Op::Read, 1, 0, 4096, 1 << 30);
        let mut h = HandleState::new(&r);
        let d = 768 << 10;
        for k in 0..5u64 {
            h.observe_read(k * d, 65536);
        }
        assert_eq!(h.shape(), Shape::Strided);
        let mut out = vec![];
        h.stride(&mut out);
        let last = 4 * d;
        let got: Vec<_> = out
            .iter()
            .map(|c| (c.depth, c.offset, c.offset + c.len))
            .collect();
        assert_eq!(got[0], (0, last + d, last + d + 65536));
        assert_eq!(got[1], (1, last + 2 * d, last + 2 * d + 65536));
        assert_eq!(got[2], (2, last + 3 * d, last + 4 * d + 65536));
        assert_eq!(got.len(), STRIDE_DEPTHS);
        assert_eq!(got[6], (6, last + 33 * d, last + 64 * d + 65536));
        // the next read only adds what each bucket has not considered
        out.clear();
        h.observe_read(last + d, 65536);
        h.stride(&mut out);
        assert!(out.iter().all(|c| c.len <= d + 65536), "{out:?}");
    }

    #[test]
    fn parquet_layout_follows_the_column_pattern() {
        // 3 row groups x 4 columns of 100 bytes; footer at 1200..1300. Reader reads columns 1, 3.
        let ex: Vec<_> = (0..12u64).map(|i| i * 100..i * 100 + 100).collect();
        let layout = layout_of(1200..1300, ex);
        let r = rec(Op::Read, 1, 1200, 100, 1300);
        let mut h = HandleState::new(&r);
        let mut out = vec![];
        h.layout(&layout, 1200, &mut out); // footer: first extents in order
        assert_eq!(
            out.iter().map(|c| c.offset).collect::<Vec<_>>(),
            vec![0, 100, 200, 300]
        );
        for idx in [1u64, 3, 5] {
            out.clear();
            h.layout(&layout, idx * 100 + 10, &mut out);
        }
        // after 1,3,5 the deltas are 2,2: pattern predicts 7, 9, 11
        let pat: Vec<_> = out
            .iter()
            .filter(|c| c.gen == Gen::LayoutPattern)
            .map(|c| c.offset)
            .collect();
        assert_eq!(pat, vec![700, 900, 1100]);
        // columns {0, 2} of 4: indices 0,2,4,6 -> deltas 2,2,2; columns {0,1}: 0,1,4,5 -> period 2
        let mut h = HandleState::new(&r);
        for idx in [0u64, 1, 4, 5] {
            out.clear();
            h.layout(&layout, idx * 100, &mut out);
        }
        let pat: Vec<_> = out
            .iter()
            .filter(|c| c.gen == Gen::LayoutPattern)
            .map(|c| c.offset / 100)
            .collect();
        assert_eq!(pat, vec![8, 9]);
    }

    #[test]
    fn projected_sequential_stops_at_the_projected_run_and_skips_spill() {
        // 3 row groups x 4 columns of 4 MiB; the dataset projects columns {0, 2, 3}.
        let ex: Vec<_> = (0..12u64).map(|i| i * 4 * MIB..(i + 1) * 4 * MIB).collect();
        let layout = Layout {
            source: 48 * MIB..48 * MIB + 100,
            extents: ex,
            group: 4,
        };
        let mut table = ProjectionTable::new(4);
        let key = ProjectionTable::key(1, 99, 4);
        let mut set = super::super::projection::ColSet::default();
        for c in [0, 2, 3] {
            set.insert(c);
        }
        table.put(key, set);
        let r = rec(Op::Read, 1, 0, MIB as u32, 48 * MIB + 100);
        let mut h = HandleState::new(&r);
        let mut out = vec![];
        let mut read = |h: &mut HandleState, off: u64, out: &mut Vec<Candidate>| {
            out.clear();
            h.observe_read(off, MIB);
            assert!(h.projected(&layout, off, &mut table, key, out));
            out.clear();
            h.sequential(out);
        };
        // column 0 of row group 0: column 1 is not projected
        for k in 0..4 {
            read(&mut h, k * MIB, &mut out);
            assert!(out.iter().all(|c| c.offset + c.len <= 4 * MIB), "{out:?}");
        }
        // column 2: the run 2, 3, (next row group) 0 is projected, so up to 20 MiB
        let mut far = 0;
        for k in 8..20 {
            read(&mut h, k * MIB, &mut out);
            far = out.iter().map(|c| c.offset + c.len).max().unwrap_or(far);
            assert!(far <= 20 * MIB, "{}", far / MIB);
        }
        assert_eq!(far, 20 * MIB);
        // kernel readahead continues into column 1: no candidates in it, projection kept
        read(&mut h, 20 * MIB, &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(table.get(key), Some(set));
    }

    #[test]
    fn successor_table_learns_and_chains() {
        let mut t = SuccessorTable::new(8);
        for ino in [1u64, 2, 3, 1, 2, 3] {
            t.observe_open(&rec(Op::Open, ino, 0, 0, 5000));
        }
        let mut out = vec![];
        t.propose(&rec(Op::Open, 1, 0, 0, 5000), &mut out);
        assert_eq!(
            out.iter().map(|c| (c.inode, c.depth)).collect::<Vec<_>>(),
            vec![(2, 0), (3, 1)]
        );
        assert_eq!(t.successor(1007).map(|s| s.3), Some(2));
        // a different follower lowers confidence before replacing
        t.observe_open(&rec(Op::Open, 1, 0, 0, 5000));
        t.observe_open(&rec(Op::Open, 4, 0, 0, 5000));
        assert_eq!(t.successor(1007).map(|s| s.0), Some(2));
        assert_eq!(t.capacity(), 256);
    }

    #[test]
    fn dir_tracker_proposes_unread_siblings_and_is_bounded() {
        let files: Vec<FileRef> = (1..=5u64)
            .map(|i| FileRef {
                inode: i,
                size: 1000,
                format: FormatClass::Other,
                path_hash: i,
                dir_hash: 99,
            })
            .collect();
        let mut d = DirTracker::new(2, 100);
        let mut out = vec![];
        d.open(&rec(Op::Open, 3, 0, 0, 1000), || files.clone(), &mut out);
        assert_eq!(out.iter().map(|c| c.inode).collect::<Vec<_>>(), vec![4, 5]);
        out.clear();
        d.open(&rec(Op::Open, 4, 0, 0, 1000), || files.clone(), &mut out);
        assert_eq!(out.iter().map(|c| c.inode).collect::<Vec<_>>(), vec![5, 1]);
        for dir in 0..10u64 {
            let mut r = rec(Op::Open, 1, 0, 0, 1000);
            r.dir_hash = dir;
            d.open(&r, || files.clone(), &mut out);
        }
        assert!(d.len() <= 2);
    }
}
