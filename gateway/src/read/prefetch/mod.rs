//! The prefetch scheduler: asks the configured [`Prefetcher`] what to fetch next and fetches
//! it without ever delaying demand reads.
//!
//! - Every demand access (open, read, close) goes to the policy, whose answers are queued in a
//!   bounded queue (full: dropped and counted). One worker task drains it.
//! - The worker skips blocks already cached or in flight, keeps prefetch bytes in flight under
//!   their own budget, waits while demand GETs fill most of the fetcher's budget, and never lets
//!   prefetched-but-unused blocks take more than a share of the RAM cache.
//! - Every prefetched block is labelled once, used (a demand read touched it) or wasted (it
//!   left the cache or aged out unused); labels go to the metrics and back to the policy, which
//!   is how the learned model keeps learning online.
//! - Parquet footers and safetensors headers the application reads are parsed (from the cache)
//!   into layouts the policy can prefetch from.

mod catalog;
mod policy;
mod probe;
mod tracker;

pub use catalog::{FileIdentity, GatewayCatalog};
pub use policy::{build_policy, SPECIAL_POLICIES};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_prefetch_model::trace::{FormatClass, Op, TraceRecord};
use cairn_prefetch_model::{Feedback, PrefetchRequest, Prefetcher};
use tokio::sync::{mpsc, Semaphore};

use crate::metrics::Metrics;
use crate::read::{BlockFetcher, ObjectVersion};
use tracker::{Issued, Tracker};

/// Limits of the scheduler.
#[derive(Clone, Copy, Debug)]
pub struct PrefetchConfig {
    /// Most prefetch bytes in flight at once.
    pub max_inflight_bytes: u64,
    /// Largest share of the RAM cache that prefetched-but-unused blocks may take.
    pub cache_share: f64,
    /// Prefetch requests waiting for the worker; beyond it they are dropped.
    pub queue: usize,
    /// A prefetched block not used within this time counts as wasted.
    pub unused_ttl: Duration,
    /// Demand GETs in flight above this fraction of the fetcher's budget pause prefetching.
    pub demand_pressure: f64,
}

impl Default for PrefetchConfig {
    fn default() -> Self {
        Self {
            max_inflight_bytes: 256 << 20,
            cache_share: 0.5,
            queue: 1024,
            unused_ttl: Duration::from_secs(120),
            demand_pressure: 0.75,
        }
    }
}

enum Job {
    Fetch(PrefetchRequest),
    Probe { inode: u64, format: FormatClass },
}

/// The mount's prefetch scheduler (one per gateway).
pub struct PrefetchScheduler {
    policy: Mutex<Box<dyn Prefetcher>>,
    catalog: Arc<GatewayCatalog>,
    tracker: Mutex<Tracker>,
    tx: mpsc::Sender<Job>,
    fetcher: Arc<BlockFetcher>,
    metrics: Arc<Metrics>,
    cfg: PrefetchConfig,
    inflight: Arc<Semaphore>,
    probing: Mutex<std::collections::HashSet<u64>>,
    stopped: AtomicBool,
}

impl PrefetchScheduler {
    /// A scheduler running `policy` over `fetcher`; starts its worker and sweeper tasks (must be
    /// called inside a tokio runtime).
    pub fn start(
        policy: Box<dyn Prefetcher>,
        fetcher: Arc<BlockFetcher>,
        metrics: Arc<Metrics>,
        cfg: PrefetchConfig,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let this = Arc::new(Self {
            policy: Mutex::new(policy),
            catalog: Arc::new(GatewayCatalog::default()),
            tracker: Mutex::new(Tracker::default()),
            tx,
            fetcher,
            metrics,
            cfg,
            inflight: Arc::new(Semaphore::new(
                cfg.max_inflight_bytes.clamp(1 << 20, 1 << 40) as usize,
            )),
            probing: Mutex::new(Default::default()),
            stopped: AtomicBool::new(false),
        });
        tokio::spawn(this.clone().worker(rx));
        tokio::spawn(this.clone().sweeper());
        this
    }

    /// The catalog the policy sees (the gateway fills in directory members).
    pub fn catalog(&self) -> &Arc<GatewayCatalog> {
        &self.catalog
    }

    /// Stops the background tasks (at unmount).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// One demand access of `obj` (a bucket file): labels the prefetched blocks it uses, asks
    /// the policy for more and queues them. Bounded work; never waits.
    pub fn on_access(&self, rec: &TraceRecord, id: FileIdentity, obj: &ObjectVersion) {
        self.catalog.note_file(rec.inode, id, obj);
        let mut feedback = Vec::new();
        if rec.op == Op::Read && rec.len > 0 {
            let bs = self.fetcher.block_size();
            let first = rec.offset / bs;
            let last = (rec.offset + rec.len as u64 - 1) / bs;
            let out =
                self.tracker
                    .lock()
                    .unwrap()
                    .demand(rec.inode, first, last, &mut feedback, |e| {
                        self.fetcher
                            .cache()
                            .contains(&self.fetcher.block_key(&e.obj, e.index))
                    });
            if out.bytes > 0 {
                self.metrics.prefetch_used_bytes.inc_by(out.bytes);
                self.metrics
                    .prefetch_used_blocks
                    .inc_by(out.on_time + out.late);
                self.metrics.prefetch_late_blocks.inc_by(out.late);
            }
            self.maybe_probe(rec, obj);
        }
        let mut out = Vec::new();
        {
            let started = Instant::now();
            let mut policy = self.policy.lock().unwrap();
            for fb in &feedback {
                policy.on_feedback(fb);
            }
            policy.on_access(rec, self.catalog.as_ref(), &mut out);
            self.metrics
                .prefetch_decision_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        for req in out {
            if self.tx.try_send(Job::Fetch(req)).is_err() {
                self.metrics.prefetch_dropped.inc();
            }
        }
    }

    /// End of the layout unit (column chunk, tensor, member) holding byte `offset` of `inode`,
    /// when the file's layout is known.
    pub fn extent_end(&self, inode: u64, offset: u64) -> Option<u64> {
        let layout = cairn_prefetch_model::Catalog::layout(self.catalog.as_ref(), inode)?;
        let i = layout.extents.partition_point(|e| e.end <= offset);
        layout
            .extents
            .get(i)
            .filter(|e| e.start <= offset)
            .map(|e| e.end)
    }

    /// Labels blocks a handle's readahead window started fetching as prefetched (they are
    /// fetched under the fetcher's own budget, not this scheduler's).
    pub fn note_readahead(&self, inode: u64, obj: &ObjectVersion, indices: &[u64]) {
        self.track(inode, obj, indices.iter().copied());
        self.metrics
            .prefetch_readahead_blocks
            .inc_by(indices.len() as u64);
    }

    /// Starts labelling the given blocks of `obj` as prefetched and counts them as issued.
    fn track(&self, inode: u64, obj: &ObjectVersion, indices: impl IntoIterator<Item = u64>) {
        let bs = self.fetcher.block_size();
        let now = Instant::now();
        let (mut bytes, mut blocks) = (0, 0);
        let mut t = self.tracker.lock().unwrap();
        for index in indices {
            let offset = index * bs;
            if offset >= obj.size {
                continue;
            }
            let len = bs.min(obj.size - offset);
            bytes += len;
            blocks += 1;
            t.issue(
                inode,
                Issued {
                    obj: obj.clone(),
                    index,
                    offset,
                    len,
                    at: now,
                    arrived: false,
                },
            );
        }
        drop(t);
        self.metrics.prefetch_issued_bytes.inc_by(bytes);
        self.metrics.prefetch_issued_blocks.inc_by(blocks);
    }

    /// Queues parsing of a Parquet footer or safetensors header once the application has read
    /// the bytes that locate it.
    fn maybe_probe(&self, rec: &TraceRecord, obj: &ObjectVersion) {
        let end = rec.offset + rec.len as u64;
        let wanted = match rec.format {
            FormatClass::Parquet => obj.size >= 12 && end > obj.size - 8,
            FormatClass::Safetensors => rec.offset == 0,
            _ => false,
        };
        if !wanted || self.catalog.has_layout(rec.inode) {
            return;
        }
        if !self.probing.lock().unwrap().insert(rec.inode) {
            return;
        }
        let job = Job::Probe {
            inode: rec.inode,
            format: rec.format,
        };
        if self.tx.try_send(job).is_err() {
            self.probing.lock().unwrap().remove(&rec.inode);
        }
    }

    async fn worker(self: Arc<Self>, mut rx: mpsc::Receiver<Job>) {
        while let Some(job) = rx.recv().await {
            if self.stopped.load(Ordering::Relaxed) {
                break;
            }
            match job {
                Job::Fetch(req) => self.issue(req).await,
                Job::Probe { inode, format } => {
                    let this = self.clone();
                    tokio::spawn(async move {
                        if let Some(obj) = this.catalog.version_of(inode) {
                            match probe::layout_of(&this.fetcher, &obj, format).await {
                                Ok(Some(layout)) => {
                                    this.metrics.prefetch_layouts.inc();
                                    this.catalog.set_layout(inode, layout);
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    tracing::debug!(key = %obj.key, "no layout: {e}");
                                }
                            }
                        }
                        this.probing.lock().unwrap().remove(&inode);
                    });
                }
            }
        }
    }

    /// Fetches one requested range (its missing blocks), within the budgets.
    async fn issue(self: &Arc<Self>, req: PrefetchRequest) {
        let Some(obj) = self.catalog.version_of(req.inode) else {
            self.metrics.prefetch_dropped.inc();
            return;
        };
        if obj.size == 0 || req.len == 0 || req.offset >= obj.size {
            return;
        }
        let bs = self.fetcher.block_size();
        let end = (req.offset + req.len).min(obj.size);
        let first = req.offset / bs;
        let last = (end - 1) / bs;
        let share = (self.fetcher.cache().budget() as f64 * self.cfg.cache_share) as u64;
        let mut run: Vec<u64> = Vec::new();
        for index in first..=last {
            if self.fetcher.is_present(&obj, index)
                || self.tracker.lock().unwrap().contains(req.inode, index)
            {
                self.flush_run(&obj, req.inode, &mut run).await;
                continue;
            }
            if self.tracker.lock().unwrap().unused_bytes() + (run.len() as u64 + 1) * bs > share {
                self.metrics.prefetch_dropped.inc();
                break;
            }
            run.push(index);
            if run.len() as u64 * bs >= self.fetcher.max_request() {
                self.flush_run(&obj, req.inode, &mut run).await;
            }
        }
        self.flush_run(&obj, req.inode, &mut run).await;
    }

    async fn flush_run(self: &Arc<Self>, obj: &ObjectVersion, inode: u64, run: &mut Vec<u64>) {
        if run.is_empty() {
            return;
        }
        let (first, last) = (run[0], run[run.len() - 1]);
        run.clear();
        // Demand first: wait while demand GETs use most of the fetcher's budget.
        let limit = (self.fetcher.max_inflight_bytes() as f64 * self.cfg.demand_pressure) as i64;
        let mut waited = 0;
        while self.metrics.inflight_bytes.get() > limit && waited < 200 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            waited += 1;
        }
        let bs = self.fetcher.block_size();
        let bytes = ((last + 1) * bs).min(obj.size) - first * bs;
        let Ok(permit) = self
            .inflight
            .clone()
            .acquire_many_owned(bytes.min(u32::MAX as u64) as u32)
            .await
        else {
            return;
        };
        self.track(inode, obj, first..=last);
        let futures = self.fetcher.prefetch_blocks(obj, first, last);
        let this = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            for (index, f) in (first..=last).zip(futures) {
                let ok = f.await.is_ok();
                let mut t = this.tracker.lock().unwrap();
                if ok {
                    t.arrived(inode, index);
                } else {
                    t.failed(inode, index);
                }
            }
        });
    }

    /// Every second: blocks that left the cache, or waited too long, unused are wasted.
    async fn sweeper(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if self.stopped.load(Ordering::Relaxed) {
                break;
            }
            self.metrics.update_prefetch_ratios();
            let wasted = {
                let mut t = self.tracker.lock().unwrap();
                self.metrics
                    .prefetch_unused_bytes
                    .set(t.unused_bytes() as i64);
                if t.count() == 0 {
                    continue;
                }
                t.sweep(Instant::now(), self.cfg.unused_ttl, |e| {
                    !self.fetcher.is_cached(&e.obj, e.index)
                })
            };
            self.label_wasted(&wasted);
        }
    }

    fn label_wasted(&self, wasted: &[Feedback]) {
        if wasted.is_empty() {
            return;
        }
        let bytes: u64 = wasted.iter().map(|f| f.len).sum();
        self.metrics.prefetch_wasted_bytes.inc_by(bytes);
        self.metrics
            .prefetch_wasted_blocks
            .inc_by(wasted.len() as u64);
        let mut policy = self.policy.lock().unwrap();
        for fb in wasted {
            policy.on_feedback(fb);
        }
    }
}
