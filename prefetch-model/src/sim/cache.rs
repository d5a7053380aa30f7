//! The simulated block cache: a byte budget over (inode, block) keys driven by a real
//! `cairn_cache` eviction policy, remembering which blocks were prefetched and not yet used.

use std::collections::HashMap;

use cairn_cache::policy::{new_policy, EvictionPolicy, PolicyKind};

/// A block key: (inode, block index).
pub type BlockId = (u64, u64);

/// What the cache remembers of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockMeta {
    /// Bytes.
    pub size: u64,
    /// Brought in by a prefetch (its bytes count as served by a prefetch when read).
    pub from_prefetch: bool,
    /// Prefetched and not read yet (counts against the prefetch share; wasted if evicted).
    pub unused: bool,
}

/// A block that left the cache.
#[derive(Clone, Copy, Debug)]
pub struct Evicted {
    /// Its key.
    pub id: BlockId,
    /// Its state when it left.
    pub meta: BlockMeta,
}

/// Byte-budgeted block cache following the policy protocol of `cairn_cache::policy`.
pub struct BlockCache {
    policy: Box<dyn EvictionPolicy<BlockId>>,
    resident: HashMap<BlockId, BlockMeta>,
    used: u64,
    unused_prefetch: u64,
    budget: u64,
}

impl BlockCache {
    /// An empty cache of `budget` bytes evicting with `kind`.
    pub fn new(kind: PolicyKind, budget: u64) -> Self {
        Self {
            policy: new_policy(kind),
            resident: HashMap::new(),
            used: 0,
            unused_prefetch: 0,
            budget,
        }
    }

    /// The block's state if cached (no side effects).
    pub fn get(&self, id: &BlockId) -> Option<BlockMeta> {
        self.resident.get(id).copied()
    }

    /// A demand read found the block: tell the policy, mark it used. Returns its state before.
    pub fn hit(&mut self, id: &BlockId) -> Option<BlockMeta> {
        let m = self.resident.get_mut(id)?;
        let before = *m;
        if m.unused {
            m.unused = false;
            self.unused_prefetch -= m.size;
        }
        self.policy.on_hit(id);
        Some(before)
    }

    /// A demand read missed the block (ghost-list policies learn from it).
    pub fn miss(&mut self, id: &BlockId) {
        self.policy.on_miss(id);
    }

    /// Admits a block, evicting first; the victims are appended to `evicted`. Returns whether
    /// the block is cached afterwards: true if it already was; false if it is larger than the
    /// whole budget (or the policy ran out of victims).
    pub fn insert(&mut self, id: BlockId, meta: BlockMeta, evicted: &mut Vec<Evicted>) -> bool {
        if self.resident.contains_key(&id) {
            return true;
        }
        if meta.size > self.budget {
            return false;
        }
        while self.used + meta.size > self.budget {
            let Some(victim) = self.policy.evict() else {
                return false;
            };
            if let Some(vm) = self.resident.remove(&victim) {
                self.used -= vm.size;
                if vm.unused {
                    self.unused_prefetch -= vm.size;
                }
                evicted.push(Evicted {
                    id: victim,
                    meta: vm,
                });
            }
        }
        self.policy.on_insert(id, meta.size);
        self.used += meta.size;
        if meta.unused {
            self.unused_prefetch += meta.size;
        }
        self.resident.insert(id, meta);
        true
    }

    /// Bytes cached.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Bytes of cached blocks prefetched and not yet read.
    pub fn unused_prefetch(&self) -> u64 {
        self.unused_prefetch
    }

    /// Every cached block still prefetched-and-unused, in a deterministic order.
    pub fn unused_blocks(&self) -> Vec<(BlockId, u64)> {
        let mut v: Vec<_> = self
            .resident
            .iter()
            .filter(|(_, m)| m.unused)
            .map(|(id, m)| (*id, m.size))
            .collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(unused: bool) -> BlockMeta {
        BlockMeta {
            size: 10,
            from_prefetch: unused,
            unused,
        }
    }

    #[test]
    fn budget_and_unused_accounting() {
        let mut c = BlockCache::new(PolicyKind::Lru, 30);
        let mut ev = vec![];
        c.insert((1, 0), meta(true), &mut ev);
        c.insert((1, 1), meta(false), &mut ev);
        c.insert((1, 2), meta(true), &mut ev);
        assert_eq!((c.used(), c.unused_prefetch()), (30, 20));
        assert_eq!(c.hit(&(1, 2)).map(|m| m.unused), Some(true));
        assert_eq!(c.unused_prefetch(), 10);
        c.insert((1, 3), meta(false), &mut ev);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].id, (1, 0), "LRU victim");
        assert!(ev[0].meta.unused);
        assert_eq!((c.used(), c.unused_prefetch()), (30, 0));
        assert!(c.hit(&(1, 0)).is_none());
        let big = BlockMeta {
            size: 31,
            ..meta(true)
        };
        assert!(!c.insert((2, 0), big, &mut ev), "larger than the budget");
        assert!(c.insert((1, 3), meta(false), &mut ev), "already cached");
    }
}
