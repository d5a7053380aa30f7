//! Column projection of grouped layouts (Parquet row groups): which positions of each group a
//! reader reads, learned per handle and remembered across the files of a dataset.
//!
//! A layout with `group = G` holds units `i = r·G + c` (row group `r`, column `c`). A reader
//! that projects columns reads the same set of `c` in every row group, in file order. The
//! handle learns that set from the row group it just finished; before that (the first row
//! group of a file) it borrows the set the same program last read in a file of the same
//! directory and group size ([`ProjectionTable`]), since a query reads every file of a dataset
//! alike. A read outside the expected set (a new query) drops the prediction until the row
//! group in progress is finished. Everything is fixed-size.
//!
//! A unit the handle only reaches by continuing a sequential run past the end of the previous
//! one does not count as read until the run reaches its end (or a read jumps into it): on a
//! mount, the kernel's page-cache readahead reads on past every column chunk the application
//! reads, into the next chunk, whether the query projects that column or not.

use super::candidates::{Candidate, Gen};
use crate::prefetcher::Layout;

/// Largest group (columns per row group) whose projection is tracked; wider tables get no
/// projected candidates.
pub const MAX_GROUP: usize = 512;

const WORDS: usize = MAX_GROUP / 64;

/// A set of positions `0..MAX_GROUP` in a group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ColSet([u64; WORDS]);

impl ColSet {
    /// Adds position `c` (ignored past [`MAX_GROUP`]).
    pub fn insert(&mut self, c: usize) {
        if c < MAX_GROUP {
            self.0[c / 64] |= 1 << (c % 64);
        }
    }

    /// Whether `c` is in the set.
    pub fn contains(&self, c: usize) -> bool {
        c < MAX_GROUP && self.0[c / 64] & (1 << (c % 64)) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// Whether a position below `c` is in the set but not in `seen`.
    fn missing_below(&self, seen: &ColSet, c: usize) -> bool {
        let c = c.min(MAX_GROUP);
        let (full, rest) = (c / 64, c % 64);
        let lost = |i: usize| self.0[i] & !seen.0[i];
        (0..full).any(|i| lost(i) != 0) || (rest > 0 && lost(full) & ((1u64 << rest) - 1) != 0)
    }

    /// The smallest position `>= from` in the set, below `end`.
    fn next_from(&self, from: usize, end: usize) -> Option<usize> {
        let end = end.min(MAX_GROUP);
        let mut i = from;
        while i < end {
            let w = self.0[i / 64] >> (i % 64);
            if w != 0 {
                let c = i + w.trailing_zeros() as usize;
                return (c < end).then_some(c);
            }
            i = (i / 64 + 1) * 64;
        }
        None
    }
}

/// Remembered projections, direct-mapped by dataset key (program, directory, group size).
#[derive(Clone, Debug)]
pub struct ProjectionTable {
    slots: Vec<(u64, ColSet)>,
}

impl ProjectionTable {
    /// A table of `2^bits` datasets.
    pub fn new(bits: u32) -> Self {
        Self {
            slots: vec![(0, ColSet::default()); 1 << bits.clamp(1, 16)],
        }
    }

    /// The key of a dataset: the program reading, the directory, the group size.
    pub fn key(program_hash: u32, dir_hash: u64, group: usize) -> u64 {
        let h = (dir_hash ^ (program_hash as u64).rotate_left(32) ^ group as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h ^ (h >> 31)) | 1
    }

    fn slot(&self, key: u64) -> usize {
        (key >> 40) as usize & (self.slots.len() - 1)
    }

    /// The projection last learned for the dataset.
    pub fn get(&self, key: u64) -> Option<ColSet> {
        let (k, set) = self.slots[self.slot(key)];
        (k == key).then_some(set)
    }

    /// Remembers a projection.
    pub fn put(&mut self, key: u64, set: ColSet) {
        let i = self.slot(key);
        self.slots[i] = (key, set);
    }

    /// Forgets the dataset's projection if it is `set` (a reader just contradicted it).
    pub fn forget(&mut self, key: u64, set: &ColSet) {
        let i = self.slot(key);
        if self.slots[i].0 == key && self.slots[i].1 == *set {
            self.slots[i].0 = 0;
        }
    }

    /// Datasets the table can hold.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }
}

/// Projection state of one handle.
#[derive(Clone, Copy, Debug)]
pub struct Projection {
    /// Row group being read (`u32::MAX`: none yet).
    group_at: u32,
    /// Columns read in that row group.
    seen: ColSet,
    /// The expected projection, if any.
    proj: Option<ColSet>,
    /// Highest unit index proposed so far (`u32::MAX`: none).
    until: u32,
    /// Unit of the last read (`u32::MAX`: none yet).
    last: u32,
    /// Unit a sequential run continued into and has not read to its end (`u32::MAX`: none).
    tentative: u32,
}

impl Default for Projection {
    fn default() -> Self {
        Self {
            group_at: u32::MAX,
            seen: ColSet::default(),
            proj: None,
            until: u32::MAX,
            last: u32::MAX,
            tentative: u32::MAX,
        }
    }
}

/// Projected units proposed ahead of the unit being read (depth buckets 0, 1, 2-3, 4-7, ...).
pub const PROJ_AHEAD: usize = 16;

impl Projection {
    /// The expected projection, if any.
    pub fn projection(&self) -> Option<ColSet> {
        self.proj
    }

    /// Records a read of unit `idx` of a layout with `group` units per group, learning from
    /// and updating the dataset's remembered projection under `key`. `sequential`: the read
    /// continues the handle's sequential run; `to_end`: the run has read through the unit's
    /// end. Returns whether the unit counts as read: not while a sequential run that crossed
    /// into it from the previous unit has not reached its end (kernel readahead past the
    /// chunk the reader asked for, or a reader of adjacent columns not done with this one).
    pub fn observe(
        &mut self,
        idx: usize,
        group: usize,
        sequential: bool,
        to_end: bool,
        table: &mut ProjectionTable,
        key: u64,
    ) -> bool {
        if group == 0 || group > MAX_GROUP {
            return true;
        }
        let u = idx as u32;
        if sequential && self.last != u32::MAX && self.last != u {
            self.tentative = u;
        }
        self.last = u;
        let counted = !(sequential && self.tentative == u) || to_end;
        if counted && self.tentative == u {
            self.tentative = u32::MAX;
        }
        let (r, c) = ((idx / group) as u32, idx % group);
        if r != self.group_at {
            if self.group_at != u32::MAX && !self.seen.is_empty() && r > self.group_at {
                // A row group was finished: what it read is the projection.
                self.proj = Some(self.seen);
                table.put(key, self.seen);
            }
            self.group_at = r;
            self.seen = ColSet::default();
        }
        if self.proj.is_none() {
            self.proj = table.get(key);
        }
        if !counted {
            return false;
        }
        self.seen.insert(c);
        if let Some(p) = self.proj {
            if !p.contains(c) || p.missing_below(&self.seen, c) {
                // Read a column outside the projection, or skipped one of it: a new query.
                table.forget(key, &p);
                self.proj = None;
                self.until = self.until.min(idx as u32);
            }
        }
        true
    }

    /// Proposes the projected units after unit `idx` not proposed yet, up to [`PROJ_AHEAD`]
    /// of them ahead, as [`Gen::LayoutPattern`] candidates of `inode`.
    pub fn propose(
        &mut self,
        layout: &Layout,
        idx: usize,
        inode: u64,
        file_size: u64,
        out: &mut Vec<Candidate>,
    ) {
        let (g, ex) = (layout.group, &layout.extents);
        let Some(p) = self.proj else {
            return;
        };
        if g == 0 || g > MAX_GROUP || p.is_empty() {
            return;
        }
        let mut at = idx + 1;
        for rank in 0..PROJ_AHEAD {
            // next projected column at or after `at`
            let (r, c) = (at / g, at % g);
            let next = match p.next_from(c, g) {
                Some(col) => r * g + col,
                None => match p.next_from(0, g) {
                    Some(col) => (r + 1) * g + col,
                    None => return,
                },
            };
            if next >= ex.len() {
                return;
            }
            if self.until == u32::MAX || next as u32 > self.until {
                let e = &ex[next];
                out.push(Candidate {
                    gen: Gen::LayoutPattern,
                    depth: depth_of(rank),
                    inode,
                    offset: e.start,
                    len: e.end - e.start,
                    file_size,
                });
                self.until = next as u32;
            }
            at = next + 1;
        }
    }
}

/// Depth bucket of the `rank`-th unit ahead: 0, 1, 2-3, 4-7, 8-15 → 0, 1, 2, 3, 4.
fn depth_of(rank: usize) -> u8 {
    (usize::BITS - rank.leading_zeros()) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4 row groups of 5 columns, 100 bytes each.
    fn layout() -> Layout {
        Layout {
            source: 2000..2100,
            extents: (0..20u64).map(|i| i * 100..i * 100 + 100).collect(),
            group: 5,
        }
    }

    /// The layout, an empty table and the dataset key of program 1 in directory 2.
    fn fixture() -> (Layout, ProjectionTable, u64) {
        (
            layout(),
            ProjectionTable::new(4),
            ProjectionTable::key(1, 2, 5),
        )
    }

    fn offsets(out: &[Candidate]) -> Vec<u64> {
        out.iter().map(|c| c.offset / 100).collect()
    }

    #[test]
    fn colset_ops() {
        let mut s = ColSet::default();
        assert!(s.is_empty());
        for c in [1, 3, 70, 511, 600] {
            s.insert(c);
        }
        assert!(s.contains(70) && s.contains(511) && !s.contains(600) && !s.contains(2));
        assert_eq!(s.next_from(0, 512), Some(1));
        assert_eq!(s.next_from(4, 512), Some(70));
        assert_eq!(s.next_from(71, 500), None);
        let mut seen = ColSet::default();
        seen.insert(1);
        assert!(s.missing_below(&seen, 70)); // 3 skipped
        seen.insert(3);
        assert!(!s.missing_below(&seen, 70));
        assert!(s.missing_below(&seen, 71));
        assert_eq!(
            (0..9).map(depth_of).collect::<Vec<_>>(),
            [0, 1, 2, 2, 3, 3, 3, 3, 4]
        );
    }

    #[test]
    fn learns_the_projection_from_the_first_row_group() {
        let (l, mut t, key) = fixture();
        let mut p = Projection::default();
        let mut out = vec![];
        // columns 1 and 3 of row group 0: nothing known yet
        for idx in [1, 3] {
            p.observe(idx, 5, false, true, &mut t, key);
            p.propose(&l, idx, 9, 2100, &mut out);
        }
        assert!(out.is_empty());
        // row group 1 starts: the projection {1, 3} predicts 8, 11, 13, 16, 18
        p.observe(6, 5, false, true, &mut t, key);
        p.propose(&l, 6, 9, 2100, &mut out);
        assert_eq!(offsets(&out), vec![8, 11, 13, 16, 18]);
        assert_eq!(
            out.iter().map(|c| c.depth).collect::<Vec<_>>(),
            [0, 1, 2, 2, 3]
        );
        assert!(out
            .iter()
            .all(|c| c.gen == Gen::LayoutPattern && c.inode == 9));
        // nothing proposed twice
        out.clear();
        p.observe(8, 5, false, true, &mut t, key);
        p.propose(&l, 8, 9, 2100, &mut out);
        assert!(out.is_empty());
        // the next file of the dataset starts with the projection
        let mut q = Projection::default();
        q.observe(1, 5, false, true, &mut t, key);
        q.propose(&l, 1, 10, 2100, &mut out);
        assert_eq!(offsets(&out), vec![3, 6, 8, 11, 13, 16, 18]);
        // another program or directory does not
        let mut r = Projection::default();
        r.observe(1, 5, false, true, &mut t, ProjectionTable::key(1, 3, 5));
        assert!(r.projection().is_none());
    }

    #[test]
    fn a_run_continuing_into_the_next_unit_counts_only_once_read_to_its_end() {
        let (l, mut t, key) = fixture();
        let mut p = Projection::default();
        let mut out = vec![];
        // row group 0 reads columns 1 and 3; after each, the run spills into the next column
        assert!(p.observe(1, 5, false, false, &mut t, key));
        assert!(!p.observe(2, 5, true, false, &mut t, key));
        assert!(p.observe(3, 5, false, false, &mut t, key));
        assert!(!p.observe(4, 5, true, false, &mut t, key));
        // row group 1: the projection is {1, 3}, not {1, 2, 3, 4}
        assert!(p.observe(6, 5, false, false, &mut t, key));
        p.propose(&l, 6, 9, 2100, &mut out);
        assert_eq!(offsets(&out), vec![8, 11, 13, 16, 18]);
        // a spill into column 2 does not contradict it
        assert!(!p.observe(7, 5, true, false, &mut t, key));
        assert!(p.projection().is_some());
        // but a run that reads column 2 to its end does (a new query reads 1, 2, 3)
        assert!(p.observe(7, 5, true, true, &mut t, key));
        assert!(p.projection().is_none());
    }

    #[test]
    fn a_new_projection_drops_the_old_one() {
        let (l, mut t, key) = fixture();
        let mut set = ColSet::default();
        set.insert(1);
        set.insert(3);
        t.put(key, set);
        let mut p = Projection::default();
        let mut out = vec![];
        // the new query reads column 2 first: {1, 3} is contradicted
        p.observe(2, 5, false, true, &mut t, key);
        p.propose(&l, 2, 9, 2100, &mut out);
        assert!(out.is_empty());
        assert!(t.get(key).is_none());
        // it then reads 4; the next row group reveals {2, 4}
        p.observe(4, 5, false, true, &mut t, key);
        p.observe(7, 5, false, true, &mut t, key);
        p.propose(&l, 7, 9, 2100, &mut out);
        assert_eq!(offsets(&out), vec![9, 12, 14, 17, 19]);
        // a skipped projected column also contradicts: reading 9 without 7 in row group 1
        let mut q = Projection::default();
        q.observe(9, 5, false, true, &mut t, key);
        assert!(q.projection().is_none());
        assert!(t.capacity() == 16);
    }
}
