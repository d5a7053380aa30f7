//! S3-FIFO (Yang et al., SOSP '23), sized by bytes.
//!
//! - New keys enter the **small** FIFO (target 10% of the tracked bytes), unless they are in the
//!   **ghost** queue (recently evicted from small without a hit), in which case they enter
//!   **main** directly.
//! - Hits set a 2-bit frequency counter (saturating at 3); nothing moves on a hit.
//! - Evicting from small: the oldest key moves to main if it was hit while in small (counter
//!   cleared), otherwise it is evicted and remembered in the ghost queue.
//! - Evicting from main: the oldest key is reinserted at the head with its counter decremented if
//!   the counter is non-zero, otherwise evicted (FIFO-reinsertion, like 2-bit CLOCK).
//! - The ghost queue remembers keys worth up to 90% of the tracked bytes.
//!
//! One-time keys (scans) stay in the small queue and leave quickly, so the main queue keeps the
//! reused working set. The cache size is taken to be the tracked bytes (the tier only evicts
//! when full), so no budget needs to be passed in.
//!
//! With `with_experts()` the structure also keeps every key on a recency list and on the
//! protected/plain lists of [`super::Pmru`], so that [`super::Adaptive`] can evict by LRU or by
//! protected MRU from the same state.

use std::collections::HashMap;
use std::hash::Hash;

use super::ghost::Ghost;
use super::list::{DList, Slab, NIL};
use super::pmru::PmruLists;
use super::EvictionPolicy;

const QUEUE: usize = 0;
const RECENCY: usize = 1;
const PMRU: usize = 2;
const MAX_FREQ: u8 = 3;

struct Entry<K> {
    key: K,
    size: u64,
    freq: u8,
    in_main: bool,
}

/// S3-FIFO eviction.
pub struct S3Fifo<K> {
    map: HashMap<K, u32>,
    slab: Slab<Entry<K>, 3>,
    small: DList,
    main: DList,
    /// Maintained only with `experts`: every key, most recently used at the head, ...
    recency: DList,
    /// ... and the protected-MRU lists (see [`super::Pmru`]).
    pmru: PmruLists,
    experts: bool,
    ghost: Ghost<K>,
}

impl<K: Clone + Eq + Hash> Default for S3Fifo<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash> S3Fifo<K> {
    pub fn new() -> Self {
        Self {
            map: HashMap::new(),
            slab: Slab::new(),
            small: DList::new(),
            main: DList::new(),
            recency: DList::new(),
            pmru: PmruLists::new(),
            experts: false,
            ghost: Ghost::new(),
        }
    }

    /// Also keeps the state of the LRU, MRU and protected-MRU experts.
    pub(crate) fn with_experts() -> Self {
        Self {
            experts: true,
            ..Self::new()
        }
    }

    pub(crate) fn size_of(&self, key: &K) -> Option<u64> {
        self.map.get(key).map(|&i| self.slab.get(i).size)
    }

    fn bytes(&self) -> u64 {
        self.small.bytes + self.main.bytes
    }

    fn ghost_cap(&self) -> u64 {
        (self.bytes() as u128 * 9 / 10) as u64
    }

    /// Removes slot `i` from every list and the index; a key leaving the small queue is
    /// remembered in the ghost queue when `to_ghost`.
    fn remove_slot(&mut self, i: u32, to_ghost: bool) -> K {
        let (size, in_main) = {
            let e = self.slab.get(i);
            (e.size, e.in_main)
        };
        if in_main {
            self.main.unlink(&mut self.slab.links, QUEUE, i, size);
        } else {
            self.small.unlink(&mut self.slab.links, QUEUE, i, size);
        }
        if self.experts {
            self.recency.unlink(&mut self.slab.links, RECENCY, i, size);
            self.pmru.remove(&mut self.slab.links, PMRU, i);
        }
        let e = self.slab.remove(i);
        self.map.remove(&e.key);
        if to_ghost && !in_main {
            let cap = self.ghost_cap();
            self.ghost.insert(e.key.clone(), size, cap);
        }
        e.key
    }

    /// The S3-FIFO victim: processes the small/main queues (promotions, reinsertions) until one
    /// key is to be evicted, and returns its slot (still linked). `NIL` when empty.
    fn victim_s3fifo(&mut self) -> u32 {
        loop {
            let total = self.bytes();
            if !self.small.is_empty() && (self.small.bytes * 10 >= total || self.main.is_empty()) {
                let t = self.small.tail;
                let e = self.slab.get_mut(t);
                if e.freq == 0 {
                    return t;
                }
                // Reused while in small: promote to main with a cleared counter.
                e.freq = 0;
                e.in_main = true;
                let size = e.size;
                self.small.unlink(&mut self.slab.links, QUEUE, t, size);
                self.main.push_front(&mut self.slab.links, QUEUE, t, size);
            } else if !self.main.is_empty() {
                let t = self.main.tail;
                let e = self.slab.get_mut(t);
                if e.freq == 0 {
                    return t;
                }
                e.freq -= 1;
                let size = e.size;
                self.main
                    .move_to_front(&mut self.slab.links, QUEUE, t, size);
            } else {
                return NIL;
            }
        }
    }

    /// Evicts by S3-FIFO.
    pub(crate) fn evict_s3fifo(&mut self) -> Option<K> {
        let i = self.victim_s3fifo();
        (i != NIL).then(|| self.remove_slot(i, true))
    }

    /// Evicts the least (`mru == false`) or most (`mru == true`) recently used key, keeping the
    /// S3-FIFO queues consistent. Requires `with_experts()`.
    pub(crate) fn evict_by_recency(&mut self, mru: bool) -> Option<K> {
        debug_assert!(self.experts);
        let i = if mru {
            self.recency.head
        } else {
            self.recency.tail
        };
        (i != NIL).then(|| self.remove_slot(i, true))
    }

    /// The protected-MRU expert takes over from another: see [`PmruLists::reset_stats`].
    pub(crate) fn pmru_takes_over(&mut self) {
        self.pmru.reset_stats();
    }

    /// Evicts by protected MRU ([`super::Pmru`]'s rule), keeping the S3-FIFO queues consistent.
    /// Requires `with_experts()`.
    pub(crate) fn evict_pmru(&mut self) -> Option<K> {
        debug_assert!(self.experts);
        let reach = self.map.len() as u64;
        let i = self.pmru.victim(&mut self.slab.links, PMRU, reach);
        (i != NIL).then(|| self.remove_slot(i, true))
    }
}

impl<K: Clone + Eq + Hash + Send> EvictionPolicy<K> for S3Fifo<K> {
    fn name(&self) -> &'static str {
        "s3fifo"
    }

    fn on_hit(&mut self, key: &K) {
        if let Some(&i) = self.map.get(key) {
            let e = self.slab.get_mut(i);
            e.freq = (e.freq + 1).min(MAX_FREQ);
            if self.experts {
                let size = e.size;
                self.recency
                    .move_to_front(&mut self.slab.links, RECENCY, i, size);
                let reach = self.map.len() as u64;
                self.pmru.hit(&mut self.slab.links, PMRU, i, reach);
            }
        }
    }

    fn on_insert(&mut self, key: K, size: u64) {
        if let Some(&i) = self.map.get(&key) {
            self.remove_slot(i, false);
        }
        let to_main = self.ghost.remove(&key);
        let i = self.slab.insert(Entry {
            key: key.clone(),
            size,
            freq: 0,
            in_main: to_main,
        });
        if to_main {
            self.main.push_front(&mut self.slab.links, QUEUE, i, size);
        } else {
            self.small.push_front(&mut self.slab.links, QUEUE, i, size);
        }
        if self.experts {
            self.recency
                .push_front(&mut self.slab.links, RECENCY, i, size);
            self.pmru.insert(&mut self.slab.links, PMRU, i, size);
        }
        self.map.insert(key, i);
    }

    fn on_remove(&mut self, key: &K) {
        if let Some(&i) = self.map.get(key) {
            self.remove_slot(i, false);
        }
        self.ghost.remove(key);
    }

    fn evict(&mut self) -> Option<K> {
        self.evict_s3fifo()
    }

    fn tracked_bytes(&self) -> u64 {
        self.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreused_keys_leave_before_reused_ones() {
        let mut p = S3Fifo::new();
        for k in 0..10u32 {
            p.on_insert(k, 1);
        }
        p.on_hit(&0);
        p.on_hit(&1);
        // All in small (no main yet): 0 and 1 are promoted, 2 is the first victim.
        assert_eq!(p.evict(), Some(2));
        assert_eq!(p.evict(), Some(3));
        assert!(p.ghost.contains(&2));
        // A ghost hit goes straight to main.
        p.on_insert(2, 1);
        assert!(p.slab.get(p.map[&2]).in_main);
    }

    #[test]
    fn main_reinserts_by_frequency() {
        let mut p = S3Fifo::new();
        p.on_insert(1u32, 1);
        p.on_insert(2, 1);
        p.on_hit(&1);
        p.on_hit(&2);
        p.on_insert(3, 1);
        // small: 3 2 1 (newest first), 1 and 2 reused. Small holds 3/3 bytes >= 10%:
        // 1, 2 promoted; 3 evicted.
        assert_eq!(p.evict(), Some(3));
        assert!(p.small.is_empty());
        p.on_hit(&1);
        p.on_hit(&1);
        // main: 2 1 (newest first), 1 has freq 2, 2 has freq 0: 1 is reinserted, 2 evicted.
        assert_eq!(p.evict(), Some(2));
        assert_eq!(p.evict(), Some(1));
        assert_eq!(p.evict(), None);
    }

    #[test]
    fn recency_eviction_keeps_queues_consistent() {
        let mut p = S3Fifo::with_experts();
        for k in 0..4u32 {
            p.on_insert(k, 2);
        }
        p.on_hit(&0);
        assert_eq!(p.evict_by_recency(false), Some(1));
        assert_eq!(p.evict_by_recency(true), Some(0));
        assert_eq!(p.tracked_bytes(), 4);
        p.on_insert(9, 2);
        assert_eq!(p.evict_pmru(), Some(9));
        assert_eq!(p.evict(), Some(2));
        assert_eq!(p.evict(), Some(3));
        assert_eq!(p.evict(), None);
    }
}
