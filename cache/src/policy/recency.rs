//! LRU and MRU: one recency list, evicted from the old end (LRU) or the new end (MRU).

use std::collections::HashMap;
use std::hash::Hash;

use super::list::{DList, Slab, NIL};
use super::EvictionPolicy;

struct Entry<K> {
    key: K,
    size: u64,
}

/// A recency-ordered list: hits and insertions move a key to the most-recent end.
///
/// As [`Lru`] it evicts the least recently used key. As [`Mru`] it evicts the most recently used
/// one, which on a loop or a shuffled pass larger than the cache keeps a stable resident set and
/// evicts what the current pass has already read; on anything with locality it is poor, and it is
/// here as a reference point and as one of the experts of [`super::Adaptive`].
pub struct Recency<K> {
    map: HashMap<K, u32>,
    slab: Slab<Entry<K>, 1>,
    list: DList,
    mru: bool,
}

/// Least recently used.
pub type Lru<K> = Recency<K>;
/// Most recently used.
pub type Mru<K> = Recency<K>;

impl<K: Clone + Eq + Hash> Recency<K> {
    /// Evicts the least recently used key first.
    pub fn lru() -> Self {
        Self::with_end(false)
    }

    /// Evicts the most recently used key first.
    pub fn mru() -> Self {
        Self::with_end(true)
    }

    fn with_end(mru: bool) -> Self {
        Self {
            map: HashMap::new(),
            slab: Slab::new(),
            list: DList::new(),
            mru,
        }
    }

    fn remove_slot(&mut self, i: u32) -> K {
        let size = self.slab.get(i).size;
        self.list.unlink(&mut self.slab.links, 0, i, size);
        let e = self.slab.remove(i);
        self.map.remove(&e.key);
        e.key
    }
}

impl<K: Clone + Eq + Hash + Send> EvictionPolicy<K> for Recency<K> {
    fn name(&self) -> &'static str {
        if self.mru {
            "mru"
        } else {
            "lru"
        }
    }

    fn on_hit(&mut self, key: &K) {
        if let Some(&i) = self.map.get(key) {
            let size = self.slab.get(i).size;
            self.list.move_to_front(&mut self.slab.links, 0, i, size);
        }
    }

    fn on_insert(&mut self, key: K, size: u64) {
        if let Some(&i) = self.map.get(&key) {
            // Not expected by the contract; treat as a size update plus a hit.
            self.remove_slot(i);
        }
        let i = self.slab.insert(Entry {
            key: key.clone(),
            size,
        });
        self.list.push_front(&mut self.slab.links, 0, i, size);
        self.map.insert(key, i);
    }

    fn on_remove(&mut self, key: &K) {
        if let Some(&i) = self.map.get(key) {
            self.remove_slot(i);
        }
    }

    fn evict(&mut self) -> Option<K> {
        let i = if self.mru {
            self.list.head
        } else {
            self.list.tail
        };
        (i != NIL).then(|| self.remove_slot(i))
    }

    fn tracked_bytes(&self) -> u64 {
        self.list.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_least_recent() {
        let mut p = Recency::lru();
        for k in 1..=3u32 {
            p.on_insert(k, 10);
        }
        p.on_hit(&1);
        assert_eq!(p.evict(), Some(2));
        assert_eq!(p.evict(), Some(3));
        assert_eq!(p.evict(), Some(1));
        assert_eq!(p.evict(), None);
    }

    #[test]
    fn mru_evicts_most_recent() {
        let mut p = Recency::mru();
        for k in 1..=3u32 {
            p.on_insert(k, 10);
        }
        p.on_hit(&1);
        assert_eq!(p.evict(), Some(1));
        assert_eq!(p.evict(), Some(3));
        p.on_remove(&2);
        assert_eq!(p.tracked_bytes(), 0);
        assert_eq!(p.evict(), None);
    }
}
