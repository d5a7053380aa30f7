//! Journaled write-back: writes land in a local journal first (durable on fsync) and a
//! background flusher turns them into plain objects in the bucket.
//!
//! - [`records`]: what the journal holds (file data and namespace changes);
//! - [`extents`]: where each written byte of a file is in the journal;
//! - [`state`]: the local view those records build, identical live and after a replay;
//! - [`flusher`]: uploads, deletes and markers, with retries, conflict handling and
//!   journal space reclamation.
//!
//! Files opened for writing are made fully local first (an existing object is copied into the
//! journal on the first change), so an upload never depends on another object of the bucket.

pub mod extents;
pub mod flusher;
mod key_locks;
pub mod records;
pub mod state;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use cairn_journal::{Journal, JournalConfig, JournalError, RecordPos};

use crate::error::{FsError, FsResult};
use extents::{DataLoc, Piece};
use records::{Attrs, FileId, Meta, Special, UploadCondition, KIND_META, KIND_WRITE, WRITE_HEADER};
use state::{PathState, WriteState};

/// Settings of the write-back path.
#[derive(Clone, Debug)]
pub struct WriteConfig {
    /// Journal directory (on the local cache disk).
    pub journal_dir: PathBuf,
    /// Journal segment size; space is reclaimed a segment at a time.
    pub segment_bytes: u64,
    /// How long a file stays unchanged before it is uploaded (fsync does not wait for it).
    pub flush_delay: Duration,
    /// Bound on bytes written but not yet uploaded; past it writers wait for the flusher.
    pub max_dirty_bytes: u64,
    /// Part size of multipart uploads (files larger than one part use multipart).
    pub part_size: u64,
    /// Parts (and small files) uploaded at once.
    pub upload_concurrency: usize,
    /// Write journal records of 256 KiB and more with `O_DIRECT` (bypassing the page cache:
    /// checkpoint writes run at disk speed instead of page-cache-copy speed). On by default;
    /// file systems without `O_DIRECT` fall back to buffered writes by themselves.
    pub direct_io: bool,
}

impl WriteConfig {
    /// Defaults for a journal in `dir` (the dirty bound is capped at half the free space of
    /// the file system holding it, or of its parent when it does not exist yet).
    pub fn new(journal_dir: PathBuf) -> Self {
        let free = free_bytes(&journal_dir)
            .or_else(|| journal_dir.parent().and_then(free_bytes))
            .unwrap_or(u64::MAX);
        let max_dirty = DEFAULT_MAX_DIRTY.min(free / 2).max(64 << 20);
        Self {
            journal_dir,
            segment_bytes: 64 << 20,
            flush_delay: Duration::from_secs(2),
            max_dirty_bytes: max_dirty,
            part_size: 16 << 20,
            upload_concurrency: 4,
            direct_io: true,
        }
    }
}

/// Attributes of a file written here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalAttr {
    /// File id.
    pub fid: FileId,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time.
    pub mtime: SystemTime,
}

/// What the write state says about one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalEntry {
    /// A file written here.
    File(LocalAttr),
    /// A directory created here and not yet in the bucket.
    Dir,
    /// A symlink, fifo, socket or device node (kept by the journal only).
    Special(Special),
    /// Removed here (the bucket may still show it for a while).
    Gone,
}

/// Counters of the write-back path.
#[derive(Debug, Default)]
pub struct WriteStats {
    /// Bytes accepted from writers.
    pub bytes_written: AtomicU64,
    /// Bytes uploaded to the bucket.
    pub bytes_uploaded: AtomicU64,
    /// Objects uploaded.
    pub uploads: AtomicU64,
    /// Uploads that failed and will be retried.
    pub upload_failures: AtomicU64,
    /// Uploads that met a changed object and went to a conflict name.
    pub conflicts: AtomicU64,
    /// fsync/fdatasync calls served.
    pub syncs: AtomicU64,
    /// Writers that had to wait for the flusher (dirty bound reached).
    pub throttled_writes: AtomicU64,
    /// Journal bytes truncated at start (torn tail after a crash).
    pub replay_truncated_bytes: AtomicU64,
}

/// The journal plus the state it describes.
pub struct WriteBack {
    cfg: WriteConfig,
    journal: Journal,
    state: Mutex<WriteState>,
    /// Open handles per file (runtime only: a restart has none).
    handles: Mutex<HashMap<FileId, usize>>,
    /// Wakes the flusher (new work or a forced flush).
    pub(crate) wake: tokio::sync::Notify,
    /// Signalled by the flusher after each round (waiting writers and `flush` re-check).
    pub(crate) progress: tokio::sync::Notify,
    /// Held shared by each bucket change of the flusher, exclusively by bucket renames.
    pub(crate) bucket_lock: tokio::sync::RwLock<()>,
    /// Forced flush requests not yet served (a generation counter).
    pub(crate) force_gen: AtomicU64,
    /// False once the store said it cannot hold directory markers: empty directories created
    /// here then stay in the journal (they exist on this mount only).
    pub(crate) markers: std::sync::atomic::AtomicBool,
    /// Bucket operations of the flusher under way (an upload of a file unlinked meanwhile
    /// leaves a delete to do when it ends, so a drain must wait for it).
    pub(crate) in_flight: AtomicU64,
    /// When data was last written (ns since `born`), for the mount-wide quiet period.
    last_write: AtomicU64,
    /// Dirty bytes as of the flusher's last count plus what was written since (cheap check).
    dirty_estimate: AtomicU64,
    born: std::time::Instant,
    stats: WriteStats,
}

fn journal_err(e: JournalError) -> FsError {
    match e {
        JournalError::NoSpace(_) => FsError::NoSpace,
        other => FsError::Io(format!("journal: {other}")),
    }
}

fn loc_of(pos: &RecordPos, payload_offset: u64) -> DataLoc {
    DataLoc {
        segment: pos.segment,
        record_offset: pos.offset,
        lsn: pos.lsn,
        payload_len: pos.len,
        payload_offset,
    }
}

fn pos_of(loc: &DataLoc) -> RecordPos {
    RecordPos {
        segment: loc.segment,
        offset: loc.record_offset,
        lsn: loc.lsn,
        len: loc.payload_len,
    }
}

/// Nanoseconds since the epoch of `t` (0 before it).
pub fn to_ns(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl WriteBack {
    /// Opens the journal and rebuilds the state from its checkpoint and records.
    pub fn open(cfg: WriteConfig) -> Result<Arc<Self>, String> {
        std::fs::create_dir_all(&cfg.journal_dir).map_err(|e| {
            format!(
                "cannot create journal directory {}: {e}",
                cfg.journal_dir.display()
            )
        })?;
        let (journal, replay) = Journal::open(JournalConfig {
            segment_bytes: cfg.segment_bytes,
            direct_io_min_bytes: cfg
                .direct_io
                .then_some(cairn_journal::DEFAULT_DIRECT_IO_MIN_BYTES),
            ..JournalConfig::new(cfg.journal_dir.clone())
        })
        .map_err(|e| format!("journal {}: {e}", cfg.journal_dir.display()))?;
        let mut state: WriteState = match &replay.checkpoint {
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| {
                format!(
                    "journal checkpoint in {} is unreadable: {e}",
                    cfg.journal_dir.display()
                )
            })?,
            None => WriteState::default(),
        };
        for r in &replay.records {
            match r.kind {
                KIND_WRITE => {
                    let (fid, offset) =
                        records::parse_write_header(&r.payload).ok_or_else(|| {
                            format!("journal record {} is a short write record", r.pos.lsn)
                        })?;
                    let len = (r.payload.len() - WRITE_HEADER) as u64;
                    state.apply_write(fid, offset, len, loc_of(&r.pos, WRITE_HEADER as u64));
                }
                KIND_META => {
                    let m = records::decode_meta(&r.payload)
                        .map_err(|e| format!("journal record {}: {e}", r.pos.lsn))?;
                    state.apply_meta(r.pos.lsn, &m);
                }
                k => return Err(format!("journal record {} has unknown kind {k}", r.pos.lsn)),
            }
        }
        let stats = WriteStats::default();
        stats
            .replay_truncated_bytes
            .store(replay.truncated_tail_bytes, Ordering::Relaxed);
        if replay.truncated_tail_bytes > 0 {
            tracing::warn!(
                bytes = replay.truncated_tail_bytes,
                "journal tail was torn (crash while writing); cut back to the last complete record"
            );
        }
        let dirty = state.files.values().filter(|f| f.is_dirty()).count();
        if dirty > 0 || !state.paths.is_empty() || !state.renames.is_empty() {
            tracing::info!(
                dirty_files = dirty,
                pending_paths = state.paths.len(),
                pending_renames = state.renames.len(),
                "journal replayed: resuming uploads"
            );
        }
        let wb = Arc::new(Self {
            cfg,
            journal,
            state: Mutex::new(state),
            handles: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
            progress: tokio::sync::Notify::new(),
            bucket_lock: tokio::sync::RwLock::new(()),
            force_gen: AtomicU64::new(0),
            markers: std::sync::atomic::AtomicBool::new(true),
            in_flight: AtomicU64::new(0),
            last_write: AtomicU64::new(0),
            dirty_estimate: AtomicU64::new(0),
            born: std::time::Instant::now(),
            stats,
        });
        // No handle survives a restart: files with nothing to upload go now (journaled).
        wb.drop_settled()
            .map_err(|e| format!("journal {}: {e}", wb.cfg.journal_dir.display()))?;
        Ok(wb)
    }

    /// Settings in force.
    pub fn config(&self) -> &WriteConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> &WriteStats {
        &self.stats
    }

    /// The journal (for the flusher and stats).
    pub(crate) fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Runs `f` on the state under its lock.
    pub(crate) fn with_state<T>(&self, f: impl FnOnce(&mut WriteState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    fn append_meta_locked(&self, st: &mut WriteState, m: Meta) -> FsResult<u64> {
        if trace_meta() {
            tracing::debug!(record = ?m, "journal");
        }
        let payload = records::encode_meta(&m);
        let pos = self
            .journal
            .append(KIND_META, &[&payload])
            .map_err(journal_err)?;
        st.apply_meta(pos.lsn, &m);
        Ok(pos.lsn)
    }

    /// Journals `Meta::UploadStarted` for `fid` if the file still has `path` (checked under the
    /// same lock a rename takes, so no rename can slip in between); false when it moved.
    pub(crate) fn record_upload_started(
        &self,
        fid: FileId,
        path: &str,
        etag: String,
    ) -> FsResult<bool> {
        let mut st = self.state.lock().unwrap();
        if st.files.get(&fid).and_then(|f| f.path.as_deref()) != Some(path) {
            return Ok(false);
        }
        self.append_meta_locked(&mut st, Meta::UploadStarted { fid, etag })?;
        Ok(true)
    }

    /// Journals and applies one namespace or flusher record.
    pub(crate) fn record(&self, m: Meta) -> FsResult<u64> {
        let mut st = self.state.lock().unwrap();
        self.append_meta_locked(&mut st, m)
    }

    /// What the write state says about `path`, if anything.
    pub fn entry(&self, path: &str) -> Option<LocalEntry> {
        let st = self.state.lock().unwrap();
        Some(match st.paths.get(path)? {
            PathState::File(fid) => {
                let f = st.files.get(fid)?;
                if f.incomplete {
                    return None;
                }
                LocalEntry::File(attr_of(f))
            }
            PathState::Dir { .. } => LocalEntry::Dir,
            PathState::Special(sp) => LocalEntry::Special(sp.clone()),
            PathState::Deleted { .. } | PathState::DirDeleted { .. } => LocalEntry::Gone,
        })
    }

    /// POSIX attributes kept for `path`, if any were set on this mount.
    pub fn attrs(&self, path: &str) -> Option<Attrs> {
        self.state.lock().unwrap().attrs.get(path).cloned()
    }

    /// True when attributes are kept for some path directly in `dir`.
    pub fn has_attrs_in(&self, dir: &str) -> bool {
        let st = self.state.lock().unwrap();
        if dir.is_empty() {
            return !st.attrs.is_empty();
        }
        let from = format!("{dir}/");
        st.attrs
            .range(from.clone()..)
            .next()
            .is_some_and(|(p, _)| p.starts_with(&from))
    }

    /// Journals new attributes for `path` (only the fields set).
    pub fn set_path_attrs(&self, path: &str, attrs: Attrs) -> FsResult<()> {
        self.record(Meta::SetAttr {
            path: path.to_string(),
            attrs,
        })
        .map(|_| ())
    }

    /// Creates a special node at `path`.
    pub fn make_special(&self, path: &str, special: Special) -> FsResult<()> {
        self.record(Meta::MakeSpecial {
            path: path.to_string(),
            special,
        })
        .map(|_| ())
    }

    /// Direct children of directory `dir` (`""` is the root) with local state, by name.
    pub fn children(&self, dir: &str) -> Vec<(String, LocalEntry)> {
        let st = self.state.lock().unwrap();
        let mut out = Vec::new();
        for (p, s) in st.subtree(dir) {
            let rest = if dir.is_empty() {
                p.as_str()
            } else if p.len() > dir.len() {
                &p[dir.len() + 1..]
            } else {
                continue;
            };
            if rest.is_empty() {
                continue;
            }
            if let Some((first, _)) = rest.split_once('/') {
                // A local file deeper down implies the directory on the way.
                if matches!(
                    s,
                    PathState::File(_) | PathState::Dir { .. } | PathState::Special(_)
                ) {
                    out.push((first.to_string(), LocalEntry::Dir));
                }
                continue;
            }
            let e = match s {
                PathState::File(fid) => match st.files.get(&fid) {
                    Some(f) if !f.incomplete => LocalEntry::File(attr_of(f)),
                    _ => continue,
                },
                PathState::Dir { .. } => LocalEntry::Dir,
                PathState::Special(sp) => LocalEntry::Special(sp),
                _ => LocalEntry::Gone,
            };
            out.push((rest.to_string(), e));
        }
        // One entry per name; a real entry wins over an implied directory.
        out.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then((a.1 == LocalEntry::Dir).cmp(&(b.1 == LocalEntry::Dir)))
        });
        out.dedup_by(|later, earlier| later.0 == earlier.0);
        out
    }

    /// True when some local file or directory lives strictly under `dir`.
    pub fn has_local_children(&self, dir: &str) -> bool {
        let st = self.state.lock().unwrap();
        st.subtree(dir)
            .iter()
            .any(|(p, s)| p != dir && matches!(s, PathState::File(_) | PathState::Dir { .. }))
    }

    /// Creates an empty local file at `path` and registers one open handle on it (release it
    /// with [`Self::close_handle`]); an `incomplete` one stays hidden and is never uploaded
    /// until [`Self::complete`].
    pub fn create(
        &self,
        path: &str,
        cond: UploadCondition,
        mode: u32,
        incomplete: bool,
    ) -> FsResult<FileId> {
        let mut st = self.state.lock().unwrap();
        let fid = st.next_fid.max(1);
        st.next_fid = fid + 1;
        self.append_meta_locked(
            &mut st,
            Meta::Create {
                fid,
                path: path.to_string(),
                cond,
                mode,
                incomplete,
            },
        )?;
        let now = to_ns(SystemTime::now());
        self.append_meta_locked(&mut st, Meta::SetMtime { fid, mtime_ns: now })?;
        // Registered under the state lock: the flusher never sees it settled and handle-less.
        *self.handles.lock().unwrap().entry(fid).or_default() += 1;
        drop(st);
        self.wake.notify_one();
        Ok(fid)
    }

    /// The local file at `path`, with a handle registered on it atomically (so the flusher
    /// cannot drop it in between), or `None`.
    pub fn open_existing(&self, path: &str) -> Option<LocalAttr> {
        let st = self.state.lock().unwrap();
        let f = match st.paths.get(path)? {
            PathState::File(fid) => st.files.get(fid)?,
            _ => return None,
        };
        if f.incomplete {
            return None;
        }
        *self.handles.lock().unwrap().entry(f.fid).or_default() += 1;
        Some(attr_of(f))
    }

    /// Ends the copy phase of an incomplete file: it is shown and uploaded from now on.
    pub fn complete(&self, fid: FileId) -> FsResult<()> {
        self.record(Meta::Complete { fid }).map(|_| ())
    }

    /// Drops an incomplete file (its copy failed); the bucket is not touched.
    pub fn discard(&self, fid: FileId) -> FsResult<()> {
        self.record(Meta::Discard { fid }).map(|_| ())
    }

    /// A fresh bucket-rename id.
    pub fn next_rename_id(&self) -> u64 {
        let mut st = self.state.lock().unwrap();
        let id = st.next_rename_id.max(1);
        st.next_rename_id = id + 1;
        id
    }

    /// Bytes of files not yet fully uploaded.
    pub fn dirty_bytes(&self) -> u64 {
        let st = self.state.lock().unwrap();
        st.files
            .values()
            .filter(|f| f.is_dirty())
            .map(|f| f.extents.data_bytes())
            .sum()
    }

    /// Waits while the dirty bound is exceeded (the flusher is told to hurry).
    pub async fn throttle(&self) {
        let mut counted = false;
        while self.dirty_bytes() > self.cfg.max_dirty_bytes {
            if !counted {
                self.stats.throttled_writes.fetch_add(1, Ordering::Relaxed);
                counted = true;
            }
            let progressed = self.progress.notified();
            self.force_gen.fetch_add(1, Ordering::Relaxed);
            self.wake.notify_one();
            let _ = tokio::time::timeout(Duration::from_millis(200), progressed).await;
        }
    }

    /// Writes `data` at `offset` of file `fid` (journal append; not yet durable). Data never
    /// takes the journal disk's last [`META_RESERVE`] bytes: namespace and upload records
    /// still fit then, so a full disk refuses writes (ENOSPC) but uploads and deletes go on.
    pub fn write(&self, fid: FileId, offset: u64, data: &[u8]) -> FsResult<()> {
        if free_bytes(&self.cfg.journal_dir).is_some_and(|f| f < META_RESERVE + data.len() as u64) {
            return Err(FsError::NoSpace);
        }
        let header = records::write_header(fid, offset);
        let mut st = self.state.lock().unwrap();
        if !st.files.contains_key(&fid) {
            return Err(FsError::BadHandle);
        }
        let pos = self
            .journal
            .append(KIND_WRITE, &[&header, data])
            .map_err(journal_err)?;
        st.apply_write(
            fid,
            offset,
            data.len() as u64,
            loc_of(&pos, WRITE_HEADER as u64),
        );
        let now = to_ns(SystemTime::now());
        if let Some(f) = st.files.get_mut(&fid) {
            // mtime is runtime state between explicit SetMtime records: a replay shows the
            // time of the last journaled change at worst.
            f.mtime_ns = now;
        }
        drop(st);
        self.stats
            .bytes_written
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.dirty_estimate
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.last_write
            .store(self.born.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// How long since any data was written on this mount.
    pub fn writes_quiet_for(&self) -> Duration {
        let last = Duration::from_nanos(self.last_write.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(last)
    }

    /// True when the cheap dirty estimate says writers may have to wait (the exact check is
    /// [`Self::throttle`]).
    pub fn maybe_over_dirty_bound(&self) -> bool {
        self.dirty_estimate.load(Ordering::Relaxed) > self.cfg.max_dirty_bytes
    }

    /// Resets the dirty estimate to an exact count (the flusher, once a round).
    pub(crate) fn recount_dirty(&self) -> u64 {
        let n = self.dirty_bytes();
        self.dirty_estimate.store(n, Ordering::Relaxed);
        n
    }

    /// Sets the size of file `fid`.
    pub fn truncate(&self, fid: FileId, size: u64) -> FsResult<()> {
        let mut st = self.state.lock().unwrap();
        if !st.files.contains_key(&fid) {
            return Err(FsError::BadHandle);
        }
        self.append_meta_locked(&mut st, Meta::Truncate { fid, size })?;
        let now = to_ns(SystemTime::now());
        self.append_meta_locked(&mut st, Meta::SetMtime { fid, mtime_ns: now })?;
        Ok(())
    }

    /// Sets the mode bits and/or mtime of file `fid`.
    pub fn set_attrs(
        &self,
        fid: FileId,
        mode: Option<u32>,
        mtime: Option<SystemTime>,
    ) -> FsResult<()> {
        let mut st = self.state.lock().unwrap();
        if !st.files.contains_key(&fid) {
            return Err(FsError::BadHandle);
        }
        if let Some(mode) = mode {
            self.append_meta_locked(&mut st, Meta::Chmod { fid, mode })?;
        }
        if let Some(t) = mtime {
            self.append_meta_locked(
                &mut st,
                Meta::SetMtime {
                    fid,
                    mtime_ns: to_ns(t),
                },
            )?;
        }
        Ok(())
    }

    /// Attributes of file `fid`.
    pub fn attr(&self, fid: FileId) -> Option<LocalAttr> {
        self.state.lock().unwrap().files.get(&fid).map(attr_of)
    }

    /// Makes everything journaled so far durable (group commit across callers).
    pub async fn sync(self: &Arc<Self>) -> FsResult<()> {
        let lsn = self.journal.last_lsn();
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        if self.journal.durable_lsn() >= lsn {
            return Ok(());
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.journal.sync(lsn))
            .await
            .map_err(|e| FsError::Io(format!("journal sync task: {e}")))?
            .map_err(journal_err)
    }

    /// Reads `len` bytes at `offset` of file `fid` (short at end of file).
    pub fn read(&self, fid: FileId, offset: u64, len: u64) -> FsResult<Bytes> {
        let pieces = {
            let st = self.state.lock().unwrap();
            let f = st.files.get(&fid).ok_or(FsError::BadHandle)?;
            if offset >= f.size {
                return Ok(Bytes::new());
            }
            let len = len.min(f.size - offset);
            f.extents.pieces(offset, len)
        };
        self.read_pieces(&pieces)
    }

    /// The bytes of `pieces` (journal data, holes as zeros), concatenated.
    pub(crate) fn read_pieces(&self, pieces: &[Piece]) -> FsResult<Bytes> {
        let mut out = BytesMut::zeroed(flusher::total_len(pieces) as usize);
        let mut at = 0usize;
        for p in pieces {
            match *p {
                Piece::Hole { len, .. } => at += len as usize,
                Piece::Data { len, loc, .. } => {
                    let buf = &mut out[at..at + len as usize];
                    self.journal
                        .read_payload(&pos_of(&loc), loc.payload_offset, buf)
                        .map_err(journal_err)?;
                    at += len as usize;
                }
            }
        }
        Ok(out.freeze())
    }

    /// Registers an open handle of `fid` (its data is kept while any handle is open).
    pub fn open_handle(&self, fid: FileId) {
        *self.handles.lock().unwrap().entry(fid).or_default() += 1;
    }

    /// Releases a handle; a file that is clean or unlinked and has no handles left is dropped.
    pub fn close_handle(&self, fid: FileId) {
        let mut h = self.handles.lock().unwrap();
        if let Some(n) = h.get_mut(&fid) {
            *n -= 1;
            if *n == 0 {
                h.remove(&fid);
            }
        }
        drop(h);
        self.wake.notify_one();
    }

    /// True while some handle of `fid` is open.
    pub fn is_open(&self, fid: FileId) -> bool {
        self.handles.lock().unwrap().contains_key(&fid)
    }

    /// Drops settled files (clean, or unlinked) that no handle uses. Lock order: state, then
    /// handles (as in [`Self::open_existing`]).
    pub(crate) fn drop_settled(&self) -> FsResult<usize> {
        let mut st = self.state.lock().unwrap();
        let gone = {
            let handles = self.handles.lock().unwrap();
            st.settled(&|fid| handles.contains_key(&fid))
        };
        for fid in &gone {
            self.append_meta_locked(&mut st, Meta::Discard { fid: *fid })?;
        }
        Ok(gone.len())
    }

    /// Asks the flusher to upload everything now and waits until nothing is pending
    /// (or `timeout` passes). `progress` is called with (pending items, dirty bytes).
    pub async fn flush_all(
        &self,
        timeout: Duration,
        mut progress: impl FnMut(usize, u64),
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (pending, bytes) = self.pending();
            progress(pending, bytes);
            if pending == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "{pending} item(s), {bytes} bytes still not in the bucket after {}",
                    humantime::format_duration(timeout)
                ));
            }
            let notified = self.progress.notified();
            self.force_gen.fetch_add(1, Ordering::Relaxed);
            self.wake.notify_one();
            let _ = tokio::time::timeout(Duration::from_millis(500), notified).await;
        }
    }

    /// The whole write state, for test diagnostics.
    pub fn with_state_debug(&self) -> String {
        format!("{:?}", self.state.lock().unwrap().paths)
    }

    /// Bytes of journal segments on disk.
    pub fn journal_bytes(&self) -> u64 {
        self.journal.segments().iter().map(|(_, b)| b).sum()
    }

    /// Asks the flusher to upload everything now, without waiting for the quiet period.
    pub fn request_flush(&self) {
        self.force_gen.fetch_add(1, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// (items waiting for the bucket, dirty bytes).
    pub fn pending(&self) -> (usize, u64) {
        let st = self.state.lock().unwrap();
        let dirty: Vec<_> = st.files.values().filter(|f| f.is_dirty()).collect();
        let markers = self.markers.load(Ordering::Relaxed);
        let paths = st
            .paths
            .values()
            .filter(|s| match s {
                PathState::File(_) | PathState::Special(_) => false,
                PathState::Dir { .. } => markers,
                _ => true,
            })
            .count();
        let bytes = dirty.iter().map(|f| f.extents.data_bytes()).sum();
        let running = self.in_flight.load(Ordering::SeqCst) as usize;
        (dirty.len() + paths + st.renames.len() + running, bytes)
    }
}

/// `CAIRN_TRACE_META=1` logs every namespace record at debug level (for diagnosing tests).
fn trace_meta() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("CAIRN_TRACE_META").is_some())
}

/// Default bound on written-but-not-uploaded bytes (capped at half the journal disk's free
/// space at mount, see [`WriteConfig::new`]): large enough that a checkpoint burst of several
/// GiB never waits for uploads, which start once it is over.
pub const DEFAULT_MAX_DIRTY: u64 = 16 << 30;

/// Journal disk space kept for metadata records when data writes are refused.
pub const META_RESERVE: u64 = 4 << 20;

/// Bytes available to us on the file system holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

fn attr_of(f: &state::LocalFile) -> LocalAttr {
    LocalAttr {
        fid: f.fid,
        size: f.size,
        mode: f.mode,
        mtime: SystemTime::UNIX_EPOCH + Duration::from_nanos(f.mtime_ns),
    }
}

impl WriteBack {
    /// Highest lsn journaled so far.
    pub fn last_lsn(&self) -> u64 {
        self.journal.last_lsn()
    }
}
