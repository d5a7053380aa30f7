//! SIEVE (Zhang et al., NSDI '24): a FIFO queue with one visited bit per key and a hand that
//! sweeps from the oldest end towards the newest, clearing visited bits and evicting the first
//! unvisited key. Unlike CLOCK, survivors are not moved to the head, so new keys that are not
//! reused are evicted quickly (a "lazy promotion, quick demotion" design).

use std::collections::HashMap;
use std::hash::Hash;

use super::list::{DList, Slab, NIL};
use super::EvictionPolicy;

struct Entry<K> {
    key: K,
    size: u64,
    visited: bool,
}

/// SIEVE eviction.
pub struct Sieve<K> {
    map: HashMap<K, u32>,
    slab: Slab<Entry<K>, 1>,
    queue: DList,
    /// Next slot to examine; `NIL` means "start again at the tail".
    hand: u32,
}

impl<K: Clone + Eq + Hash> Sieve<K> {
    pub fn new() -> Self {
        Self {
            map: HashMap::new(),
            slab: Slab::new(),
            queue: DList::new(),
            hand: NIL,
        }
    }

    fn remove_slot(&mut self, i: u32) -> K {
        if self.hand == i {
            self.hand = self.slab.links[i as usize][0].prev;
        }
        let size = self.slab.get(i).size;
        self.queue.unlink(&mut self.slab.links, 0, i, size);
        let e = self.slab.remove(i);
        self.map.remove(&e.key);
        e.key
    }
}

impl<K: Clone + Eq + Hash> Default for Sieve<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash + Send> EvictionPolicy<K> for Sieve<K> {
    fn name(&self) -> &'static str {
        "sieve"
    }

    fn on_hit(&mut self, key: &K) {
        if let Some(&i) = self.map.get(key) {
            self.slab.get_mut(i).visited = true;
        }
    }

    fn on_insert(&mut self, key: K, size: u64) {
        if let Some(&i) = self.map.get(&key) {
            self.remove_slot(i);
        }
        let i = self.slab.insert(Entry {
            key: key.clone(),
            size,
            visited: false,
        });
        self.queue.push_front(&mut self.slab.links, 0, i, size);
        self.map.insert(key, i);
    }

    fn on_remove(&mut self, key: &K) {
        if let Some(&i) = self.map.get(key) {
            self.remove_slot(i);
        }
    }

    fn evict(&mut self) -> Option<K> {
        if self.queue.is_empty() {
            return None;
        }
        let mut h = if self.hand == NIL {
            self.queue.tail
        } else {
            self.hand
        };
        // Terminates: after one full sweep every visited bit is clear. Amortized O(1): each bit
        // cleared here was set by an earlier hit.
        while self.slab.get(h).visited {
            self.slab.get_mut(h).visited = false;
            h = self.slab.links[h as usize][0].prev;
            if h == NIL {
                h = self.queue.tail;
            }
        }
        self.hand = h;
        Some(self.remove_slot(h)) // moves the hand to the next-newer key
    }

    fn tracked_bytes(&self) -> u64 {
        self.queue.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visited_keys_survive_one_sweep() {
        let mut p = Sieve::new();
        for k in 1..=4u32 {
            p.on_insert(k, 1);
        }
        p.on_hit(&1);
        p.on_hit(&3);
        // Queue oldest..newest: 1* 2 3* 4. The hand clears 1, evicts 2.
        assert_eq!(p.evict(), Some(2));
        // Hand continues at 3 (visited): clear, evict 4.
        assert_eq!(p.evict(), Some(4));
        // Wraps to the tail: 1 and 3 are now unvisited.
        assert_eq!(p.evict(), Some(1));
        p.on_insert(5, 1);
        assert_eq!(p.evict(), Some(3));
        assert_eq!(p.evict(), Some(5));
        assert_eq!(p.evict(), None);
    }
}
