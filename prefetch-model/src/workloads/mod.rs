//! Workload generators: seeded, deterministic traces with realistic ML-storage access patterns.
//!
//! Each generator imitates one real system's I/O as a FUSE gateway sees it: per stream (a
//! process or thread) an `Open`, kernel-sized or application-sized `Read`s (or `Write`s), a
//! `Close`, with think times (decode, compute) between them; many streams interleave in time.
//! Each takes a parameter struct whose `Default` is the realistic size and whose `scaled(s)`
//! gives the same shape with about `s` times the bytes (tests use tiny scales), plus a seed:
//! the same parameters and seed give the same records on every platform.
//!
//! [`suite`] is the mixed suite the simulator evaluates prefetchers on; [`cloudphysics`] wraps
//! the real block trace.

mod build;
mod builder;
mod checkpoint;
mod cloudphysics;
mod dataloader;
mod hdf5;
mod parquet;
mod patterns;
mod safetensors;
mod shards;
#[cfg(test)]
mod tests;

pub use build::{build_chain, BuildParams};
pub use builder::program_hash;
pub use checkpoint::{checkpoint_write, CheckpointParams};
pub use cloudphysics::{cloudphysics, cloudphysics_with_tick, WorkloadError, CLOUDPHYSICS_TICK_NS};
pub use dataloader::{
    npz_whole_file, shuffled_small_files, LoaderParams, NpzParams, SmallFilesParams,
};
pub use hdf5::{hdf5_chunks, Hdf5Params};
pub use parquet::{parquet_scan, ParquetParams};
pub use patterns::{
    interleaved, strided, zipf_blocks, InterleavedParams, StridedParams, ZipfParams,
};
pub use safetensors::{safetensors_load, SafetensorsParams};
pub use shards::{tfrecord_shards, webdataset_tar, TfRecordParams, WebDatasetParams};

use crate::trace::stable_hash;
use crate::Workload;

/// Names of the suite's workloads, in [`suite`] order.
pub const SUITE: [&str; 12] = [
    "shuffled-small-files",
    "npz-whole-file",
    "tfrecord-shards",
    "webdataset-tar",
    "parquet-scan",
    "hdf5-chunks",
    "safetensors-load",
    "checkpoint-write",
    "strided",
    "interleaved",
    "zipf-blocks",
    "build-chain",
];

/// One suite workload by name, with every size multiplied by about `scale` (1.0: the default
/// parameters, hundreds of MB to a few GB each). `None` for an unknown name.
pub fn generate(name: &str, seed: u64, scale: f64) -> Option<Workload> {
    // Each workload gets its own seed stream, so adding one does not change the others.
    let seed = seed ^ stable_hash(name.as_bytes());
    Some(match name {
        "shuffled-small-files" => {
            shuffled_small_files(&SmallFilesParams::default().scaled(scale), seed)
        }
        "npz-whole-file" => npz_whole_file(&NpzParams::default().scaled(scale), seed),
        "tfrecord-shards" => tfrecord_shards(&TfRecordParams::default().scaled(scale), seed),
        "webdataset-tar" => webdataset_tar(&WebDatasetParams::default().scaled(scale), seed),
        "parquet-scan" => parquet_scan(&ParquetParams::default().scaled(scale), seed),
        "hdf5-chunks" => hdf5_chunks(&Hdf5Params::default().scaled(scale), seed),
        "safetensors-load" => safetensors_load(&SafetensorsParams::default().scaled(scale), seed),
        "checkpoint-write" => checkpoint_write(&CheckpointParams::default().scaled(scale), seed),
        "strided" => strided(&StridedParams::default().scaled(scale), seed),
        "interleaved" => interleaved(&InterleavedParams::default().scaled(scale), seed),
        "zipf-blocks" => zipf_blocks(&ZipfParams::default().scaled(scale), seed),
        "build-chain" => build_chain(&BuildParams::default().scaled(scale), seed),
        _ => return None,
    })
}

/// The mixed suite: every generator except [`cloudphysics`] (which needs its file), in
/// [`SUITE`] order, at `scale` (1.0 for evaluation, ~0.001 for tests).
pub fn suite(seed: u64, scale: f64) -> Vec<Workload> {
    SUITE
        .iter()
        .filter_map(|n| generate(n, seed, scale))
        .collect()
}
