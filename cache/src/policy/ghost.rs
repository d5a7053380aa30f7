//! A FIFO of recently evicted keys (no data), bounded by the bytes those keys used to take.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Keys remembered in insertion order; the oldest are forgotten once the remembered bytes exceed
/// the capacity given to [`Ghost::insert`]. Removal by key is O(1): the queue entry is left
/// behind as a tombstone (its sequence number no longer matches the map) and skipped later.
pub(crate) struct Ghost<K> {
    map: HashMap<K, (u64, u64)>, // key -> (sequence number, size)
    queue: VecDeque<(K, u64)>,   // (key, sequence number), oldest first
    next_seq: u64,
    bytes: u64,
}

impl<K: Clone + Eq + Hash> Ghost<K> {
    pub fn new() -> Self {
        Self {
            map: HashMap::new(),
            queue: VecDeque::new(),
            next_seq: 0,
            bytes: 0,
        }
    }

    #[cfg(test)]
    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Forgets `key`; returns whether it was remembered.
    pub fn remove(&mut self, key: &K) -> bool {
        match self.map.remove(key) {
            Some((_, size)) => {
                self.bytes -= size;
                self.maybe_compact();
                true
            }
            None => false,
        }
    }

    /// Remembers `key` (of `size` bytes) as the newest entry, then forgets the oldest entries
    /// until at most `cap` bytes are remembered.
    pub fn insert(&mut self, key: K, size: u64, cap: u64) {
        self.remove(&key);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map.insert(key.clone(), (seq, size));
        self.queue.push_back((key, seq));
        self.bytes += size;
        self.trim(cap);
    }

    /// Forgets the oldest entries until at most `cap` bytes are remembered.
    pub fn trim(&mut self, cap: u64) {
        while self.bytes > cap {
            let Some((k, seq)) = self.queue.pop_front() else {
                break;
            };
            if let Some(&(s, size)) = self.map.get(&k) {
                if s == seq {
                    self.map.remove(&k);
                    self.bytes -= size;
                }
            }
        }
        self.maybe_compact();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Drops tombstones once they outnumber live entries, so the queue stays O(live entries).
    fn maybe_compact(&mut self) {
        if self.queue.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.queue
                .retain(|(k, seq)| map.get(k).is_some_and(|&(s, _)| s == *seq));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_oldest_by_bytes() {
        let mut g = Ghost::new();
        g.insert(1, 4, 10);
        g.insert(2, 4, 10);
        g.insert(3, 4, 10); // 12 > 10: forget 1
        assert!(!g.contains(&1) && g.contains(&2) && g.contains(&3));
        assert!(g.remove(&2));
        assert!(!g.remove(&2));
        g.insert(4, 8, 10); // 3 (4) + 4 (8) = 12 > 10: forget 3
        assert!(!g.contains(&3) && g.contains(&4));
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn tombstones_stay_bounded() {
        let mut g = Ghost::new();
        g.insert(0u32, 1, 1_000_000);
        for k in 1..10_000u32 {
            g.insert(k, 1, 1_000_000);
            g.remove(&k);
        }
        assert!(g.queue.len() < 200, "queue {} entries", g.queue.len());
        assert!(g.contains(&0));
    }
}
