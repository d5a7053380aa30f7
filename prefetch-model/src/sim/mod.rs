//! The closed-loop replay simulator: object-store model, cache, prefetch scheduler.
//!
//! [`replay`] runs a [`crate::Workload`] through a [`crate::Prefetcher`]: each stream issues its
//! records in order, the next one when the previous completed plus the recorded think time.
//! Demand reads are served block by block from a cache driven by a real `cairn_cache` eviction
//! policy; misses become GETs to a modelled object store (log-normal first-byte latency,
//! per-connection and aggregate bandwidth, a connection limit). The prefetcher's requests go
//! through a scheduler like the gateway's: a bounded queue by score, a bytes-in-flight budget,
//! connections left to demand first, and a cap on the cache share of unused prefetched data.
//! Every prefetched block is labelled used or wasted once and the label is fed back to the
//! prefetcher as it happens. See [`Report`] for the definitions of what is measured.
//!
//! Model details that decide the numbers:
//! - Think time between two records of a stream is the gap between their `time_ns` in the
//!   trace (it includes the recorded service time), capped at `SimConfig::max_think`; a stream
//!   starts at its first record's time.
//! - A demand read completes when its last block is present; open and close complete at once;
//!   a write completes after `len / local_write_bw` and leaves its blocks cached.
//! - A demand read finding a block in flight from a prefetch waits for that GET (a late
//!   prefetch); one finding it in flight for another demand read waits too (a miss, not
//!   fetched twice).
//! - First-byte latencies of demand and prefetch GETs come from two separate seeded streams,
//!   so prefetch traffic does not change the latencies demand GETs draw.
//! - Prefetch GETs use at most `max_conns - demand_reserved_conns` connections and start only
//!   when no demand GET is waiting for one; bandwidth is shared by all transfers alike.
//! - A file's layout becomes visible in the catalog when a demand read covering the last
//!   missing part of its `source` range *completes* (the bytes had to arrive to be parsed),
//!   so the prefetcher sees it from its next call on.
//! - Prefetch requests are clipped to the file's size and to `cache_bytes`, then rounded out
//!   to whole blocks.

mod cache;
mod catalog;
mod config;
mod engine;
mod report;
mod store;
#[cfg(test)]
mod tests;

pub use catalog::{LayoutTracker, SimCatalog};
pub use config::{SimConfig, StoreModel};
pub use engine::replay;
pub use report::{markdown, DecisionCost, Report};

use crate::{Prefetcher, Workload};

/// Builds a fresh prefetcher (one per workload, so no state leaks between workloads).
pub type Factory<'a> = &'a dyn Fn() -> Box<dyn Prefetcher>;

/// Replays every workload through a fresh prefetcher from each factory; reports in workload
/// order, then factory order.
pub fn run_suite(
    workloads: &[Workload],
    factories: &[Factory<'_>],
    cfg: &SimConfig,
) -> Vec<Report> {
    let mut out = Vec::with_capacity(workloads.len() * factories.len());
    for w in workloads {
        for f in factories {
            let mut p = f();
            out.push(replay(w, p.as_mut(), cfg));
        }
    }
    out
}
