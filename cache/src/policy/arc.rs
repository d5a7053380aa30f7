//! ARC (Megiddo & Modha, FAST '03), sized by bytes.
//!
//! T1 holds keys seen once recently, T2 keys seen at least twice; B1 and B2 remember keys
//! evicted from T1 and T2 (no data). A miss that finds its key in B1 grows the target size `p`
//! of T1, one found in B2 shrinks it; eviction takes T1's oldest key while T1 is over `p`, else
//! T2's oldest. The cache size `c` is learned from the tier: the tracked bytes when an eviction
//! burst starts. ARC needs [`EvictionPolicy::on_miss`] to adapt before evicting; a tier that
//! does not call it still gets a working (less adaptive) cache.

use std::collections::HashMap;
use std::hash::Hash;

use super::list::{DList, Slab, NIL};
use super::EvictionPolicy;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Where {
    T1 = 0,
    T2 = 1,
    B1 = 2,
    B2 = 3,
}

struct Entry<K> {
    key: K,
    size: u64,
    at: Where,
}

/// ARC eviction (the struct is not called `Arc` to keep `std::sync::Arc` unambiguous).
pub struct ArcPolicy<K> {
    map: HashMap<K, u32>,
    slab: Slab<Entry<K>, 1>,
    lists: [DList; 4],
    /// Target bytes of T1.
    p: u64,
    /// Cache size in bytes, as learned from eviction bursts.
    c: u64,
    in_burst: bool,
    /// The pending miss was found in B2 (ARC's REPLACE then prefers T1 when T1 == p).
    pending_b2: bool,
}

impl<K: Clone + Eq + Hash> Default for ArcPolicy<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash> ArcPolicy<K> {
    pub fn new() -> Self {
        Self {
            map: HashMap::new(),
            slab: Slab::new(),
            lists: [DList::new(); 4],
            p: 0,
            c: 0,
            in_burst: false,
            pending_b2: false,
        }
    }

    fn bytes(&self, w: Where) -> u64 {
        self.lists[w as usize].bytes
    }

    fn relink(&mut self, i: u32, to: Where) {
        let (size, from) = {
            let e = self.slab.get(i);
            (e.size, e.at)
        };
        self.lists[from as usize].unlink(&mut self.slab.links, 0, i, size);
        self.lists[to as usize].push_front(&mut self.slab.links, 0, i, size);
        self.slab.get_mut(i).at = to;
    }

    fn drop_slot(&mut self, i: u32) -> K {
        let (size, at) = {
            let e = self.slab.get(i);
            (e.size, e.at)
        };
        self.lists[at as usize].unlink(&mut self.slab.links, 0, i, size);
        let e = self.slab.remove(i);
        self.map.remove(&e.key);
        e.key
    }

    fn trim_ghosts(&mut self) {
        use Where::*;
        while self.bytes(T1) + self.bytes(B1) > self.c && !self.lists[B1 as usize].is_empty() {
            self.drop_slot(self.lists[B1 as usize].tail);
        }
        let total = |s: &Self| s.bytes(T1) + s.bytes(T2) + s.bytes(B1) + s.bytes(B2);
        while total(self) > 2 * self.c {
            let victim = if !self.lists[B2 as usize].is_empty() {
                self.lists[B2 as usize].tail
            } else if !self.lists[B1 as usize].is_empty() {
                self.lists[B1 as usize].tail
            } else {
                break;
            };
            self.drop_slot(victim);
        }
    }
}

impl<K: Clone + Eq + Hash + Send> EvictionPolicy<K> for ArcPolicy<K> {
    fn name(&self) -> &'static str {
        "arc"
    }

    fn on_hit(&mut self, key: &K) {
        if let Some(&i) = self.map.get(key) {
            if matches!(self.slab.get(i).at, Where::T1 | Where::T2) {
                self.relink(i, Where::T2);
            }
        }
        self.in_burst = false;
    }

    fn on_miss(&mut self, key: &K) {
        self.pending_b2 = false;
        let Some(&i) = self.map.get(key) else {
            return;
        };
        let size = self.slab.get(i).size as f64;
        let (b1, b2) = (self.bytes(Where::B1) as f64, self.bytes(Where::B2) as f64);
        match self.slab.get(i).at {
            Where::B1 => {
                let delta = (b2 / b1.max(1.0)).max(1.0) * size;
                self.p = (self.p as f64 + delta).min(self.c as f64) as u64;
            }
            Where::B2 => {
                let delta = (b1 / b2.max(1.0)).max(1.0) * size;
                self.p = (self.p as f64 - delta).max(0.0) as u64;
                self.pending_b2 = true;
            }
            Where::T1 | Where::T2 => {}
        }
    }

    fn on_insert(&mut self, key: K, size: u64) {
        self.in_burst = false;
        let to = match self.map.get(&key) {
            Some(&i) => {
                // A ghost hit (or, against the contract, a resident key): into T2 with its size.
                self.drop_slot(i);
                Where::T2
            }
            None => Where::T1,
        };
        let i = self.slab.insert(Entry {
            key: key.clone(),
            size,
            at: to,
        });
        self.lists[to as usize].push_front(&mut self.slab.links, 0, i, size);
        self.map.insert(key, i);
        self.pending_b2 = false;
        self.c = self.c.max(self.tracked_bytes());
        self.trim_ghosts();
    }

    fn on_remove(&mut self, key: &K) {
        if let Some(&i) = self.map.get(key) {
            self.drop_slot(i);
        }
    }

    fn evict(&mut self) -> Option<K> {
        use Where::*;
        if !self.in_burst {
            self.in_burst = true;
            self.c = self.tracked_bytes();
            self.p = self.p.min(self.c);
        }
        let (t1, t2) = (&self.lists[T1 as usize], &self.lists[T2 as usize]);
        let i = if !t1.is_empty()
            && (t2.is_empty() || t1.bytes > self.p || (self.pending_b2 && t1.bytes >= self.p))
        {
            t1.tail
        } else {
            t2.tail
        };
        if i == NIL {
            return None;
        }
        let ghost = if self.slab.get(i).at == T1 { B1 } else { B2 };
        self.relink(i, ghost);
        let key = self.slab.get(i).key.clone();
        self.trim_ghosts();
        Some(key)
    }

    fn tracked_bytes(&self) -> u64 {
        self.bytes(Where::T1) + self.bytes(Where::T2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_keys_outlive_one_time_keys() {
        let mut p = ArcPolicy::new();
        for k in 0..4u32 {
            p.on_insert(k, 1);
        }
        p.on_hit(&0); // 0 -> T2
        assert_eq!(p.evict(), Some(1)); // T1 over p = 0: oldest of T1
        assert_eq!(p.evict(), Some(2));
        assert_eq!(p.evict(), Some(3));
        assert_eq!(p.evict(), Some(0));
        assert_eq!(p.evict(), None);
        assert_eq!(p.tracked_bytes(), 0);
    }

    #[test]
    fn ghost_hit_in_b1_grows_t1_target() {
        let mut p = ArcPolicy::new();
        for k in 0..4u32 {
            p.on_insert(k, 1);
        }
        p.on_hit(&2);
        p.on_hit(&3);
        assert_eq!(p.evict(), Some(0)); // c = 4, B1 = {0}
        p.on_miss(&0);
        assert!(p.p >= 1);
        p.on_insert(0, 1); // back, into T2
        assert_eq!(p.slab.get(p.map[&0]).at, Where::T2);
        assert_eq!(p.tracked_bytes(), 4);
    }
}
