//! The gateway facade the FUSE adapter (and later NFS) calls: namespace + read path + handles.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn_cache::{L1Cache, L2Cache, L2Config};
use cairn_prefetch_model::ReadaheadConfig;

use crate::error::{FsError, FsResult};
use crate::metrics::Metrics;
use crate::namespace::{DirListing, Ino, Namespace, NamespaceConfig, NodeAttr};
use crate::read::prefetch::{build_policy, FileIdentity, PrefetchConfig, PrefetchScheduler};
use crate::read::{BlockFetcher, FetchConfig, FileReader, ObjectVersion};
use crate::store::{BlobStore, StoreError};
use crate::trace_recorder::{ProgramNames, TraceRecorder};
use crate::write::flusher::Flusher;
use crate::write::{WriteBack, WriteConfig};
use cairn_prefetch_model::trace::{Op, TraceRecord};

/// Every tunable of the gateway core.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Namespace cache lifetimes.
    pub namespace: NamespaceConfig,
    /// Block size, request size and in-flight bound.
    pub fetch: FetchConfig,
    /// Readahead window limits.
    pub readahead: ReadaheadConfig,
    /// RAM cache budget in bytes.
    pub l1_bytes: u64,
    /// Disk cache, when a cache directory is configured.
    pub l2: Option<L2Config>,
    /// Journaled write-back; `None` makes the mount read-only.
    pub write: Option<WriteConfig>,
    /// Prefetch policy and scheduler limits.
    pub prefetch: PrefetchSettings,
    /// Record every access to this trace file.
    pub trace: Option<std::path::PathBuf>,
}

/// Which prefetcher runs and within which limits.
#[derive(Clone, Debug)]
pub struct PrefetchSettings {
    /// Policy name: `off` (no prefetching at all, not even readahead), `readahead` (the
    /// per-handle sequential window only), `learned` (the window plus the learned model) or
    /// a baseline name (the window plus that baseline).
    pub policy: String,
    /// Model file for `learned` (`None`: the built-in default model).
    pub model: Option<std::path::PathBuf>,
    /// Scheduler limits.
    pub scheduler: PrefetchConfig,
}

impl Default for PrefetchSettings {
    fn default() -> Self {
        Self {
            policy: "learned".into(),
            model: None,
            scheduler: PrefetchConfig::default(),
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            namespace: NamespaceConfig::default(),
            fetch: FetchConfig::default(),
            readahead: ReadaheadConfig {
                max: 256 << 20,
                ..ReadaheadConfig::default()
            },
            l1_bytes: 1 << 30,
            l2: None,
            write: None,
            prefetch: PrefetchSettings::default(),
            trace: None,
        }
    }
}

/// A read started by [`Gateway::begin_read`].
pub enum BeginRead {
    /// Answered already (warm data, an empty read, or an error).
    Ready(FsResult<Bytes>),
    /// Fetches are under way; await this for the bytes.
    Pending(std::pin::Pin<Box<dyn std::future::Future<Output = FsResult<Bytes>> + Send>>),
}

/// A handle id returned by `open`/`opendir`.
pub type HandleId = u64;

/// Result of opening a file.
#[derive(Clone, Copy, Debug)]
pub struct Opened {
    /// The new handle.
    pub fh: HandleId,
    /// True when the object version is the one the previous open of this inode saw, so the
    /// kernel's page cache for it is still valid.
    pub keep_page_cache: bool,
}

/// An open file: a reader of one bucket version, or a file that is (or may become) local.
#[derive(Clone)]
pub(crate) enum Handle {
    /// Read-only handle of a bucket object.
    Bucket(Arc<FileReader>),
    /// A handle of a file written here, or opened for writing.
    Local(Arc<crate::write_ops::LocalHandle>),
}

/// The mount's core: resolves names, lists directories, serves reads and takes writes.
pub struct Gateway {
    pub(crate) ns: Arc<Namespace>,
    pub(crate) fetcher: Arc<BlockFetcher>,
    pub(crate) cfg: GatewayConfig,
    pub(crate) files: Mutex<HashMap<HandleId, Handle>>,
    pub(crate) store: Arc<dyn BlobStore>,
    pub(crate) prefix: String,
    pub(crate) wb: Option<Arc<WriteBack>>,
    pub(crate) flusher: Option<Arc<Flusher>>,
    pub(crate) flusher_stop: tokio::sync::watch::Sender<bool>,
    pub(crate) flusher_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    pub(crate) materialize_lock: tokio::sync::Mutex<()>,
    last_open_version: Mutex<HashMap<Ino, Option<Arc<str>>>>,
    dirs: Mutex<HashMap<HandleId, Arc<DirListing>>>,
    pub(crate) next_handle: AtomicU64,
    pub(crate) metrics: Arc<Metrics>,
    prefetch: Option<Arc<PrefetchScheduler>>,
    trace: Option<TraceRecorder>,
    programs: ProgramNames,
    started: std::time::Instant,
}

impl Gateway {
    /// A gateway over `store` showing keys under `prefix`; `store_id` names the bucket in cache
    /// keys. Opens the disk cache when configured (fails if another cairn holds it) and the
    /// write journal (replaying it; the flusher resumes pending uploads). Must be called inside
    /// a tokio runtime.
    pub fn new(
        store: Arc<dyn BlobStore>,
        store_id: &str,
        prefix: String,
        cfg: GatewayConfig,
    ) -> Result<Arc<Self>, String> {
        let metrics = Arc::new(Metrics::new());
        let cache = Arc::new(L1Cache::new(cfg.l1_bytes));
        let l2 = match &cfg.l2 {
            Some(c) => Some(Arc::new(L2Cache::open(c).map_err(|e| e.to_string())?)),
            None => None,
        };
        let fetcher = BlockFetcher::new(
            store.clone(),
            cache,
            l2,
            cfg.fetch,
            Arc::from(store_id),
            metrics.clone(),
        );
        let policy = build_policy(&cfg.prefetch.policy, cfg.prefetch.model.as_deref())?;
        let prefetch = policy.map(|p| {
            PrefetchScheduler::start(p, fetcher.clone(), metrics.clone(), cfg.prefetch.scheduler)
        });
        metrics.prefetch_policy_info(&cfg.prefetch.policy);
        let trace = match &cfg.trace {
            Some(path) => Some(TraceRecorder::create(path)?),
            None => None,
        };
        let wb = match &cfg.write {
            Some(w) => Some(WriteBack::open(w.clone())?),
            None => None,
        };
        let ns = Arc::new(Namespace::new(
            store.clone(),
            prefix.clone(),
            cfg.namespace,
            metrics.clone(),
            wb.clone(),
        ));
        let (flusher_stop, stop_rx) = tokio::sync::watch::channel(false);
        let flusher = wb.as_ref().map(|wb| {
            let ns = ns.clone();
            Flusher::new(
                wb.clone(),
                store.clone(),
                prefix.clone(),
                Arc::new(
                    move |path: &str, info: Option<&crate::store::ObjectInfo>| match info {
                        Some(i) => ns.uploaded(path, i),
                        None => ns.invalidate(path),
                    },
                ),
            )
        });
        let flusher_task = flusher.clone().map(|f| tokio::spawn(f.run(stop_rx)));
        Ok(Arc::new(Self {
            ns,
            fetcher,
            cfg,
            files: Mutex::new(HashMap::new()),
            store,
            prefix,
            wb,
            flusher,
            flusher_stop,
            flusher_task: Mutex::new(flusher_task),
            materialize_lock: tokio::sync::Mutex::new(()),
            last_open_version: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            metrics,
            prefetch,
            trace,
            programs: ProgramNames::default(),
            started: std::time::Instant::now(),
        }))
    }

    /// Metrics of this mount.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The configuration in force.
    pub fn config(&self) -> &GatewayConfig {
        &self.cfg
    }

    /// The namespace (for stats and tests).
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// The RAM cache (for stats and resizing).
    pub fn l1(&self) -> &Arc<L1Cache> {
        self.fetcher.cache()
    }

    /// The disk cache, when configured.
    pub fn l2(&self) -> Option<&Arc<L2Cache>> {
        self.fetcher.l2()
    }

    /// Resolves `name` in directory `parent`.
    pub async fn lookup(&self, parent: Ino, name: &str) -> FsResult<NodeAttr> {
        self.ns.lookup(parent, name).await
    }

    /// Attributes of `ino`.
    pub async fn getattr(&self, ino: Ino) -> FsResult<NodeAttr> {
        self.ns.getattr(ino).await
    }

    /// Attributes through an open handle (fstat): a file unlinked while open still has them.
    pub async fn getattr_handle(&self, ino: Ino, fh: Option<HandleId>) -> FsResult<NodeAttr> {
        match self.ns.getattr(ino).await {
            Err(FsError::NotFound) => {
                if let Some(a) = self.orphan_attr(ino, fh) {
                    return Ok(a);
                }
                Err(FsError::NotFound)
            }
            other => other,
        }
    }

    /// Opens a file. A read-only open of a bucket object pins the version seen now for every
    /// read of the handle; a file written here (or opened for writing) gets a local handle.
    pub async fn open(&self, ino: Ino, write: bool, truncate: bool) -> FsResult<Opened> {
        self.open_by(ino, write, truncate, 0).await
    }

    /// [`Self::open`] on behalf of process `pid` (0: unknown), which the prefetcher and the
    /// trace see as the access stream.
    pub async fn open_by(
        &self,
        ino: Ino,
        write: bool,
        truncate: bool,
        pid: u32,
    ) -> FsResult<Opened> {
        if let Some(opened) = self.open_local(ino, write, truncate).await? {
            return Ok(opened);
        }
        let (reader, keep_page_cache) = self.bucket_reader(ino).await?;
        if self.observing() {
            reader.set_stream(pid, self.programs.hash_of(pid));
        }
        let fh = self.new_handle(Handle::Bucket(reader.clone()));
        if self.observing() {
            self.note_dir_of(ino, &reader);
            self.observe(Op::Open, fh, &reader, 0, 0, pid);
        }
        Ok(Opened {
            fh,
            keep_page_cache,
        })
    }

    /// Whether accesses go to a prefetch policy or a trace.
    fn observing(&self) -> bool {
        self.prefetch.is_some() || self.trace.is_some()
    }

    /// Hands one access of a bucket file to the trace and the prefetch scheduler.
    fn observe(&self, op: Op, fh: HandleId, reader: &FileReader, offset: u64, len: u32, pid: u32) {
        let (stream, program_hash) = reader.stream();
        let id = reader.identity();
        let rec = TraceRecord {
            time_ns: match &self.trace {
                Some(t) => t.now_ns(),
                None => self.started.elapsed().as_nanos() as u64,
            },
            stream: if pid != 0 { pid } else { stream },
            program_hash,
            handle: fh,
            inode: reader.ino(),
            path_hash: id.path_hash,
            dir_hash: id.dir_hash,
            offset,
            len,
            format: id.format,
            op,
            file_size: reader.object().size,
        };
        if let Some(t) = &self.trace {
            t.record(rec);
        }
        if let Some(p) = &self.prefetch {
            p.on_access(&rec, id, reader.object());
        }
    }

    /// Tells the prefetcher the members of the directory of `ino`, from the namespace's last
    /// listing (no request to the store), once per directory.
    fn note_dir_of(&self, ino: Ino, reader: &FileReader) {
        let Some(p) = &self.prefetch else {
            return;
        };
        let dir_hash = reader.identity().dir_hash;
        if p.catalog().knows_dir(dir_hash) {
            return;
        }
        let members = self
            .ns
            .cached_siblings(ino)
            .into_iter()
            .map(|(path, a)| {
                let obj = ObjectVersion {
                    key: Arc::from(self.ns.file_key(&path).as_str()),
                    etag: a.etag.clone(),
                    size: a.size,
                };
                (a.ino, FileIdentity::of_path(&path), obj)
            })
            .collect();
        p.catalog().note_dir(dir_hash, members);
    }

    pub(crate) fn new_handle(&self, h: Handle) -> HandleId {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.files.lock().unwrap().insert(fh, h);
        self.metrics.open_files.inc();
        fh
    }

    pub(crate) fn handle(&self, fh: HandleId) -> FsResult<Handle> {
        self.files
            .lock()
            .unwrap()
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)
    }

    /// A reader of the bucket version of `ino` as seen now, and whether the kernel's page cache
    /// of the previous open is still valid.
    pub(crate) async fn bucket_reader(&self, ino: Ino) -> FsResult<(Arc<FileReader>, bool)> {
        let (key, attr) = self.ns.open_file(ino).await?;
        let (keep_page_cache, changed) = {
            let mut last = self.last_open_version.lock().unwrap();
            let prev = last.insert(ino, attr.etag.clone());
            (
                prev.as_ref() == Some(&attr.etag),
                prev.is_some_and(|p| p != attr.etag),
            )
        };
        if changed {
            // A new version: blocks of older versions can never be read again; free them now.
            let name = self.fetcher.cache_object_name(&key);
            let keep = attr.etag.as_deref().unwrap_or("");
            self.l1().invalidate_object(&name, keep);
            if let Some(l2) = self.l2().cloned() {
                let keep = keep.to_string();
                tokio::task::spawn_blocking(move || l2.invalidate_object(&name, &keep));
            }
        }
        let obj = ObjectVersion {
            key,
            etag: attr.etag,
            size: attr.size,
        };
        let path = self.ns.path_of(ino)?;
        let readahead = if self.cfg.prefetch.policy == "off" {
            ReadaheadConfig {
                initial: 0,
                max: 0,
                ..self.cfg.readahead
            }
        } else {
            self.cfg.readahead
        };
        let reader = Arc::new(
            FileReader::new(self.fetcher.clone(), obj, readahead)
                .with_identity(ino, FileIdentity::of_path(&path))
                .with_prefetch(self.prefetch.clone()),
        );
        Ok((reader, keep_page_cache))
    }

    /// Reads from an open handle.
    pub async fn read(&self, fh: HandleId, offset: u64, len: u32) -> FsResult<Bytes> {
        self.read_by(fh, offset, len, 0).await
    }

    /// Starts a read on behalf of `pid` without waiting: warm data (every block in RAM) is
    /// answered at once, on the caller's thread (the FUSE worker, with no task hop); otherwise
    /// the fetches are already started and the returned future finishes the read. Readahead and
    /// the prefetcher see the read exactly once either way. Must be called inside a tokio
    /// runtime context.
    pub fn begin_read(
        self: &Arc<Self>,
        fh: HandleId,
        offset: u64,
        len: u32,
        pid: u32,
    ) -> BeginRead {
        let reader = match self.handle(fh) {
            Ok(Handle::Bucket(reader)) => reader,
            Ok(Handle::Local(_)) => {
                let gw = self.clone();
                return BeginRead::Pending(Box::pin(async move {
                    gw.read_by(fh, offset, len, pid).await
                }));
            }
            Err(e) => return BeginRead::Ready(Err(e)),
        };
        if self.observing() && offset < reader.object().size {
            let len = len.min((reader.object().size - offset).min(u32::MAX as u64) as u32);
            self.observe(Op::Read, fh, &reader, offset, len, pid);
        }
        let Some(plan) = reader.plan(offset, len as u64) else {
            return BeginRead::Ready(Ok(Bytes::new()));
        };
        if let Some(data) = reader.finish_now(&plan) {
            return BeginRead::Ready(Ok(data));
        }
        BeginRead::Pending(Box::pin(async move { reader.finish(plan).await }))
    }

    /// [`Self::read`] on behalf of process `pid` (0: unknown).
    pub async fn read_by(&self, fh: HandleId, offset: u64, len: u32, pid: u32) -> FsResult<Bytes> {
        match self.handle(fh)? {
            Handle::Bucket(reader) => {
                if self.observing() && offset < reader.object().size {
                    let len = len.min((reader.object().size - offset).min(u32::MAX as u64) as u32);
                    self.observe(Op::Read, fh, &reader, offset, len, pid);
                }
                reader.read(offset, len as u64).await
            }
            Handle::Local(h) => self.read_local(&h, offset, len as u64).await,
        }
    }

    /// Closes a file handle.
    pub fn release(&self, fh: HandleId) {
        let h = self.files.lock().unwrap().remove(&fh);
        if let Some(h) = h {
            self.metrics.open_files.dec();
            match h {
                Handle::Local(h) => self.release_local(&h),
                Handle::Bucket(reader) => {
                    if self.observing() {
                        self.observe(Op::Close, fh, &reader, 0, 0, 0);
                    }
                }
            }
        }
    }

    /// Opens a directory: takes a snapshot of its listing that readdir pages through.
    pub async fn opendir(&self, ino: Ino) -> FsResult<HandleId> {
        let listing = self.ns.list_dir(ino).await?;
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.dirs.lock().unwrap().insert(fh, listing);
        Ok(fh)
    }

    /// The listing snapshot behind a directory handle.
    pub fn dir_listing(&self, fh: HandleId) -> FsResult<Arc<DirListing>> {
        self.dirs
            .lock()
            .unwrap()
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)
    }

    /// Closes a directory handle.
    pub fn releasedir(&self, fh: HandleId) {
        self.dirs.lock().unwrap().remove(&fh);
    }

    /// Changes cache budgets at run time; a shrink evicts before returning.
    pub async fn resize(&self, l1: Option<u64>, l2: Option<u64>) -> Result<(), String> {
        if let Some(b) = l1 {
            self.l1().resize(b);
        }
        if let Some(b) = l2 {
            let tier = self
                .l2()
                .cloned()
                .ok_or("no disk cache on this mount (mounted without --cache-dir)")?;
            tokio::task::spawn_blocking(move || tier.resize(b))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// True when the mount takes writes.
    pub fn writable(&self) -> bool {
        self.wb.is_some()
    }

    /// The write-back path, when the mount takes writes.
    pub fn write_back(&self) -> Option<&Arc<WriteBack>> {
        self.wb.as_ref()
    }

    /// Uploads everything pending and stops the flusher; gives up after `timeout` (the data
    /// stays in the journal and is uploaded at the next start).
    pub async fn shutdown(&self, timeout: Duration) -> Result<(), String> {
        if let Some(p) = &self.prefetch {
            p.stop();
        }
        if let Some(t) = &self.trace {
            match t.finish() {
                Ok(n) => tracing::info!(records = n, dropped = t.dropped(), "trace written"),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        let result = match &self.wb {
            Some(wb) => wb.flush_all(timeout, |_, _| {}).await,
            None => Ok(()),
        };
        let _ = self.flusher_stop.send(true);
        let task = self.flusher_task.lock().unwrap().take();
        if let Some(t) = task {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        result
    }

    /// Stops the flusher at once, leaving pending work in the journal (what a crash does; used
    /// by tests that restart a gateway over the same journal).
    pub async fn abandon(&self) {
        let _ = self.flusher_stop.send(true);
        let task = self.flusher_task.lock().unwrap().take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
    }

    /// Metadata TTL the kernel may cache attributes and entries for.
    pub fn attr_ttl(&self) -> Duration {
        self.cfg.namespace.metadata_ttl
    }
}

/// Checks at mount time that the bucket exists and the credentials work, so a bad setup fails
/// with one clear message instead of EIO on first access.
pub async fn check_bucket(store: &dyn BlobStore, prefix: &str) -> Result<(), String> {
    match store.list(prefix, None, Some(1)).await {
        Ok(_) => Ok(()),
        Err(e) => Err(describe_mount_error(&store.describe(), &e)),
    }
}

/// One line explaining why a mount cannot start.
pub fn describe_mount_error(store: &str, e: &StoreError) -> String {
    match e {
        StoreError::NotFound(m) => {
            format!("bucket not found: {store} ({})", first_line(m))
        }
        StoreError::Auth(m) => format!(
            "access denied by {store}: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or the profile) ({})",
            first_line(m)
        ),
        StoreError::Transient(m) | StoreError::Throttled(m) => format!(
            "cannot reach {store}: {} (check --endpoint-url / AWS_ENDPOINT_URL and the network)",
            first_line(m)
        ),
        other => format!("{store}: {}", first_line(&other.to_string())),
    }
}

fn first_line(s: &str) -> String {
    let one: String = s.lines().next().unwrap_or("").to_string();
    if one.len() > 300 {
        format!("{}...", &one[..one.floor_char_boundary(300)])
    } else {
        one
    }
}
