use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use std::collections::HashMap;

use bytes::Bytes;

use crate::policy::{new_policy, EvictionPolicy, PolicyKind};
use crate::BlockKey;

/// Counters of the RAM tier, read by the metrics exporter and `cairn stats`.
#[derive(Debug, Default)]
pub struct L1Stats {
    /// Lookups answered from RAM.
    pub hits: AtomicU64,
    /// Lookups that found nothing.
    pub misses: AtomicU64,
    /// Bytes returned by hits.
    pub bytes_served: AtomicU64,
    /// Bytes inserted.
    pub bytes_admitted: AtomicU64,
    /// Blocks evicted to stay within the budget.
    pub evictions: AtomicU64,
}

struct Inner {
    blocks: HashMap<BlockKey, Bytes>,
    policy: Box<dyn EvictionPolicy<BlockKey>>,
    used: u64,
    budget: u64,
}

/// The RAM tier: `Bytes` blocks under a byte budget (not an entry count); the victim is chosen
/// by an eviction policy (default: the adaptive one measured best on training traces, see
/// docs/BENCHMARKS.md). Cloning a hit is zero-copy (`Bytes` is reference counted).
pub struct L1Cache {
    inner: Mutex<Inner>,
    stats: L1Stats,
}

impl L1Cache {
    /// Creates an empty cache holding at most `budget` bytes of block data, evicting with the
    /// default policy.
    pub fn new(budget: u64) -> Self {
        Self::with_policy(budget, PolicyKind::default())
    }

    /// Creates an empty cache evicting with `policy`.
    pub fn with_policy(budget: u64, policy: PolicyKind) -> Self {
        Self {
            inner: Mutex::new(Inner {
                blocks: HashMap::new(),
                policy: new_policy(policy),
                used: 0,
                budget,
            }),
            stats: L1Stats::default(),
        }
    }

    /// The eviction policy's name.
    pub fn policy_name(&self) -> &'static str {
        self.inner.lock().unwrap().policy.name()
    }

    /// Returns the block if cached (the policy learns of the hit, or of the miss).
    pub fn get(&self, key: &BlockKey) -> Option<Bytes> {
        let hit = {
            let mut inner = self.inner.lock().unwrap();
            let hit = inner.blocks.get(key).cloned();
            match &hit {
                Some(_) => inner.policy.on_hit(key),
                None => inner.policy.on_miss(key),
            }
            hit
        };
        match &hit {
            Some(b) => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .bytes_served
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
            }
            None => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
            }
        }
        hit
    }

    /// Returns true when the block is cached, without touching recency or counters.
    pub fn contains(&self, key: &BlockKey) -> bool {
        self.inner.lock().unwrap().blocks.contains_key(key)
    }

    /// Inserts a block, evicting blocks the policy picks to stay within the budget.
    /// A block larger than the whole budget is not admitted.
    pub fn insert(&self, key: BlockKey, data: Bytes) {
        let len = data.len() as u64;
        let mut inner = self.inner.lock().unwrap();
        // Never leave an older value behind for this key.
        if let Some(old) = inner.blocks.remove(&key) {
            inner.used -= old.len() as u64;
            inner.policy.on_remove(&key);
        }
        if len > inner.budget {
            return;
        }
        inner.policy.on_insert(key.clone(), len);
        inner.blocks.insert(key, data);
        inner.used += len;
        self.stats.bytes_admitted.fetch_add(len, Ordering::Relaxed);
        self.evict_to_budget(&mut inner);
    }

    /// Drops every block of `object` whose version differs from `keep_version`
    /// (called when the gateway learns a new ETag for the object).
    pub fn invalidate_object(&self, object: &str, keep_version: &str) {
        let mut inner = self.inner.lock().unwrap();
        let stale: Vec<BlockKey> = inner
            .blocks
            .keys()
            .filter(|k| &*k.object == object && &*k.version != keep_version)
            .cloned()
            .collect();
        for k in stale {
            if let Some(b) = inner.blocks.remove(&k) {
                inner.used -= b.len() as u64;
                inner.policy.on_remove(&k);
            }
        }
    }

    /// Changes the byte budget at run time; a shrink evicts immediately.
    pub fn resize(&self, budget: u64) {
        let mut inner = self.inner.lock().unwrap();
        inner.budget = budget;
        self.evict_to_budget(&mut inner);
    }

    /// Bytes currently held.
    pub fn used(&self) -> u64 {
        self.inner.lock().unwrap().used
    }

    /// Current byte budget.
    pub fn budget(&self) -> u64 {
        self.inner.lock().unwrap().budget
    }

    /// Counters of this tier.
    pub fn stats(&self) -> &L1Stats {
        &self.stats
    }

    fn evict_to_budget(&self, inner: &mut Inner) {
        while inner.used > inner.budget {
            let Some(victim) = inner.policy.evict() else {
                break;
            };
            if let Some(b) = inner.blocks.remove(&victim) {
                inner.used -= b.len() as u64;
                self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::sync::Arc;

    fn key(obj: &str, ver: &str, i: u64) -> BlockKey {
        BlockKey::new(Arc::from(obj), Arc::from(ver), i)
    }

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        let c = L1Cache::with_policy(10, PolicyKind::Lru);
        c.insert(key("a", "1", 0), Bytes::from(vec![0u8; 4]));
        c.insert(key("a", "1", 1), Bytes::from(vec![1u8; 4]));
        assert!(c.get(&key("a", "1", 0)).is_some()); // 0 is now most recent
        c.insert(key("a", "1", 2), Bytes::from(vec![2u8; 4]));
        assert!(c.get(&key("a", "1", 1)).is_none());
        assert!(c.get(&key("a", "1", 0)).is_some());
        assert_eq!(c.used(), 8);
    }

    #[test]
    fn oversize_block_is_not_admitted() {
        let c = L1Cache::new(3);
        c.insert(key("a", "1", 0), Bytes::from(vec![0u8; 4]));
        assert_eq!(c.used(), 0);
    }

    #[test]
    fn invalidate_drops_other_versions_only() {
        let c = L1Cache::new(100);
        c.insert(key("a", "1", 0), Bytes::from_static(b"old"));
        c.insert(key("a", "2", 0), Bytes::from_static(b"new"));
        c.insert(key("b", "1", 0), Bytes::from_static(b"oth"));
        c.invalidate_object("a", "2");
        assert!(c.get(&key("a", "1", 0)).is_none());
        assert!(c.get(&key("a", "2", 0)).is_some());
        assert!(c.get(&key("b", "1", 0)).is_some());
        assert_eq!(c.used(), 6);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u8),
        Get(u8),
        Resize(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..16, 1u8..40).prop_map(|(k, n)| Op::Insert(k, n)),
            (0u8..16).prop_map(Op::Get),
            (0u16..200).prop_map(Op::Resize),
        ]
    }

    proptest! {
        /// Random insert/get/resize sequences never return bytes other than those inserted last
        /// for that key, and never hold more than the budget.
        #[test]
        fn never_wrong_bytes_never_over_budget(
            ops in proptest::collection::vec(op(), 1..200),
            kind in proptest::sample::select(PolicyKind::ALL.to_vec()),
        ) {
            let c = L1Cache::with_policy(100, kind);
            let mut model: HashMap<u8, Bytes> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, n) => {
                        let data = Bytes::from(vec![k.wrapping_mul(n); n as usize]);
                        model.insert(k, data.clone());
                        c.insert(key("o", "v", k as u64), data);
                    }
                    Op::Get(k) => {
                        if let Some(got) = c.get(&key("o", "v", k as u64)) {
                            prop_assert_eq!(Some(&got), model.get(&k));
                        }
                    }
                    Op::Resize(b) => c.resize(b as u64),
                }
                prop_assert!(c.used() <= c.budget());
                let inner = c.inner.lock().unwrap();
                let held: u64 = inner.blocks.values().map(|b| b.len() as u64).sum();
                prop_assert_eq!(held, inner.used);
                prop_assert_eq!(inner.policy.tracked_bytes(), inner.used);
            }
        }
    }
}
