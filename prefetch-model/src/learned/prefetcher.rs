//! [`LearnedPrefetcher`]: generators propose, the model scores, the bandit sets how much to
//! emit per class, the fallback hands a losing class to the heuristic, feedback trains online.

use super::bandit::{class_of, Control, ControlConfig, WindowStats};
use super::candidates::{
    whole_file, Candidate, DirTracker, Gen, HandleState, IntMap, Shape, SuccessorTable,
    WHOLE_FILE_MAX,
};
use super::features::{count_bucket, program_bucket, ratio_bucket, size_bucket, Context};
use super::model::Model;
use super::pending::{Entry, Pending};
use super::projection::ProjectionTable;
use crate::prefetcher::{Catalog, Feedback, PrefetchRequest, Prefetcher};
use crate::readahead::{ReadaheadConfig, ReadaheadWindow, StreamObservation};
use crate::trace::{Op, TraceRecord};

const MIB: f32 = (1u64 << 20) as f32;

/// Settings of the learned prefetcher.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LearnedConfig {
    /// Scored candidates awaiting a label (ring capacity; also the labeling horizon).
    pub max_pending: usize,
    /// Handles tracked at once.
    pub max_handles: usize,
    /// Candidates scored per access.
    pub max_candidates: usize,
    /// Bandit and fallback settings.
    pub control: ControlConfig,
    /// Update the model from feedback and demand reads while running.
    pub learn_online: bool,
    /// Send requests (false: score and label only, for offline training).
    pub emit: bool,
    /// Successor table size (log2 slots).
    pub successor_bits: u32,
    /// Directories tracked by the sibling generator.
    pub max_dirs: usize,
    /// Largest directory the sibling generator tracks.
    pub max_dir_files: usize,
    /// The fallback heuristic's readahead window.
    pub heuristic: ReadaheadConfig,
    /// Block size the bandit and fallback count demand, coverage and waste in (the cache's).
    pub block: u64,
    /// Distinct blocks read since a block's last read for it to still count as cached (a
    /// re-read within this many is not demand a prefetch could cover); about the cache's
    /// blocks.
    pub recent_blocks: u64,
}

impl Default for LearnedConfig {
    fn default() -> Self {
        Self {
            max_pending: 16 * 1024,
            max_handles: 4096,
            max_candidates: 16,
            control: ControlConfig::default(),
            learn_online: true,
            emit: true,
            successor_bits: 14,
            max_dirs: 64,
            max_dir_files: 1 << 16,
            // Mountpoint-like: doubling to 64 MiB (a deeper window per stream starves the
            // scheduler's budget when many streams read at once).
            heuristic: ReadaheadConfig {
                max: 64 << 20,
                ..ReadaheadConfig::default()
            },
            block: 1 << 20,
            recent_blocks: 512,
        }
    }
}

struct Handle {
    st: HandleState,
    heur: ReadaheadWindow,
    heur_lo: u64,
    heur_hi: u64,
    last_blk: Option<u64>,
    counted: [u64; 64],
}

impl Handle {
    /// Blocks of `[a, b)` not counted as issued before (then remembered as counted).
    fn count_new(&mut self, a: u64, b: u64, bs: u64) -> u64 {
        if b <= a {
            return 0;
        }
        let (first, last) = (a / bs, (b - 1) / bs);
        let mut fresh = 0;
        for blk in first..=last.min(first + 63) {
            let slot = &mut self.counted[(blk % 64) as usize];
            if *slot != blk + 1 {
                *slot = blk + 1;
                fresh += 1;
            }
        }
        fresh + last.saturating_sub(first + 63)
    }
}

/// Blocks demand reads touched lately (direct-mapped, fixed size). A re-read of one would hit
/// the cache whatever the prefetcher did, so the bandit and the fallback do not count it as
/// demand a prefetch could cover.
struct RecentBlocks {
    /// `(key, stamp)` per slot.
    slots: Vec<(u64, u64)>,
    /// Blocks marked so far.
    stamp: u64,
    /// How many marks back a block still counts as read lately (about the cache's blocks).
    horizon: u64,
}

impl RecentBlocks {
    fn new(bits: u32, horizon: u64) -> Self {
        Self {
            slots: vec![(0, 0); 1 << bits],
            stamp: 0,
            horizon,
        }
    }

    /// Bit `i` set when block `first + i` (of at most 64) was read lately; marks them all read.
    fn check_and_mark(&mut self, inode: u64, first: u64, last: u64) -> u64 {
        let mut mask = 0u64;
        if last < first {
            return 0;
        }
        for (i, blk) in (first..=last.min(first + 63)).enumerate() {
            let key = (inode.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ blk)
                .wrapping_mul(0xbf58_476d_1ce4_e5b9)
                | 1;
            let slot = (key >> 40) as usize & (self.slots.len() - 1);
            let (k, at) = self.slots[slot];
            if k == key && self.stamp - at < self.horizon {
                mask |= 1 << i;
            }
            self.stamp += 1;
            self.slots[slot] = (key, self.stamp);
        }
        mask
    }
}

/// Counters for reports and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LearnedStats {
    /// Candidates scored.
    pub scored: u64,
    /// Requests emitted by the model.
    pub emitted: u64,
    /// Requests emitted by the fallback heuristic.
    pub fallback_emitted: u64,
    /// Model updates (labels learned).
    pub updates: u64,
    /// Feedback on emitted candidates per generator ([`Gen::index`]): blocks used.
    pub used_by_gen: [u64; 7],
    /// Feedback on emitted candidates per generator ([`Gen::index`]): blocks wasted.
    pub wasted_by_gen: [u64; 7],
}

/// The learned prefetcher (name `learned`).
pub struct LearnedPrefetcher {
    model: Model,
    cfg: LearnedConfig,
    control: Control,
    pending: Pending,
    handles: IntMap<u64, Handle>,
    /// The handle that last opened or read each inode (entries leave with their handle), so
    /// eviction feedback can rewind that handle's sequential stream.
    by_inode: IntMap<u64, u64>,
    /// Column projections remembered per dataset.
    projections: ProjectionTable,
    succ: SuccessorTable,
    dirs: DirTracker,
    ratio: Vec<[(f32, u32); 7]>,
    cands: Vec<Candidate>,
    recent: RecentBlocks,
    clock: u64,
    stats: LearnedStats,
}

impl LearnedPrefetcher {
    /// A prefetcher scoring with `model`.
    pub fn new(model: Model, cfg: LearnedConfig) -> Self {
        Self {
            model,
            cfg,
            control: Control::new(cfg.control),
            pending: Pending::new(cfg.max_pending),
            handles: IntMap::default(),
            by_inode: IntMap::default(),
            projections: ProjectionTable::new(8),
            succ: SuccessorTable::new(cfg.successor_bits),
            dirs: DirTracker::new(cfg.max_dirs, cfg.max_dir_files),
            ratio: vec![[(0.5, 0); 7]; super::bandit::CLASSES],
            cands: Vec::with_capacity(64),
            recent: RecentBlocks::new(16, cfg.recent_blocks),
            clock: 0,
            stats: LearnedStats::default(),
        }
    }

    /// The model (as trained so far).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Finishes: unlabeled candidates become negatives (training), and the model is returned.
    pub fn into_model(mut self) -> Model {
        if self.cfg.learn_online {
            let left: Vec<Entry> = self.pending.drain().collect();
            for e in left {
                if !e.labeled && !e.emitted {
                    self.learn(&e, false, shadow_weight(&e));
                }
            }
        }
        self.model
    }

    /// Counters.
    pub fn stats(&self) -> LearnedStats {
        self.stats
    }

    /// Classes currently handed to the heuristic.
    pub fn fallback_classes(&self) -> usize {
        self.control.fallback_count()
    }

    /// Whether the class of this format and shape is handed to the heuristic.
    pub fn in_fallback(&self, format: u8, shape: Shape) -> bool {
        self.control.fallback(class_of(format, shape as u8))
    }

    /// Index (into [`super::bandit::ARMS`]) of the arm in force for the class of this format
    /// and shape.
    pub fn arm_index(&self, format: u8, shape: Shape) -> usize {
        self.control.arm_index(class_of(format, shape as u8))
    }

    /// The model's and the heuristic's smoothed scores for a class (see [`super::bandit`]).
    pub fn class_scores(&self, format: u8, shape: Shape) -> (Option<f64>, Option<f64>) {
        self.control.scores(class_of(format, shape as u8))
    }

    /// Sizes of the bounded maps: (pending candidates, handles, directories).
    pub fn footprint(&self) -> (usize, usize, usize) {
        (self.pending.len(), self.handles.len(), self.dirs.len())
    }

    fn learn(&mut self, e: &Entry, label: bool, weight: f32) {
        if !self.cfg.learn_online {
            return;
        }
        self.model.ftrl.update(e.feats.slots(), label, weight);
        self.stats.updates += 1;
        let r = &mut self.ratio[e.class as usize % super::bandit::CLASSES][e.gen.index()];
        r.0 = 0.97 * r.0 + 0.03 * if label { 1.0 } else { 0.0 };
        r.1 = r.1.saturating_add(1);
    }

    fn handle(&mut self, rec: &TraceRecord) -> &mut Handle {
        if !self.handles.contains_key(&rec.handle) && self.handles.len() >= self.cfg.max_handles {
            if let Some(old) = self
                .handles
                .iter()
                .min_by_key(|(_, h)| h.st.touched)
                .map(|(k, _)| *k)
            {
                if let Some(h) = self.handles.remove(&old) {
                    self.forget_inode(h.st.inode, old);
                }
            }
        }
        if self.by_inode.get(&rec.inode) != Some(&rec.handle) {
            self.by_inode.insert(rec.inode, rec.handle);
        }
        let heur_cfg = self.cfg.heuristic;
        let h = self.handles.entry(rec.handle).or_insert_with(|| Handle {
            st: HandleState::new(rec),
            heur: ReadaheadWindow::new(heur_cfg),
            heur_lo: 0,
            heur_hi: 0,
            last_blk: None,
            counted: [0; 64],
        });
        h.st.touched = self.clock;
        h
    }
}

impl LearnedPrefetcher {
    fn forget_inode(&mut self, inode: u64, handle: u64) {
        if self.by_inode.get(&inode) == Some(&handle) {
            self.by_inode.remove(&inode);
        }
    }

    /// A block emitted ahead of a sequential reader was evicted before the reader got there:
    /// the handle's stream rewinds to it, so the generators propose it again.
    fn rewind_evicted(&mut self, inode: u64, offset: u64) {
        let Some(&key) = self.by_inode.get(&inode) else {
            return;
        };
        if let Some(h) = self.handles.get_mut(&key) {
            h.st.rewind(offset);
        }
    }
}

fn shadow_weight(e: &Entry) -> f32 {
    ((e.end - e.start) as f32 / MIB).clamp(0.25, 4.0)
}

/// Accounting blocks touched by bytes `[a, b)`.
fn blocks_in(a: u64, b: u64, bs: u64) -> u64 {
    if b <= a {
        0
    } else {
        (b - 1) / bs - a / bs + 1
    }
}

impl Prefetcher for LearnedPrefetcher {
    fn name(&self) -> &str {
        "learned"
    }

    fn on_access(
        &mut self,
        rec: &TraceRecord,
        catalog: &dyn Catalog,
        out: &mut Vec<PrefetchRequest>,
    ) {
        self.clock += 1;
        let mut cands = std::mem::take(&mut self.cands);
        cands.clear();
        let mut model_stats = WindowStats::default();
        let mut heur_stats = WindowStats::default();
        let mut heur_req: Option<(u64, u64)> = None;
        let (shape, run) = match rec.op {
            Op::Open => {
                let h = self.handle(rec);
                if rec.file_size > 0 && rec.file_size <= WHOLE_FILE_MAX {
                    heur_req = Some((0, rec.file_size));
                    h.heur_lo = 0;
                    h.heur_hi = rec.file_size;
                    heur_stats.issued += blocks_in(0, rec.file_size, self.cfg.block.max(1)) as f64;
                }
                self.succ.observe_open(rec);
                whole_file(rec, &mut cands);
                self.succ.propose(rec, &mut cands);
                self.dirs
                    .open(rec, || catalog.siblings(rec.dir_hash), &mut cands);
                (Shape::Fresh, 0)
            }
            Op::Read => {
                let (off, end) = (rec.offset, rec.offset + rec.len as u64);
                let bs = self.cfg.block.max(1);
                let (first_blk, last_blk) = (off / bs, (end.max(off + 1) - 1) / bs);
                // Blocks this read touches for the first time (a block read by consecutive
                // reads counts once), at most 64 of them.
                let prev_blk = self.handles.get(&rec.handle).and_then(|h| h.last_blk);
                let new_from = if prev_blk == Some(first_blk) {
                    first_blk + 1
                } else {
                    first_blk
                };
                let new_to = last_blk.min(new_from.saturating_add(63));
                let new_mask = |a: u64, b: u64| -> u64 {
                    // bits of new blocks overlapping byte range [a, b)
                    if b <= a || new_to < new_from {
                        return 0;
                    }
                    let (x, y) = ((a / bs).max(new_from), ((b - 1) / bs).min(new_to));
                    if y < x {
                        return 0;
                    }
                    let n = y - x + 1;
                    let ones = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
                    ones << (x - new_from)
                };
                // What earlier decisions covered, and shadow labels for what the model skipped.
                let mut covered_mask = 0u64;
                let mut hits: [Option<Entry>; 16] = [None; 16];
                let mut nh = 0;
                let (qa, qb) = (first_blk * bs, (last_blk + 1) * bs);
                self.pending.overlapping(rec.inode, qa, qb, 16, |e| {
                    if e.wanted && !e.evicted {
                        covered_mask |= new_mask(e.start, e.end);
                    }
                    if e.end > off && e.start < end {
                        e.consumed = true;
                        if !e.emitted && !e.labeled {
                            e.labeled = true;
                            hits[nh] = Some(*e);
                            nh += 1;
                        }
                    }
                });
                for e in hits.iter().take(nh).flatten() {
                    self.learn(e, true, shadow_weight(e));
                }
                // Blocks read lately would hit anyway: not counted as demand or coverage.
                let cold = !self.recent.check_and_mark(rec.inode, new_from, new_to);
                let n_new = if new_to >= new_from {
                    new_to - new_from + 1
                } else {
                    0
                };
                let all = if n_new >= 64 {
                    u64::MAX
                } else {
                    (1u64 << n_new) - 1
                };
                let new_blocks = (all & cold).count_ones() as f64;
                model_stats.demand = new_blocks;
                model_stats.covered = (covered_mask & cold).count_ones() as f64;
                let h = self.handle(rec);
                h.last_blk = Some(last_blk);
                heur_stats.demand = new_blocks;
                heur_stats.covered = (new_mask(h.heur_lo, h.heur_hi) & cold).count_ones() as f64;
                if let StreamObservation::Sequential { window } =
                    h.heur.observe(off, rec.len as u64)
                {
                    let hi = (end + window).min(rec.file_size.max(end));
                    if h.heur_hi < off {
                        h.heur_lo = off;
                        h.heur_hi = end;
                    }
                    let from = h.heur_hi.max(end);
                    if hi > from {
                        // blocks past the (block-rounded) range already issued
                        let counted = h.heur_hi.div_ceil(bs) * bs;
                        heur_stats.issued += blocks_in(from.max(counted), hi, bs) as f64;
                        heur_req = Some((from, hi - from));
                        h.heur_hi = hi;
                    }
                }
                h.st.observe_read(off, rec.len as u64);
                let layout = catalog.layout(rec.inode);
                let st = match self.handles.get_mut(&rec.handle) {
                    Some(h) => &mut h.st,
                    None => unreachable!("handle() inserted it"),
                };
                // A grouped layout (Parquet row groups) is followed by the reader's column
                // projection once known; until then, and for other layouts, by the next units
                // and the unit-index pattern.
                let mut projected = false;
                if let Some(l) = layout.as_deref().filter(|l| l.group > 0) {
                    let key = ProjectionTable::key(rec.program_hash, rec.dir_hash, l.group);
                    projected = st.projected(l, off, &mut self.projections, key, &mut cands);
                }
                st.sequential(&mut cands);
                st.stride(&mut cands);
                if let (Some(l), false) = (layout.as_deref(), projected) {
                    st.layout(l, off, &mut cands);
                }
                (st.shape(), st.run)
            }
            Op::Close => {
                if self.handles.remove(&rec.handle).is_some() {
                    self.forget_inode(rec.inode, rec.handle);
                }
                self.cands = cands;
                return;
            }
            Op::Write => {
                self.cands = cands;
                return;
            }
        };
        let class = class_of(rec.format as u8, shape as u8);
        let arm = self.control.arm(class);
        let fallback = self.control.fallback(class);
        let mut seq_blocked = false;
        let mut seq_emitted_until = None;
        // Sequential emission stays contiguous: a wanted bucket is fetched from what the handle
        // already has in flight (a shallower arm earlier may have left a gap before it).
        let (mut seq_from, emitted_range) = match (rec.op, self.handles.get(&rec.handle)) {
            (Op::Read, Some(h)) => (
                h.st.emitted_until.max(h.st.frontier),
                (h.st.emitted_from, h.st.emitted_until),
            ),
            _ => (u64::MAX, (0, 0)),
        };
        let req_b = size_bucket(rec.len as u64);
        let run_b = count_bucket(run);
        let prog_b = program_bucket(rec.program_hash);
        for c in cands.iter().take(self.cfg.max_candidates) {
            // Ranges inside what the sequential stream already asked for are not scored again.
            let inside = c.gen != Gen::Sequential
                && c.inode == rec.inode
                && c.offset >= emitted_range.0
                && c.offset + c.len <= emitted_range.1;
            if inside || self.pending.emitted_at(c.inode, c.offset) {
                continue;
            }
            let r = self.ratio[class][c.gen.index()];
            let ctx = Context {
                gen: c.gen as u8,
                depth: c.depth,
                format: rec.format as u8,
                size: size_bucket(c.file_size),
                req: req_b,
                run: run_b,
                ratio: ratio_bucket((r.1 >= 16).then_some(r.0)),
                program: prog_b,
                shape: shape as u8,
            };
            let feats = ctx.features(&self.model.ftrl);
            let p = self.model.ftrl.predict(feats.slots());
            self.stats.scored += 1;
            let seq = c.gen == Gen::Sequential;
            let wanted = p >= arm.threshold && c.depth < arm.max_depth && !(seq && seq_blocked);
            if seq && !wanted {
                seq_blocked = true;
            }
            let emitted = wanted && !fallback && self.cfg.emit;
            // A wanted sequential bucket covers from what the handle already has (see seq_from).
            let start = if seq && wanted {
                seq_from.min(c.offset)
            } else {
                c.offset
            };
            let end = c.offset + c.len;
            if seq && wanted {
                seq_from = end;
            }
            if emitted {
                // Score = p scaled by urgency. Other files are speculative: queued behind this
                // file's ranges of equal confidence, so they never hold up an imminent read.
                // Deeper candidates are less urgent: the scheduler serves higher scores first.
                let urgency = 1.0 - c.depth.min(8) as f32 / 16.0;
                let score = if c.inode == rec.inode {
                    p * urgency
                } else {
                    0.5 * p * urgency
                };
                out.push(PrefetchRequest {
                    inode: c.inode,
                    offset: start,
                    len: end - start,
                    score,
                });
                self.stats.emitted += 1;
                if seq {
                    seq_emitted_until = Some(end);
                }
            }
            if wanted {
                // Blocks not already counted for this handle (a small direct-mapped memory of
                // counted blocks; ranges past 64 blocks count their tail as new).
                let bs = self.cfg.block.max(1);
                let (a, b) = (start, end);
                let fresh = match self.handles.get_mut(&rec.handle) {
                    Some(h) if c.inode == rec.inode => h.count_new(a, b, bs),
                    _ => blocks_in(a, b, bs),
                };
                model_stats.issued += fresh as f64;
            }
            let e = Entry {
                inode: c.inode,
                start,
                end,
                feats,
                gen: c.gen,
                depth: c.depth,
                class: class as u16,
                emitted,
                wanted,
                labeled: false,
                evicted: false,
                consumed: false,
            };
            if let Some(old) = self.pending.insert(e) {
                if !old.labeled && !old.emitted {
                    self.learn(&old, false, shadow_weight(&old));
                }
            }
        }
        if let (Some(until), Some(h)) = (seq_emitted_until, self.handles.get_mut(&rec.handle)) {
            h.st.emitted_until = h.st.emitted_until.max(until);
        }
        if fallback && self.cfg.emit {
            if let Some((offset, len)) = heur_req {
                // The heuristic's shadow frontier ran ahead of what was really fetched: emit from
                // what this handle really has in flight, and record it as emitted.
                let (mut from, to) = (offset, offset + len);
                if let Some(h) = self.handles.get_mut(&rec.handle) {
                    if rec.op == Op::Read {
                        from = h.st.emitted_until.max(rec.offset + rec.len as u64);
                    }
                    h.st.emitted_until = h.st.emitted_until.max(to);
                }
                if to > from {
                    out.push(PrefetchRequest {
                        inode: rec.inode,
                        offset: from,
                        len: to - from,
                        score: 1.0,
                    });
                    self.stats.fallback_emitted += 1;
                }
            }
        }
        self.control.record(class, model_stats, heur_stats);
        self.control.tick(class);
        self.cands = cands;
    }

    fn on_feedback(&mut self, fb: &Feedback) {
        let mut hit: Option<Entry> = None;
        self.pending
            .overlapping(fb.inode, fb.offset, fb.offset + fb.len, 1, |e| {
                if e.emitted {
                    e.labeled = true;
                    if !fb.used {
                        e.evicted = true;
                    }
                    hit = Some(*e);
                }
            });
        if !fb.used {
            self.rewind_evicted(fb.inode, fb.offset);
        }
        if let Some(e) = hit {
            let by_gen = if fb.used {
                &mut self.stats.used_by_gen
            } else {
                &mut self.stats.wasted_by_gen
            };
            by_gen[e.gen.index()] += 1;
            let w = (fb.len as f32 / MIB).clamp(0.05, 1.0);
            self.learn(&e, fb.used, w);
        }
    }
}
