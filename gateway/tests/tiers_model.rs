//! Model test of the L1 + L2 composition behind the block fetcher: random reads of random
//! object versions, budget changes of both tiers, restarts (new RAM tier, disk tier reopened
//! from its directory), damaged block files and replaced objects. Every read must return the
//! bytes of the version asked for, and neither tier may ever hold more than its budget (the disk
//! tier checked both by its own count and by the block files on disk).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_cache::policy::PolicyKind;
use cairn_cache::{L1Cache, L2Cache, L2Config};
use cairn_gateway::metrics::Metrics;
use cairn_gateway::read::{BlockFetcher, FetchConfig, ObjectVersion};
use cairn_gateway::store::{BlobStore, ObjectStoreBlob, PutCondition};
use proptest::prelude::*;

const BLOCK: u64 = 4096;

#[derive(Clone, Debug)]
enum Op {
    /// Read blocks `first..=first+n` of object `obj`.
    Read {
        obj: usize,
        first: u64,
        n: u64,
    },
    /// Replace object `obj` with new content (a new version).
    Replace {
        obj: usize,
        len: u64,
        seed: u8,
    },
    ResizeL1(u64),
    ResizeL2(u64),
    Restart,
    /// Flip a byte in (or truncate) the `nth` block file on disk.
    Damage {
        nth: usize,
        truncate: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..4usize, 0..12u64, 0..6u64).prop_map(|(obj, first, n)| Op::Read { obj, first, n }),
        1 => (0..4usize, 1..12 * BLOCK, any::<u8>()).prop_map(|(obj, len, seed)| Op::Replace { obj, len, seed }),
        1 => (0..16u64).prop_map(|b| Op::ResizeL1(b * BLOCK)),
        1 => (0..24u64).prop_map(|b| Op::ResizeL2(b * BLOCK)),
        1 => Just(Op::Restart),
        1 => (0..50usize, any::<bool>()).prop_map(|(nth, truncate)| Op::Damage { nth, truncate }),
    ]
}

fn content(obj: usize, len: u64, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed ^ obj as u8))
            .collect::<Vec<u8>>(),
    )
}

struct Tiers {
    fetcher: Arc<BlockFetcher>,
    l1: Arc<L1Cache>,
    l2: Arc<L2Cache>,
}

fn l2_config(dir: &Path, budget: u64) -> L2Config {
    L2Config {
        dir: dir.to_path_buf(),
        budget,
        min_free: 0,
        policy: PolicyKind::Adaptive,
    }
}

async fn open_tiers(store: &Arc<dyn BlobStore>, dir: &Path, l1: u64, l2: u64) -> Tiers {
    // The previous disk tier's writer task may still hold the directory for a moment.
    let mut tries = 0;
    let l2 = loop {
        match L2Cache::open(&l2_config(dir, l2)) {
            Ok(t) => break Arc::new(t),
            Err(e) if tries < 500 => {
                let _ = e;
                tries += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("disk tier reopens: {e}"),
        }
    };
    let l1 = Arc::new(L1Cache::new(l1));
    let fetcher = BlockFetcher::new(
        store.clone(),
        l1.clone(),
        Some(l2.clone()),
        FetchConfig {
            block_size: BLOCK,
            max_request: 4 * BLOCK,
            max_inflight_bytes: 64 * BLOCK,
        },
        Arc::from("mem"),
        Arc::new(Metrics::new()),
    );
    Tiers { fetcher, l1, l2 }
}

fn block_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir.join("blocks")) else {
        return out;
    };
    for sub in rd.flatten() {
        if let Ok(rd2) = std::fs::read_dir(sub.path()) {
            for f in rd2.flatten() {
                if f.path().extension().is_some_and(|e| e == "blk") {
                    out.push(f.path());
                }
            }
        }
    }
    out.sort();
    out
}

async fn run(ops: Vec<Op>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("l2");
    let store: Arc<dyn BlobStore> = Arc::new(ObjectStoreBlob::from_store(
        Arc::new(object_store::memory::InMemory::new()),
        "memory",
    ));
    let mut versions: HashMap<usize, (ObjectVersion, Bytes)> = HashMap::new();
    for obj in 0..4 {
        let data = content(obj, 5 * BLOCK + 100 * obj as u64, 0);
        let key = format!("obj{obj}");
        let info = store
            .put(&key, data.clone(), PutCondition::None)
            .await
            .unwrap();
        let v = ObjectVersion {
            key: Arc::from(key.as_str()),
            etag: info.etag.map(|e| Arc::from(e.as_str())),
            size: data.len() as u64,
        };
        versions.insert(obj, (v, data));
    }
    let (mut l1_budget, mut l2_budget) = (8 * BLOCK, 12 * BLOCK);
    let mut t = open_tiers(&store, &dir, l1_budget, l2_budget).await;
    for op in ops {
        match op {
            Op::Read { obj, first, n } => {
                let (v, data) = &versions[&obj];
                let last_block = (v.size - 1) / BLOCK;
                if first > last_block {
                    continue;
                }
                let last = (first + n).min(last_block);
                let blocks = futures::future::try_join_all(t.fetcher.blocks(v, first, last))
                    .await
                    .expect("blocks are served");
                for (i, b) in (first..=last).zip(blocks) {
                    let start = (i * BLOCK) as usize;
                    let end = ((i + 1) * BLOCK).min(v.size) as usize;
                    assert_eq!(&b[..], &data[start..end], "block {i} of obj{obj}");
                }
            }
            Op::Replace { obj, len, seed } => {
                let data = content(obj, len, seed.wrapping_add(1));
                let key = format!("obj{obj}");
                let info = store
                    .put(&key, data.clone(), PutCondition::None)
                    .await
                    .unwrap();
                let v = ObjectVersion {
                    key: Arc::from(key.as_str()),
                    etag: info.etag.map(|e| Arc::from(e.as_str())),
                    size: data.len() as u64,
                };
                versions.insert(obj, (v, data));
            }
            Op::ResizeL1(b) => {
                l1_budget = b;
                t.l1.resize(b);
            }
            Op::ResizeL2(b) => {
                l2_budget = b;
                let l2 = t.l2.clone();
                tokio::task::spawn_blocking(move || l2.resize(b))
                    .await
                    .unwrap();
            }
            Op::Restart => {
                drop(t);
                t = open_tiers(&store, &dir, l1_budget, l2_budget).await;
            }
            Op::Damage { nth, truncate } => {
                let files = block_files(&dir);
                if files.is_empty() {
                    continue;
                }
                let f = &files[nth % files.len()];
                let Ok(mut bytes) = std::fs::read(f) else {
                    continue;
                };
                if bytes.is_empty() {
                    continue;
                }
                if truncate {
                    bytes.truncate(bytes.len() / 2);
                } else {
                    let i = nth * 7919 % bytes.len();
                    bytes[i] ^= 0x5a;
                }
                let _ = std::fs::write(f, &bytes);
            }
        }
        assert!(t.l1.used() <= t.l1.budget(), "L1 over budget");
        assert!(
            t.l2.used() <= t.l2.budget(),
            "L2 over its budget by its own count"
        );
        // Block files on disk: data plus a small header each; never more than the budget
        // allows (headers are counted in the tier's own accounting).
        let on_disk: u64 = block_files(&dir)
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        assert!(
            on_disk <= t.l2.budget() + 2 * BLOCK,
            "disk tier files hold {on_disk} bytes for a {} budget",
            t.l2.budget()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]
    #[test]
    fn reads_are_exact_and_tiers_stay_in_budget(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run(ops));
    }
}
