//! File-system level errors of the gateway, each mapping to one errno for the kernel.

use crate::store::StoreError;

/// An error the gateway returns to a file-system caller.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FsError {
    /// No such file or directory.
    #[error("not found")]
    NotFound,
    /// A directory operation on a file.
    #[error("not a directory")]
    NotDir,
    /// A file operation on a directory.
    #[error("is a directory")]
    IsDir,
    /// The object changed or vanished in the bucket while it was open.
    #[error("stale: {0}")]
    Stale(String),
    /// The store refused our credentials.
    #[error("access denied: {0}")]
    Access(String),
    /// Name longer than 255 bytes.
    #[error("name too long")]
    NameTooLong,
    /// Unknown inode or handle (kernel and daemon out of step).
    #[error("bad handle")]
    BadHandle,
    /// The operation is not possible on this mount (e.g. writes on a read-only mount).
    #[error("read-only file system")]
    ReadOnly,
    /// The local journal disk is full.
    #[error("no space left on the journal disk")]
    NoSpace,
    /// The name already exists (exclusive create, mkdir).
    #[error("already exists")]
    Exists,
    /// rmdir (or rename onto) a directory that is not empty.
    #[error("directory not empty")]
    NotEmpty,
    /// An argument the operation cannot accept (e.g. renaming a directory into itself).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The operation is not supported by cairn (hard links, device nodes, ...).
    #[error("not supported")]
    NotSupported,
    /// Anything else after retries: the store was unreachable or failed.
    #[error("I/O error: {0}")]
    Io(String),
}

impl FsError {
    /// The errno the kernel should see.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::Stale(_) => libc::ESTALE,
            FsError::Access(_) => libc::EACCES,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::BadHandle => libc::EBADF,
            FsError::ReadOnly => libc::EROFS,
            FsError::NoSpace => libc::ENOSPC,
            FsError::Exists => libc::EEXIST,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::Invalid(_) => libc::EINVAL,
            FsError::NotSupported => libc::ENOTSUP,
            FsError::Io(_) => libc::EIO,
        }
    }

    /// Maps a store error met while reading metadata or data of `what`.
    pub fn from_store(e: StoreError, what: &str) -> Self {
        match e {
            StoreError::NotFound(_) => FsError::NotFound,
            StoreError::Precondition(m) => FsError::Stale(format!(
                "{what} changed in the bucket while it was open ({m}); reopen it to read the new version"
            )),
            StoreError::Auth(m) => FsError::Access(m),
            other => FsError::Io(format!("{what}: {other}")),
        }
    }
}

/// Result alias of gateway operations.
pub type FsResult<T> = Result<T, FsError>;
