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
pub fn run_suite(workloads: &[Workload], factories: &[Factory<'_>], cfg: &SimConfig) -> Vec<Report> {
    let mut out = Vec::with_capacity(workloads.len() * factories.len());
    for w in workloads {
        for f in factories {
            let mut p = f();
            out.push(replay(w, p.as_mut(), cfg));
        }
    }
    out
}
