//! Replays of small hand-built workloads.

use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::*;
use crate::baselines;
use crate::rng::Rng;
use crate::trace::{FormatClass, Op, TraceRecord};
use crate::{Catalog, Feedback, FileRef, Layout, Namespace, PrefetchRequest, Prefetcher, Workload};

const M: u64 = 1 << 20;

fn file(inode: u64, size: u64) -> FileRef {
    FileRef {
        inode,
        size,
        format: FormatClass::Other,
        path_hash: inode,
        dir_hash: 7,
    }
}

fn rec(
    t_ms: u64,
    stream: u32,
    op: Op,
    inode: u64,
    offset: u64,
    len: u64,
    size: u64,
) -> TraceRecord {
    TraceRecord {
        time_ns: t_ms * 1_000_000,
        stream,
        program_hash: 0,
        handle: inode * 100 + stream as u64,
        inode,
        path_hash: inode,
        dir_hash: 7,
        offset,
        len: len as u32,
        format: FormatClass::Other,
        op,
        file_size: size,
    }
}

/// Open, `len`-byte reads from 0 to the end `gap_ms` apart, close.
fn sequential(stream: u32, inode: u64, size: u64, len: u64, gap_ms: u64) -> Vec<TraceRecord> {
    let mut v = vec![rec(0, stream, Op::Open, inode, 0, 0, size)];
    let mut t = 0;
    let mut off = 0;
    while off < size {
        t += gap_ms;
        v.push(rec(
            t,
            stream,
            Op::Read,
            inode,
            off,
            len.min(size - off),
            size,
        ));
        off += len;
    }
    v.push(rec(t + gap_ms, stream, Op::Close, inode, 0, 0, size));
    v
}

fn workload(name: &str, mut records: Vec<TraceRecord>, files: &[FileRef]) -> Workload {
    records.sort_by_key(|r| r.time_ns);
    let mut namespace = Namespace::default();
    for f in files {
        namespace.add_file(*f);
    }
    Workload {
        name: name.into(),
        records,
        namespace,
    }
}

fn check_accounting(r: &Report) {
    assert_eq!(r.hits + r.late + r.misses, r.demand_blocks, "{r:?}");
    assert_eq!(
        r.used_prefetched + r.wasted_prefetched,
        r.prefetched_blocks,
        "{r:?}"
    );
    assert!(r.used_on_time <= r.used_prefetched);
}

/// Counts the feedback a prefetcher receives.
#[derive(Default)]
struct Labels {
    used: u64,
    wasted: u64,
}

/// Knows the workload's reads in advance and asks for the next `k` of them.
struct Oracle {
    reads: Vec<(u64, u64, u64)>,
    seen: usize,
    k: usize,
    labels: Arc<Mutex<Labels>>,
}

impl Oracle {
    fn new(w: &Workload, k: usize) -> Self {
        Oracle {
            reads: w
                .records
                .iter()
                .filter(|r| r.op == Op::Read)
                .map(|r| (r.inode, r.offset, r.len as u64))
                .collect(),
            seen: 0,
            k,
            labels: Arc::default(),
        }
    }
}

impl Prefetcher for Oracle {
    fn name(&self) -> &str {
        "oracle"
    }
    fn on_access(&mut self, r: &TraceRecord, _: &dyn Catalog, out: &mut Vec<PrefetchRequest>) {
        if r.op != Op::Read {
            return;
        }
        self.seen += 1;
        for &(inode, offset, len) in self.reads.iter().skip(self.seen).take(self.k) {
            out.push(PrefetchRequest {
                inode,
                offset,
                len,
                score: 1.0,
            });
        }
    }
    fn on_feedback(&mut self, fb: &Feedback) {
        let mut l = self.labels.lock().unwrap();
        if fb.used {
            l.used += 1;
        } else {
            l.wasted += 1;
        }
    }
}

/// Asks, on every access, for `n` random blocks of inode `target` (which nobody reads).
struct Garbage {
    rng: Rng,
    target: u64,
    size: u64,
    n: usize,
    labels: Arc<Mutex<Labels>>,
}

impl Prefetcher for Garbage {
    fn name(&self) -> &str {
        "garbage"
    }
    fn on_access(&mut self, _: &TraceRecord, _: &dyn Catalog, out: &mut Vec<PrefetchRequest>) {
        for _ in 0..self.n {
            out.push(PrefetchRequest {
                inode: self.target,
                offset: self.rng.below(self.size),
                len: M,
                score: self.rng.unit() as f32,
            });
        }
    }
    fn on_feedback(&mut self, fb: &Feedback) {
        let mut l = self.labels.lock().unwrap();
        if fb.used {
            l.used += 1;
        } else {
            l.wasted += 1;
        }
    }
}

fn two_stream_workload() -> Workload {
    let mut recs = sequential(0, 1, 40 * M, 256 << 10, 2);
    let mut rng = Rng::new(3);
    let mut t = 0;
    for _ in 0..60 {
        t += 3;
        recs.push(rec(
            t,
            1,
            Op::Read,
            2,
            rng.below(64) * M + rng.below(M),
            300_000,
            64 * M,
        ));
    }
    workload("two-streams", recs, &[file(1, 40 * M), file(2, 64 * M)])
}

#[test]
fn same_seed_same_report() {
    let w = two_stream_workload();
    let cfg = SimConfig::default();
    for name in baselines::NAMES {
        let a = replay(&w, baselines::by_name(name).unwrap().as_mut(), &cfg);
        let b = replay(&w, baselines::by_name(name).unwrap().as_mut(), &cfg);
        assert_eq!(a.deterministic(), b.deterministic(), "{name}");
        assert_eq!(a.decision.calls, b.decision.calls);
        check_accounting(&a);
    }
    let other = SimConfig {
        seed: 99,
        ..SimConfig::default()
    };
    let a = replay(&w, &mut baselines::NoPrefetch, &cfg);
    let b = replay(&w, &mut baselines::NoPrefetch, &other);
    assert_ne!(
        a.replay_time, b.replay_time,
        "the seed drives the latency draws"
    );
}

#[test]
fn no_prefetch_cold_sequential_is_all_misses() {
    let w = workload("seq", sequential(0, 1, 32 * M, M, 0), &[file(1, 32 * M)]);
    let r = replay(&w, &mut baselines::NoPrefetch, &SimConfig::default());
    check_accounting(&r);
    assert_eq!(r.demand_reads, 32);
    assert_eq!((r.prefetched_blocks, r.hits, r.late), (0, 0, 0));
    assert_eq!(r.misses, 32);
    assert_eq!((r.get_requests, r.get_bytes), (32, 32 * M));
    assert_eq!((r.coverage, r.precision, r.hit_rate), (0.0, 1.0, 0.0));
    // each read: ~20 ms first byte + 10 ms at 100 MB/s
    assert!(
        r.replay_time > 32.0 * 0.025 && r.replay_time < 32.0 * 0.04,
        "{}",
        r.replay_time
    );
}

#[test]
fn oracle_prefetch_is_precise_and_raises_hit_rate() {
    let w = workload(
        "seq-think",
        sequential(0, 1, 32 * M, M, 50),
        &[file(1, 32 * M)],
    );
    let cfg = SimConfig::default();
    let none = replay(&w, &mut baselines::NoPrefetch, &cfg);
    let mut o = Oracle::new(&w, 4);
    let labels = o.labels.clone();
    let r = replay(&w, &mut o, &cfg);
    check_accounting(&r);
    assert_eq!(r.precision, 1.0);
    assert_eq!(r.wasted_bytes, 0);
    assert!(r.hit_rate > 0.9, "{r:?}");
    assert!(r.hit_rate > none.hit_rate);
    assert!(r.coverage > 0.9);
    assert!(
        r.timeliness > 0.9,
        "50 ms think time is enough to land each block"
    );
    assert!(r.replay_time < none.replay_time);
    assert!(r.demand_bytes_prefetched_frac > 0.9);
    let l = labels.lock().unwrap();
    assert_eq!((l.used, l.wasted), (r.used_prefetched, r.wasted_prefetched));
}

#[test]
fn prefetch_without_think_time_is_late() {
    let w = workload("seq", sequential(0, 1, 32 * M, M, 0), &[file(1, 32 * M)]);
    let mut o = Oracle::new(&w, 1);
    let r = replay(&w, &mut o, &SimConfig::default());
    check_accounting(&r);
    assert!(r.late > 0);
    assert!(r.timeliness < 0.5, "{r:?}");
    assert_eq!(r.precision, 1.0);
}

#[test]
fn garbage_prefetch_is_all_waste_and_reported() {
    let w = workload(
        "seq",
        sequential(0, 1, 16 * M, M, 5),
        &[file(1, 16 * M), file(9, 256 * M)],
    );
    let labels: Arc<Mutex<Labels>> = Arc::default();
    let mut g = Garbage {
        rng: Rng::new(1),
        target: 9,
        size: 256 * M,
        n: 8,
        labels: labels.clone(),
    };
    let r = replay(&w, &mut g, &SimConfig::default());
    check_accounting(&r);
    assert!(r.prefetched_blocks > 50, "{r:?}");
    assert_eq!(r.precision, 0.0);
    assert_eq!(r.used_prefetched, 0);
    assert_eq!(r.wasted_bytes, r.prefetched_bytes);
    assert_eq!(r.get_bytes, r.prefetched_bytes + 16 * M);
    let l = labels.lock().unwrap();
    assert_eq!((l.used, l.wasted), (0, r.prefetched_blocks));
}

#[test]
fn demand_does_not_wait_behind_prefetches() {
    let mut rng = Rng::new(5);
    let recs: Vec<TraceRecord> = (0..40)
        .map(|i| rec(i * 10, 0, Op::Read, 1, rng.below(200) * M, M, 200 * M))
        .collect();
    let w = workload("random", recs, &[file(1, 200 * M), file(9, 1 << 30)]);
    let cfg = SimConfig {
        store: StoreModel {
            max_conns: 8,
            aggregate_bw: 1e12, // no bandwidth coupling: isolates queueing
            ..StoreModel::default()
        },
        demand_reserved_conns: 1,
        prefetch_queue: 64,
        ..SimConfig::default()
    };
    let quiet = replay(&w, &mut baselines::NoPrefetch, &cfg);
    let mut g = Garbage {
        rng: Rng::new(2),
        target: 9,
        size: 1 << 30,
        n: 200,
        labels: Arc::default(),
    };
    let busy = replay(&w, &mut g, &cfg);
    assert!(busy.dropped_requests > 0, "the prefetch queue overflowed");
    assert!(busy.prefetched_blocks > 40);
    assert_eq!(busy.read_p50, quiet.read_p50);
    assert_eq!(busy.read_p99, quiet.read_p99);
    assert_eq!(busy.replay_time, quiet.replay_time);
}

#[test]
fn sequential_1gib_doubling_window_several_times_faster() {
    let w = workload(
        "seq-1g",
        sequential(0, 1, 1 << 30, M, 0),
        &[file(1, 1 << 30)],
    );
    let cfg = SimConfig::default();
    let none = replay(&w, &mut baselines::NoPrefetch, &cfg);
    let dbl = replay(&w, baselines::by_name("doubling").unwrap().as_mut(), &cfg);
    check_accounting(&dbl);
    let speedup = none.replay_time / dbl.replay_time;
    assert!(
        speedup >= 3.0,
        "none {} s, doubling {} s",
        none.replay_time,
        dbl.replay_time
    );
    assert!(dbl.precision > 0.95 && dbl.coverage > 0.95, "{dbl:?}");
    assert!(dbl.peak_prefetch_inflight <= cfg.prefetch_inflight);
}

#[test]
fn writes_are_cached_and_read_back_as_hits() {
    let mut recs = vec![];
    for i in 0..4 {
        recs.push(rec(i, 0, Op::Write, 3, i * M, M, 0));
    }
    for i in 0..4 {
        recs.push(rec(10 + i, 0, Op::Read, 3, i * M, M, 4 * M));
    }
    let w = workload("write-read", recs, &[]);
    let r = replay(&w, &mut baselines::NoPrefetch, &SimConfig::default());
    assert_eq!((r.hits, r.misses, r.get_requests), (4, 0, 0));
}

/// Notes on which access (by count) the layout of inode 1 first became visible.
struct LayoutWatcher {
    calls: usize,
    first_seen: Arc<Mutex<Option<usize>>>,
}

impl Prefetcher for LayoutWatcher {
    fn name(&self) -> &str {
        "watcher"
    }
    fn on_access(&mut self, _: &TraceRecord, c: &dyn Catalog, _: &mut Vec<PrefetchRequest>) {
        self.calls += 1;
        let mut f = self.first_seen.lock().unwrap();
        if f.is_none() && c.layout(1).is_some() {
            *f = Some(self.calls);
        }
        assert_eq!(c.siblings(7).len(), 1);
    }
}

#[test]
fn layout_visible_only_after_its_source_was_read() {
    let size = 10 * M;
    let recs = vec![
        rec(0, 0, Op::Read, 1, 0, 100, size),
        rec(1, 0, Op::Read, 1, size - 1000, 1000, size),
        rec(2, 0, Op::Read, 1, 0, 10, size),
    ];
    let mut w = workload("layout", recs, &[file(1, size)]);
    w.namespace.set_layout(
        1,
        Layout {
            source: size - 1000..size,
            extents: vec![0..M, M..size - 1000],
            group: 0,
        },
    );
    let seen = Arc::new(Mutex::new(None));
    let mut p = LayoutWatcher {
        calls: 0,
        first_seen: seen.clone(),
    };
    replay(&w, &mut p, &SimConfig::default());
    assert_eq!(
        *seen.lock().unwrap(),
        Some(3),
        "revealed once the footer read completed"
    );
}

#[test]
fn markdown_has_one_table_per_workload() {
    let ws = [
        workload("a", sequential(0, 1, 4 * M, M, 1), &[file(1, 4 * M)]),
        workload("b", sequential(0, 2, 4 * M, M, 1), &[file(2, 4 * M)]),
    ];
    let none = || baselines::by_name("none").unwrap();
    let fixed = || baselines::by_name("fixed").unwrap();
    let reports = run_suite(&ws, &[&none, &fixed], &SimConfig::default());
    assert_eq!(reports.len(), 4);
    assert_eq!(
        reports
            .iter()
            .map(|r| (r.workload.as_str(), r.policy.as_str()))
            .collect::<Vec<_>>(),
        vec![("a", "none"), ("a", "fixed"), ("b", "none"), ("b", "fixed")]
    );
    let md = markdown(&reports);
    assert_eq!(md.matches("### ").count(), 2);
    assert_eq!(md.matches("| fixed |").count(), 2);
}

/// Random requests over the workload's files (and past their ends).
struct RandomPrefetcher {
    rng: Rng,
    files: Vec<(u64, u64)>,
}

impl Prefetcher for RandomPrefetcher {
    fn name(&self) -> &str {
        "random"
    }
    fn on_access(&mut self, _: &TraceRecord, _: &dyn Catalog, out: &mut Vec<PrefetchRequest>) {
        if self.rng.below(20) == 0 {
            // a file nobody knows, absurd length: must be bounded, not hang
            out.push(PrefetchRequest {
                inode: 999,
                offset: self.rng.next_u64(),
                len: u64::MAX,
                score: 0.1,
            });
        }
        for _ in 0..self.rng.below(5) {
            let (inode, size) = self.files[self.rng.below(self.files.len() as u64) as usize];
            out.push(PrefetchRequest {
                inode,
                offset: self.rng.below(size + 100_000),
                len: self.rng.below(600_000) + 1,
                score: self.rng.unit() as f32,
            });
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn budgets_hold_and_labels_add_up(seed in 0u64..10_000, nstreams in 1u32..4, nfiles in 1u64..4) {
        let mut rng = Rng::new(seed);
        let files: Vec<(u64, u64)> = (1..=nfiles).map(|i| (i, rng.below(3 * M) + 1)).collect();
        let mut recs = vec![];
        for s in 0..nstreams {
            let mut t = 0;
            for _ in 0..rng.below(40) + 1 {
                t += rng.below(5);
                let (inode, size) = files[rng.below(nfiles) as usize];
                let op = match rng.below(10) { 0 => Op::Write, 1 => Op::Open, _ => Op::Read };
                let (off, len) = if op == Op::Open { (0, 0) } else { (rng.below(size), rng.below(200_000) + 1) };
                recs.push(rec(t, s, op, inode, off, len, size));
            }
        }
        let fr: Vec<FileRef> = files.iter().map(|&(i, s)| file(i, s)).collect();
        let w = workload("prop", recs, &fr);
        let cfg = SimConfig {
            block_size: 64 << 10,
            cache_bytes: 1 << 20,
            prefetch_inflight: 256 << 10,
            prefetch_cache_share: 0.4,
            prefetch_queue: 6,
            store: StoreModel { max_conns: 4, max_get_bytes: 192 << 10, ..StoreModel::default() },
            demand_reserved_conns: 1,
            seed,
            ..SimConfig::default()
        };
        let mut p = RandomPrefetcher { rng: Rng::new(seed + 1), files: files.clone() };
        let r = replay(&w, &mut p, &cfg);
        check_accounting(&r);
        prop_assert!(r.peak_prefetch_inflight <= cfg.prefetch_inflight);
        prop_assert!(r.peak_prefetch_share as f64 <= cfg.cache_bytes as f64 * cfg.prefetch_cache_share);
        prop_assert!(r.peak_cache_used <= cfg.cache_bytes);
        prop_assert!((0.0..=1.0).contains(&r.precision));
        prop_assert!((0.0..=1.0).contains(&r.coverage));
        prop_assert!(r.replay_time >= 0.0);
    }
}

#[test]
fn every_eviction_policy_replays_within_budget() {
    let w = two_stream_workload();
    for kind in cairn_cache::policy::PolicyKind::ALL {
        let cfg = SimConfig {
            policy: kind,
            cache_bytes: 8 * M,
            ..SimConfig::default()
        };
        let r = replay(&w, baselines::by_name("doubling").unwrap().as_mut(), &cfg);
        check_accounting(&r);
        assert!(r.peak_cache_used <= 8 * M, "{kind}");
        assert!(
            r.wasted_prefetched > 0,
            "{kind}: a small cache evicts some prefetched blocks"
        );
    }
}

#[test]
fn think_time_is_the_recorded_gap_capped() {
    // Two cached reads (written first) 5 s apart in the trace: the replay waits the cap.
    let recs = vec![
        rec(0, 0, Op::Write, 3, 0, M, 0),
        rec(1, 0, Op::Read, 3, 0, 10, M),
        rec(5001, 0, Op::Read, 3, 10, 10, M),
    ];
    let w = workload("think", recs, &[]);
    let cfg = SimConfig {
        max_think: 0.5,
        ..SimConfig::default()
    };
    let r = replay(&w, &mut baselines::NoPrefetch, &cfg);
    let write = M as f64 / cfg.local_write_bw;
    assert!(
        (r.replay_time - (write + 0.001 + 0.5)).abs() < 1e-9,
        "{}",
        r.replay_time
    );
}

#[test]
fn hostile_offsets_do_not_overflow() {
    let recs = vec![
        rec(0, 0, Op::Read, 4, u64::MAX - 10, 100, 0),
        rec(1, 0, Op::Write, 4, u64::MAX - 5, 100, 0),
        rec(2, 0, Op::Read, 5, 0, 0, 0),
    ];
    let w = workload("hostile", recs, &[]);
    for name in baselines::NAMES {
        let r = replay(
            &w,
            baselines::by_name(name).unwrap().as_mut(),
            &SimConfig::default(),
        );
        check_accounting(&r);
        assert_eq!(r.demand_reads, 2);
    }
}

#[test]
fn suite_replays_through_every_baseline_within_budgets() {
    let cfg = SimConfig::default();
    let ws = crate::workloads::suite(1, 0.01);
    assert!(!ws.is_empty());
    let factories: Vec<Box<dyn Fn() -> Box<dyn Prefetcher>>> = baselines::NAMES
        .iter()
        .map(|n| {
            Box::new(move || baselines::by_name(n).unwrap()) as Box<dyn Fn() -> Box<dyn Prefetcher>>
        })
        .collect();
    let refs: Vec<Factory<'_>> = factories.iter().map(|f| f.as_ref()).collect();
    let reports = run_suite(&ws, &refs, &cfg);
    assert_eq!(reports.len(), ws.len() * baselines::NAMES.len());
    for r in &reports {
        check_accounting(r);
        assert!(r.peak_prefetch_inflight <= cfg.prefetch_inflight, "{r:?}");
        assert!(r.peak_prefetch_share as f64 <= cfg.cache_bytes as f64 * cfg.prefetch_cache_share);
        assert!(r.peak_cache_used <= cfg.cache_bytes);
        assert!(r.replay_time > 0.0, "{}/{}", r.workload, r.policy);
        if r.policy == "none" {
            assert_eq!(r.prefetched_blocks, 0);
        }
    }
}
