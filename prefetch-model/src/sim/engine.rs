//! The discrete-event replay: streams issuing records closed-loop, demand and prefetch GETs,
//! the prefetch scheduler, the cache and the labelling of every prefetched block.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::time::Instant;

use super::cache::{BlockCache, BlockId, BlockMeta, Evicted};
use super::catalog::{LayoutTracker, SimCatalog};
use super::config::SimConfig;
use super::report::{quantile, DecisionCost, Report};
use super::store::Transfers;
use crate::rng::Rng;
use crate::trace::{Op, TraceRecord};
use crate::{Feedback, PrefetchRequest, Prefetcher, Workload};

/// Replays `w` through prefetcher `p` under `cfg` and reports what happened. Deterministic for
/// a given workload, prefetcher state and config, except `Report::decision`.
pub fn replay(w: &Workload, p: &mut dyn Prefetcher, cfg: &SimConfig) -> Report {
    Sim::new(w, p, cfg).run()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// The stream issues its next record.
    Issue(usize),
    /// A GET's first byte arrived: its body starts transferring.
    FirstByte(u64),
}

/// A heap entry: (time, sequence) order, earliest first.
#[derive(Clone, Copy, Debug)]
struct Timed {
    t: f64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Timed {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Timed {}
impl PartialOrd for Timed {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Timed {
    fn cmp(&self, o: &Self) -> Ordering {
        self.t.total_cmp(&o.t).then(self.seq.cmp(&o.seq))
    }
}

/// One GET: consecutive blocks of one file.
#[derive(Clone, Copy, Debug)]
struct Get {
    inode: u64,
    first: u64,
    n: u64,
    bytes: u64,
    prefetch: bool,
}

/// A block being fetched.
#[derive(Clone, Debug)]
struct InFlight {
    prefetch: bool,
    /// A demand read touched it (for a prefetch: it was used, late).
    demanded: bool,
    /// Reads waiting for it.
    waiters: Vec<u64>,
}

/// A demand read waiting for blocks.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    stream: usize,
    pending: usize,
    start: f64,
    inode: u64,
    range: (u64, u64),
}

/// A queued prefetch request: blocks `next..end` of `inode` not yet issued.
#[derive(Clone, Copy, Debug)]
struct Queued {
    inode: u64,
    next: u64,
    end: u64,
}

#[derive(Default)]
struct Counters {
    demand_reads: u64,
    demand_blocks: u64,
    demand_bytes: u64,
    hits: u64,
    late: u64,
    misses: u64,
    prefetched_blocks: u64,
    prefetched_bytes: u64,
    used: u64,
    used_on_time: u64,
    wasted: u64,
    wasted_bytes: u64,
    dropped_requests: u64,
    gets: u64,
    demand_gets: u64,
    get_bytes: u64,
    prefetched_demand_bytes: u64,
    peak_inflight: u64,
    peak_share: u64,
    peak_cache: u64,
}

struct Sim<'a> {
    w: &'a Workload,
    p: &'a mut dyn Prefetcher,
    cfg: &'a SimConfig,
    bs: u64,
    now: f64,
    seq: u64,
    heap: BinaryHeap<Reverse<Timed>>,
    transfers: Transfers,
    rng_demand: Rng,
    rng_prefetch: Rng,
    cache: BlockCache,
    inflight: HashMap<BlockId, InFlight>,
    gets: HashMap<u64, Get>,
    next_get: u64,
    conns: usize,
    demand_queue: VecDeque<u64>,
    /// Prefetch queue: highest score first, then oldest.
    pq: BTreeMap<(Reverse<u32>, u64), Queued>,
    pq_seq: u64,
    prefetch_inflight: u64,
    share_cap: u64,
    reads: HashMap<u64, Waiting>,
    next_read: u64,
    streams: Vec<Vec<usize>>,
    pos: Vec<usize>,
    stream_end: Vec<f64>,
    streams_left: usize,
    sizes: HashMap<u64, u64>,
    layouts: LayoutTracker,
    latencies: Vec<f64>,
    decisions: Vec<u64>,
    out: Vec<PrefetchRequest>,
    evicted: Vec<Evicted>,
    c: Counters,
}

impl<'a> Sim<'a> {
    fn new(w: &'a Workload, p: &'a mut dyn Prefetcher, cfg: &'a SimConfig) -> Self {
        let mut index: HashMap<u32, usize> = HashMap::new();
        let mut streams: Vec<Vec<usize>> = Vec::new();
        let mut sizes: HashMap<u64, u64> = w
            .namespace
            .files
            .iter()
            .map(|(i, f)| (*i, f.size))
            .collect();
        for (i, r) in w.records.iter().enumerate() {
            let s = *index.entry(r.stream).or_insert_with(|| {
                streams.push(Vec::new());
                streams.len() - 1
            });
            streams[s].push(i);
            if !w.namespace.files.contains_key(&r.inode) {
                let e = sizes.entry(r.inode).or_insert(0);
                *e = (*e).max(r.file_size);
            }
        }
        let n = streams.len();
        Sim {
            w,
            p,
            cfg,
            bs: cfg.block_size.max(1),
            now: 0.0,
            seq: 0,
            heap: BinaryHeap::new(),
            transfers: Transfers::new(&cfg.store),
            rng_demand: Rng::new(cfg.seed),
            rng_prefetch: Rng::new(cfg.seed ^ 0x5eed_0f9e_7c00),
            cache: BlockCache::new(cfg.policy, cfg.cache_bytes),
            inflight: HashMap::new(),
            gets: HashMap::new(),
            next_get: 0,
            conns: 0,
            demand_queue: VecDeque::new(),
            pq: BTreeMap::new(),
            pq_seq: 0,
            prefetch_inflight: 0,
            share_cap: (cfg.cache_bytes as f64 * cfg.prefetch_cache_share.clamp(0.0, 1.0)) as u64,
            reads: HashMap::new(),
            next_read: 0,
            streams,
            pos: vec![0; n],
            stream_end: vec![0.0; n],
            streams_left: n,
            sizes,
            layouts: LayoutTracker::default(),
            latencies: Vec::new(),
            decisions: Vec::new(),
            out: Vec::new(),
            evicted: Vec::new(),
            c: Counters::default(),
        }
    }

    fn schedule(&mut self, t: f64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse(Timed {
            t,
            seq: self.seq,
            ev,
        }));
    }

    fn size_of(&self, inode: u64) -> u64 {
        self.sizes.get(&inode).copied().unwrap_or(0)
    }

    /// Bytes of block `blk` of a file of `size` bytes (0 = unknown: a full block).
    fn block_len(&self, size: u64, blk: u64) -> u64 {
        let start = blk.saturating_mul(self.bs);
        if size > start {
            (size - start).min(self.bs)
        } else {
            self.bs
        }
    }

    fn run(mut self) -> Report {
        for s in 0..self.streams.len() {
            let t0 = self.w.records[self.streams[s][0]].time_ns as f64 / 1e9;
            self.schedule(t0, Ev::Issue(s));
        }
        let start = self.heap.peek().map_or(0.0, |e| e.0.t);
        self.now = start;
        while self.streams_left > 0 {
            let te = self.heap.peek().map(|e| e.0.t);
            let td = self.transfers.next_completion().map(|d| self.now + d);
            let transfer_first = match (te, td) {
                (None, None) => break,
                (Some(te), Some(td)) => td <= te,
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            if let (true, Some(td)) = (transfer_first, td) {
                self.transfers.advance(td - self.now);
                self.now = self.now.max(td);
                for id in self.transfers.take_done(true) {
                    self.finish_get(id);
                }
            } else if let Some(Reverse(e)) = self.heap.pop() {
                self.transfers.advance(e.t - self.now);
                self.now = self.now.max(e.t);
                match e.ev {
                    Ev::Issue(s) => self.issue(s),
                    Ev::FirstByte(id) => {
                        let bytes = self.gets.get(&id).map_or(0, |g| g.bytes);
                        self.transfers.start(id, bytes);
                    }
                }
            }
            self.pump();
            self.track_peaks();
        }
        self.finish(start)
    }

    fn track_peaks(&mut self) {
        self.c.peak_inflight = self.c.peak_inflight.max(self.prefetch_inflight);
        self.c.peak_share = self
            .c
            .peak_share
            .max(self.cache.unused_prefetch() + self.prefetch_inflight);
        self.c.peak_cache = self.c.peak_cache.max(self.cache.used());
    }

    /// The stream's current record completed at `t`: schedule the next one after its think time.
    fn complete(&mut self, s: usize, t: f64) {
        let cur = self.streams[s][self.pos[s]];
        self.stream_end[s] = t;
        self.pos[s] += 1;
        match self.streams[s].get(self.pos[s]) {
            Some(&next) => {
                let gap = self.w.records[next]
                    .time_ns
                    .saturating_sub(self.w.records[cur].time_ns) as f64
                    / 1e9;
                self.schedule(t + gap.min(self.cfg.max_think.max(0.0)), Ev::Issue(s));
            }
            None => self.streams_left -= 1,
        }
    }

    fn issue(&mut self, s: usize) {
        let rec = self.w.records[self.streams[s][self.pos[s]]];
        match rec.op {
            Op::Open | Op::Close => {
                self.decide(&rec);
                self.complete(s, self.now);
            }
            Op::Write => {
                self.write(&rec);
                let t = self.now + rec.len as f64 / self.cfg.local_write_bw.max(1.0);
                self.complete(s, t);
            }
            Op::Read => {
                self.demand(s, &rec);
                self.decide(&rec);
            }
        }
    }

    fn feedback(&mut self, id: BlockId, size: u64, used: bool) {
        if used {
            self.c.used += 1;
        } else {
            self.c.wasted += 1;
            self.c.wasted_bytes += size;
        }
        self.p.on_feedback(&Feedback {
            inode: id.0,
            offset: id.1.saturating_mul(self.bs),
            len: size,
            used,
        });
    }

    fn handle_evictions(&mut self) {
        let ev = std::mem::take(&mut self.evicted);
        for e in &ev {
            if e.meta.unused {
                self.feedback(e.id, e.meta.size, false);
            }
        }
        self.evicted = ev;
        self.evicted.clear();
    }

    fn write(&mut self, rec: &TraceRecord) {
        if rec.len == 0 {
            return;
        }
        let end = rec.offset.saturating_add(rec.len as u64);
        let size = {
            let e = self.sizes.entry(rec.inode).or_insert(0);
            *e = (*e).max(end);
            *e
        };
        for blk in rec.offset / self.bs..=(end - 1) / self.bs {
            let id = (rec.inode, blk);
            if self.cache.get(&id).is_some() || self.inflight.contains_key(&id) {
                continue;
            }
            let meta = BlockMeta {
                size: self.block_len(size, blk),
                from_prefetch: false,
                unused: false,
            };
            // A write larger than the cache simply does not stay cached.
            let _ = self.cache.insert(id, meta, &mut self.evicted);
            self.handle_evictions();
        }
    }

    fn demand(&mut self, s: usize, rec: &TraceRecord) {
        let size = self.size_of(rec.inode);
        let mut end = rec.offset.saturating_add(rec.len as u64);
        if size > 0 {
            end = end.min(size);
        }
        let start = rec.offset;
        self.c.demand_reads += 1;
        if end <= start {
            self.latencies.push(0.0);
            self.complete(s, self.now);
            return;
        }
        self.c.demand_bytes += end - start;
        let read_id = self.next_read;
        self.next_read += 1;
        let mut pending = 0usize;
        let mut missing: Vec<u64> = Vec::new();
        for blk in start / self.bs..=(end - 1) / self.bs {
            self.c.demand_blocks += 1;
            let overlap =
                end.min((blk + 1).saturating_mul(self.bs)) - start.max(blk.saturating_mul(self.bs));
            let id = (rec.inode, blk);
            if let Some(before) = self.cache.hit(&id) {
                self.c.hits += 1;
                if before.from_prefetch {
                    self.c.prefetched_demand_bytes += overlap;
                }
                if before.unused {
                    self.c.used_on_time += 1;
                    self.feedback(id, before.size, true);
                }
            } else if let Some(f) = self.inflight.get_mut(&id) {
                pending += 1;
                f.waiters.push(read_id);
                let newly_used = f.prefetch && !f.demanded;
                f.demanded = true;
                if f.prefetch {
                    self.c.late += 1;
                    self.c.prefetched_demand_bytes += overlap;
                } else {
                    self.c.misses += 1;
                }
                if newly_used {
                    let len = self.block_len(size, blk);
                    self.feedback(id, len, true);
                }
            } else {
                self.c.misses += 1;
                self.cache.miss(&id);
                missing.push(blk);
                pending += 1;
            }
        }
        // Coalesce consecutive missing blocks into demand GETs.
        let mut i = 0;
        while i < missing.len() {
            let first = missing[i];
            let mut bytes = self.block_len(size, first);
            let mut j = i + 1;
            while j < missing.len()
                && missing[j] == missing[j - 1] + 1
                && bytes + self.block_len(size, missing[j]) <= self.cfg.store.max_get_bytes
            {
                bytes += self.block_len(size, missing[j]);
                j += 1;
            }
            let g = self.new_get(rec.inode, first, (j - i) as u64, bytes, false);
            for &blk in &missing[i..j] {
                self.inflight.insert(
                    (rec.inode, blk),
                    InFlight {
                        prefetch: false,
                        demanded: true,
                        waiters: vec![read_id],
                    },
                );
            }
            self.demand_queue.push_back(g);
            i = j;
        }
        if pending == 0 {
            self.read_done(Waiting {
                stream: s,
                pending: 0,
                start: self.now,
                inode: rec.inode,
                range: (start, end),
            });
        } else {
            self.reads.insert(
                read_id,
                Waiting {
                    stream: s,
                    pending,
                    start: self.now,
                    inode: rec.inode,
                    range: (start, end),
                },
            );
        }
    }

    fn read_done(&mut self, r: Waiting) {
        self.latencies.push(self.now - r.start);
        self.layouts
            .on_read(&self.w.namespace, r.inode, r.range.0, r.range.1);
        self.complete(r.stream, self.now);
    }

    /// Asks the prefetcher about `rec` (timed) and queues what it wants.
    fn decide(&mut self, rec: &TraceRecord) {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let catalog = SimCatalog {
            ns: &self.w.namespace,
            layouts: &self.layouts,
        };
        let t0 = Instant::now();
        self.p.on_access(rec, &catalog, &mut out);
        self.decisions
            .push(t0.elapsed().as_nanos().min(u64::MAX as u128) as u64);
        for q in &out {
            self.enqueue(q);
        }
        self.out = out;
    }

    fn enqueue(&mut self, q: &PrefetchRequest) {
        let size = self.size_of(q.inode);
        // Never more than the cache could hold (also bounds requests on files of unknown size).
        let mut end = q.offset.saturating_add(q.len.min(self.cfg.cache_bytes));
        if size > 0 {
            end = end.min(size);
        }
        if end <= q.offset {
            return;
        }
        let (first, last) = (q.offset / self.bs, (end - 1) / self.bs);
        let first_needed = (first..=last).find(|b| !self.present(&(q.inode, *b)));
        let Some(first) = first_needed else { return };
        let score = if q.score.is_nan() {
            0.0
        } else {
            q.score.clamp(0.0, 1.0)
        };
        self.pq_seq += 1;
        self.pq.insert(
            (Reverse(score.to_bits()), self.pq_seq),
            Queued {
                inode: q.inode,
                next: first,
                end: last + 1,
            },
        );
        if self.pq.len() > self.cfg.prefetch_queue {
            self.pq.pop_last();
            self.c.dropped_requests += 1;
        }
    }

    fn present(&self, id: &BlockId) -> bool {
        self.cache.get(id).is_some() || self.inflight.contains_key(id)
    }

    fn new_get(&mut self, inode: u64, first: u64, n: u64, bytes: u64, prefetch: bool) -> u64 {
        let id = self.next_get;
        self.next_get += 1;
        self.gets.insert(
            id,
            Get {
                inode,
                first,
                n,
                bytes,
                prefetch,
            },
        );
        id
    }

    fn start_get(&mut self, id: u64) {
        let Some(g) = self.gets.get(&id).copied() else {
            return;
        };
        self.conns += 1;
        self.c.gets += 1;
        self.c.get_bytes += g.bytes;
        let m = self.cfg.store;
        let rng = if g.prefetch {
            &mut self.rng_prefetch
        } else {
            self.c.demand_gets += 1;
            &mut self.rng_demand
        };
        let lat = rng.lognormal(m.first_byte.max(0.0), m.first_byte_sigma.max(0.0));
        self.schedule(self.now + lat, Ev::FirstByte(id));
    }

    /// Starts queued demand GETs, then prefetch GETs within the budgets.
    fn pump(&mut self) {
        let max = self.cfg.store.max_conns.max(1);
        while self.conns < max {
            let Some(g) = self.demand_queue.pop_front() else {
                break;
            };
            self.start_get(g);
        }
        let pf_conns = max.saturating_sub(self.cfg.demand_reserved_conns).max(1);
        while self.conns < pf_conns && self.demand_queue.is_empty() {
            let Some((&key, &q)) = self.pq.first_key_value() else {
                break;
            };
            let size = self.size_of(q.inode);
            let mut next = q.next;
            while next < q.end && self.present(&(q.inode, next)) {
                next += 1;
            }
            if next >= q.end {
                self.pq.remove(&key);
                continue;
            }
            let mut bytes = 0u64;
            let mut end = next;
            while end < q.end && !self.present(&(q.inode, end)) {
                let len = self.block_len(size, end);
                let fits = (bytes == 0 || bytes + len <= self.cfg.store.max_get_bytes)
                    && self.prefetch_inflight + bytes + len <= self.cfg.prefetch_inflight
                    && self.cache.unused_prefetch() + self.prefetch_inflight + bytes + len
                        <= self.share_cap;
                if !fits {
                    break;
                }
                bytes += len;
                end += 1;
            }
            if end == next {
                // Budget full: wait for prefetches to land or be used, unless this block can
                // never fit.
                let len = self.block_len(size, next);
                if len > self.cfg.prefetch_inflight || len > self.share_cap {
                    self.pq.remove(&key);
                    continue;
                }
                break;
            }
            let g = self.new_get(q.inode, next, end - next, bytes, true);
            for blk in next..end {
                self.inflight.insert(
                    (q.inode, blk),
                    InFlight {
                        prefetch: true,
                        demanded: false,
                        waiters: Vec::new(),
                    },
                );
            }
            self.c.prefetched_blocks += end - next;
            self.c.prefetched_bytes += bytes;
            self.prefetch_inflight += bytes;
            self.start_get(g);
            if end >= q.end {
                self.pq.remove(&key);
            } else if let Some(e) = self.pq.get_mut(&key) {
                e.next = end;
            }
        }
    }

    fn finish_get(&mut self, id: u64) {
        let Some(g) = self.gets.remove(&id) else {
            return;
        };
        self.conns -= 1;
        if g.prefetch {
            self.prefetch_inflight -= g.bytes;
        }
        let size = self.size_of(g.inode);
        let mut done_reads: Vec<u64> = Vec::new();
        for blk in g.first..g.first + g.n {
            let bid = (g.inode, blk);
            let Some(f) = self.inflight.remove(&bid) else {
                continue;
            };
            let len = self.block_len(size, blk);
            let unused = g.prefetch && !f.demanded;
            // Admission: unused prefetched bytes (cached plus still in flight) stay within
            // the share, even if a write grew the block since the GET was issued.
            if unused
                && self.cache.unused_prefetch() + self.prefetch_inflight + len > self.share_cap
            {
                self.feedback(bid, len, false);
            } else {
                let meta = BlockMeta {
                    size: len,
                    from_prefetch: g.prefetch,
                    unused,
                };
                let admitted = self.cache.insert(bid, meta, &mut self.evicted);
                self.handle_evictions();
                if unused && !admitted {
                    self.feedback(bid, len, false);
                }
            }
            for r in f.waiters {
                if let Some(w) = self.reads.get_mut(&r) {
                    w.pending -= 1;
                    if w.pending == 0 {
                        done_reads.push(r);
                    }
                }
            }
        }
        for r in done_reads {
            if let Some(w) = self.reads.remove(&r) {
                self.read_done(w);
            }
        }
    }

    fn finish(mut self, start: f64) -> Report {
        // Whatever prefetched is still unused at the end was wasted.
        let mut left: Vec<(BlockId, u64)> = self
            .inflight
            .iter()
            .filter(|(_, f)| f.prefetch && !f.demanded)
            .map(|(id, _)| (*id, self.block_len(self.size_of(id.0), id.1)))
            .collect();
        left.extend(self.cache.unused_blocks());
        left.sort_unstable();
        for (id, len) in left {
            self.feedback(id, len, false);
        }
        let end = self.stream_end.iter().copied().fold(start, f64::max);
        let c = &self.c;
        let ratio = |a: u64, b: u64, empty: f64| if b == 0 { empty } else { a as f64 / b as f64 };
        let mut lat = std::mem::take(&mut self.latencies);
        let mut dec = std::mem::take(&mut self.decisions);
        Report {
            workload: self.w.name.clone(),
            policy: self.p.name().to_string(),
            demand_reads: c.demand_reads,
            demand_blocks: c.demand_blocks,
            demand_bytes: c.demand_bytes,
            hits: c.hits,
            late: c.late,
            misses: c.misses,
            hit_rate: ratio(c.hits, c.demand_blocks, 0.0),
            prefetched_blocks: c.prefetched_blocks,
            used_prefetched: c.used,
            used_on_time: c.used_on_time,
            wasted_prefetched: c.wasted,
            precision: ratio(c.used, c.prefetched_blocks, 1.0),
            coverage: ratio(c.used, c.used + c.misses, 0.0),
            timeliness: ratio(c.used_on_time, c.used, 1.0),
            demand_bytes_prefetched_frac: ratio(c.prefetched_demand_bytes, c.demand_bytes, 0.0),
            prefetched_bytes: c.prefetched_bytes,
            wasted_bytes: c.wasted_bytes,
            dropped_requests: c.dropped_requests,
            get_requests: c.gets,
            demand_gets: c.demand_gets,
            get_bytes: c.get_bytes,
            replay_time: end - start,
            read_p50: quantile(&mut lat, 0.5),
            read_p99: quantile(&mut lat, 0.99),
            peak_prefetch_inflight: c.peak_inflight,
            peak_prefetch_share: c.peak_share,
            peak_cache_used: c.peak_cache,
            decision: DecisionCost {
                calls: dec.len() as u64,
                p50_ns: quantile(&mut dec, 0.5),
                p99_ns: quantile(&mut dec, 0.99),
            },
        }
    }
}
