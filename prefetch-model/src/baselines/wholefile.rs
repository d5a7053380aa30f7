//! Whole-file prefetch of small files when they are opened.

use std::collections::HashSet;

use crate::trace::{Op, TraceRecord};
use crate::{Catalog, PrefetchRequest, Prefetcher};

/// Parameters of [`WholeFile`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WholeFileParams {
    /// Files up to this size are fetched whole.
    pub max_size: u64,
}

impl Default for WholeFileParams {
    fn default() -> Self {
        Self { max_size: 8 << 20 }
    }
}

/// On open of a file of at most `max_size` bytes, prefetches all of it. A handle first seen
/// through a read (traces without opens) is treated as opened then.
#[derive(Clone, Debug, Default)]
pub struct WholeFile {
    params: WholeFileParams,
    seen: HashSet<u64>,
}

impl WholeFile {
    /// A policy with these parameters.
    pub fn new(params: WholeFileParams) -> Self {
        Self {
            params,
            seen: HashSet::new(),
        }
    }
}

impl Prefetcher for WholeFile {
    fn name(&self) -> &str {
        "wholefile"
    }
    fn on_access(&mut self, rec: &TraceRecord, cat: &dyn Catalog, out: &mut Vec<PrefetchRequest>) {
        match rec.op {
            Op::Close => {
                self.seen.remove(&rec.handle);
                return;
            }
            Op::Open | Op::Read => {
                if !self.seen.insert(rec.handle) {
                    return;
                }
            }
            Op::Write => return,
        }
        let size = if rec.file_size > 0 {
            rec.file_size
        } else {
            cat.file(rec.inode).map_or(0, |f| f.size)
        };
        if size > 0 && size <= self.params.max_size {
            super::push_range(out, rec.inode, 0, size, size, 0.8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn small_files_whole_on_open_large_never() {
        let mut p = WholeFile::new(WholeFileParams { max_size: 1000 });
        assert_eq!(
            ask(&mut p, rec(Op::Open, 1, 5, 0, 0, 800)),
            vec![(5, 0, 800)]
        );
        // reads of the open handle ask nothing more
        assert!(ask(&mut p, read(1, 5, 0, 100, 800)).is_empty());
        assert!(ask(&mut p, rec(Op::Open, 2, 6, 0, 0, 1001)).is_empty());
        assert!(ask(&mut p, read(2, 6, 0, 100, 1001)).is_empty());
        // a handle seen first through a read counts as opened there
        assert_eq!(ask(&mut p, read(3, 8, 200, 100, 500)), vec![(8, 0, 500)]);
        // after close, the handle number may be reused for another file
        ask(&mut p, rec(Op::Close, 1, 5, 0, 0, 800));
        assert_eq!(ask(&mut p, rec(Op::Open, 1, 9, 0, 0, 10)), vec![(9, 0, 10)]);
    }
}
