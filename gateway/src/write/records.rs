//! The records cairn writes to its journal, and their encoding.
//!
//! Two record kinds share the journal (format in `docs/JOURNAL.md`):
//! - [`KIND_WRITE`]: file id (u64 LE), file offset (u64 LE), then the written bytes, raw;
//! - [`KIND_META`]: one [`Meta`] as JSON (namespace changes and flusher progress; small and rare,
//!   so a self-describing encoding costs nothing and stays readable with `strings`).

use serde::{Deserialize, Serialize};

/// Journal record kind of file data.
pub const KIND_WRITE: u8 = 1;
/// Journal record kind of a [`Meta`] record.
pub const KIND_META: u8 = 2;
/// Bytes before the data in a write record's payload.
pub const WRITE_HEADER: usize = 16;

/// Identifies one locally written file for the life of its journal entries (not an inode).
pub type FileId = u64;

/// What the upload of a file may overwrite in the bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UploadCondition {
    /// Anything (the file replaced something this mount deleted or renamed over).
    Any,
    /// Only if the key does not exist (a new file).
    Absent,
    /// Only if the object still has this ETag (the version this mount read).
    Unchanged(String),
}

/// A node that is not a regular file or directory. Objects cannot hold these, so they live in
/// the mount's journal (and its checkpoints) only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpecialKind {
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
    /// Character device.
    CharDev,
    /// Block device.
    BlockDev,
}

/// A special node's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Special {
    /// What it is.
    pub kind: SpecialKind,
    /// Device number (devices only).
    #[serde(default)]
    pub rdev: u32,
    /// Link target (symlinks only).
    #[serde(default)]
    pub target: String,
}

/// POSIX attributes kept by the mount for a path (set fields override what the bucket shows).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attrs {
    /// Permission bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Access time, ns since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atime_ns: Option<u64>,
    /// Modification time, ns since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<u64>,
    /// Change time, ns since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctime_ns: Option<u64>,
}

impl Attrs {
    /// Overlays the fields set in `other`.
    pub fn merge(&mut self, other: &Attrs) {
        self.mode = other.mode.or(self.mode);
        self.uid = other.uid.or(self.uid);
        self.gid = other.gid.or(self.gid);
        self.atime_ns = other.atime_ns.or(self.atime_ns);
        self.mtime_ns = other.mtime_ns.or(self.mtime_ns);
        self.ctime_ns = other.ctime_ns.or(self.ctime_ns);
    }
}

/// A namespace change or a flusher milestone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Meta {
    /// A local file now exists at `path` with the given content so far (empty, or written by
    /// following records), replacing whatever the path showed.
    Create {
        /// New file id.
        fid: FileId,
        /// Path relative to the mount root.
        path: String,
        /// Condition for its first upload.
        cond: UploadCondition,
        /// Unix mode bits (permissions) given at create.
        mode: u32,
        /// Being filled with an existing object's bytes: not shown and not uploaded until a
        /// [`Meta::Complete`] follows (a replay drops it otherwise).
        #[serde(default)]
        incomplete: bool,
    },
    /// An incomplete file's copy finished.
    Complete {
        /// File id.
        fid: FileId,
    },
    /// Local state of a file is dropped without any bucket effect (a failed copy).
    Discard {
        /// File id.
        fid: FileId,
    },
    /// The file's size changed to `size` (bytes past it are dropped).
    Truncate {
        /// File id.
        fid: FileId,
        /// New size.
        size: u64,
    },
    /// A special node (symlink, fifo, socket, device) now exists at `path`.
    MakeSpecial {
        /// Path.
        path: String,
        /// What it is.
        special: Special,
    },
    /// POSIX attributes of `path` changed (only the fields set).
    SetAttr {
        /// Path.
        path: String,
        /// The new values.
        attrs: Attrs,
    },
    /// The file's mode bits changed.
    Chmod {
        /// File id.
        fid: FileId,
        /// New permission bits.
        mode: u32,
    },
    /// The file's modification time changed (nanoseconds since the epoch).
    SetMtime {
        /// File id.
        fid: FileId,
        /// New mtime.
        mtime_ns: u64,
    },
    /// The file at `path` was removed; the key must disappear from the bucket.
    Unlink {
        /// Path of the removed file.
        path: String,
    },
    /// A local rename of local state (files written here, local directories, pending deletes).
    Rename {
        /// Old path.
        from: String,
        /// New path.
        to: String,
        /// A directory (its marker at the old path must be deleted).
        dir: bool,
    },
    /// Start of a rename that copies and deletes objects in the bucket; replayed without its
    /// [`Meta::BucketRenameDone`], it is completed at the next start.
    BucketRenameBegin {
        /// Rename id (the lsn of this record is not known when it is written).
        id: u64,
        /// Old path.
        from: String,
        /// New path.
        to: String,
        /// A directory (every key under `from/`) or one file.
        dir: bool,
    },
    /// The bucket side of a rename is complete.
    BucketRenameDone {
        /// Id of the matching begin record.
        id: u64,
    },
    /// A directory created here; its marker object (`path/`) must be written.
    Mkdir {
        /// Directory path.
        path: String,
    },
    /// An empty directory removed here; its marker object must be deleted.
    Rmdir {
        /// Directory path.
        path: String,
    },
    /// The file's content as of `upto_lsn` is in the bucket as `key` with this ETag.
    Uploaded {
        /// File id.
        fid: FileId,
        /// Last lsn whose effect the upload contains.
        upto_lsn: u64,
        /// Bucket key written.
        key: String,
        /// ETag returned by the store.
        etag: Option<String>,
        /// Bytes uploaded.
        size: u64,
    },
    /// An upload of the file is about to start; a single-part upload will get `etag` (the
    /// MD5 of its body). Durable before the request leaves, so after a crash an object with
    /// this ETag is known to be this mount's own upload, not someone else's change.
    UploadStarted {
        /// File id.
        fid: FileId,
        /// Expected ETag (quoted hex MD5).
        etag: String,
    },
    /// The object at the file's path is this mount's own earlier upload (see
    /// [`Meta::UploadStarted`]): the next upload replaces that version.
    Adopt {
        /// File id.
        fid: FileId,
        /// ETag of the object.
        etag: String,
    },
    /// The upload hit a changed object: the local version was stored under `conflict_key` and
    /// the file at its path now shows the bucket's version.
    Conflict {
        /// File id.
        fid: FileId,
        /// Key the local version was written to.
        conflict_key: String,
    },
    /// A delete (or marker change) of `path` up to `upto_lsn` reached the bucket.
    PathSynced {
        /// The path.
        path: String,
        /// Last lsn whose effect on the path is now in the bucket.
        upto_lsn: u64,
    },
}

/// Encodes a write record's header (the data follows as a separate part).
pub fn write_header(fid: FileId, offset: u64) -> [u8; WRITE_HEADER] {
    let mut h = [0u8; WRITE_HEADER];
    h[..8].copy_from_slice(&fid.to_le_bytes());
    h[8..].copy_from_slice(&offset.to_le_bytes());
    h
}

/// Decodes a write record's header; `None` if the payload is too short.
pub fn parse_write_header(payload: &[u8]) -> Option<(FileId, u64)> {
    if payload.len() < WRITE_HEADER {
        return None;
    }
    let fid = u64::from_le_bytes(payload[..8].try_into().ok()?);
    let offset = u64::from_le_bytes(payload[8..16].try_into().ok()?);
    Some((fid, offset))
}

/// Encodes a meta record's payload.
pub fn encode_meta(m: &Meta) -> Vec<u8> {
    serde_json::to_vec(m).expect("meta records always serialize")
}

/// Decodes a meta record's payload.
pub fn decode_meta(payload: &[u8]) -> Result<Meta, String> {
    serde_json::from_slice(payload).map_err(|e| format!("undecodable journal meta record: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_header_round_trips() {
        let h = write_header(7, 1 << 40);
        assert_eq!(parse_write_header(&h), Some((7, 1 << 40)));
        assert_eq!(parse_write_header(&h[..15]), None);
    }

    #[test]
    fn meta_round_trips() {
        let m = Meta::BucketRenameBegin {
            id: 3,
            from: "a/b".into(),
            to: "c d/é".into(),
            dir: true,
        };
        assert_eq!(decode_meta(&encode_meta(&m)).unwrap(), m);
        assert!(decode_meta(b"{\"op\":\"nope\"}").is_err());
    }
}
