//! Eviction policies shared by the cache tiers.
//!
//! A tier owns the data and the byte budget; a policy only tracks keys and their sizes and picks
//! victims. The calling protocol of a tier is:
//!
//! - lookup hit: [`EvictionPolicy::on_hit`];
//! - lookup miss: [`EvictionPolicy::on_miss`] (ghost-list policies learn from it), then, once the
//!   data is fetched and admitted, [`EvictionPolicy::evict`] until `used + size <= budget`, then
//!   [`EvictionPolicy::on_insert`] (evicting after the insert also works: a policy may then return
//!   the key just inserted, which amounts to not admitting it);
//! - invalidation, corruption, explicit delete: [`EvictionPolicy::on_remove`];
//! - a budget shrink: [`EvictionPolicy::evict`] until under budget.
//!
//! [`KeyCache`] is exactly that protocol without the data; the simulator and the tests drive
//! policies through it.
//!
//! Policies (names as used in configuration): `lru`, `mru`, `pmru` (protected MRU), `sieve`,
//! `s3fifo`, `arc`, and `adaptive` (the default), which picks S3-FIFO, LRU or protected MRU
//! online by simulating each on a sample of the keys; see [`Adaptive`] and the "Eviction policies" section of
//! `docs/BENCHMARKS.md` for the measurements behind the choice. Every operation is O(1)
//! amortized (hash map plus intrusive lists over a slab).

mod adaptive;
mod arc;
mod ghost;
mod list;
mod pmru;
mod recency;
mod s3fifo;
mod sieve;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::str::FromStr;

pub use adaptive::{Adaptive, AdaptiveConfig, Expert, DEFAULT_MAX_SAMPLED};
pub use arc::ArcPolicy;
pub use pmru::Pmru;
pub use recency::{Lru, Mru, Recency};
pub use s3fifo::S3Fifo;
pub use sieve::Sieve;

/// A cache eviction policy over keys `K` with per-key sizes in bytes. Object safe: tiers hold a
/// `Box<dyn EvictionPolicy<K>>` built by [`new_policy`].
///
/// Implementations require `K: Clone + Eq + Hash + Send`.
pub trait EvictionPolicy<K>: Send {
    /// The configuration name of the policy (`"lru"`, `"s3fifo"`, ...).
    fn name(&self) -> &'static str;
    /// A cached key was read (hit).
    fn on_hit(&mut self, key: &K);
    /// A key was admitted with `size` bytes (not already present).
    fn on_insert(&mut self, key: K, size: u64);
    /// A key left the cache for another reason (invalidated, corrupt): forget it.
    fn on_remove(&mut self, key: &K);
    /// Pick the next victim and forget it; `None` when empty.
    fn evict(&mut self) -> Option<K>;
    /// Bytes currently tracked.
    fn tracked_bytes(&self) -> u64;
    /// Optional: a miss of a key not cached (lets ghost-list policies learn); default no-op.
    fn on_miss(&mut self, _key: &K) {}
}

/// The policies that can be configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PolicyKind {
    /// Least recently used.
    Lru,
    /// Most recently used (reference point for loops and shuffled passes).
    Mru,
    /// Protected MRU: MRU, except keys re-read within the cache's reach are kept LRU-style.
    Pmru,
    /// SIEVE.
    Sieve,
    /// S3-FIFO.
    S3Fifo,
    /// ARC.
    Arc,
    /// S3-FIFO / LRU / protected MRU chosen online by sampled shadow simulation.
    #[default]
    Adaptive,
}

impl PolicyKind {
    /// Every policy, in the order the simulator reports them.
    pub const ALL: [PolicyKind; 7] = [
        PolicyKind::Lru,
        PolicyKind::Sieve,
        PolicyKind::S3Fifo,
        PolicyKind::Arc,
        PolicyKind::Mru,
        PolicyKind::Pmru,
        PolicyKind::Adaptive,
    ];

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Lru => "lru",
            PolicyKind::Mru => "mru",
            PolicyKind::Pmru => "pmru",
            PolicyKind::Sieve => "sieve",
            PolicyKind::S3Fifo => "s3fifo",
            PolicyKind::Arc => "arc",
            PolicyKind::Adaptive => "adaptive",
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown policy name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPolicy(pub String);

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = PolicyKind::ALL.iter().map(|k| k.name()).collect();
        write!(
            f,
            "unknown eviction policy {:?} (expected one of: {})",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownPolicy {}

impl FromStr for PolicyKind {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase().replace(['-', '_'], "");
        PolicyKind::ALL
            .into_iter()
            .find(|k| k.name() == t)
            .ok_or_else(|| UnknownPolicy(s.to_string()))
    }
}

/// Builds a policy of the given kind.
pub fn new_policy<K: Clone + Eq + Hash + Send + 'static>(
    kind: PolicyKind,
) -> Box<dyn EvictionPolicy<K>> {
    match kind {
        PolicyKind::Lru => Box::new(Recency::lru()),
        PolicyKind::Mru => Box::new(Recency::mru()),
        PolicyKind::Pmru => Box::new(Pmru::new()),
        PolicyKind::Sieve => Box::new(Sieve::new()),
        PolicyKind::S3Fifo => Box::new(S3Fifo::new()),
        PolicyKind::Arc => Box::new(ArcPolicy::new()),
        PolicyKind::Adaptive => Box::new(Adaptive::new()),
    }
}

/// A byte-budgeted set of keys driven by a policy: what a tier does, without the data.
/// Used by the simulator, by [`Adaptive`]'s shadow caches and by the tests.
pub struct KeyCache<K> {
    policy: Box<dyn EvictionPolicy<K>>,
    resident: HashMap<K, u64>,
    used: u64,
    budget: u64,
}

impl<K: Clone + Eq + Hash> KeyCache<K> {
    /// An empty cache of `budget` bytes.
    pub fn new(policy: Box<dyn EvictionPolicy<K>>, budget: u64) -> Self {
        Self {
            policy,
            resident: HashMap::new(),
            used: 0,
            budget,
        }
    }

    /// One read of `key` (`size` bytes). Returns true on a hit. On a miss the key is admitted
    /// after evicting to make room, unless it is larger than the whole budget.
    pub fn access(&mut self, key: &K, size: u64) -> bool {
        if self.resident.contains_key(key) {
            self.policy.on_hit(key);
            return true;
        }
        self.policy.on_miss(key);
        if size > self.budget {
            return false;
        }
        if !self.evict_until(self.budget - size) {
            return false;
        }
        self.policy.on_insert(key.clone(), size);
        self.resident.insert(key.clone(), size);
        self.used += size;
        false
    }

    /// Forgets `key` (invalidation); returns whether it was cached.
    pub fn remove(&mut self, key: &K) -> bool {
        match self.resident.remove(key) {
            Some(size) => {
                self.used -= size;
                self.policy.on_remove(key);
                true
            }
            None => false,
        }
    }

    /// Changes the budget, evicting at once on a shrink.
    pub fn set_budget(&mut self, budget: u64) {
        self.budget = budget;
        self.evict_until(budget);
    }

    /// Keeps only the keys for which `keep` is true (the others are removed, not evicted).
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        let drop: Vec<K> = self.resident.keys().filter(|k| !keep(k)).cloned().collect();
        for k in drop {
            self.remove(&k);
        }
    }

    /// Evicts until at most `target` bytes are used; false if the policy ran dry first (a
    /// policy bug: it then tracks less than the cache holds).
    fn evict_until(&mut self, target: u64) -> bool {
        while self.used > target {
            match self.policy.evict() {
                Some(victim) => {
                    let size = self
                        .resident
                        .remove(&victim)
                        .expect("policy evicted a key that is not cached");
                    self.used -= size;
                }
                None => return false,
            }
        }
        true
    }

    /// Whether `key` is cached (no side effects).
    pub fn contains(&self, key: &K) -> bool {
        self.resident.contains_key(key)
    }

    /// Bytes cached.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The byte budget.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Keys cached.
    pub fn len(&self) -> usize {
        self.resident.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.resident.is_empty()
    }

    /// The policy.
    pub fn policy(&self) -> &dyn EvictionPolicy<K> {
        &*self.policy
    }
}
