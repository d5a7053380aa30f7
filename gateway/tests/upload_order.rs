//! Bucket writes of one key never overlap: files renamed over each other while their uploads
//! are in flight (slow PUTs) must not race, or an older version can land last and win (or a
//! false conflict copy appear). The store counts overlapping requests per key; the bucket must
//! end up equal to the model.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_gateway::gateway::{Gateway, GatewayConfig};
use cairn_gateway::namespace::ROOT_INO;
use cairn_gateway::store::{collect_stream, BlobStore};
use cairn_gateway::write::WriteConfig;
use common::TestStore;

/// splitmix64.
fn next(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renames_over_files_being_uploaded_keep_the_newest_version() {
    // RUST_LOG=cairn_gateway=debug shows the flusher's decisions when this fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(TestStore::new(Some(Duration::from_millis(8))));
    let mut w = WriteConfig::new(tmp.path().join("journal"));
    w.flush_delay = Duration::from_millis(1);
    w.upload_concurrency = 4;
    let cfg = GatewayConfig {
        write: Some(w),
        ..GatewayConfig::default()
    };
    let gw = Gateway::new(store.clone(), "mem", String::new(), cfg).unwrap();
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut rng = 0x0dd5_eed5_u64;
    let names = ["a", "b", "c", "d", "e"];
    for step in 0..300u32 {
        let r = next(&mut rng);
        let name = names[(r % names.len() as u64) as usize];
        if r % 3 == 0 || model.len() < 2 {
            let data = vec![(step % 251) as u8; 1000 + (r >> 20) as usize % 60_000];
            let (_, opened) = gw
                .create(ROOT_INO, name, 0o644, false, true, None)
                .await
                .expect("create");
            gw.write(opened.fh, 0, &data).await.expect("write");
            gw.release(opened.fh);
            model.insert(name.to_string(), data);
        } else {
            let from: Vec<String> = model.keys().cloned().collect();
            let from = &from[(r >> 8) as usize % from.len()];
            if from == name {
                continue;
            }
            gw.rename(ROOT_INO, from, ROOT_INO, name, false)
                .await
                .expect("rename");
            let data = model.remove(from).unwrap();
            model.insert(name.to_string(), data);
        }
        // Let uploads start (and be overtaken by the next renames).
        tokio::time::sleep(Duration::from_millis(next(&mut rng) % 6)).await;
    }
    gw.write_back()
        .unwrap()
        .flush_all(Duration::from_secs(60), |_, _| {})
        .await
        .expect("flush");
    let overlaps = store.overlaps();
    assert!(
        overlaps.is_empty(),
        "writes of one key overlapped {} times (first: {:?})",
        overlaps.len(),
        overlaps.first()
    );
    let mut bucket = BTreeMap::new();
    for o in store.list("", None, None).await.unwrap().objects {
        let body = collect_stream(store.get_range(&o.key, 0..o.size, None).await.unwrap())
            .await
            .unwrap();
        bucket.insert(o.key, body.to_vec());
    }
    let sizes = |m: &BTreeMap<String, Vec<u8>>| -> Vec<(String, usize, u8)> {
        m.iter()
            .map(|(k, v)| (k.clone(), v.len(), v.first().copied().unwrap_or(0)))
            .collect()
    };
    assert_eq!(sizes(&bucket), sizes(&model), "bucket after the drain");
    gw.shutdown(Duration::from_secs(30)).await.unwrap();
}
