//! What a replay measured, and the per-workload markdown tables.

use std::fmt::Write as _;

/// Wall-clock cost of the prefetcher's `on_access` calls. The only non-deterministic numbers
/// of a replay, kept apart so reports can be compared exactly without them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DecisionCost {
    /// Calls timed.
    pub calls: u64,
    /// Median nanoseconds per call.
    pub p50_ns: u64,
    /// 99th percentile nanoseconds per call.
    pub p99_ns: u64,
}

/// The outcome of replaying one workload through one prefetcher. Block counts are in cache
/// blocks (`SimConfig::block_size`); a "demand block" is one block touched by one demand read,
/// so a block read twice counts twice.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Workload name.
    pub workload: String,
    /// Prefetcher name.
    pub policy: String,
    /// Demand reads replayed.
    pub demand_reads: u64,
    /// Blocks touched by demand reads (`hits + late + misses`).
    pub demand_blocks: u64,
    /// Bytes demand reads asked for.
    pub demand_bytes: u64,
    /// Demand blocks found in the cache.
    pub hits: u64,
    /// Demand blocks found in flight from a prefetch: the read waited for the rest of it.
    pub late: u64,
    /// Demand blocks that needed a demand fetch (issued by this read, or already in flight for
    /// a concurrent demand read).
    pub misses: u64,
    /// `hits / demand_blocks`.
    pub hit_rate: f64,
    /// Blocks fetched by prefetch GETs.
    pub prefetched_blocks: u64,
    /// Prefetched blocks a demand read touched while cached or in flight (each counted once).
    pub used_prefetched: u64,
    /// Of those, found in the cache (prefetch complete before the read asked).
    pub used_on_time: u64,
    /// Prefetched blocks evicted, not admitted (prefetch cache share full), or still unused at
    /// the end. `used_prefetched + wasted_prefetched == prefetched_blocks`.
    pub wasted_prefetched: u64,
    /// `used_prefetched / prefetched_blocks` (1 when nothing was prefetched).
    pub precision: f64,
    /// Share of would-be misses that prefetching avoided:
    /// `used_prefetched / (used_prefetched + misses)` (0 when both are 0). A late block counts
    /// as avoided here; see `timeliness`.
    pub coverage: f64,
    /// `used_on_time / used_prefetched` (1 when nothing was used).
    pub timeliness: f64,
    /// Demanded bytes that lay in blocks brought by a prefetch (cached or in flight) /
    /// `demand_bytes`.
    pub demand_bytes_prefetched_frac: f64,
    /// Bytes of prefetched blocks fetched.
    pub prefetched_bytes: u64,
    /// Bytes of wasted prefetched blocks.
    pub wasted_bytes: u64,
    /// Prefetch requests dropped because the scheduler's queue was full.
    pub dropped_requests: u64,
    /// GETs issued (demand + prefetch).
    pub get_requests: u64,
    /// GETs issued for demand misses.
    pub demand_gets: u64,
    /// Bytes fetched by all GETs.
    pub get_bytes: u64,
    /// Simulated seconds from the first record's issue to the last stream's end.
    pub replay_time: f64,
    /// Median demand-read latency, simulated seconds.
    pub read_p50: f64,
    /// 99th percentile demand-read latency, simulated seconds.
    pub read_p99: f64,
    /// Most prefetch bytes in flight at any time (bounded by `SimConfig::prefetch_inflight`).
    pub peak_prefetch_inflight: u64,
    /// Most bytes of cached prefetched-unused blocks plus prefetches in flight at any time
    /// (bounded by `prefetch_cache_share * cache_bytes`).
    pub peak_prefetch_share: u64,
    /// Most bytes cached at any time (bounded by `cache_bytes`).
    pub peak_cache_used: u64,
    /// Wall-clock cost of the decisions (non-deterministic).
    pub decision: DecisionCost,
}

impl Report {
    /// The report without its wall-clock part: equal for equal inputs and seed.
    pub fn deterministic(&self) -> Report {
        Report {
            decision: DecisionCost::default(),
            ..self.clone()
        }
    }
}

/// The `q` quantile (0..=1) of `v` (sorted in place); 0 for an empty slice.
pub(crate) fn quantile<T: Copy + PartialOrd + Default>(v: &mut [T], q: f64) -> T {
    if v.is_empty() {
        return T::default();
    }
    v.sort_unstable_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i.min(v.len() - 1)]
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn mib(x: u64) -> String {
    format!("{:.1}", x as f64 / (1u64 << 20) as f64)
}

/// One markdown table per workload (in order of first appearance), a row per prefetcher.
/// Never blends workloads into one number. Precision shows `-` when nothing was prefetched and
/// timeliness `-` when no prefetched block was used.
pub fn markdown(reports: &[Report]) -> String {
    let mut order: Vec<&str> = Vec::new();
    for r in reports {
        if !order.contains(&r.workload.as_str()) {
            order.push(&r.workload);
        }
    }
    let mut s = String::new();
    for w in order {
        let _ = writeln!(s, "### {w}\n");
        let _ = writeln!(
            s,
            "| policy | hit rate | misses | late | precision | coverage | timeliness | demand bytes prefetched | wasted MiB | GETs | GiB fetched | replay s | read p99 ms | decision p50/p99 ns |"
        );
        let _ = writeln!(
            s,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in reports.iter().filter(|r| r.workload == w) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.1} | {}/{} |",
                r.policy,
                pct(r.hit_rate),
                r.misses,
                r.late,
                if r.prefetched_blocks == 0 { "-".to_string() } else { pct(r.precision) },
                pct(r.coverage),
                if r.used_prefetched == 0 { "-".to_string() } else { pct(r.timeliness) },
                pct(r.demand_bytes_prefetched_frac),
                mib(r.wasted_bytes),
                r.get_requests,
                r.get_bytes as f64 / (1u64 << 30) as f64,
                r.replay_time,
                r.read_p99 * 1e3,
                r.decision.p50_ns,
                r.decision.p99_ns,
            );
        }
        s.push('\n');
    }
    s
}
