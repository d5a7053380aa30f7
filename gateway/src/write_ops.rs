//! The gateway's write operations: create, write, truncate, sync, unlink, mkdir, rmdir and
//! rename, on top of the journaled write-back path ([`crate::write`]).
//!
//! Every change is journaled before it is visible; the flusher brings the bucket up to date.
//! A file opened for writing becomes local on its first change: an existing object is copied
//! into the journal first, so uploads never depend on other objects.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;

use crate::error::{FsError, FsResult};
use crate::gateway::{Gateway, Handle, HandleId, Opened};
use crate::namespace::{check_name, join, Ino, NameProblem, NodeAttr, NodeKind};
use crate::read::FileReader;
use crate::write::flusher::bucket_rename;
use crate::write::records::{Attrs, FileId, Meta, Special, SpecialKind, UploadCondition};
use crate::write::state::is_within;
use crate::write::{LocalEntry, WriteBack};

/// A handle of a file written here, or opened for writing and not yet changed.
pub struct LocalHandle {
    ino: Ino,
    writable: bool,
    /// The local file, once there is one.
    local: Mutex<Option<FileId>>,
    /// Reads before the first change go to the bucket version.
    reader: Option<Arc<FileReader>>,
}

/// Bytes per journal record when an object is copied in.
const COPY_CHUNK: usize = 1 << 20;

fn name_ok(name: &str) -> FsResult<()> {
    match check_name(name) {
        Ok(()) => Ok(()),
        Err(NameProblem::TooLong) => Err(FsError::NameTooLong),
        Err(p) => Err(FsError::Invalid(p.to_string())),
    }
}

impl Gateway {
    fn wb(&self) -> FsResult<&Arc<WriteBack>> {
        self.wb.as_ref().ok_or(FsError::ReadOnly)
    }

    fn touched(&self, fid: FileId) {
        if let Some(f) = &self.flusher {
            f.touched(fid);
        }
    }

    /// Opens a local handle when the file is local or the open writes; `None` for a plain read
    /// of a bucket object.
    pub(crate) async fn open_local(
        &self,
        ino: Ino,
        write: bool,
        truncate: bool,
    ) -> FsResult<Option<Opened>> {
        let Some(wb) = self.wb.clone() else {
            return if write {
                Err(FsError::ReadOnly)
            } else {
                Ok(None)
            };
        };
        let path = self.ns.path_of(ino)?;
        if let Some(a) = wb.open_existing(&path) {
            if write && truncate && a.size > 0 {
                wb.truncate(a.fid, 0)?;
                self.touched(a.fid);
            }
            let h = LocalHandle {
                ino,
                writable: write,
                local: Mutex::new(Some(a.fid)),
                reader: None,
            };
            let fh = self.new_handle(Handle::Local(Arc::new(h)));
            return Ok(Some(Opened {
                fh,
                keep_page_cache: false,
            }));
        }
        if !write {
            return Ok(None);
        }
        let attr = self.ns.getattr(ino).await?;
        if attr.kind == NodeKind::Dir {
            return Err(FsError::IsDir);
        }
        if truncate {
            // Nothing of the old version is needed: start an empty local file.
            let cond = match &attr.etag {
                Some(e) => UploadCondition::Unchanged(e.to_string()),
                None => UploadCondition::Any,
            };
            let fid = wb.create(&path, cond, 0o644, false)?;
            self.touched(fid);
            let h = LocalHandle {
                ino,
                writable: true,
                local: Mutex::new(Some(fid)),
                reader: None,
            };
            let fh = self.new_handle(Handle::Local(Arc::new(h)));
            return Ok(Some(Opened {
                fh,
                keep_page_cache: false,
            }));
        }
        let (reader, _) = self.bucket_reader(ino).await?;
        let h = LocalHandle {
            ino,
            writable: true,
            local: Mutex::new(None),
            reader: Some(reader),
        };
        let fh = self.new_handle(Handle::Local(Arc::new(h)));
        Ok(Some(Opened {
            fh,
            keep_page_cache: false,
        }))
    }

    pub(crate) async fn read_local(
        &self,
        h: &LocalHandle,
        offset: u64,
        len: u64,
    ) -> FsResult<Bytes> {
        let fid = *h.local.lock().unwrap();
        match (fid, &h.reader) {
            (Some(fid), _) => self.wb()?.read(fid, offset, len),
            (None, Some(r)) => r.read(offset, len).await,
            (None, None) => Err(FsError::BadHandle),
        }
    }

    pub(crate) fn release_local(&self, h: &LocalHandle) {
        if let (Some(fid), Some(wb)) = (*h.local.lock().unwrap(), &self.wb) {
            wb.close_handle(fid);
        }
    }

    /// The local file behind a writable handle, copying the object in on first use.
    async fn ensure_local(&self, h: &LocalHandle) -> FsResult<FileId> {
        if let Some(fid) = *h.local.lock().unwrap() {
            return Ok(fid);
        }
        let wb = self.wb()?.clone();
        let _one_at_a_time = self.materialize_lock.lock().await;
        if let Some(fid) = *h.local.lock().unwrap() {
            return Ok(fid);
        }
        let path = self.ns.path_of(h.ino)?;
        let fid = match wb.open_existing(&path) {
            Some(a) => a.fid,
            None => self.copy_in(&wb, h.ino, &path).await?,
        };
        *h.local.lock().unwrap() = Some(fid);
        Ok(fid)
    }

    /// Copies the bucket object at `path` into a new local file (returned with a handle
    /// registered, so the flusher never drops it as settled).
    async fn copy_in(&self, wb: &Arc<WriteBack>, ino: Ino, path: &str) -> FsResult<FileId> {
        let (key, attr) = self.ns.open_file(ino).await?;
        let cond = match &attr.etag {
            Some(e) => UploadCondition::Unchanged(e.to_string()),
            None => UploadCondition::Any,
        };
        let fid = wb.create(path, cond, 0o644, true)?;
        let result = async {
            // Through the block cache: bytes read recently cost no GET.
            let (reader, _) = self.bucket_reader(ino).await?;
            let mut offset = 0u64;
            while offset < attr.size {
                let chunk = reader.read(offset, COPY_CHUNK as u64).await?;
                if chunk.is_empty() {
                    break;
                }
                wb.write(fid, offset, &chunk)?;
                offset += chunk.len() as u64;
            }
            if offset != attr.size {
                return Err(FsError::Io(format!(
                    "{key}: copied {offset} of {} bytes",
                    attr.size
                )));
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                wb.complete(fid)?;
                // The copy is not a change: nothing to upload until the first write.
                wb.record(Meta::Uploaded {
                    fid,
                    upto_lsn: wb_last_lsn(wb),
                    key: path.to_string(),
                    etag: attr.etag.as_deref().map(str::to_string),
                    size: attr.size,
                })?;
                Ok(fid)
            }
            Err(e) => {
                wb.close_handle(fid);
                let _ = wb.discard(fid);
                Err(e)
            }
        }
    }

    /// Attributes of the file behind handle `fh` when its name is gone (unlinked while open).
    pub(crate) fn orphan_attr(&self, ino: Ino, fh: Option<HandleId>) -> Option<NodeAttr> {
        // fstat() reaches us without the handle: any open handle of the inode will do.
        let h = match fh.map(|fh| self.handle(fh)) {
            Some(Ok(Handle::Local(h))) => h,
            _ => self.files.lock().unwrap().values().find_map(|h| match h {
                Handle::Local(l) if l.ino == ino && l.local.lock().unwrap().is_some() => {
                    Some(l.clone())
                }
                _ => None,
            })?,
        };
        let fid = (*h.local.lock().unwrap())?;
        let a = self.wb.as_ref()?.attr(fid)?;
        Some(NodeAttr {
            ino,
            kind: NodeKind::File,
            size: a.size,
            mtime: a.mtime,
            etag: None,
            perm: Some((a.mode & 0o7777) as u16),
            uid: None,
            gid: None,
            atime: None,
            ctime: None,
            rdev: 0,
            unlinked: true,
        })
    }

    /// Records that `dir`'s entries changed now (mtime and ctime), as POSIX directories do.
    fn touch_dir(&self, wb: &WriteBack, dir: Ino) -> FsResult<()> {
        let path = self.ns.path_of(dir)?;
        let now = crate::write::to_ns(SystemTime::now());
        wb.set_path_attrs(
            &path,
            Attrs {
                mtime_ns: Some(now),
                ctime_ns: Some(now),
                ..Attrs::default()
            },
        )
    }

    /// Journals the attributes a new node gets from its creator (owner when not the mount's,
    /// mode, and all times = now).
    fn init_attrs(
        &self,
        wb: &WriteBack,
        path: &str,
        mode: Option<u32>,
        owner: Option<(u32, u32)>,
    ) -> FsResult<()> {
        let now = crate::write::to_ns(SystemTime::now());
        wb.set_path_attrs(
            path,
            Attrs {
                mode: mode.map(|m| m & 0o7777),
                uid: owner.map(|o| o.0),
                gid: owner.map(|o| o.1),
                atime_ns: Some(now),
                mtime_ns: Some(now),
                ctime_ns: Some(now),
            },
        )
    }

    /// Creates a symlink, fifo, socket or device node `name` in `parent`. Such nodes cannot be
    /// objects: they are kept by this mount's journal (SEMANTICS.md).
    #[allow(clippy::too_many_arguments)]
    pub async fn mknod(
        &self,
        parent: Ino,
        name: &str,
        kind: SpecialKind,
        mode: u32,
        rdev: u32,
        target: &str,
        owner: Option<(u32, u32)>,
    ) -> FsResult<NodeAttr> {
        let wb = self.wb()?.clone();
        name_ok(name)?;
        match self.ns.lookup(parent, name).await {
            Ok(_) => return Err(FsError::Exists),
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let path = join(&self.ns.path_of(parent)?, name);
        wb.make_special(
            &path,
            Special {
                kind,
                rdev,
                target: target.to_string(),
            },
        )?;
        self.init_attrs(&wb, &path, Some(mode), owner)?;
        self.touch_dir(&wb, parent)?;
        self.ns.invalidate(&path);
        self.ns.lookup(parent, name).await
    }

    /// The target of symlink `ino`.
    pub async fn readlink(&self, ino: Ino) -> FsResult<String> {
        let path = self.ns.path_of(ino)?;
        match self.wb.as_ref().and_then(|wb| wb.entry(&path)) {
            Some(LocalEntry::Special(sp)) if sp.kind == SpecialKind::Symlink => Ok(sp.target),
            _ => Err(FsError::Invalid("not a symlink".into())),
        }
    }

    /// Creates a file `name` in `parent` and opens it for writing.
    pub async fn create(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        exclusive: bool,
        truncate: bool,
        owner: Option<(u32, u32)>,
    ) -> FsResult<(NodeAttr, Opened)> {
        let wb = self.wb()?.clone();
        name_ok(name)?;
        match self.ns.lookup(parent, name).await {
            Ok(a) if a.kind == NodeKind::Dir => return Err(FsError::IsDir),
            Ok(_) if exclusive => return Err(FsError::Exists),
            Ok(a) => {
                let opened = self.open(a.ino, true, truncate).await?;
                let attr = self.ns.getattr(a.ino).await?;
                return Ok((attr, opened));
            }
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let path = join(&self.ns.path_of(parent)?, name);
        let cond = match wb.entry(&path) {
            Some(LocalEntry::Gone) => UploadCondition::Any,
            _ => UploadCondition::Absent,
        };
        let fid = wb.create(&path, cond, mode & 0o7777, false)?;
        self.touched(fid);
        if owner.is_some() {
            self.init_attrs(&wb, &path, Some(mode), owner)?;
        }
        self.touch_dir(&wb, parent)?;
        let attr = wb.attr(fid).ok_or(FsError::BadHandle)?;
        let node = self.ns.intern_local(&path, &attr);
        let h = LocalHandle {
            ino: node.ino,
            writable: true,
            local: Mutex::new(Some(fid)),
            reader: None,
        };
        let fh = self.new_handle(Handle::Local(Arc::new(h)));
        Ok((
            node,
            Opened {
                fh,
                keep_page_cache: false,
            },
        ))
    }

    fn local_handle(&self, fh: HandleId) -> FsResult<Arc<LocalHandle>> {
        match self.handle(fh)? {
            Handle::Local(h) => Ok(h),
            Handle::Bucket(_) => Err(FsError::BadHandle),
        }
    }

    /// Writes `data` at `offset` through handle `fh`; returns the bytes taken.
    pub async fn write(&self, fh: HandleId, offset: u64, data: &[u8]) -> FsResult<u32> {
        let h = self.local_handle(fh)?;
        if !h.writable {
            return Err(FsError::BadHandle);
        }
        let wb = self.wb()?.clone();
        let fid = self.ensure_local(&h).await?;
        wb.throttle().await;
        wb.write(fid, offset, data)?;
        self.touched(fid);
        Ok(data.len() as u32)
    }

    /// The write fast path, run on the FUSE thread itself: a handle that is already local and
    /// a mount under its dirty bound take the data straight into the journal (no copy, no
    /// task). `None` means the async [`Self::write`] must handle it.
    pub fn write_now(&self, fh: HandleId, offset: u64, data: &[u8]) -> Option<FsResult<u32>> {
        let Ok(Handle::Local(h)) = self.handle(fh) else {
            return None;
        };
        if !h.writable {
            return None;
        }
        let fid = (*h.local.lock().unwrap())?;
        let wb = self.wb.as_ref()?;
        if wb.maybe_over_dirty_bound() {
            return None;
        }
        Some(wb.write(fid, offset, data).map(|()| {
            self.touched(fid);
            data.len() as u32
        }))
    }

    /// Makes every change journaled so far durable (fsync, fdatasync, close).
    pub async fn sync(&self) -> FsResult<()> {
        match &self.wb {
            Some(wb) => wb.sync().await,
            None => Ok(()),
        }
    }

    /// Changes size, mode, owner or times of `ino` (through `fh` when the kernel gives one).
    /// Size changes make the file local; the other attributes are kept by this mount.
    #[allow(clippy::too_many_arguments)]
    pub async fn setattr(
        &self,
        ino: Ino,
        fh: Option<HandleId>,
        size: Option<u64>,
        mode: Option<u32>,
        owner: (Option<u32>, Option<u32>),
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
    ) -> FsResult<NodeAttr> {
        let attr = self.ns.getattr(ino).await?;
        let wb = self.wb()?.clone();
        let path = self.ns.path_of(ino)?;
        if let Some(size) = size {
            if attr.kind == NodeKind::Dir {
                return Err(FsError::IsDir);
            }
            // One handle on the file while changing it (released below), so the flusher
            // cannot drop it as settled in between.
            let fid = match wb.open_existing(&path) {
                Some(a) => a.fid,
                None if size == 0 => {
                    let cond = match &attr.etag {
                        Some(e) => UploadCondition::Unchanged(e.to_string()),
                        None => UploadCondition::Any,
                    };
                    wb.create(&path, cond, 0o644, false)?
                }
                None => {
                    // Truncate to a non-zero size: the object's bytes are needed.
                    let h = LocalHandle {
                        ino,
                        writable: true,
                        local: Mutex::new(None),
                        reader: None,
                    };
                    self.ensure_local(&h).await?
                }
            };
            let result = wb.truncate(fid, size);
            self.touched(fid);
            wb.close_handle(fid);
            result?;
        }
        let _ = fh;
        let now = crate::write::to_ns(SystemTime::now());
        let changes = Attrs {
            mode: mode.map(|m| m & 0o7777),
            uid: owner.0,
            gid: owner.1,
            atime_ns: atime.map(crate::write::to_ns),
            mtime_ns: mtime.map(crate::write::to_ns).or(size.map(|_| now)),
            ctime_ns: Some(now),
        };
        wb.set_path_attrs(&path, changes)?;
        self.ns.getattr(ino).await
    }

    /// Keeps directory `dir` in existence after its last entry went away: in a bucket, a
    /// directory without a marker object exists only through the keys under it.
    async fn keep_dir(&self, wb: &WriteBack, dir: Ino) -> FsResult<()> {
        let path = self.ns.path_of(dir)?;
        if path.is_empty() {
            return Ok(());
        }
        if self.ns.list_dir(dir).await?.entries.is_empty()
            && wb.entry(&path) != Some(LocalEntry::Dir)
        {
            wb.record(Meta::Mkdir {
                path: path.to_string(),
            })?;
        }
        Ok(())
    }

    /// Removes file `name` from `parent`.
    pub async fn unlink(&self, parent: Ino, name: &str) -> FsResult<()> {
        let wb = self.wb()?.clone();
        let a = self.ns.lookup(parent, name).await?;
        if a.kind == NodeKind::Dir {
            return Err(FsError::IsDir);
        }
        let path = join(&self.ns.path_of(parent)?, name);
        wb.record(Meta::Unlink { path: path.clone() })?;
        self.touch_dir(&wb, parent)?;
        self.ns.invalidate(&path);
        self.keep_dir(&wb, parent).await?;
        wb.wake.notify_one();
        Ok(())
    }

    /// Creates directory `name` in `parent`.
    pub async fn mkdir(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> FsResult<NodeAttr> {
        let wb = self.wb()?.clone();
        name_ok(name)?;
        match self.ns.lookup(parent, name).await {
            Ok(_) => return Err(FsError::Exists),
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let path = join(&self.ns.path_of(parent)?, name);
        wb.record(Meta::Mkdir { path: path.clone() })?;
        self.init_attrs(&wb, &path, Some(mode), owner)?;
        self.touch_dir(&wb, parent)?;
        self.ns.invalidate(&path);
        wb.wake.notify_one();
        self.ns.lookup(parent, name).await
    }

    /// Removes the empty directory `name` from `parent`.
    pub async fn rmdir(&self, parent: Ino, name: &str) -> FsResult<()> {
        let wb = self.wb()?.clone();
        let a = self.ns.lookup(parent, name).await?;
        if a.kind != NodeKind::Dir {
            return Err(FsError::NotDir);
        }
        if !self.ns.list_dir(a.ino).await?.entries.is_empty() {
            return Err(FsError::NotEmpty);
        }
        let path = join(&self.ns.path_of(parent)?, name);
        wb.record(Meta::Rmdir { path: path.clone() })?;
        self.touch_dir(&wb, parent)?;
        self.ns.invalidate(&path);
        wb.wake.notify_one();
        Ok(())
    }

    /// Renames `name` in `parent` to `new_name` in `new_parent` (`no_replace`: fail if the
    /// destination exists).
    pub async fn rename(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        no_replace: bool,
    ) -> FsResult<()> {
        let wb = self.wb()?.clone();
        name_ok(new_name)?;
        let src = self.ns.lookup(parent, name).await?;
        let from = join(&self.ns.path_of(parent)?, name);
        let to = join(&self.ns.path_of(new_parent)?, new_name);
        if from == to {
            return Ok(());
        }
        let dst = match self.ns.lookup(new_parent, new_name).await {
            Ok(a) => Some(a),
            Err(FsError::NotFound) => None,
            Err(e) => return Err(e),
        };
        if no_replace && dst.is_some() {
            return Err(FsError::Exists);
        }
        let dir = src.kind == NodeKind::Dir;
        if dir {
            if is_within(&to, &from) {
                return Err(FsError::Invalid(
                    "cannot move a directory into itself".into(),
                ));
            }
            if let Some(d) = &dst {
                if d.kind != NodeKind::Dir {
                    return Err(FsError::NotDir);
                }
                if !self.ns.list_dir(d.ino).await?.entries.is_empty() {
                    return Err(FsError::NotEmpty);
                }
            }
        } else if dst.as_ref().is_some_and(|d| d.kind == NodeKind::Dir) {
            return Err(FsError::IsDir);
        }
        let in_bucket = if dir {
            let prefix = self.ns.dir_prefix(&from);
            let page = self
                .store
                .list(&prefix, None, Some(1))
                .await
                .map_err(|e| FsError::from_store(e, &prefix))?;
            !page.objects.is_empty() || !page.prefixes.is_empty()
        } else {
            !matches!(
                wb.entry(&from),
                Some(LocalEntry::File(_)) | Some(LocalEntry::Special(_))
            )
        };
        if !in_bucket {
            wb.record(Meta::Rename {
                from: from.clone(),
                to: to.clone(),
                dir,
            })?;
        } else {
            // Objects move in the bucket now (copy + delete), with no upload in between.
            let _exclusive = wb.bucket_lock.write().await;
            // Deletes pending on either side must reach the bucket before objects are copied.
            if let Some(f) = &self.flusher {
                for p in [&from, &to] {
                    f.settle_subtree(p)
                        .await
                        .map_err(|e| FsError::from_store(e, p))?;
                }
            }
            let id = wb.next_rename_id();
            wb.record(Meta::BucketRenameBegin {
                id,
                from: from.clone(),
                to: to.clone(),
                dir,
            })?;
            wb.sync().await?;
            match bucket_rename(&*self.store, &self.prefix, &from, &to, dir).await {
                Ok(()) => {
                    wb.record(Meta::BucketRenameDone { id })?;
                }
                Err(e) => {
                    tracing::warn!(
                        from = %from,
                        to = %to,
                        "rename is journaled but not finished in the bucket ({e}); it completes in the background"
                    );
                }
            }
        }
        self.ns.rename_paths(&from, &to);
        let now = crate::write::to_ns(SystemTime::now());
        wb.set_path_attrs(
            &to,
            Attrs {
                ctime_ns: Some(now),
                ..Attrs::default()
            },
        )?;
        self.touch_dir(&wb, parent)?;
        if parent != new_parent {
            self.touch_dir(&wb, new_parent)?;
        }
        self.ns.invalidate(&from);
        self.ns.invalidate(&to);
        if parent != new_parent {
            self.keep_dir(&wb, parent).await?;
        }
        wb.wake.notify_one();
        Ok(())
    }
}

fn wb_last_lsn(wb: &WriteBack) -> u64 {
    wb.last_lsn()
}
