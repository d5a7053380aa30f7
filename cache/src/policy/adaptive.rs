//! The adaptive policy: one cache state, three eviction rules, chosen online by measuring each
//! rule on a sampled shadow cache.
//!
//! The resident keys live in an S3-FIFO structure that also keeps a recency list and the lists
//! of protected MRU, so a victim can be taken by any of three *experts*:
//!
//! - **s3fifo**: the S3-FIFO victim (scan resistant, good on skewed popularity);
//! - **lru**: the least recently used key (good on recency-driven traces);
//! - **pmru**: protected MRU ([`super::Pmru`]): the most recently used key, except keys re-read
//!   within the cache's reach. On a loop or a shuffled pass over more data than the cache holds,
//!   every key is read about once per pass; the most recently used key is then one the current
//!   pass has already read, so evicting it keeps a stable resident set, and every resident key
//!   is hit once per pass (hit ratio ≈ cache / dataset, the best any fixed set can do), where
//!   LRU keeps only what the pass read last and is hit far less. Keys re-read quickly (a hot
//!   set mixed into the passes) are protected instead of being evicted right after each read,
//!   and the keys of a loop the workload has left are aged out.
//!
//! Which expert evicts is decided by measurement, from the access stream alone: keys are
//! sampled by hash (spatial sampling as in SHARDS, Waldspurger et al., FAST '15), and each
//! expert runs as a pure policy on the sampled keys with the budget scaled by the sampling rate
//! (miniature simulation, Waldspurger et al., ATC '17). Each shadow's hits feed an exponentially
//! decayed score with a window of about twice the shadow's entries; the real cache follows the
//! expert with the best score, once it beats the current one by 5% (hysteresis: a switch costs
//! hits while the new rule reshapes a state built by the old one). The sampling rate starts at 1 and halves
//! whenever a shadow would track more than `max_sampled` keys, so the overhead is bounded
//! (three shadows of at most `max_sampled` keys) whatever the cache size.
//!
//! The cache size is learned from the tier (the tracked bytes when an eviction burst starts);
//! until the first eviction the shadows are unbounded, like the cache.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash};

use super::pmru::Pmru;
use super::recency::Recency;
use super::s3fifo::S3Fifo;
use super::{EvictionPolicy, KeyCache};

/// One eviction rule of [`Adaptive`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expert {
    /// The S3-FIFO victim.
    S3Fifo,
    /// The least recently used key.
    Lru,
    /// Protected MRU ([`super::Pmru`]).
    Pmru,
}

const EXPERTS: [Expert; 3] = [Expert::S3Fifo, Expert::Lru, Expert::Pmru];

/// Default cap on keys per shadow cache before the sampling rate halves.
pub const DEFAULT_MAX_SAMPLED: usize = 8192;

/// Besides the factor, a challenger needs this many more (decayed) hits, so that near-empty
/// scores do not flap.
const SWITCH_SLACK: f64 = 0.5;

/// Tuning of [`Adaptive`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveConfig {
    /// Keys per shadow cache before the sampling rate halves (at least 64).
    pub max_sampled: usize,
    /// Another expert takes over when its score exceeds the current one's by this factor.
    pub switch_factor: f64,
    /// Score window (the decay's time constant), in multiples of the keys in a shadow cache.
    pub window: f64,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            max_sampled: DEFAULT_MAX_SAMPLED,
            switch_factor: 1.05,
            window: 2.0,
        }
    }
}

/// S3-FIFO / LRU / protected MRU chosen online by sampled shadow simulation (see the module docs).
pub struct Adaptive<K> {
    core: S3Fifo<K>,
    shadows: Vec<KeyCache<K>>,
    scores: [f64; 3],
    current: usize,
    cfg: AdaptiveConfig,
    /// A key is sampled when its 32-bit hash is below this (1 << 32: every key).
    threshold: u64,
    /// Learned cache size in bytes; 0 until the first eviction.
    budget: u64,
    in_burst: bool,
    switches: u64,
    hasher: BuildHasherDefault<DefaultHasher>,
}

impl<K: Clone + Eq + Hash + Send + 'static> Default for Adaptive<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> Adaptive<K> {
    pub fn new() -> Self {
        Self::with_max_sampled(DEFAULT_MAX_SAMPLED)
    }

    /// Like [`Adaptive::new`] with at most `max_sampled` keys per shadow cache (at least 64).
    pub fn with_max_sampled(max_sampled: usize) -> Self {
        Self::with_config(AdaptiveConfig {
            max_sampled,
            ..AdaptiveConfig::default()
        })
    }

    /// An adaptive policy with the given tuning.
    pub fn with_config(cfg: AdaptiveConfig) -> Self {
        let shadows = EXPERTS
            .iter()
            .map(|e| {
                let p: Box<dyn EvictionPolicy<K>> = match e {
                    Expert::S3Fifo => Box::new(S3Fifo::new()),
                    Expert::Lru => Box::new(Recency::lru()),
                    Expert::Pmru => Box::new(Pmru::new()),
                };
                KeyCache::new(p, u64::MAX)
            })
            .collect();
        Self {
            core: S3Fifo::with_experts(),
            shadows,
            scores: [0.0; 3],
            current: 0,
            cfg: AdaptiveConfig {
                max_sampled: cfg.max_sampled.max(64),
                ..cfg
            },
            threshold: 1 << 32,
            budget: 0,
            in_burst: false,
            switches: 0,
            hasher: BuildHasherDefault::default(),
        }
    }

    /// The expert that currently picks victims.
    pub fn current(&self) -> Expert {
        EXPERTS[self.current]
    }

    /// How many times the expert changed.
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// Fraction of keys fed to the shadow caches.
    pub fn sampling_rate(&self) -> f64 {
        self.threshold as f64 / (1u64 << 32) as f64
    }

    fn hash32(&self, key: &K) -> u64 {
        let h = self.hasher.hash_one(key);
        (h ^ (h >> 32)) & 0xffff_ffff
    }

    fn shadow_budget(&self) -> u64 {
        if self.budget == 0 {
            u64::MAX
        } else {
            ((self.budget as u128 * self.threshold as u128) >> 32).max(1) as u64
        }
    }

    fn set_shadow_budgets(&mut self) {
        let b = self.shadow_budget();
        for s in &mut self.shadows {
            s.set_budget(b);
        }
    }

    /// Feeds one access (hit or admitted miss) to the shadows and updates the choice.
    fn observe(&mut self, key: &K, size: u64) {
        if self.hash32(key) >= self.threshold {
            return;
        }
        let window = (self.cfg.window * self.shadows[0].len() as f64).clamp(256.0, 65536.0);
        let decay = 1.0 - 1.0 / window;
        for (s, score) in self.shadows.iter_mut().zip(self.scores.iter_mut()) {
            let hit = s.access(key, size);
            *score = *score * decay + if hit { 1.0 } else { 0.0 };
        }
        if self.shadows.iter().any(|s| s.len() > self.cfg.max_sampled) {
            self.halve_sampling();
        }
        let cur = self.scores[self.current];
        let (best, &best_score) = self
            .scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
            .expect("three experts");
        if best != self.current && best_score > cur * self.cfg.switch_factor + SWITCH_SLACK {
            self.current = best;
            self.switches += 1;
            if EXPERTS[best] == Expert::Pmru {
                self.core.pmru_takes_over();
            }
        }
    }

    fn halve_sampling(&mut self) {
        while self.threshold > 1 && self.shadows.iter().any(|s| s.len() > self.cfg.max_sampled) {
            self.threshold /= 2;
            let t = self.threshold;
            let hasher = self.hasher.clone();
            for s in &mut self.shadows {
                s.retain(|k| {
                    let h = hasher.hash_one(k);
                    ((h ^ (h >> 32)) & 0xffff_ffff) < t
                });
            }
            self.set_shadow_budgets();
        }
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> EvictionPolicy<K> for Adaptive<K> {
    fn name(&self) -> &'static str {
        "adaptive"
    }

    fn on_hit(&mut self, key: &K) {
        self.in_burst = false;
        self.core.on_hit(key);
        if let Some(size) = self.core.size_of(key) {
            self.observe(key, size);
        }
    }

    fn on_insert(&mut self, key: K, size: u64) {
        self.in_burst = false;
        self.observe(&key, size);
        self.core.on_insert(key, size);
    }

    fn on_remove(&mut self, key: &K) {
        self.core.on_remove(key);
        for s in &mut self.shadows {
            s.remove(key);
        }
    }

    fn evict(&mut self) -> Option<K> {
        if !self.in_burst {
            self.in_burst = true;
            let tracked = self.core.tracked_bytes();
            if tracked != self.budget {
                self.budget = tracked;
                self.set_shadow_budgets();
            }
        }
        match EXPERTS[self.current] {
            Expert::S3Fifo => self.core.evict_s3fifo(),
            Expert::Lru => self.core.evict_by_recency(false),
            Expert::Pmru => self.core.evict_pmru(),
        }
    }

    fn tracked_bytes(&self) -> u64 {
        self.core.tracked_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loop over 100 keys with room for 50: (protected) MRU keeps half the loop, LRU and
    /// S3-FIFO keep almost nothing, so the policy must move to protected MRU.
    #[test]
    fn loop_larger_than_cache_selects_pmru() {
        let mut c = KeyCache::new(Box::new(Adaptive::<u32>::new()), 50);
        let mut hits = 0;
        for round in 0..20 {
            for k in 0..100u32 {
                if c.access(&k, 1) && round >= 10 {
                    hits += 1;
                }
            }
        }
        assert!(hits >= 10 * 45, "hits over the last 10 loops: {hits}");
    }

    /// A hot set that fits, interleaved with a one-time scan: the hot set must stay cached.
    #[test]
    fn hot_set_with_scan_stays_cached() {
        let mut c = KeyCache::new(Box::new(Adaptive::<u32>::new()), 100);
        let mut hot_hits = 0;
        for i in 0..20_000u32 {
            let hot = i % 50;
            if c.access(&hot, 1) && i >= 10_000 {
                hot_hits += 1;
            }
            c.access(&(1000 + i), 1); // never read again
        }
        assert!(hot_hits >= 9_900, "hot hits {hot_hits}");
    }

    #[test]
    fn sampling_rate_halves_on_large_caches() {
        let mut p = Adaptive::<u32>::with_max_sampled(64);
        for k in 0..5000u32 {
            if p.tracked_bytes() + 1 > 1000 {
                assert!(p.evict().is_some());
            }
            p.on_insert(k, 1);
            if k % 3 == 0 {
                p.on_hit(&k);
            }
        }
        assert_eq!(p.tracked_bytes(), 1000);
        assert!(
            p.sampling_rate() <= 1.0 / 16.0,
            "rate {}",
            p.sampling_rate()
        );
        assert!(p.shadows.iter().all(|s| s.len() <= 64));
    }
}
