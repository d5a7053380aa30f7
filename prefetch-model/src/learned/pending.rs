//! Candidates awaiting their label: a fixed-capacity ring of entries indexed by
//! `(inode, offset)`. The oldest entry leaves when the ring is full (an unlabeled one leaves as
//! a negative example: it was not read within the horizon).

use std::collections::BTreeMap;

use super::candidates::Gen;
use super::features::FeatureVec;

/// One scored candidate.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// The file.
    pub inode: u64,
    /// First byte.
    pub start: u64,
    /// End byte (exclusive).
    pub end: u64,
    /// Features it was scored with.
    pub feats: FeatureVec,
    /// Generator.
    pub gen: Gen,
    /// Depth bucket.
    pub depth: u8,
    /// Workload class at scoring time.
    pub class: u16,
    /// Sent to the scheduler (labels come from feedback).
    pub emitted: bool,
    /// The model wanted it (emitted, or would have been outside fallback).
    pub wanted: bool,
    /// Labeled already (shadow entries get one label).
    pub labeled: bool,
    /// The scheduler reported a block of it evicted unused.
    pub evicted: bool,
    /// A demand read touched it (its bytes were consumed; asking again is not a duplicate).
    pub consumed: bool,
}

impl Entry {
    /// Index key: one entry per file offset and generator/depth.
    fn key(&self) -> u128 {
        key(
            self.inode,
            self.start,
            (self.gen as u8) << 4 | self.depth.min(15),
        )
    }

    /// Emitted and still outstanding (not consumed by a read, not reported evicted).
    fn outstanding(&self) -> bool {
        self.emitted && !self.consumed && !self.evicted
    }
}

/// What the index keeps of an entry, so queries filter without touching the ring (a ring
/// entry is about a cache line, and the ring is larger than the cache).
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Position in the ring.
    at: usize,
    /// The entry's end byte (never changes once inserted).
    end: u64,
    /// [`Entry::outstanding`], kept current.
    outstanding: bool,
}

/// Packs `(inode, offset, tag)` into one integer ordered like the tuple (offsets below
/// 2^56, 64 PiB; larger ones share the last key): a compare is one wide integer compare, not a
/// lexicographic one, which the index does a few dozen times per lookup.
#[inline]
fn key(inode: u64, offset: u64, tag: u8) -> u128 {
    (inode as u128) << 64 | (offset.min((1 << 56) - 1) as u128) << 8 | tag as u128
}

/// The ring and its index.
pub struct Pending {
    ring: Vec<Option<Entry>>,
    next: usize,
    index: BTreeMap<u128, Slot>,
}

/// Longest entry (bounds the backward scan of an overlap query).
pub const MAX_ENTRY_LEN: u64 = 128 << 20;

impl Pending {
    /// A ring of `cap` entries.
    pub fn new(cap: usize) -> Self {
        Self {
            ring: vec![None; cap.max(1)],
            next: 0,
            index: BTreeMap::new(),
        }
    }

    /// Entries held (never more than the capacity).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether an emitted entry starts exactly here and is still outstanding (not consumed by
    /// a read, not reported evicted): asking for it again would be a duplicate.
    pub fn emitted_at(&self, inode: u64, start: u64) -> bool {
        self.index
            .range(key(inode, start, 0)..=key(inode, start, u8::MAX))
            .any(|(_, s)| s.outstanding)
    }

    /// Inserts an entry, returning the one it pushed out of the ring (if any).
    pub fn insert(&mut self, e: Entry) -> Option<Entry> {
        let slot = self.next;
        self.next = (self.next + 1) % self.ring.len();
        let old = self.ring[slot].take();
        if let Some(o) = &old {
            // One traversal: an index entry of this key pointing elsewhere (a newer entry
            // replaced it) goes back.
            if let Some(s) = self.index.remove(&o.key()) {
                if s.at != slot {
                    self.index.insert(o.key(), s);
                }
            }
        }
        let s = Slot {
            at: slot,
            end: e.end,
            outstanding: e.outstanding(),
        };
        if let Some(prev) = self.index.insert(e.key(), s) {
            // replaced an entry at the same key: its slot is now unindexed
            self.ring[prev.at] = None;
        }
        self.ring[slot] = Some(e);
        old
    }

    /// Calls `f` on up to `limit` entries of `inode` overlapping `[start, end)`, nearest first
    /// (scanning a bounded number of index entries).
    pub fn overlapping(
        &mut self,
        inode: u64,
        start: u64,
        end: u64,
        limit: usize,
        mut f: impl FnMut(&mut Entry),
    ) {
        let lo = start.saturating_sub(MAX_ENTRY_LEN);
        let mut n = 0;
        for (_, s) in self
            .index
            .range_mut(key(inode, lo, 0)..key(inode, end, 0))
            .rev()
            .take(4 * limit + 8)
        {
            if s.end <= start {
                continue;
            }
            if let Some(e) = self.ring[s.at].as_mut() {
                f(e);
                s.outstanding = e.outstanding();
                n += 1;
                if n >= limit {
                    break;
                }
            }
        }
    }

    /// Drains every entry (for end-of-training negatives).
    pub fn drain(&mut self) -> impl Iterator<Item = Entry> + '_ {
        self.index.clear();
        self.ring.iter_mut().filter_map(|s| s.take())
    }
}
