//! A deterministic trace simulator for the eviction policies.
//!
//! A [`Trace`] is a list of `(key, size)` accesses. [`replay`] runs one through a [`KeyCache`]
//! (insert on miss, evict until the new key fits) with a byte budget and counts hits from
//! `trace.warmup` on, by object and by byte. [`belady`] gives the offline reference (evict the
//! key whose next use is farthest). The workload generators are seeded and use their own PRNG,
//! so every run of the same build prints the same numbers.

mod report;
mod trace;
mod workloads;

pub use report::{default_scenarios, markdown, run_scenarios, Cell, Row, Scenario, ScenarioSet};
pub use trace::load_block_trace;
pub use workloads::{
    dataset_switch, epochs_with_hot_set, scan_with_hot_set, shuffled_epochs, zipf, EpochSpec,
};

use std::collections::{BTreeSet, HashMap};

use crate::policy::{new_policy, KeyCache, PolicyKind};

/// One access: a block key and its size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub key: u64,
    pub size: u32,
}

/// A sequence of accesses; hits are counted from index `warmup` on.
#[derive(Clone, Debug)]
pub struct Trace {
    pub name: String,
    pub accesses: Vec<Access>,
    pub warmup: usize,
}

impl Trace {
    /// Bytes of the distinct keys (each key counted once, at its first size).
    pub fn footprint(&self) -> u64 {
        let mut seen = HashMap::new();
        for a in &self.accesses {
            seen.entry(a.key).or_insert(a.size as u64);
        }
        seen.values().sum()
    }

    /// Number of distinct keys.
    pub fn distinct(&self) -> usize {
        let mut seen = std::collections::HashSet::new();
        self.accesses.iter().filter(|a| seen.insert(a.key)).count()
    }
}

/// Hits and totals over the measured part of a trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub hits: u64,
    pub accesses: u64,
    pub hit_bytes: u64,
    pub bytes: u64,
}

impl Outcome {
    fn count(&mut self, hit: bool, size: u64) {
        self.accesses += 1;
        self.bytes += size;
        if hit {
            self.hits += 1;
            self.hit_bytes += size;
        }
    }

    /// Object hit ratio in [0, 1].
    pub fn hit_ratio(&self) -> f64 {
        self.hits as f64 / self.accesses.max(1) as f64
    }

    /// Byte hit ratio in [0, 1].
    pub fn byte_hit_ratio(&self) -> f64 {
        self.hit_bytes as f64 / self.bytes.max(1) as f64
    }
}

/// Replays `trace` against a cache of `budget` bytes evicting with `kind`.
pub fn replay(trace: &Trace, kind: PolicyKind, budget: u64) -> Outcome {
    let mut cache = KeyCache::new(new_policy::<u64>(kind), budget);
    let mut out = Outcome::default();
    for (i, a) in trace.accesses.iter().enumerate() {
        let hit = cache.access(&a.key, a.size as u64);
        if i >= trace.warmup {
            out.count(hit, a.size as u64);
        }
        debug_assert!(cache.used() <= budget);
    }
    out
}

/// Belady's rule with byte sizes: on a miss admit the key, then evict the keys whose next use
/// is farthest (possibly the new key) until the budget holds. Optimal for equal sizes, a strong
/// reference otherwise; it needs the future, so it is not a policy.
pub fn belady(trace: &Trace, budget: u64) -> Outcome {
    let n = trace.accesses.len();
    let mut next_use = vec![usize::MAX; n];
    let mut last: HashMap<u64, usize> = HashMap::new();
    for i in (0..n).rev() {
        let k = trace.accesses[i].key;
        if let Some(&j) = last.get(&k) {
            next_use[i] = j;
        }
        last.insert(k, i);
    }
    let mut by_next: BTreeSet<(usize, u64)> = BTreeSet::new();
    let mut resident: HashMap<u64, (usize, u64)> = HashMap::new();
    let mut used = 0u64;
    let mut out = Outcome::default();
    for (i, a) in trace.accesses.iter().enumerate() {
        let size = a.size as u64;
        let hit = if let Some(&(nu, s)) = resident.get(&a.key) {
            by_next.remove(&(nu, a.key));
            by_next.insert((next_use[i], a.key));
            resident.insert(a.key, (next_use[i], s));
            true
        } else {
            if size <= budget {
                by_next.insert((next_use[i], a.key));
                resident.insert(a.key, (next_use[i], size));
                used += size;
                while used > budget {
                    let (_, k) = by_next.pop_last().expect("over budget with nothing cached");
                    used -= resident.remove(&k).expect("indexed key is resident").1;
                }
            }
            false
        };
        if i >= trace.warmup {
            out.count(hit, size);
        }
    }
    out
}

/// A small deterministic PRNG (xoshiro256**, seeded through SplitMix64): the numbers in
/// `docs/BENCHMARKS.md` must not move when a dependency changes its generator.
#[derive(Clone, Debug)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n) (n > 0), without modulo bias worth caring about at these sizes.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests;
