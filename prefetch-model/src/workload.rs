//! A replayable workload: a trace plus the namespace it runs over.

use std::collections::HashMap;
use std::sync::Arc;

use crate::prefetcher::{FileRef, Layout};
use crate::trace::TraceRecord;

/// The files a workload reads, as the simulator's [`crate::Catalog`] exposes them.
#[derive(Clone, Debug, Default)]
pub struct Namespace {
    /// Every file by inode.
    pub files: HashMap<u64, FileRef>,
    /// Inodes of each directory in listing order, by directory hash.
    pub dirs: HashMap<u64, Vec<u64>>,
    /// Format layouts (revealed to prefetchers only after their `source` range is read).
    pub layouts: HashMap<u64, Arc<Layout>>,
}

impl Namespace {
    /// Adds a file (appended to its directory's listing).
    pub fn add_file(&mut self, f: FileRef) {
        if self.files.insert(f.inode, f).is_none() {
            self.dirs.entry(f.dir_hash).or_default().push(f.inode);
        }
    }

    /// Records a file's format layout.
    pub fn set_layout(&mut self, inode: u64, layout: Layout) {
        self.layouts.insert(inode, Arc::new(layout));
    }

    /// Total bytes of all files.
    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }
}

/// A named trace with its namespace, ready to replay.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Short name used in reports (`parquet-scan`, `shuffled-small-files`, ...).
    pub name: String,
    /// Records in time order. Replay is closed-loop per `stream`: each stream issues its next
    /// record when the previous one completed plus the recorded gap (think time) between them.
    pub records: Vec<TraceRecord>,
    /// The files the records refer to.
    pub namespace: Namespace,
}
