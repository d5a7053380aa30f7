//! Metadata answers that were in flight while this mount changed the object must not win over
//! what the mount knows: a HEAD sent before our own upload and answered after it used to be
//! cached, so the mount showed (and served) the previous version, and the next overwrite was
//! uploaded with a stale condition and stored as a false conflict copy.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn_gateway::gateway::{Gateway, GatewayConfig};
use cairn_gateway::namespace::ROOT_INO;
use cairn_gateway::store::{
    collect_stream, BlobStore, ByteStream, ListPage, MultipartWriter, ObjectInfo, ObjectStoreBlob,
    PutCondition, StoreResult,
};
use cairn_gateway::write::WriteConfig;
use tokio::sync::Notify;

/// One HEAD of a key that gets its answer from the store at once and then holds it until
/// released, like a response delayed in flight: (key, answered, release).
#[derive(Debug)]
struct HeldHead(String, Arc<Notify>, Arc<Notify>);

/// The in-memory store, with an optional held HEAD.
#[derive(Debug)]
struct Store {
    inner: ObjectStoreBlob,
    hold: Mutex<Option<HeldHead>>,
}

#[async_trait::async_trait]
impl BlobStore for Store {
    async fn list(
        &self,
        prefix: &str,
        token: Option<String>,
        max: Option<usize>,
    ) -> StoreResult<ListPage> {
        self.inner.list(prefix, token, max).await
    }
    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        let held = {
            let mut h = self.hold.lock().unwrap();
            match &*h {
                Some(HeldHead(k, _, _)) if k == key => h.take(),
                _ => None,
            }
        };
        let answer = self.inner.head(key).await;
        if let Some(HeldHead(_, answered, release)) = held {
            answered.notify_one();
            release.notified().await;
        }
        answer
    }
    async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<ByteStream> {
        self.inner.get_range(key, range, if_match).await
    }
    async fn put(&self, key: &str, data: Bytes, cond: PutCondition) -> StoreResult<ObjectInfo> {
        self.inner.put(key, data, cond).await
    }
    async fn put_multipart(&self, key: &str) -> StoreResult<Box<dyn MultipartWriter>> {
        self.inner.put_multipart(key).await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }
    async fn copy(&self, from: &str, to: &str) -> StoreResult<()> {
        self.inner.copy(from, to).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

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

async fn read_all(gw: &Gateway, ino: u64) -> Vec<u8> {
    let opened = gw.open(ino, false, false).await.expect("open");
    let mut out = Vec::new();
    loop {
        let b = gw
            .read(opened.fh, out.len() as u64, 1 << 20)
            .await
            .expect("read");
        if b.is_empty() {
            break;
        }
        out.extend_from_slice(&b);
    }
    gw.release(opened.fh);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_answered_after_our_upload_does_not_bring_back_the_old_version() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(Store {
        inner: ObjectStoreBlob::from_store(
            Arc::new(object_store::memory::InMemory::new()),
            "memory",
        ),
        hold: Mutex::new(None),
    });
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
    *store.hold.lock().unwrap() = Some(HeldHead("p.bin".into(), answered.clone(), release.clone()));
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
