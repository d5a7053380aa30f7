//! Model tests: every policy against a plain map of the keys it should be tracking.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    /// Admit `key` with `size` bytes (a hit if already tracked).
    Insert(u8, u16),
    /// Read `key`: `on_hit` if tracked, else `on_miss`.
    Read(u8),
    /// `on_remove(key)`, tracked or not.
    Remove(u8),
    Evict,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..40, 1u16..2000).prop_map(|(k, s)| Op::Insert(k, s)),
        4 => (0u8..40).prop_map(Op::Read),
        1 => (0u8..40).prop_map(Op::Remove),
        3 => Just(Op::Evict),
    ]
}

/// Drives `kind` with `ops` and checks it against the model: `evict` only returns tracked keys
/// (each once), `None` only when nothing is tracked, `tracked_bytes` is the sum of the tracked
/// keys' sizes after every step, and draining returns every remaining key exactly once.
fn check_against_model(kind: PolicyKind, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut p = new_policy::<u8>(kind);
    prop_assert_eq!(p.name(), kind.name());
    let mut model: HashMap<u8, u64> = HashMap::new();
    for op in ops {
        match *op {
            Op::Insert(k, s) => match model.entry(k) {
                Entry::Occupied(_) => p.on_hit(&k),
                Entry::Vacant(v) => {
                    p.on_miss(&k);
                    p.on_insert(k, s as u64);
                    v.insert(s as u64);
                }
            },
            Op::Read(k) => {
                if model.contains_key(&k) {
                    p.on_hit(&k);
                } else {
                    p.on_miss(&k);
                }
            }
            Op::Remove(k) => {
                p.on_remove(&k);
                model.remove(&k);
            }
            Op::Evict => match p.evict() {
                Some(v) => prop_assert!(
                    model.remove(&v).is_some(),
                    "{} evicted {} which it was not tracking",
                    kind,
                    v
                ),
                None => prop_assert!(model.is_empty(), "{} returned None with {:?}", kind, model),
            },
        }
        prop_assert_eq!(
            p.tracked_bytes(),
            model.values().sum::<u64>(),
            "{} after {:?}",
            kind,
            op
        );
    }
    let mut drained = HashSet::new();
    while let Some(v) = p.evict() {
        prop_assert!(
            model.remove(&v).is_some(),
            "{} drained untracked {}",
            kind,
            v
        );
        prop_assert!(drained.insert(v), "{} drained {} twice", kind, v);
    }
    prop_assert!(model.is_empty(), "{} never evicted {:?}", kind, model);
    prop_assert_eq!(p.tracked_bytes(), 0);
    Ok(())
}

#[derive(Debug, Clone)]
enum CacheOp {
    Access(u8, u16),
    Remove(u8),
    Budget(u16),
}

fn cache_op() -> impl Strategy<Value = CacheOp> {
    prop_oneof![
        8 => (0u8..60, 1u16..600).prop_map(|(k, s)| CacheOp::Access(k, s)),
        1 => (0u8..60).prop_map(CacheOp::Remove),
        1 => (0u16..5000).prop_map(CacheOp::Budget),
    ]
}

/// Drives `kind` through a byte-budgeted [`KeyCache`]: the budget is never exceeded, the policy
/// tracks exactly the cached bytes, and a key's size never changes (sizes are per key).
fn check_budget(kind: PolicyKind, ops: &[CacheOp]) -> Result<(), TestCaseError> {
    let mut c = KeyCache::new(new_policy::<u8>(kind), 2000);
    let size_of = |k: u8, s: u16| (s as u64 + k as u64 * 7) % 600 + 1;
    for op in ops {
        match *op {
            CacheOp::Access(k, s) => {
                let was = c.contains(&k);
                let hit = c.access(&k, size_of(k, s));
                prop_assert_eq!(hit, was);
            }
            CacheOp::Remove(k) => {
                c.remove(&k);
                prop_assert!(!c.contains(&k));
            }
            CacheOp::Budget(b) => c.set_budget(b as u64),
        }
        prop_assert!(
            c.used() <= c.budget(),
            "{}: {} > {}",
            kind,
            c.used(),
            c.budget()
        );
        prop_assert_eq!(c.used(), c.policy().tracked_bytes());
    }
    Ok(())
}

macro_rules! model_tests {
    ($($name:ident => $kind:expr),* $(,)?) => {
        mod model {
            use super::*;
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(200))]
                $(
                    #[test]
                    fn $name(ops in proptest::collection::vec(op(), 1..300),
                             cops in proptest::collection::vec(cache_op(), 1..300)) {
                        check_against_model($kind, &ops)?;
                        check_budget($kind, &cops)?;
                    }
                )*
            }
        }
    };
}

model_tests! {
    lru => PolicyKind::Lru,
    mru => PolicyKind::Mru,
    pmru => PolicyKind::Pmru,
    sieve => PolicyKind::Sieve,
    s3fifo => PolicyKind::S3Fifo,
    arc => PolicyKind::Arc,
    adaptive => PolicyKind::Adaptive,
}

/// The adaptive policy with tiny shadows, so that sampling and rate halving are exercised too.
#[test]
fn adaptive_with_sampling_against_model() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(100));
    runner
        .run(&proptest::collection::vec(cache_op(), 1..600), |ops| {
            let mut c = KeyCache::new(Box::new(Adaptive::<u8>::with_max_sampled(64)), 2000);
            for op in &ops {
                match *op {
                    CacheOp::Access(k, s) => {
                        c.access(&k, s as u64 % 97 + 1);
                    }
                    CacheOp::Remove(k) => {
                        c.remove(&k);
                    }
                    CacheOp::Budget(b) => c.set_budget(b as u64),
                }
                prop_assert!(c.used() <= c.budget());
                prop_assert_eq!(c.used(), c.policy().tracked_bytes());
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn names_round_trip() {
    for k in PolicyKind::ALL {
        assert_eq!(k.to_string().parse::<PolicyKind>(), Ok(k));
        assert_eq!(new_policy::<u32>(k).name(), k.name());
    }
    assert_eq!("S3-FIFO".parse::<PolicyKind>(), Ok(PolicyKind::S3Fifo));
    assert!("clock".parse::<PolicyKind>().is_err());
    assert_eq!(PolicyKind::default(), PolicyKind::Adaptive);
}

/// Evicting after the insert (instead of before) is allowed: the victim may be the new key.
#[test]
fn evict_after_insert_is_supported() {
    for k in PolicyKind::ALL {
        let mut p = new_policy::<u32>(k);
        let mut tracked = HashSet::new();
        for key in 0..500u32 {
            p.on_insert(key % 170, 1);
            tracked.insert(key % 170);
            if key % 3 == 0 {
                p.on_hit(&(key % 7));
            }
            while p.tracked_bytes() > 100 {
                let v = p.evict().expect("over budget but nothing to evict");
                assert!(tracked.remove(&v), "{k}: evicted untracked {v}");
            }
            // Keep the model honest for keys re-inserted while still tracked.
            if tracked.len() as u64 != p.tracked_bytes() {
                panic!(
                    "{k}: {} keys tracked, {} bytes",
                    tracked.len(),
                    p.tracked_bytes()
                );
            }
        }
    }
}
