//! Metadata answers that were in flight while this mount changed the object must not win over
//! what the mount knows: a HEAD sent before our own upload and answered after it used to be
//! cached, so the mount showed (and served) the previous version, and the next overwrite was
//! uploaded with a stale condition and stored as a false conflict copy.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_gateway::gateway::{Gateway, GatewayConfig};
use cairn_gateway::namespace::ROOT_INO;
use cairn_gateway::store::{collect_stream, BlobStore, PutCondition};
use cairn_gateway::write::WriteConfig;
use common::{read_all, HeldHead, TestStore};
use tokio::sync::Notify;

fn config(journal: &std::path::Path) -> GatewayConfig {
    let mut w = WriteConfig::new(journal.to_path_buf());
    w.flush_delay = Duration::from_millis(5);
    let mut cfg = GatewayConfig {
        write: Some(w),
        ..GatewayConfig::default()
    };
    // Long enough that nothing is revalidated by itself during the test.
    cfg.namespace.metadata_ttl = Duration::from_secs(600);
    cfg.namespace.negative_ttl = Duration::from_secs(600);
    cfg
}

/// Truncates `name` (in the root) to `data` through the gateway, by name (create) or, like
/// the kernel with a cached entry, by inode (open with O_TRUNC), and waits until it is in the
/// bucket and the local copy is gone (the mount then answers from its metadata).
async fn overwrite(gw: &Gateway, name: &str, ino: Option<u64>, data: &[u8]) {
    let opened = match ino {
        Some(ino) => gw.open(ino, true, true).await.expect("open O_TRUNC"),
        None => {
            gw.create(ROOT_INO, name, 0o644, false, true, None)
                .await
                .expect("create")
                .1
        }
    };
    gw.write(opened.fh, 0, data).await.expect("write");
    gw.release(opened.fh);
    let wb = gw.write_back().unwrap();
    wb.flush_all(Duration::from_secs(30), |_, _| {})
        .await
        .expect("flush");
    for _ in 0..500 {
        if wb.entry(name).is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name} is still local after its upload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_answered_after_our_upload_does_not_bring_back_the_old_version() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(TestStore::new(None));
    let v1 = vec![1u8; 150_000];
    let v2 = vec![2u8; 168_000];
    let v3 = vec![3u8; 99_000];
    store
        .put("p.bin", Bytes::from(v1.clone()), PutCondition::None)
        .await
        .unwrap();
    let gw = Gateway::new(store.clone(), "mem", String::new(), config(tmp.path())).unwrap();

    // A lookup whose HEAD sees v1 and is answered late.
    let (answered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    store.hold_next_head(HeldHead {
        key: "p.bin".into(),
        answered: answered.clone(),
        release: release.clone(),
    });
    let slow = {
        let gw = gw.clone();
        tokio::spawn(async move { gw.lookup(ROOT_INO, "p.bin").await })
    };
    answered.notified().await;

    // Meanwhile this mount replaces the object with v2.
    overwrite(&gw, "p.bin", None, &v2).await;
    release.notify_one();
    let ino = slow.await.unwrap().expect("slow lookup").ino;

    // Attributes are cached (as the kernel caches the lookup's answer): they must be v2's.
    let a = gw.getattr(ino).await.unwrap();
    assert_eq!(
        a.size,
        v2.len() as u64,
        "the late answer (v1) replaced what the upload told"
    );
    assert!(read_all(&gw, ino).await == v2, "reads serve v2");

    // The next overwrite is conditional on v2, not on the stale v1: no conflict copy.
    overwrite(&gw, "p.bin", Some(ino), &v3).await;
    let page = store.list("", None, None).await.unwrap();
    let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["p.bin"], "no conflict copy");
    let got = collect_stream(
        store
            .get_range("p.bin", 0..v3.len() as u64, None)
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(got == v3, "the bucket holds v3");
    gw.shutdown(Duration::from_secs(30)).await.unwrap();
}
