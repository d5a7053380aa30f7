//! Helpers shared by the gateway's integration tests: an in-memory store whose requests can be
//! held back or slowed down (to stage races with the mount's own changes), and reading a file
//! whole through the gateway.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn_gateway::gateway::Gateway;
use cairn_gateway::store::{
    BlobStore, ByteStream, ListPage, MultipartWriter, ObjectInfo, ObjectStoreBlob, PutCondition,
    StoreResult,
};
use tokio::sync::Notify;

/// One HEAD of `key` that gets its answer from the store at once and then holds it until
/// `release` is notified (`answered` is notified first), like a response delayed in flight.
#[derive(Debug)]
pub struct HeldHead {
    pub key: String,
    pub answered: Arc<Notify>,
    pub release: Arc<Notify>,
}

/// The in-memory store with test hooks: an optional held HEAD, and optional slow writes (PUT,
/// DELETE, COPY) that note when two writes of one key overlap.
#[derive(Debug)]
pub struct TestStore {
    inner: ObjectStoreBlob,
    hold: Mutex<Option<HeldHead>>,
    write_delay: Option<Duration>,
    in_flight: Mutex<HashMap<String, u32>>,
    overlaps: Mutex<Vec<String>>,
}

impl TestStore {
    /// An empty store; writes take `write_delay` each when given.
    pub fn new(write_delay: Option<Duration>) -> Self {
        Self {
            inner: ObjectStoreBlob::from_store(
                Arc::new(object_store::memory::InMemory::new()),
                "memory",
            ),
            hold: Mutex::new(None),
            write_delay,
            in_flight: Mutex::new(HashMap::new()),
            overlaps: Mutex::new(Vec::new()),
        }
    }

    /// Holds back the answer of the next HEAD of `h.key`.
    pub fn hold_next_head(&self, h: HeldHead) {
        *self.hold.lock().unwrap() = Some(h);
    }

    /// Keys written by two requests at the same time, once per overlap seen.
    pub fn overlaps(&self) -> Vec<String> {
        self.overlaps.lock().unwrap().clone()
    }

    async fn writing<T>(&self, key: &str, f: impl std::future::Future<Output = T>) -> T {
        {
            let mut m = self.in_flight.lock().unwrap();
            let n = m.entry(key.to_string()).or_default();
            *n += 1;
            if *n > 1 {
                self.overlaps.lock().unwrap().push(key.to_string());
            }
        }
        if let Some(d) = self.write_delay {
            tokio::time::sleep(d).await;
        }
        let r = f.await;
        *self.in_flight.lock().unwrap().get_mut(key).unwrap() -= 1;
        r
    }
}

#[async_trait::async_trait]
impl BlobStore for TestStore {
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
                Some(held) if held.key == key => h.take(),
                _ => None,
            }
        };
        let answer = self.inner.head(key).await;
        if let Some(h) = held {
            h.answered.notify_one();
            h.release.notified().await;
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
        self.writing(key, self.inner.put(key, data, cond)).await
    }
    async fn put_multipart(&self, key: &str) -> StoreResult<Box<dyn MultipartWriter>> {
        self.inner.put_multipart(key).await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.writing(key, self.inner.delete(key)).await
    }
    async fn copy(&self, from: &str, to: &str) -> StoreResult<()> {
        self.writing(to, self.inner.copy(from, to)).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// The whole content of file `ino`, read through the gateway in 1 MiB reads.
pub async fn read_all(gw: &Gateway, ino: u64) -> Vec<u8> {
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
