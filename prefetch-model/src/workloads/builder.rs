//! Shared machinery of the generators: a namespace-and-records builder, per-stream clocks,
//! think-time draws, scaling helpers and a Zipf sampler.
//!
//! Every generator describes what each stream (a process or thread, as FUSE reports it) does in
//! its own time; the builder stamps each record with the file's identity (inode, path and
//! directory hashes, format, size at that moment) and sorts the result by time at the end.

use std::collections::HashMap;

use crate::rng::Rng;
use crate::trace::{stable_hash, FormatClass, Op, TraceRecord};
use crate::{FileRef, Layout, Namespace, Workload};

/// One KiB.
pub const KIB: u64 = 1 << 10;
/// One MiB.
pub const MIB: u64 = 1 << 20;
/// One GiB.
pub const GIB: u64 = 1 << 30;

/// Gap between the kernel requests one large application read is split into (FUSE request
/// turnaround on the reader's side, not think time).
pub const REQ_GAP_NS: u64 = 2_000;
/// Time an `open` costs the application before its first read (path lookup, syscall).
pub const OPEN_NS: u64 = 20_000;
/// First inode handed out (1 is the mount's root directory).
const FIRST_INODE: u64 = 2;
/// First stream id handed out (pid-like).
const FIRST_STREAM: u32 = 1000;

/// Microseconds to nanoseconds.
pub fn us(x: f64) -> u64 {
    (x * 1e3).round().max(0.0) as u64
}

/// Milliseconds to nanoseconds.
pub fn ms(x: f64) -> u64 {
    (x * 1e6).round().max(0.0) as u64
}

/// A think time: log-normal around `median_ns` (sigma 0.3), so compute steps jitter realistically
/// but stay positive.
pub fn jitter(rng: &mut Rng, median_ns: u64) -> u64 {
    rng.lognormal(median_ns as f64, 0.3).round() as u64
}

/// `n * scale`, rounded, at least `min` (so tiny test scales stay meaningful).
pub fn scale_count(n: usize, scale: f64, min: usize) -> usize {
    ((n as f64 * scale).round() as usize).max(min)
}

/// `bytes * scale`, rounded, at least `min`.
pub fn scale_bytes(bytes: u64, scale: f64, min: u64) -> u64 {
    ((bytes as f64 * scale).round() as u64).max(min)
}

/// The identity and clock of one stream (a process or thread).
#[derive(Clone, Debug)]
pub struct Stream {
    /// Stream id written to its records.
    pub id: u32,
    /// Hash of the program name.
    pub program: u32,
    /// The stream's clock: the time its next record is stamped with.
    pub t: u64,
}

impl Stream {
    /// Advances the stream's clock by a think time.
    pub fn think(&mut self, ns: u64) {
        self.t += ns;
    }

    /// Moves the clock forward to `t` if it is behind (waiting on another stream).
    pub fn wait_until(&mut self, t: u64) {
        self.t = self.t.max(t);
    }
}

/// Builds a [`Workload`]: files, layouts, streams and their records.
#[derive(Debug)]
pub struct Builder {
    name: String,
    ns: Namespace,
    paths: HashMap<u64, String>,
    cur_size: HashMap<u64, u64>,
    records: Vec<TraceRecord>,
    next_inode: u64,
    next_handle: u64,
    next_stream: u32,
}

/// The program hash written to records: the low 32 bits of the name's stable hash.
pub fn program_hash(name: &str) -> u32 {
    stable_hash(name.as_bytes()) as u32
}

fn parent_dir(path: &str) -> &str {
    path.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

impl Builder {
    /// An empty workload called `name`.
    pub fn new(name: &str) -> Self {
        Builder {
            name: name.to_string(),
            ns: Namespace::default(),
            paths: HashMap::new(),
            cur_size: HashMap::new(),
            records: Vec::new(),
            next_inode: FIRST_INODE,
            next_handle: 1,
            next_stream: FIRST_STREAM,
        }
    }

    fn insert(&mut self, path: &str, size: u64, current: u64) -> FileRef {
        let f = FileRef {
            inode: self.next_inode,
            size,
            format: FormatClass::from_name(path),
            path_hash: stable_hash(path.as_bytes()),
            dir_hash: stable_hash(parent_dir(path).as_bytes()),
        };
        self.next_inode += 1;
        self.ns.add_file(f);
        self.paths.insert(f.inode, path.to_string());
        self.cur_size.insert(f.inode, current);
        f
    }

    /// Adds an existing file of `size` bytes at `path` (relative to the mount).
    pub fn add_file(&mut self, path: &str, size: u64) -> FileRef {
        self.insert(path, size, size)
    }

    /// Adds a file the workload creates: it starts empty and its writes grow it to `final_size`
    /// (the size the namespace reports).
    pub fn create_file(&mut self, path: &str, final_size: u64) -> FileRef {
        self.insert(path, final_size, 0)
    }

    /// Records a file's format layout.
    pub fn set_layout(&mut self, inode: u64, layout: Layout) {
        self.ns.set_layout(inode, layout);
    }

    /// A new stream of `program` whose clock starts at `start_ns`.
    pub fn stream(&mut self, program: &str, start_ns: u64) -> Stream {
        let id = self.next_stream;
        self.next_stream += 1;
        Stream {
            id,
            program: program_hash(program),
            t: start_ns,
        }
    }

    fn push(&mut self, s: &Stream, f: &FileRef, handle: u64, op: Op, offset: u64, len: u64) {
        let size = self.cur_size.get(&f.inode).copied().unwrap_or(f.size);
        self.records.push(TraceRecord {
            time_ns: s.t,
            stream: s.id,
            program_hash: s.program,
            handle,
            inode: f.inode,
            path_hash: f.path_hash,
            dir_hash: f.dir_hash,
            offset,
            len: len.min(u32::MAX as u64) as u32,
            format: f.format,
            op,
            file_size: size,
        });
    }

    /// `s` opens `f`: records the open, returns the new handle and advances the clock by
    /// [`OPEN_NS`].
    pub fn open(&mut self, s: &mut Stream, f: &FileRef) -> u64 {
        let h = self.next_handle;
        self.next_handle += 1;
        self.push(s, f, h, Op::Open, 0, 0);
        s.think(OPEN_NS);
        h
    }

    /// `s` closes handle `h` of `f`; advances the clock by 1 us.
    pub fn close(&mut self, s: &mut Stream, f: &FileRef, h: u64) {
        self.push(s, f, h, Op::Close, 0, 0);
        s.think(1_000);
    }

    /// One read request of `len` bytes at `offset`, clipped to the file's end; nothing is
    /// recorded when the clipped range is empty. Advances the clock by [`REQ_GAP_NS`].
    pub fn read(&mut self, s: &mut Stream, f: &FileRef, h: u64, offset: u64, len: u64) {
        let size = self.cur_size.get(&f.inode).copied().unwrap_or(f.size);
        let end = offset.saturating_add(len).min(size);
        if end <= offset {
            return;
        }
        self.push(s, f, h, Op::Read, offset, end - offset);
        s.think(REQ_GAP_NS);
    }

    /// An application read of `len` bytes at `offset` as the kernel passes it to FUSE: requests
    /// of at most `max_req` bytes (clipped to the file's end).
    pub fn read_span(
        &mut self,
        s: &mut Stream,
        f: &FileRef,
        h: u64,
        offset: u64,
        len: u64,
        max_req: u64,
    ) {
        let size = self.cur_size.get(&f.inode).copied().unwrap_or(f.size);
        let end = offset.saturating_add(len).min(size);
        let max_req = max_req.max(1);
        let mut off = offset;
        while off < end {
            let n = max_req.min(end - off);
            self.read(s, f, h, off, n);
            off += n;
        }
    }

    /// One write request; grows the file's current size when it writes past the end.
    pub fn write(&mut self, s: &mut Stream, f: &FileRef, h: u64, offset: u64, len: u64) {
        let cur = self.cur_size.entry(f.inode).or_insert(0);
        *cur = (*cur).max(offset + len);
        self.push(s, f, h, Op::Write, offset, len);
        s.think(REQ_GAP_NS);
    }

    /// Orders every directory listing by name, sorts the records by time (stable, so each
    /// stream keeps its order) and returns the workload.
    pub fn finish(mut self) -> Workload {
        let paths = &self.paths;
        for listing in self.ns.dirs.values_mut() {
            listing.sort_by(|a, b| paths.get(a).cmp(&paths.get(b)));
        }
        self.records.sort_by_key(|r| r.time_ns);
        Workload {
            name: self.name,
            records: self.records,
            namespace: self.ns,
        }
    }
}

/// One epoch's `order` chunked into batches of `batch` items, in global order (the DataLoader
/// hands batch `k` to worker `k % workers`).
pub fn batches(order: &[usize], batch: usize) -> Vec<Vec<usize>> {
    order.chunks(batch.max(1)).map(|c| c.to_vec()).collect()
}

/// Samples ranks `0..n` with probability proportional to `1 / (rank + 1)^s`.
#[derive(Clone, Debug)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// A sampler over `n` (at least 1) ranks with exponent `s`.
    pub fn new(n: usize, s: f64) -> Self {
        let mut acc = 0.0;
        let mut cdf = Vec::with_capacity(n.max(1));
        for k in 0..n.max(1) {
            acc += 1.0 / ((k + 1) as f64).powf(s);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }

    /// One rank.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_prefers_low_ranks() {
        let z = Zipf::new(1000, 1.0);
        let mut rng = Rng::new(3);
        let mut counts = vec![0u32; 1000];
        for _ in 0..20_000 {
            counts[z.sample(&mut rng)] += 1;
        }
        // P(rank 0) = 1 / H(1000) ~ 0.134; rank 9 ~ 0.0134.
        assert!((2300..3100).contains(&counts[0]), "{}", counts[0]);
        assert!(counts[0] > 5 * counts[9]);
    }

    #[test]
    fn builder_stamps_identity_and_sorts() {
        let mut b = Builder::new("t");
        let f = b.add_file("d/x.parquet", 100);
        let mut s1 = b.stream("python3", 50);
        let mut s2 = b.stream("python3", 0);
        let h1 = b.open(&mut s1, &f);
        b.read_span(&mut s1, &f, h1, 10, 1000, 40);
        b.close(&mut s1, &f, h1);
        let h2 = b.open(&mut s2, &f);
        b.close(&mut s2, &f, h2);
        let w = b.finish();
        assert_eq!(w.records[0].stream, s2.id);
        let reads: Vec<_> = w.records.iter().filter(|r| r.op == Op::Read).collect();
        assert_eq!(reads.len(), 3); // 10..50, 50..90, 90..100
        assert_eq!(reads[2].len, 10);
        assert!(w
            .records
            .iter()
            .all(|r| r.path_hash == stable_hash(b"d/x.parquet")
                && r.dir_hash == stable_hash(b"d")
                && r.format == FormatClass::Parquet));
        assert_eq!(w.namespace.dirs[&stable_hash(b"d")], vec![f.inode]);
    }
}
