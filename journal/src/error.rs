//! The journal's error type and the helpers that classify I/O errors into it.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in a journal call.
#[derive(thiserror::Error, Debug)]
pub enum JournalError {
    /// The file system is full (ENOSPC, EDQUOT or `io::ErrorKind::StorageFull`). Nothing
    /// half-written was left behind; the call can be retried once space is reclaimed.
    #[error("journal is out of space: {0}")]
    NoSpace(#[source] io::Error),
    /// Any other I/O error; the message names the file and operation.
    #[error("journal I/O error: {0}")]
    Io(#[source] io::Error),
    /// A segment holds a bad record (or header) somewhere other than the tail of the last
    /// segment, so replay cannot go on without losing acknowledged records.
    #[error(
        "journal segment {segment:016x} (seg-{segment:016x}.log) is corrupt at byte offset \
         {offset}: {reason}"
    )]
    Corrupt {
        /// Id of the damaged segment.
        segment: u64,
        /// Byte offset of the bad record (0 for a bad segment header).
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The checkpoint file exists but cannot be trusted (it is replaced atomically, so this means
    /// damage or a foreign file).
    #[error("journal checkpoint {} is corrupt: {reason}", path.display())]
    BadCheckpoint {
        /// Path of the checkpoint file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Another process (or another open in this one) holds the journal directory; the message
    /// names the holder's pid when it is known.
    #[error("{0}")]
    Locked(String),
    /// An earlier fdatasync or cleanup failed, so what is on disk is unknown; the journal accepts
    /// no more writes. Reopen it: replay re-establishes what survived.
    #[error("journal is unusable after an earlier failure (reopen it to recover): {0}")]
    Poisoned(String),
    /// The call's arguments cannot be honoured (lsn not yet appended, active segment, bad range…).
    #[error("invalid journal call: {0}")]
    InvalidArgument(String),
}

/// True for the errors reported as [`JournalError::NoSpace`].
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Wraps an I/O error with what was being done, keeping its kind, and classifies it.
pub(crate) fn io_error(e: io::Error, doing: fmt::Arguments<'_>) -> JournalError {
    let no_space = is_no_space(&e);
    let wrapped = io::Error::new(e.kind(), format!("{doing}: {e}"));
    if no_space {
        JournalError::NoSpace(wrapped)
    } else {
        JournalError::Io(wrapped)
    }
}

pub(crate) fn corrupt(segment: u64, offset: u64, reason: impl Into<String>) -> JournalError {
    JournalError::Corrupt {
        segment,
        offset,
        reason: reason.into(),
    }
}

pub(crate) fn invalid(msg: String) -> JournalError {
    JournalError::InvalidArgument(msg)
}

pub(crate) fn poisoned_error(why: &str) -> JournalError {
    JournalError::Poisoned(why.to_string())
}
