//! The interface every prefetch policy implements, in the simulator and in the gateway.
//!
//! A [`Prefetcher`] sees every demand access (a [`TraceRecord`] with op `Open`, `Read` or
//! `Close`) and answers with byte ranges worth fetching before they are asked for. It may consult
//! a [`Catalog`] (the files of a directory, the layout a file's format revealed) and it is told,
//! afterwards, which of its prefetches were used ([`Feedback`]), so online models can learn.
//! Policies are pure decision logic: no I/O, no clocks, deterministic for a given input.

use std::ops::Range;
use std::sync::Arc;

use crate::trace::{FormatClass, TraceRecord};

/// A file as the catalog knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileRef {
    /// Inode (the same number trace records carry).
    pub inode: u64,
    /// Size in bytes.
    pub size: u64,
    /// Format class by extension.
    pub format: FormatClass,
    /// Hash of the file's path.
    pub path_hash: u64,
    /// Hash of its directory's path.
    pub dir_hash: u64,
}

/// Byte ranges of a file that its format says are read as units (Parquet column chunks,
/// safetensors tensors, tar members, HDF5 chunks), learned by parsing the bytes at `source`
/// (a footer, a header) once those were read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Where the layout was read from (the footer or header range).
    pub source: Range<u64>,
    /// The units, in file order.
    pub extents: Vec<Range<u64>>,
    /// Units per group when the units come in groups of equal structure, in file order (a
    /// Parquet row group's column chunks: unit `i` is column `i % group` of row group
    /// `i / group`); 0 when they do not. A reader that projects columns reads the same
    /// positions of every group, which is what a prefetcher can learn.
    pub group: usize,
}

/// What a prefetcher may know about the namespace beyond the access stream.
pub trait Catalog {
    /// The file with this inode, if known.
    fn file(&self, inode: u64) -> Option<FileRef>;
    /// Files of a directory in listing (name) order; empty when unknown.
    fn siblings(&self, dir_hash: u64) -> Vec<FileRef>;
    /// The file's format layout, once the bytes holding it (its `source`) have been read.
    fn layout(&self, inode: u64) -> Option<Arc<Layout>>;
}

/// A catalog that knows nothing (prefetchers must cope with it).
#[derive(Clone, Copy, Debug, Default)]
pub struct EmptyCatalog;

impl Catalog for EmptyCatalog {
    fn file(&self, _inode: u64) -> Option<FileRef> {
        None
    }
    fn siblings(&self, _dir_hash: u64) -> Vec<FileRef> {
        Vec::new()
    }
    fn layout(&self, _inode: u64) -> Option<Arc<Layout>> {
        None
    }
}

/// A range a prefetcher wants fetched ahead of demand.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrefetchRequest {
    /// The file.
    pub inode: u64,
    /// First byte.
    pub offset: u64,
    /// Bytes (the scheduler clips to the file's size and rounds to blocks).
    pub len: u64,
    /// Confidence in [0, 1]; the scheduler serves higher scores first and may drop low ones
    /// when its budget is tight.
    pub score: f32,
}

/// The fate of one prefetched block, reported once: used by a demand read, or evicted (or
/// dropped) without being used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feedback {
    /// The file.
    pub inode: u64,
    /// First byte of the block.
    pub offset: u64,
    /// Bytes in the block.
    pub len: u64,
    /// Whether a demand read hit it before it left the cache.
    pub used: bool,
}

/// A prefetch policy.
pub trait Prefetcher: Send {
    /// Short name for reports and configuration (`none`, `readahead`, `learned`, ...).
    fn name(&self) -> &str;
    /// Observes one demand access and appends the ranges to prefetch to `out`.
    fn on_access(
        &mut self,
        rec: &TraceRecord,
        catalog: &dyn Catalog,
        out: &mut Vec<PrefetchRequest>,
    );
    /// Learns the fate of a block it asked for. Default: ignore.
    fn on_feedback(&mut self, _fb: &Feedback) {}
}
