//! The flusher: turns the write state into bucket changes, in the background.
//!
//! Each round it finishes interrupted bucket renames, applies pending deletes and directory
//! markers, uploads files that have been quiet for `flush_delay` (or everything, when a flush
//! is forced), records each success in the journal, drops settled files and reclaims journal
//! segments nothing needs any more. Failures are retried with backoff; the data stays in the
//! journal meanwhile.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::StreamExt;

use super::extents::{ExtentMap, Piece};
use super::key_locks::KeyLocks;
use super::records::{FileId, Meta, UploadCondition};
use super::state::PathState;
use super::WriteBack;
use crate::store::{BlobStore, ObjectInfo, PutCondition, StoreError};

/// Longest a dirty file waits for a busy mount to go quiet before it is uploaded anyway.
const MAX_HOLD: Duration = Duration::from_secs(30);

/// Told about every path whose bucket state the flusher changed (to refresh metadata caches):
/// the path and, for an upload, the new object.
pub type ChangeHook = Arc<dyn Fn(&str, Option<&ObjectInfo>) + Send + Sync>;

/// One unit of bucket work.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Work {
    Rename(u64),
    Path(String),
    File(FileId),
}

struct Backoff {
    attempts: u32,
    not_before: Instant,
}

/// The background uploader of one mount.
pub struct Flusher {
    wb: Arc<WriteBack>,
    store: Arc<dyn BlobStore>,
    prefix: String,
    on_change: ChangeHook,
    changed_at: std::sync::Mutex<HashMap<FileId, Instant>>,
    /// When each file with changes not yet uploaded first changed (for the oldest-pending age).
    dirty_since: std::sync::Mutex<HashMap<FileId, Instant>>,
    /// (when, bytes) of recent uploads, for the upload rate.
    recent: std::sync::Mutex<std::collections::VecDeque<(Instant, u64)>>,
    started: Instant,
    backoff: std::sync::Mutex<HashMap<Work, Backoff>>,
    last_checkpoint: std::sync::Mutex<Instant>,
    /// Uploads and deletes of one key run one at a time (in the order they took the lock).
    key_locks: KeyLocks,
}

/// Outcome of one item.
enum Done {
    Ok,
    Retry(StoreError),
}

impl Flusher {
    /// A flusher writing `wb`'s changes to `store` under `prefix`.
    pub fn new(
        wb: Arc<WriteBack>,
        store: Arc<dyn BlobStore>,
        prefix: String,
        on_change: ChangeHook,
    ) -> Arc<Self> {
        Arc::new(Self {
            wb,
            store,
            prefix,
            on_change,
            changed_at: std::sync::Mutex::new(HashMap::new()),
            dirty_since: std::sync::Mutex::new(HashMap::new()),
            recent: std::sync::Mutex::new(std::collections::VecDeque::new()),
            started: Instant::now(),
            backoff: std::sync::Mutex::new(HashMap::new()),
            last_checkpoint: std::sync::Mutex::new(Instant::now()),
            key_locks: KeyLocks::default(),
        })
    }

    /// Notes that file `fid` just changed (restarts its quiet period).
    pub fn touched(&self, fid: FileId) {
        let now = Instant::now();
        self.changed_at.lock().unwrap().insert(fid, now);
        self.dirty_since.lock().unwrap().entry(fid).or_insert(now);
        self.wb.wake.notify_one();
    }

    /// How long the oldest change not yet in the bucket has waited (changes replayed from the
    /// journal count from this start).
    pub fn oldest_pending(&self) -> Duration {
        let (pending, _) = self.wb.pending();
        if pending == 0 {
            return Duration::ZERO;
        }
        let since = self.dirty_since.lock().unwrap();
        let dirty = self.wb.with_state(|st| {
            st.files
                .values()
                .filter(|f| f.is_dirty())
                .map(|f| f.fid)
                .collect::<Vec<_>>()
        });
        dirty
            .iter()
            .map(|fid| since.get(fid).copied().unwrap_or(self.started))
            .min()
            .unwrap_or(self.started)
            .elapsed()
    }

    /// Bytes per second uploaded over the last minute.
    pub fn upload_rate(&self) -> f64 {
        let mut r = self.recent.lock().unwrap();
        while r
            .front()
            .is_some_and(|(t, _)| t.elapsed() > Duration::from_secs(60))
        {
            r.pop_front();
        }
        let window = self
            .started
            .elapsed()
            .min(Duration::from_secs(60))
            .as_secs_f64();
        if window <= 0.0 {
            return 0.0;
        }
        r.iter().map(|(_, b)| *b as f64).sum::<f64>() / window
    }

    /// Runs rounds until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let wait = self.round().await;
            self.wb.progress.notify_waiters();
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = self.wb.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// One pass over the pending work; returns how long until something becomes due.
    pub async fn round(&self) -> Duration {
        let forced = self.wb.force_gen.swap(0, Ordering::Relaxed) > 0;
        let now = Instant::now();
        let delay = self.wb.config().flush_delay;
        let mut next = Duration::from_secs(1);
        let (renames, paths, files) = self.wb.with_state(|st| {
            let renames: Vec<u64> = st.renames.keys().copied().collect();
            let markers = self.wb.markers.load(Ordering::Relaxed);
            let paths: Vec<String> = st
                .paths
                .iter()
                .filter(|(_, s)| match s {
                    PathState::File(_) | PathState::Special(_) => false,
                    PathState::Dir { .. } => markers,
                    _ => true,
                })
                .map(|(p, _)| p.clone())
                .collect();
            let files: Vec<FileId> = st
                .files
                .values()
                .filter(|f| f.is_dirty())
                .map(|f| f.fid)
                .collect();
            (renames, paths, files)
        });
        let due = |w: &Work| -> bool {
            match self.backoff.lock().unwrap().get(w) {
                Some(b) if b.not_before > now && !forced => false,
                _ => true,
            }
        };
        for id in renames {
            let w = Work::Rename(id);
            if due(&w) {
                let r = self.finish_rename(id).await;
                self.settle(w, r);
            }
        }
        let conc = self.wb.config().upload_concurrency.max(1);
        let path_work: Vec<Work> = paths
            .into_iter()
            .map(Work::Path)
            .filter(|w| due(w))
            .collect();
        let results: Vec<(Work, Done)> = futures::stream::iter(path_work)
            .map(|w| async move {
                let Work::Path(p) = &w else { unreachable!() };
                let r = self.sync_path(p).await;
                (w, r)
            })
            .buffer_unordered(conc * 2)
            .collect()
            .await;
        for (w, r) in results {
            self.settle(w, r);
        }
        let mut file_work = Vec::new();
        // While the mount is being written to (a checkpoint burst), uploads wait for the burst
        // to end so they do not compete with it for disk and CPU, unless dirty data piles up
        // (half the bound) or a file has waited for `MAX_HOLD`.
        let dirty = self.wb.recount_dirty();
        let busy =
            self.wb.writes_quiet_for() < delay && dirty < self.wb.config().max_dirty_bytes / 2;
        {
            let changed = self.changed_at.lock().unwrap();
            let since = self.dirty_since.lock().unwrap();
            for fid in files {
                let quiet = changed.get(&fid).map(|t| now.saturating_duration_since(*t));
                let held = since
                    .get(&fid)
                    .is_some_and(|t| now.saturating_duration_since(*t) >= MAX_HOLD);
                let ready = forced || (quiet.is_none_or(|q| q >= delay) && (!busy || held));
                if !ready {
                    // Look again when this file's (or the mount's) quiet period may be over.
                    let own = delay.saturating_sub(quiet.unwrap_or_default());
                    let mount = delay.saturating_sub(self.wb.writes_quiet_for());
                    next = next.min(own.max(mount).max(Duration::from_millis(20)));
                    continue;
                }
                let w = Work::File(fid);
                if due(&w) {
                    file_work.push(w);
                }
            }
        }
        let results: Vec<(Work, Done)> = futures::stream::iter(file_work)
            .map(|w| async move {
                let Work::File(fid) = w else { unreachable!() };
                let r = self.upload(fid).await;
                (w, r)
            })
            .buffer_unordered(conc)
            .collect()
            .await;
        for (w, r) in results {
            self.settle(w, r);
        }
        if let Err(e) = self.wb.drop_settled() {
            tracing::warn!("cannot journal settled files (will retry): {e}");
        }
        let (live, dirty): (HashSet<FileId>, HashSet<FileId>) = self.wb.with_state(|st| {
            (
                st.files.keys().copied().collect(),
                st.files
                    .values()
                    .filter(|f| f.is_dirty())
                    .map(|f| f.fid)
                    .collect(),
            )
        });
        self.changed_at
            .lock()
            .unwrap()
            .retain(|fid, _| live.contains(fid));
        self.dirty_since
            .lock()
            .unwrap()
            .retain(|fid, _| dirty.contains(fid));
        if let Err(e) = self.reclaim().await {
            tracing::warn!("journal space reclamation failed (will retry): {e}");
        }
        let soonest = self
            .backoff
            .lock()
            .unwrap()
            .values()
            .map(|b| b.not_before.saturating_duration_since(Instant::now()))
            .min();
        next.min(soonest.unwrap_or(next))
            .max(Duration::from_millis(20))
    }

    fn settle(&self, w: Work, r: Done) {
        let mut backoff = self.backoff.lock().unwrap();
        match r {
            Done::Ok => {
                backoff.remove(&w);
            }
            Done::Retry(e) => {
                let b = backoff.entry(w.clone()).or_insert(Backoff {
                    attempts: 0,
                    not_before: Instant::now(),
                });
                b.attempts += 1;
                let secs = (1u64 << b.attempts.min(6)).min(60);
                b.not_before = Instant::now() + Duration::from_secs(secs);
                self.wb
                    .stats()
                    .upload_failures
                    .fetch_add(1, Ordering::Relaxed);
                let what = match &w {
                    Work::Rename(id) => format!("rename #{id}"),
                    Work::Path(p) => format!("/{p}"),
                    Work::File(fid) => format!("file #{fid}"),
                };
                let hint = if matches!(e, StoreError::Auth(_)) {
                    " (the credentials may lack write permission; the data stays in the journal)"
                } else {
                    ""
                };
                if b.attempts == 1 || b.attempts % 10 == 0 {
                    tracing::warn!(
                        attempts = b.attempts,
                        retry_in_s = secs,
                        "could not write {what} to the bucket: {e}{hint}"
                    );
                }
            }
        }
    }

    fn key(&self, path: &str) -> String {
        format!("{}{}", self.prefix, path)
    }

    async fn finish_rename(&self, id: u64) -> Done {
        let Some(r) = self.wb.with_state(|st| st.renames.get(&id).cloned()) else {
            return Done::Ok;
        };
        let _g = self.wb.bucket_lock.write().await;
        if let Err(e) = bucket_rename(&*self.store, &self.prefix, &r.from, &r.to, r.dir).await {
            return Done::Retry(e);
        }
        if let Err(e) = self.wb.record(Meta::BucketRenameDone { id }) {
            return Done::Retry(StoreError::Other(e.to_string()));
        }
        (self.on_change)(&r.from, None);
        (self.on_change)(&r.to, None);
        Done::Ok
    }

    async fn sync_path(&self, path: &str) -> Done {
        let _g = self.wb.bucket_lock.read().await;
        self.sync_path_locked(path).await
    }

    /// Applies pending deletes and markers at and under `dir` now. The caller holds the
    /// bucket lock exclusively (a bucket rename must not copy what was deleted here).
    pub async fn settle_subtree(&self, dir: &str) -> Result<(), StoreError> {
        let paths: Vec<String> = self.wb.with_state(|st| {
            st.subtree(dir)
                .into_iter()
                .filter(|(_, s)| !matches!(s, PathState::File(_) | PathState::Special(_)))
                .map(|(p, _)| p)
                .collect()
        });
        for p in paths {
            if let Done::Retry(e) = self.sync_path_locked(&p).await {
                return Err(e);
            }
        }
        Ok(())
    }

    async fn sync_path_locked(&self, path: &str) -> Done {
        let _key = self.key_locks.lock(&self.key(path)).await;
        let Some(state) = self.wb.with_state(|st| st.paths.get(path).cloned()) else {
            return Done::Ok;
        };
        let (lsn, result) = match state.clone() {
            PathState::File(_) | PathState::Special(_) => return Done::Ok,
            PathState::Deleted { lsn } => (lsn, self.store.delete(&self.key(path)).await),
            PathState::DirDeleted { lsn } => (
                lsn,
                self.store
                    .delete_dir_marker(&format!("{}/", self.key(path)))
                    .await,
            ),
            PathState::Dir { lsn } => (
                lsn,
                self.store
                    .put_dir_marker(&format!("{}/", self.key(path)))
                    .await,
            ),
        };
        match result {
            Ok(()) => {}
            // No markers on this backend: a new directory stays in the journal (shown by this
            // mount only); a removed one has nothing to delete.
            Err(StoreError::Unsupported(_)) if matches!(state, PathState::Dir { .. }) => {
                if self.wb.markers.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        "{} cannot store directory markers: empty directories created here are kept by this mount's journal only",
                        self.store.describe()
                    );
                }
                return Done::Ok;
            }
            Err(StoreError::Unsupported(_)) => {}
            Err(e) => return Done::Retry(e),
        }
        // Caches learn of the change before the local state stops covering for it.
        (self.on_change)(path, None);
        if let Err(e) = self.wb.record(Meta::PathSynced {
            path: path.to_string(),
            upto_lsn: lsn,
        }) {
            return Done::Retry(StoreError::Other(e.to_string()));
        }
        Done::Ok
    }

    /// Uploads file `fid` as it is now (a snapshot: later writes make it dirty again).
    async fn upload(&self, fid: FileId) -> Done {
        struct InFlight<'a>(&'a std::sync::atomic::AtomicU64);
        impl Drop for InFlight<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.wb.in_flight.fetch_add(1, Ordering::SeqCst);
        let _counted = InFlight(&self.wb.in_flight);
        self.upload_inner(fid).await
    }

    async fn upload_inner(&self, fid: FileId) -> Done {
        match self.upload_once(fid, true).await {
            // Our own earlier upload was found and adopted: upload again on top of it.
            Err(true) => self.upload_once(fid, false).await.unwrap_or(Done::Ok),
            Err(false) => Done::Ok,
            Ok(done) => done,
        }
    }

    /// One upload attempt; `Err(true)` when the object in the way was this mount's own earlier
    /// upload and was adopted (try again), `Err(false)` never happens with `adopt` false.
    async fn upload_once(&self, fid: FileId, adopt: bool) -> Result<Done, bool> {
        let _g = self.wb.bucket_lock.read().await;
        let Some(first_path) = self.owned_path(fid) else {
            return Ok(Done::Ok);
        };
        let key = self.key(&first_path);
        // A file renamed over this one, or an older upload of it, may be writing the key.
        let _key = self.key_locks.lock(&key).await;
        let snap = self.wb.with_state(|st| {
            let f = st.files.get(&fid)?;
            if !f.is_dirty() || f.path.as_deref() != Some(first_path.as_str()) {
                // Uploaded meanwhile, or renamed while waiting for the key (the next round
                // uploads it at its new name).
                return None;
            }
            Some((f.size, f.extents.clone(), f.cond.clone(), f.changed_lsn))
        });
        let Some((size, extents, cond, lsn)) = snap else {
            return Ok(Done::Ok);
        };
        self.upload_snapshot(fid, adopt, &first_path, &key, size, &extents, cond, lsn)
            .await
    }

    /// Puts one snapshot of file `fid` at `key` and journals the outcome (see `upload_once`).
    #[allow(clippy::too_many_arguments)]
    async fn upload_snapshot(
        &self,
        fid: FileId,
        adopt: bool,
        path: &str,
        key: &str,
        size: u64,
        extents: &ExtentMap,
        cond: UploadCondition,
        lsn: u64,
    ) -> Result<Done, bool> {
        let put_cond = match &cond {
            UploadCondition::Any => PutCondition::None,
            UploadCondition::Absent => PutCondition::IfNoneMatch,
            UploadCondition::Unchanged(e) => PutCondition::IfMatch(e.clone()),
        };
        let result = self
            .put_snapshot(Some((fid, path)), key, extents, size, put_cond)
            .await;
        let info = match result {
            Ok(Some(info)) => info,
            // Renamed or removed before its request left: nothing was sent; a later round
            // uploads what is left at its current name.
            Ok(None) => return Ok(Done::Ok),
            Err(StoreError::Precondition(m)) => {
                match self.already_there(key, extents, size).await {
                    // An earlier attempt of this very upload landed (the daemon died before it
                    // could journal that): nothing changed under us.
                    Ok(Some(info)) => info,
                    Ok(None) => {
                        if adopt {
                            match self.own_earlier_upload(fid, key).await {
                                Ok(true) => return Err(true),
                                Ok(false) => {}
                                Err(e) => return Ok(Done::Retry(e)),
                            }
                        }
                        return Ok(self.conflict(fid, path, extents, size, &m).await);
                    }
                    Err(e) => return Ok(Done::Retry(e)),
                }
            }
            Err(e) => return Ok(Done::Retry(e)),
        };
        self.wb
            .stats()
            .bytes_uploaded
            .fetch_add(size, Ordering::Relaxed);
        self.recent
            .lock()
            .unwrap()
            .push_back((Instant::now(), size));
        self.wb.stats().uploads.fetch_add(1, Ordering::Relaxed);
        (self.on_change)(path, Some(&info));
        if let Err(e) = self.wb.record(Meta::Uploaded {
            fid,
            upto_lsn: lsn,
            key: path.to_string(),
            etag: info.etag.clone(),
            size,
        }) {
            return Ok(Done::Retry(StoreError::Other(e.to_string())));
        }
        Ok(Done::Ok)
    }

    /// True (and journaled) when the object at `key` carries the ETag of an upload of `fid`
    /// that started before a crash and never got recorded.
    async fn own_earlier_upload(&self, fid: FileId, key: &str) -> Result<bool, StoreError> {
        let started = self.wb.with_state(|st| {
            st.files
                .get(&fid)
                .map(|f| f.started_etags.clone())
                .unwrap_or_default()
        });
        if started.is_empty() {
            return Ok(false);
        }
        let current = match self.store.head(key).await {
            Ok(info) => info,
            Err(StoreError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let Some(etag) = current.etag else {
            return Ok(false);
        };
        if !started.iter().any(|s| s == &etag) {
            return Ok(false);
        }
        tracing::info!(
            key,
            "found this mount's own upload from before a restart; replacing it"
        );
        self.wb
            .record(Meta::Adopt { fid, etag })
            .map_err(|e| StoreError::Other(e.to_string()))?;
        Ok(true)
    }

    /// The path of file `fid` while it is dirty and has one.
    fn owned_path(&self, fid: FileId) -> Option<String> {
        self.wb.with_state(|st| {
            st.files
                .get(&fid)
                .filter(|f| f.is_dirty())
                .and_then(|f| f.path.clone())
        })
    }

    async fn conflict(
        &self,
        fid: FileId,
        path: &str,
        extents: &ExtentMap,
        size: u64,
        why: &str,
    ) -> Done {
        if self.owned_path(fid).as_deref() != Some(path) {
            // Unlinked, replaced or renamed since the snapshot: nobody wants this version at
            // `path` any more, so there is nothing to keep as a conflict copy. What is left of
            // the file (if anything) is uploaded at its current name by a later round.
            return Done::Ok;
        }
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let conflict_path = format!("{path}.cairn-conflict-{secs}-{fid}");
        let key = self.key(&conflict_path);
        if let Err(e) = self
            .put_snapshot(None, &key, extents, size, PutCondition::None)
            .await
        {
            return Done::Retry(e);
        }
        tracing::warn!(
            path,
            conflict = %conflict_path,
            "/{path} changed in the bucket since this mount read it; the local version was \
             stored as /{conflict_path} and the bucket's version is kept ({why})"
        );
        self.wb.stats().conflicts.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.wb.record(Meta::Conflict {
            fid,
            conflict_key: conflict_path.clone(),
        }) {
            return Done::Retry(StoreError::Other(e.to_string()));
        }
        (self.on_change)(path, None);
        (self.on_change)(&conflict_path, None);
        Done::Ok
    }

    /// Writes the bytes described by `extents` (holes as zeros) to `key`. For an upload of a
    /// file (`owner`: its id and the path it is uploaded as) the start is journaled (durably)
    /// first, with the expected ETag when it is known, and only if the file still has that
    /// path: `Ok(None)` when it was renamed or removed meanwhile (nothing is sent). The record
    /// is what makes a later rename or unlink delete whatever this upload leaves at `key`, live
    /// and after a restart alike.
    async fn put_snapshot(
        &self,
        owner: Option<(FileId, &str)>,
        key: &str,
        extents: &ExtentMap,
        size: u64,
        cond: PutCondition,
    ) -> Result<Option<ObjectInfo>, StoreError> {
        let part = self.wb.config().part_size.max(5 << 20);
        if size <= part {
            let body = self.read_snapshot(extents, 0, size).await?;
            if let Some((fid, path)) = owner {
                use md5::Digest;
                let etag = format!("\"{:x}\"", md5::Md5::digest(&body));
                if !self.begin_upload(fid, path, etag).await? {
                    return Ok(None);
                }
            }
            return match self.store.put(key, body.clone(), cond.clone()).await {
                Err(StoreError::Unsupported(_)) => {
                    // No conditional writes on this backend: check, then write.
                    self.check_condition(key, &cond).await?;
                    self.store.put(key, body, PutCondition::None).await
                }
                other => other,
            }
            .map(Some);
        }
        // Multipart uploads carry no condition here: check first (a race window remains).
        self.check_condition(key, &cond).await?;
        if let Some((fid, path)) = owner {
            // The ETag of a multipart upload is not known in advance; the record still says
            // an object may exist once this starts.
            if !self.begin_upload(fid, path, String::new()).await? {
                return Ok(None);
            }
        }
        let mut up = self.store.put_multipart(key).await?;
        let mut offset = 0;
        while offset < size {
            let n = part.min(size - offset);
            let body = match self.read_snapshot(extents, offset, n).await {
                Ok(b) => b,
                Err(e) => {
                    let _ = up.abort().await;
                    return Err(e);
                }
            };
            if let Err(e) = up.put_part(body).await {
                let _ = up.abort().await;
                return Err(e);
            }
            offset += n;
        }
        up.complete().await.map(Some)
    }

    /// Journals (and syncs) the start of an upload of `fid` as `path`, unless the file no
    /// longer has that path; false then.
    async fn begin_upload(
        &self,
        fid: FileId,
        path: &str,
        etag: String,
    ) -> Result<bool, StoreError> {
        if !self
            .wb
            .record_upload_started(fid, path, etag)
            .map_err(|e| StoreError::Other(e.to_string()))?
        {
            return Ok(false);
        }
        self.wb
            .sync()
            .await
            .map_err(|e| StoreError::Other(e.to_string()))?;
        Ok(true)
    }

    /// The object at `key` if it already holds exactly the bytes of `extents` (compared part by
    /// part), else `None`.
    async fn already_there(
        &self,
        key: &str,
        extents: &ExtentMap,
        size: u64,
    ) -> Result<Option<ObjectInfo>, StoreError> {
        let info = match self.store.head(key).await {
            Ok(i) => i,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if info.size != size {
            return Ok(None);
        }
        let part = self.wb.config().part_size.max(1 << 20);
        let mut offset = 0;
        while offset < size {
            let n = part.min(size - offset);
            let ours = self.read_snapshot(extents, offset, n).await?;
            let theirs = crate::store::collect_stream(
                self.store
                    .get_range(key, offset..offset + n, info.etag.as_deref())
                    .await?,
            )
            .await?;
            if ours != theirs {
                return Ok(None);
            }
            offset += n;
        }
        Ok(Some(info))
    }

    async fn check_condition(&self, key: &str, cond: &PutCondition) -> Result<(), StoreError> {
        let found = match self.store.head(key).await {
            Ok(info) => Some(info),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        match (cond, found) {
            (PutCondition::None, _) => Ok(()),
            (PutCondition::IfNoneMatch, None) => Ok(()),
            (PutCondition::IfNoneMatch, Some(_)) => Err(StoreError::Precondition(format!(
                "{key} was created by someone else"
            ))),
            (PutCondition::IfMatch(e), Some(info)) if info.etag.as_deref() == Some(e.as_str()) => {
                Ok(())
            }
            (PutCondition::IfMatch(_), _) => Err(StoreError::Precondition(format!(
                "{key} was changed or deleted by someone else"
            ))),
        }
    }

    async fn read_snapshot(
        &self,
        extents: &ExtentMap,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, StoreError> {
        let pieces = extents.pieces(offset, len);
        let wb = self.wb.clone();
        tokio::task::spawn_blocking(move || wb.read_pieces(&pieces))
            .await
            .map_err(|e| StoreError::Other(format!("journal read task: {e}")))?
            .map_err(|e| StoreError::Other(format!("journal read: {e}")))
    }

    /// Writes a checkpoint and deletes journal segments nothing refers to any more.
    async fn reclaim(&self) -> Result<(), String> {
        // Nothing live: start a new segment so the old one (and its data) can go.
        let idle = self
            .wb
            .with_state(|st| st.files.is_empty() && st.renames.is_empty());
        let active_len = self
            .wb
            .journal()
            .segments()
            .iter()
            .find(|(id, _)| *id == self.wb.journal().active_segment())
            .map(|(_, b)| *b)
            .unwrap_or(0);
        if idle && active_len > 8 << 20 {
            let wb = self.wb.clone();
            tokio::task::spawn_blocking(move || wb.journal().rotate())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
        let journal_segments = self.wb.journal().segments();
        let active = self.wb.journal().active_segment();
        let old: Vec<u64> = journal_segments
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| *id < active)
            .collect();
        if old.is_empty() {
            return Ok(());
        }
        {
            let mut last = self.last_checkpoint.lock().unwrap();
            let idle = self.wb.with_state(|st| st.files.is_empty());
            if last.elapsed() < Duration::from_secs(1) && !idle {
                return Ok(());
            }
            *last = Instant::now();
        }
        // State, lsn and active segment read together: appends happen under the state lock.
        let (lsn, active, bytes, live) = self.wb.with_state(|st| {
            let live: HashSet<u64> = st
                .files
                .values()
                .flat_map(|f| f.extents.iter().map(|(_, e)| e.loc.segment))
                .collect();
            (
                self.wb.journal().last_lsn(),
                self.wb.journal().active_segment(),
                serde_json::to_vec(st).map_err(|e| e.to_string()),
                live,
            )
        });
        let bytes = bytes?;
        let wb = self.wb.clone();
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            let j = wb.journal();
            j.sync(lsn).map_err(|e| e.to_string())?;
            j.write_checkpoint(lsn, &bytes).map_err(|e| e.to_string())?;
            for (id, _) in j.segments() {
                if id < active && !live.contains(&id) {
                    j.delete_segment(id).map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// Copies every object of `from` (a file, or a directory's whole subtree) to `to` and deletes
/// the originals. Safe to run again after an interruption: sources already moved are skipped.
pub async fn bucket_rename(
    store: &dyn BlobStore,
    prefix: &str,
    from: &str,
    to: &str,
    dir: bool,
) -> Result<(), StoreError> {
    let src = format!("{prefix}{from}");
    let dst = format!("{prefix}{to}");
    if !dir {
        return move_object(store, &src, &dst).await;
    }
    let src_dir = format!("{src}/");
    let dst_dir = format!("{dst}/");
    let moved_key = |k: &str| format!("{dst_dir}{}", &k[src_dir.len()..]);
    // Every directory level visited, and whether it needs a marker at the destination: it had
    // a marker object, or it held nothing at all (an empty directory of a local-dir bucket).
    let mut levels: Vec<(String, bool)> = Vec::new();
    let mut prefixes = vec![src_dir.clone()];
    while let Some(p) = prefixes.pop() {
        let mut token = None;
        let mut marker = false;
        let mut anything = false;
        loop {
            let page = store.list(&p, token, None).await?;
            for o in &page.objects {
                anything = true;
                if o.key.ends_with('/') {
                    marker = true;
                    continue;
                }
                move_object(store, &o.key, &moved_key(&o.key)).await?;
            }
            anything |= !page.prefixes.is_empty();
            prefixes.extend(page.prefixes);
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        levels.push((p, marker || !anything));
    }
    for (p, needs_marker) in &levels {
        if *needs_marker {
            ignore_unsupported(store.put_dir_marker(&moved_key(p)).await)?;
        }
    }
    // Deepest levels first, so a local directory is empty when it is removed.
    levels.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    for (p, _) in &levels {
        ignore_unsupported(store.delete_dir_marker(p).await)?;
    }
    Ok(())
}

fn ignore_unsupported(r: Result<(), StoreError>) -> Result<(), StoreError> {
    match r {
        Err(StoreError::Unsupported(_)) => Ok(()),
        other => other,
    }
}

async fn move_object(store: &dyn BlobStore, from: &str, to: &str) -> Result<(), StoreError> {
    match store.copy(from, to).await {
        Ok(()) => {}
        // Already moved by an earlier, interrupted attempt.
        Err(StoreError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    }
    store.delete(from).await
}

/// Bytes of `pieces`, holes as zeros.
pub(crate) fn total_len(pieces: &[Piece]) -> u64 {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Data { len, .. } | Piece::Hole { len, .. } => *len,
        })
        .sum()
}
