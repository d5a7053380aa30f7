//! The catalog a prefetcher sees during a replay: the workload's namespace, with each file's
//! layout revealed only once demand reads have covered the bytes it is parsed from.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::{Catalog, FileRef, Layout, Namespace};

/// Which layouts demand reads have revealed so far.
#[derive(Debug, Default)]
pub struct LayoutTracker {
    /// Parts of each unrevealed layout's `source` read so far (disjoint, unsorted).
    covered: HashMap<u64, Vec<(u64, u64)>>,
    revealed: HashSet<u64>,
}

impl LayoutTracker {
    /// Records that a demand read of `[start, end)` of `inode` completed; reveals the layout
    /// once its whole source range has been read.
    pub fn on_read(&mut self, ns: &Namespace, inode: u64, start: u64, end: u64) {
        if self.revealed.contains(&inode) {
            return;
        }
        let Some(layout) = ns.layouts.get(&inode) else {
            return;
        };
        let (s0, s1) = (layout.source.start, layout.source.end);
        if s1 <= s0 {
            self.revealed.insert(inode);
            return;
        }
        let (a, b) = (start.max(s0), end.min(s1));
        if a >= b {
            return;
        }
        let parts = self.covered.entry(inode).or_default();
        parts.push((a, b));
        parts.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(parts.len());
        for &(x, y) in parts.iter() {
            match merged.last_mut() {
                Some(last) if x <= last.1 => last.1 = last.1.max(y),
                _ => merged.push((x, y)),
            }
        }
        if merged.len() == 1 && merged[0] == (s0, s1) {
            self.covered.remove(&inode);
            self.revealed.insert(inode);
        } else {
            *parts = merged;
        }
    }

    /// Whether `inode`'s layout is visible.
    pub fn is_revealed(&self, inode: u64) -> bool {
        self.revealed.contains(&inode)
    }
}

/// [`Catalog`] over a namespace and the layouts revealed so far.
pub struct SimCatalog<'a> {
    /// The workload's files.
    pub ns: &'a Namespace,
    /// Which layouts may be shown.
    pub layouts: &'a LayoutTracker,
}

impl Catalog for SimCatalog<'_> {
    fn file(&self, inode: u64) -> Option<FileRef> {
        self.ns.files.get(&inode).copied()
    }
    fn siblings(&self, dir_hash: u64) -> Vec<FileRef> {
        self.ns
            .dirs
            .get(&dir_hash)
            .map(|v| {
                v.iter()
                    .filter_map(|i| self.ns.files.get(i).copied())
                    .collect()
            })
            .unwrap_or_default()
    }
    fn layout(&self, inode: u64) -> Option<Arc<Layout>> {
        if self.layouts.is_revealed(inode) {
            self.ns.layouts.get(&inode).cloned()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_revealed_after_its_source_is_read_in_pieces() {
        let mut ns = Namespace::default();
        ns.set_layout(
            3,
            Layout {
                source: 900..1000,
                extents: vec![0..450, 450..900],
                group: 0,
            },
        );
        let mut t = LayoutTracker::default();
        t.on_read(&ns, 3, 0, 500);
        assert!(!t.is_revealed(3));
        t.on_read(&ns, 3, 950, 1000);
        assert!(!t.is_revealed(3));
        assert!(SimCatalog {
            ns: &ns,
            layouts: &t
        }
        .layout(3)
        .is_none());
        t.on_read(&ns, 3, 880, 960);
        assert!(t.is_revealed(3));
        assert_eq!(
            SimCatalog {
                ns: &ns,
                layouts: &t
            }
            .layout(3)
            .unwrap()
            .extents
            .len(),
            2
        );
        t.on_read(&ns, 4, 0, 10); // no layout: nothing happens
        assert!(!t.is_revealed(4));
    }
}
