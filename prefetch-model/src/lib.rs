//! cairn prefetch: traces, policies and the model that decides what to fetch before it is read.
//!
//! - [`trace`]: the access-trace record and its binary file format (recorded by the gateway,
//!   written by the generators, replayed by the simulator).
//! - [`Prefetcher`]: the one interface of every policy (baselines and the learned model).
//! - [`ReadaheadWindow`]: the per-handle doubling window the gateway's read path uses.
//!
//! Everything here is pure decision logic and simulation: no I/O on the hot path, no clocks
//! inside policies, deterministic for a given input.

pub mod baselines;
pub mod formats;
pub mod learned;
mod prefetcher;
mod readahead;
pub mod rng;
pub mod sim;
pub mod trace;
mod workload;
pub mod workloads;

pub use prefetcher::{
    Catalog, EmptyCatalog, Feedback, FileRef, Layout, PrefetchRequest, Prefetcher,
};
pub use readahead::{ReadaheadConfig, ReadaheadWindow, StreamObservation};
pub use workload::{Namespace, Workload};
