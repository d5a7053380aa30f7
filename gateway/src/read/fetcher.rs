use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use cairn_cache::{BlockKey, L1Cache, L2Cache};
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::{FsError, FsResult};
use crate::metrics::Metrics;
use crate::store::{BlobStore, RetryPolicy, StoreError};

/// One version of one object, as pinned by an open file handle.
#[derive(Clone, Debug)]
pub struct ObjectVersion {
    /// Bucket key.
    pub key: Arc<str>,
    /// ETag (or version token) read at open; every GET of the handle is conditional on it.
    pub etag: Option<Arc<str>>,
    /// Object size at open.
    pub size: u64,
}

/// Sizes and limits of the fetcher.
#[derive(Clone, Copy, Debug)]
pub struct FetchConfig {
    /// Cache block size in bytes.
    pub block_size: u64,
    /// Largest single ranged GET (a run of consecutive missing blocks).
    pub max_request: u64,
    /// Bound on bytes of GETs in flight across the mount.
    pub max_inflight_bytes: u64,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            block_size: 1 << 20,
            max_request: 16 << 20,
            max_inflight_bytes: 1 << 30,
        }
    }
}

/// A block that is ready or on its way; clones share the one fetch.
pub type BlockFuture = Shared<BoxFuture<'static, FsResult<Bytes>>>;

/// Most blocks waiting to be written to the disk tier; past it new blocks skip L2.
const L2_QUEUE: usize = 256;
/// Disk-tier writes in flight at once.
const L2_WRITERS: usize = 4;

/// Serves blocks from the RAM cache, then the disk cache, or fetches them, once, with ranged GETs.
pub struct BlockFetcher {
    store: Arc<dyn BlobStore>,
    cache: Arc<L1Cache>,
    l2: Option<Arc<L2Cache>>,
    l2_writer: Option<mpsc::Sender<(BlockKey, Bytes)>>,
    cfg: FetchConfig,
    namespace_id: Arc<str>,
    inflight: Mutex<HashMap<BlockKey, BlockFuture>>,
    memory: Arc<Semaphore>,
    retry: RetryPolicy,
    metrics: Arc<Metrics>,
}

struct Pending {
    index: u64,
    tx: oneshot::Sender<FsResult<Bytes>>,
}

impl BlockFetcher {
    /// A fetcher reading from `store`, caching in `cache` (RAM) and `l2` (disk). `namespace_id`
    /// qualifies cache keys (store + bucket) so two buckets never share blocks. Must be called
    /// inside a tokio runtime (it starts the disk-cache writer task).
    pub fn new(
        store: Arc<dyn BlobStore>,
        cache: Arc<L1Cache>,
        l2: Option<Arc<L2Cache>>,
        cfg: FetchConfig,
        namespace_id: Arc<str>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        assert!(cfg.block_size > 0 && cfg.max_request >= cfg.block_size);
        let permits = cfg
            .max_inflight_bytes
            .max(cfg.max_request)
            .min(usize::MAX as u64 >> 4);
        let l2_writer = l2.clone().map(|tier| {
            let (tx, mut rx) = mpsc::channel::<(BlockKey, Bytes)>(L2_QUEUE);
            tokio::spawn(async move {
                // A few writes at once: one writer at a time fell behind a 400 MB/s fill on 2
                // cores (file creation waits on the file system), and blocks past the queue
                // skip the disk tier for good.
                let writers = Arc::new(Semaphore::new(L2_WRITERS));
                while let Some((key, data)) = rx.recv().await {
                    let Ok(permit) = writers.clone().acquire_owned().await else {
                        break;
                    };
                    let tier = tier.clone();
                    tokio::task::spawn_blocking(move || {
                        tier.insert(key, &data);
                        drop(permit);
                    });
                }
            });
            tx
        });
        Arc::new(Self {
            store,
            cache,
            l2,
            l2_writer,
            cfg,
            namespace_id,
            inflight: Mutex::new(HashMap::new()),
            memory: Arc::new(Semaphore::new(permits as usize)),
            retry: RetryPolicy::default(),
            metrics,
        })
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> u64 {
        self.cfg.block_size
    }

    /// Blocks in one full-size GET.
    pub fn blocks_per_request(&self) -> u64 {
        (self.cfg.max_request / self.cfg.block_size).max(1)
    }

    /// The RAM tier.
    pub fn cache(&self) -> &Arc<L1Cache> {
        &self.cache
    }

    /// The disk tier, when configured.
    pub fn l2(&self) -> Option<&Arc<L2Cache>> {
        self.l2.as_ref()
    }

    /// The name a bucket key has in cache keys (store-qualified).
    pub fn cache_object_name(&self, key: &str) -> String {
        format!("{}/{}", self.namespace_id, key)
    }

    /// The cache key of block `index` of `obj`.
    pub fn block_key(&self, obj: &ObjectVersion, index: u64) -> BlockKey {
        self.key(obj, index)
    }

    fn key(&self, obj: &ObjectVersion, index: u64) -> BlockKey {
        let version = obj.etag.clone().unwrap_or_else(|| Arc::from(""));
        BlockKey::new(
            Arc::from(self.cache_object_name(&obj.key).as_str()),
            version,
            index,
        )
    }

    /// Largest single GET in bytes.
    pub fn max_request(&self) -> u64 {
        self.cfg.max_request
    }

    /// Bound on bytes of GETs in flight.
    pub fn max_inflight_bytes(&self) -> u64 {
        self.cfg.max_inflight_bytes
    }

    /// Whether block `index` of `obj` is in a cache tier (no promotion, no counting).
    pub fn is_cached(&self, obj: &ObjectVersion, index: u64) -> bool {
        let key = self.key(obj, index);
        self.cache.contains(&key) || self.l2.as_ref().is_some_and(|l2| l2.contains(&key))
    }

    /// Whether block `index` of `obj` is cached or on its way.
    pub fn is_present(&self, obj: &ObjectVersion, index: u64) -> bool {
        let key = self.key(obj, index);
        self.cache.contains(&key)
            || self.inflight.lock().unwrap().contains_key(&key)
            || self.l2.as_ref().is_some_and(|l2| l2.contains(&key))
    }

    /// Bytes `start..end` of `obj` (through the caches).
    pub async fn read_range(
        self: &Arc<Self>,
        obj: &ObjectVersion,
        start: u64,
        end: u64,
    ) -> FsResult<Bytes> {
        let end = end.min(obj.size);
        if start >= end {
            return Ok(Bytes::new());
        }
        let bs = self.cfg.block_size;
        let (first, last) = (start / bs, (end - 1) / bs);
        let blocks = futures::future::try_join_all(self.blocks(obj, first, last)).await?;
        let mut out = BytesMut::with_capacity((end - start) as usize);
        for (n, b) in blocks.iter().enumerate() {
            let block_start = (first + n as u64) * bs;
            let from = start.saturating_sub(block_start) as usize;
            let to = ((end - block_start) as usize).min(b.len());
            if from < to {
                out.extend_from_slice(&b[from..to]);
            }
        }
        Ok(out.freeze())
    }

    /// Futures for blocks `first..=last` of `obj`, starting fetches for the missing ones:
    /// consecutive missing blocks are fetched together, up to `max_request` bytes per GET.
    pub fn blocks(
        self: &Arc<Self>,
        obj: &ObjectVersion,
        first: u64,
        last: u64,
    ) -> Vec<BlockFuture> {
        self.blocks_for(obj, first, last, true)
    }

    /// Like [`Self::blocks`] for a prefetch: the same fetches, but not counted as demand hits
    /// or misses.
    pub fn prefetch_blocks(
        self: &Arc<Self>,
        obj: &ObjectVersion,
        first: u64,
        last: u64,
    ) -> Vec<BlockFuture> {
        self.blocks_for(obj, first, last, false)
    }

    /// Like [`Self::blocks`] for a demand read of `first..=demand_last` extended by readahead
    /// up to `last`: blocks past `demand_last` are not counted as demand hits or misses, and
    /// those whose fetch this call started (from the store or the disk tier) are appended to
    /// `started` (the prefetch bookkeeping labels them later).
    pub fn blocks_with_readahead(
        self: &Arc<Self>,
        obj: &ObjectVersion,
        first: u64,
        last: u64,
        demand_last: u64,
        started: &mut Vec<u64>,
    ) -> Vec<BlockFuture> {
        self.blocks_inner(obj, first, last, Some(demand_last), Some(started))
    }

    fn blocks_for(
        self: &Arc<Self>,
        obj: &ObjectVersion,
        first: u64,
        last: u64,
        demand: bool,
    ) -> Vec<BlockFuture> {
        self.blocks_inner(obj, first, last, demand.then_some(last), None)
    }

    fn blocks_inner(
        self: &Arc<Self>,
        obj: &ObjectVersion,
        first: u64,
        last: u64,
        demand_last: Option<u64>,
        mut started: Option<&mut Vec<u64>>,
    ) -> Vec<BlockFuture> {
        let per_request = (self.cfg.max_request / self.cfg.block_size).max(1) as usize;
        let mut out = Vec::with_capacity((last + 1 - first) as usize);
        let mut runs: Vec<Vec<Pending>> = Vec::new();
        let mut from_disk: Vec<(BlockKey, Pending)> = Vec::new();
        {
            let mut inflight = self.inflight.lock().unwrap();
            let mut run: Vec<Pending> = Vec::new();
            for index in first..=last {
                let key = self.key(obj, index);
                if let Some(f) = inflight.get(&key) {
                    out.push(f.clone());
                } else if let Some(b) = self.cache.get(&key) {
                    if demand_last.is_some_and(|d| index <= d) {
                        self.metrics.block_hits.inc();
                    }
                    out.push(futures::future::ready(Ok(b)).boxed().shared());
                } else {
                    if demand_last.is_some_and(|d| index <= d) {
                        self.metrics.block_misses.inc();
                    } else if let Some(s) = started.as_deref_mut() {
                        s.push(index);
                    }
                    let (tx, rx) = oneshot::channel();
                    let fut = rx
                        .map(|r| {
                            r.unwrap_or_else(|_| Err(FsError::Io("block fetch abandoned".into())))
                        })
                        .boxed()
                        .shared();
                    inflight.insert(key.clone(), fut.clone());
                    out.push(fut);
                    if self.l2.as_ref().is_some_and(|l2| l2.contains(&key)) {
                        from_disk.push((key, Pending { index, tx }));
                        if !run.is_empty() {
                            runs.push(std::mem::take(&mut run));
                        }
                        continue;
                    }
                    let contiguous = run.last().is_some_and(|p| p.index + 1 == index);
                    if !run.is_empty() && (!contiguous || run.len() >= per_request) {
                        runs.push(std::mem::take(&mut run));
                    }
                    run.push(Pending { index, tx });
                    continue;
                }
                if !run.is_empty() {
                    runs.push(std::mem::take(&mut run));
                }
            }
            if !run.is_empty() {
                runs.push(run);
            }
        }
        for run in runs {
            let this = self.clone();
            let obj = obj.clone();
            tokio::spawn(async move { this.fetch_run(obj, run).await });
        }
        for (key, p) in from_disk {
            let this = self.clone();
            let obj = obj.clone();
            tokio::spawn(async move { this.read_from_disk(obj, key, p).await });
        }
        out
    }

    /// Serves one block from the disk tier (promoting it to RAM); a block the tier cannot
    /// produce intact is fetched from the store instead.
    async fn read_from_disk(self: Arc<Self>, obj: ObjectVersion, key: BlockKey, p: Pending) {
        let l2 = self.l2.clone().expect("disk tier");
        let k = key.clone();
        let got = tokio::task::spawn_blocking(move || l2.get(&k))
            .await
            .ok()
            .flatten();
        let expected = self.block_len(&obj, p.index) as usize;
        match got {
            Some(data) if data.len() == expected => {
                self.cache.insert(key.clone(), data.clone());
                let _ = p.tx.send(Ok(data));
                self.inflight.lock().unwrap().remove(&key);
            }
            _ => self.fetch_run(obj, vec![p]).await,
        }
    }

    fn block_len(&self, obj: &ObjectVersion, index: u64) -> u64 {
        let start = index * self.cfg.block_size;
        self.cfg.block_size.min(obj.size.saturating_sub(start))
    }

    /// Fetches one run of consecutive blocks with one ranged GET, resuming a broken body from
    /// the first byte not yet received, and delivers each block as soon as it is complete.
    async fn fetch_run(self: Arc<Self>, obj: ObjectVersion, run: Vec<Pending>) {
        let first = run[0].index;
        let last = run[run.len() - 1].index;
        let start = first * self.cfg.block_size;
        let end = (start + (last - first) * self.cfg.block_size + self.block_len(&obj, last))
            .min(obj.size);
        let want = (end - start) as u32;
        let _permit = match self.memory.clone().acquire_many_owned(want.max(1)).await {
            Ok(p) => p,
            Err(_) => return,
        };
        self.metrics.inflight_bytes.add(want as i64);
        let mut pending = run.into_iter();
        let mut current = pending.next();
        let mut buf = BytesMut::new();
        let mut offset = start;
        let mut attempt = 1;
        let etag = obj.etag.as_deref();
        let result: Result<(), StoreError> = loop {
            self.metrics.get_requests.inc();
            let mut stream = match self.store.get_range(&obj.key, offset..end, etag).await {
                Ok(s) => s,
                Err(e) => break Err(e),
            };
            let mut broken = None;
            while let Some(chunk) = stream.next().await {
                let mut chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        broken = Some(e);
                        break;
                    }
                };
                offset += chunk.len() as u64;
                self.metrics.get_bytes.inc_by(chunk.len() as u64);
                while !chunk.is_empty() {
                    let Some(p) = &current else {
                        break;
                    };
                    let need = self.block_len(&obj, p.index) as usize - buf.len();
                    let take = need.min(chunk.len());
                    if buf.is_empty() && take == need {
                        // Whole block inside this chunk: no copy.
                        let block = chunk.split_to(take);
                        self.deliver(&obj, current.take().unwrap(), block);
                        current = pending.next();
                        continue;
                    }
                    if buf.capacity() == 0 {
                        // Sized once: growing by doubling would copy and fault pages again.
                        buf.reserve(self.block_len(&obj, p.index) as usize);
                    }
                    buf.extend_from_slice(&chunk.split_to(take));
                    if buf.len() as u64 == self.block_len(&obj, p.index) {
                        let block = std::mem::take(&mut buf).freeze();
                        self.deliver(&obj, current.take().unwrap(), block);
                        current = pending.next();
                    }
                }
            }
            if current.is_none() {
                break Ok(());
            }
            let e = broken.unwrap_or_else(|| {
                StoreError::Transient(format!(
                    "{}: body ended at byte {offset} of range {start}..{end}",
                    obj.key
                ))
            });
            if !e.is_retryable() || attempt >= self.retry.max_attempts {
                break Err(e);
            }
            // Resume from the first byte of the block being assembled (drop its partial bytes
            // so block boundaries stay simple).
            let p = current.as_ref().unwrap();
            offset = p.index * self.cfg.block_size;
            buf.clear();
            self.metrics.get_resumes.inc();
            tracing::debug!(key = %obj.key, offset, %e, "resuming broken GET");
            tokio::time::sleep(self.retry.delay(attempt)).await;
            attempt += 1;
        };
        self.metrics.inflight_bytes.sub(want as i64);
        if let Err(e) = result {
            let err = FsError::from_store(e, &obj.key);
            if let FsError::Stale(m) = &err {
                self.metrics.stale_reads.inc();
                tracing::error!(key = %obj.key, "{m}");
            } else {
                tracing::warn!(key = %obj.key, "read failed: {err}");
            }
            for p in current.into_iter().chain(pending) {
                let key = self.key(&obj, p.index);
                self.inflight.lock().unwrap().remove(&key);
                let _ = p.tx.send(Err(err.clone()));
            }
        }
    }

    fn deliver(&self, obj: &ObjectVersion, p: Pending, block: Bytes) {
        let key = self.key(obj, p.index);
        self.cache.insert(key.clone(), block.clone());
        if let Some(w) = &self.l2_writer {
            if w.try_send((key.clone(), block.clone())).is_err() {
                if let Some(l2) = &self.l2 {
                    l2.stats()
                        .admissions_skipped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        let _ = p.tx.send(Ok(block));
        self.inflight.lock().unwrap().remove(&key);
    }
}
