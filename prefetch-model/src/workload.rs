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

impl Workload {
    /// A workload from recorded trace records (e.g. a `--trace` file): the namespace is
    /// rebuilt from the records (each inode with the largest size seen, directories in
    /// first-seen order). Layouts are unknown (a trace holds no file contents).
    pub fn from_records(name: &str, mut records: Vec<TraceRecord>) -> Workload {
        records.sort_by_key(|r| r.time_ns);
        let mut namespace = Namespace::default();
        let mut sizes: HashMap<u64, u64> = HashMap::new();
        for r in &records {
            let s = sizes.entry(r.inode).or_default();
            *s = (*s).max(r.file_size).max(r.offset + r.len as u64);
        }
        for r in &records {
            if namespace.files.contains_key(&r.inode) {
                continue;
            }
            namespace.add_file(FileRef {
                inode: r.inode,
                size: sizes[&r.inode],
                format: r.format,
                path_hash: r.path_hash,
                dir_hash: r.dir_hash,
            });
        }
        Workload {
            name: name.to_string(),
            records,
            namespace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{FormatClass, Op};

    #[test]
    fn from_records_rebuilds_the_namespace() {
        let rec = |t, inode, dir, off, len, size| TraceRecord {
            time_ns: t,
            stream: 1,
            program_hash: 0,
            handle: inode,
            inode,
            path_hash: inode * 10,
            dir_hash: dir,
            offset: off,
            len,
            format: FormatClass::Tar,
            op: Op::Read,
            file_size: size,
        };
        let w = Workload::from_records(
            "t",
            vec![
                rec(5, 2, 7, 0, 10, 100),
                rec(1, 1, 7, 0, 10, 50),
                rec(9, 1, 7, 90, 20, 50),
            ],
        );
        assert_eq!(w.records[0].time_ns, 1);
        assert_eq!(w.namespace.files[&1].size, 110);
        assert_eq!(w.namespace.dirs[&7], vec![1, 2]);
    }
}
