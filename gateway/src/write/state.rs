//! The local write state: files written here and not yet (or just) uploaded, pending deletes,
//! local directories and unfinished bucket renames. It changes only by applying journal records,
//! the same way live and at replay, so what a restart rebuilds is what the mount showed.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::extents::{DataLoc, ExtentMap};
use super::records::{Attrs, FileId, Meta, Special, UploadCondition};

/// One file written through this mount.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LocalFile {
    /// File id.
    pub fid: FileId,
    /// Current path, `None` once unlinked (kept only while handles are open).
    pub path: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Where its bytes are in the journal.
    pub extents: ExtentMap,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, ns since the epoch.
    pub mtime_ns: u64,
    /// Condition for the next upload.
    pub cond: UploadCondition,
    /// Lsn of the last change (content, size, attributes or path).
    pub changed_lsn: u64,
    /// Changes up to this lsn are in the bucket (0: never uploaded).
    pub uploaded_lsn: u64,
    /// Path and ETag of the last upload.
    pub uploaded: Option<(String, Option<String>)>,
    /// Still being filled from the bucket: hidden and never uploaded.
    #[serde(default)]
    pub incomplete: bool,
    /// ETags of uploads started and not yet recorded as done (see `Meta::UploadStarted`).
    #[serde(default)]
    pub started_etags: Vec<String>,
}

impl LocalFile {
    /// True when the bucket lacks some of this file's changes.
    pub fn is_dirty(&self) -> bool {
        self.path.is_some() && !self.incomplete && self.changed_lsn > self.uploaded_lsn
    }

    /// True when the bucket may hold an object at this file's original or uploaded path.
    fn may_exist_in_bucket(&self) -> bool {
        // An upload that started (journaled before its request left) may have landed even if
        // the daemon died before recording it.
        self.uploaded.is_some()
            || self.cond != UploadCondition::Absent
            || !self.started_etags.is_empty()
    }
}

/// What the mount shows at one path, where that differs from the bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathState {
    /// A file written here.
    File(FileId),
    /// Removed here; the key must be deleted in the bucket.
    Deleted {
        /// Lsn of the removal.
        lsn: u64,
    },
    /// A directory created here; its marker must be written.
    Dir {
        /// Lsn of the mkdir.
        lsn: u64,
    },
    /// A directory removed here; its marker must be deleted.
    DirDeleted {
        /// Lsn of the rmdir.
        lsn: u64,
    },
    /// A symlink, fifo, socket or device node (kept by the journal only).
    Special(Special),
}

/// A bucket rename begun and not known to be finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRename {
    /// Old path.
    pub from: String,
    /// New path.
    pub to: String,
    /// Directory rename.
    pub dir: bool,
}

/// All local write state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WriteState {
    /// Files by id.
    pub files: HashMap<FileId, LocalFile>,
    /// Path overrides, by path (sorted, so a directory's subtree is one range).
    pub paths: BTreeMap<String, PathState>,
    /// Bucket renames in progress, by id.
    pub renames: BTreeMap<u64, PendingRename>,
    /// Next file id to hand out.
    pub next_fid: FileId,
    /// Next bucket-rename id.
    pub next_rename_id: u64,
    /// POSIX attributes set on this mount, by path (kept; the bucket has no place for them).
    #[serde(default)]
    pub attrs: BTreeMap<String, Attrs>,
}

/// True when `path` is `dir` or inside it.
pub fn is_within(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path == dir
        || (path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/')
}

/// `path` with its leading `from` replaced by `to` (caller checked [`is_within`]).
fn moved(path: &str, from: &str, to: &str) -> String {
    format!("{to}{}", &path[from.len()..])
}

impl WriteState {
    /// The file at `path`, if one was written here.
    pub fn file_at(&self, path: &str) -> Option<&LocalFile> {
        match self.paths.get(path) {
            Some(PathState::File(fid)) => self.files.get(fid),
            _ => None,
        }
    }

    /// Paths at or under `dir` with local state (`dir` itself included).
    pub fn subtree(&self, dir: &str) -> Vec<(String, PathState)> {
        if dir.is_empty() {
            return self
                .paths
                .iter()
                .map(|(p, s)| (p.clone(), s.clone()))
                .collect();
        }
        self.paths
            .range(dir.to_string()..)
            .take_while(|(p, _)| p.starts_with(dir))
            .filter(|(p, _)| is_within(p, dir))
            .map(|(p, s)| (p.clone(), s.clone()))
            .collect()
    }

    /// Applies a data record: `len` bytes at file `offset` are now at `loc`.
    pub fn apply_write(&mut self, fid: FileId, offset: u64, len: u64, loc: DataLoc) {
        if let Some(f) = self.files.get_mut(&fid) {
            f.extents.insert(offset, len, loc);
            f.size = f.size.max(offset + len);
            f.changed_lsn = loc.lsn;
        }
    }

    /// Removes the entry at `path`, orphaning a file there; returns what the bucket may hold
    /// at that path that now needs deleting.
    fn clear_path(&mut self, path: &str) -> bool {
        self.attrs.remove(path);
        match self.paths.remove(path) {
            Some(PathState::File(fid)) => match self.files.get_mut(&fid) {
                Some(f) => {
                    f.path = None;
                    f.may_exist_in_bucket()
                }
                None => false,
            },
            Some(PathState::Deleted { .. }) => true,
            _ => false,
        }
    }

    /// Applies a namespace or flusher record written at `lsn`.
    pub fn apply_meta(&mut self, lsn: u64, m: &Meta) {
        match m {
            Meta::Create {
                fid,
                path,
                cond,
                mode,
                incomplete,
            } => {
                self.clear_path(path);
                self.files.insert(
                    *fid,
                    LocalFile {
                        fid: *fid,
                        path: Some(path.clone()),
                        size: 0,
                        extents: ExtentMap::new(),
                        mode: *mode,
                        mtime_ns: 0,
                        cond: cond.clone(),
                        changed_lsn: lsn,
                        uploaded_lsn: 0,
                        uploaded: None,
                        incomplete: *incomplete,
                        started_etags: Vec::new(),
                    },
                );
                self.paths.insert(path.clone(), PathState::File(*fid));
                self.next_fid = self.next_fid.max(fid + 1);
            }
            Meta::Truncate { fid, size } => {
                if let Some(f) = self.files.get_mut(fid) {
                    f.extents.truncate(*size);
                    f.size = *size;
                    f.changed_lsn = lsn;
                }
            }
            Meta::Chmod { fid, mode } => {
                if let Some(f) = self.files.get_mut(fid) {
                    f.mode = *mode;
                }
            }
            Meta::SetMtime { fid, mtime_ns } => {
                if let Some(f) = self.files.get_mut(fid) {
                    f.mtime_ns = *mtime_ns;
                }
            }
            Meta::Complete { fid } => {
                if let Some(f) = self.files.get_mut(fid) {
                    f.incomplete = false;
                }
            }
            Meta::Discard { fid } => self.remove_file(*fid),
            Meta::MakeSpecial { path, special } => {
                self.clear_path(path);
                self.paths
                    .insert(path.clone(), PathState::Special(special.clone()));
            }
            Meta::SetAttr { path, attrs } => {
                self.attrs.entry(path.clone()).or_default().merge(attrs);
            }
            Meta::Unlink { path } => {
                // Without local state the object is in the bucket; with it, only if it was
                // uploaded or replaced an object.
                let local = matches!(
                    self.paths.get(path),
                    Some(PathState::File(_)) | Some(PathState::Special(_))
                );
                if self.clear_path(path) || !local {
                    self.paths.insert(path.clone(), PathState::Deleted { lsn });
                }
            }
            Meta::Rename { from, to, dir } => {
                self.rename_local(lsn, from, to);
                // The source directory's marker, if it reached the bucket, must go too.
                if *dir {
                    self.paths
                        .entry(from.clone())
                        .or_insert(PathState::DirDeleted { lsn });
                }
            }
            Meta::BucketRenameBegin { id, from, to, dir } => {
                self.renames.insert(
                    *id,
                    PendingRename {
                        from: from.clone(),
                        to: to.clone(),
                        dir: *dir,
                    },
                );
                self.next_rename_id = self.next_rename_id.max(id + 1);
                // The bucket copy lands at `to`: nothing local may shadow or delete it there.
                if *dir {
                    for (p, _) in self.subtree(to) {
                        self.clear_path(&p);
                    }
                    self.rename_local(lsn, from, to);
                } else {
                    self.clear_path(to);
                    self.move_attrs(from, to);
                }
            }
            Meta::BucketRenameDone { id } => {
                self.renames.remove(id);
            }
            Meta::Mkdir { path } => {
                self.paths.insert(path.clone(), PathState::Dir { lsn });
            }
            Meta::Rmdir { path } => {
                self.paths
                    .insert(path.clone(), PathState::DirDeleted { lsn });
            }
            Meta::Uploaded {
                fid,
                upto_lsn,
                key,
                etag,
                size: _,
            } => {
                let Some(f) = self.files.get_mut(fid) else {
                    // Unlinked (and dropped) while its upload ran: the object must go.
                    if !self.paths.contains_key(key) {
                        self.paths.insert(key.clone(), PathState::Deleted { lsn });
                    }
                    return;
                };
                f.uploaded_lsn = f.uploaded_lsn.max(*upto_lsn);
                f.started_etags.clear();
                if f.path.as_deref() == Some(key.as_str()) {
                    f.uploaded = Some((key.clone(), etag.clone()));
                    // The next upload replaces exactly this version, or reports a conflict.
                    if f.changed_lsn <= *upto_lsn || f.cond != UploadCondition::Any {
                        f.cond = match etag {
                            Some(e) => UploadCondition::Unchanged(e.clone()),
                            None => UploadCondition::Any,
                        };
                    }
                } else if !self.paths.contains_key(key) {
                    // Renamed while uploading: the object at the old path must go, and the
                    // new path keeps its own condition.
                    self.paths.insert(key.clone(), PathState::Deleted { lsn });
                }
            }
            Meta::UploadStarted { fid, etag } => {
                if let Some(f) = self.files.get_mut(fid) {
                    f.started_etags.push(etag.clone());
                    if f.started_etags.len() > 8 {
                        f.started_etags.remove(0);
                    }
                }
            }
            Meta::Adopt { fid, etag } => {
                if let Some(f) = self.files.get_mut(fid) {
                    f.cond = UploadCondition::Unchanged(etag.clone());
                    f.started_etags.clear();
                }
            }
            Meta::Conflict { fid, .. } => self.remove_file(*fid),
            Meta::PathSynced { path, upto_lsn } => {
                let done = match self.paths.get(path) {
                    Some(PathState::Deleted { lsn })
                    | Some(PathState::Dir { lsn })
                    | Some(PathState::DirDeleted { lsn }) => lsn <= upto_lsn,
                    _ => false,
                };
                if done {
                    self.paths.remove(path);
                }
            }
        }
    }

    /// Forgets a file and its path entry (no bucket effect).
    fn remove_file(&mut self, fid: FileId) {
        if let Some(f) = self.files.remove(&fid) {
            if let Some(p) = f.path {
                if self.paths.get(&p) == Some(&PathState::File(fid)) {
                    self.paths.remove(&p);
                }
            }
        }
    }

    /// Moves the attributes kept at and under `from` to `to` (the destination's go).
    fn move_attrs(&mut self, from: &str, to: &str) {
        let dest: Vec<String> = self
            .attrs
            .keys()
            .filter(|p| is_within(p, to))
            .cloned()
            .collect();
        for p in dest {
            self.attrs.remove(&p);
        }
        let moving: Vec<String> = self
            .attrs
            .keys()
            .filter(|p| is_within(p, from))
            .cloned()
            .collect();
        for p in moving {
            if let Some(a) = self.attrs.remove(&p) {
                self.attrs.insert(moved(&p, from, to), a);
            }
        }
    }

    /// Moves local state at and under `from` to `to`.
    fn rename_local(&mut self, lsn: u64, from: &str, to: &str) {
        let moving = self.subtree(from);
        if moving.is_empty() {
            self.move_attrs(from, to);
            return;
        }
        // Whatever was at the destination is replaced; deletes still owed to the bucket
        // there stay owed (an object under the old name must not reappear in the new tree).
        for (p, st) in self.subtree(to) {
            let owed = matches!(st, PathState::Deleted { .. } | PathState::DirDeleted { .. });
            if !is_within(&p, from) && !owed {
                self.clear_path(&p);
            }
        }
        for (p, state) in moving {
            self.paths.remove(&p);
            let dest = moved(&p, from, to);
            match state {
                PathState::File(fid) => {
                    if let Some(f) = self.files.get_mut(&fid) {
                        if f.may_exist_in_bucket() {
                            self.paths.insert(p.clone(), PathState::Deleted { lsn });
                        }
                        f.path = Some(dest.clone());
                        f.cond = UploadCondition::Any;
                        f.changed_lsn = lsn;
                    }
                    self.paths.insert(dest, PathState::File(fid));
                }
                PathState::Dir { .. } => {
                    self.paths.insert(dest, PathState::Dir { lsn });
                }
                PathState::Special(sp) => {
                    self.paths.insert(dest, PathState::Special(sp));
                }
                // Pending deletes stay where they are: they concern the old keys.
                PathState::Deleted { .. } | PathState::DirDeleted { .. } => {
                    self.paths.insert(p, state);
                }
            }
        }
        self.move_attrs(from, to);
    }

    /// Files that are clean or unlinked (nothing to upload) and that `keep` does not hold:
    /// the caller journals a [`Meta::Discard`] for each, so a replay drops them at the same
    /// point of the log as the live state did.
    pub fn settled(&self, keep: &dyn Fn(FileId) -> bool) -> Vec<FileId> {
        let mut out: Vec<FileId> = self
            .files
            .values()
            .filter(|f| !f.is_dirty() && !keep(f.fid))
            .map(|f| f.fid)
            .collect();
        out.sort_unstable();
        out
    }
}
