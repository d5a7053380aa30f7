//! Thin wrappers over the few system calls std does not expose directly.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::error::{io_error, JournalError};

/// Most iovecs one `pwritev` call takes (Linux's IOV_MAX).
const IOV_MAX: usize = 1024;

/// Writes all of `bufs` at `offset` with `pwritev`, continuing after short writes and EINTR.
/// A payload given as N parts costs one system call (more only for short writes or > 1024 parts).
pub(crate) fn pwritev_all(
    file: &File,
    mut bufs: &mut [IoSlice<'_>],
    mut offset: u64,
) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0); // drops leading empty slices
    while !bufs.is_empty() {
        let count = bufs.len().min(IOV_MAX);
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
        // SAFETY: IoSlice is ABI-compatible with struct iovec on Unix, and the slices outlive the
        // call.
        let n = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                bufs.as_ptr().cast::<libc::iovec>(),
                count as libc::c_int,
                off,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "pwritev wrote nothing",
            ));
        }
        offset += n as u64;
        IoSlice::advance_slices(&mut bufs, n as usize);
    }
    Ok(())
}

/// fsyncs a directory, making entries created, renamed or removed in it durable.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Takes an exclusive, non-blocking flock on `<dir>/<name>` and writes our pid into it. The lock
/// lives as long as the returned file stays open (and dies with the process).
pub(crate) fn lock_dir(dir: &Path, name: &str) -> Result<File, JournalError> {
    let path = dir.join(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_error(e, format_args!("opening {}", path.display())))?;
    // SAFETY: plain syscall on an fd we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut holder = String::new();
            let _ = io::Read::read_to_string(&mut &file, &mut holder);
            let holder = match holder.trim() {
                "" => "pid unknown".to_string(),
                pid => format!("pid {pid}"),
            };
            return Err(JournalError::Locked(format!(
                "journal directory {} is in use by another process ({holder}); lock file {}",
                dir.display(),
                path.display()
            )));
        }
        return Err(io_error(e, format_args!("locking {}", path.display())));
    }
    let pid = format!("{}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.write_all_at(pid.as_bytes(), 0))
        .map_err(|e| io_error(e, format_args!("writing {}", path.display())))?;
    Ok(file)
}
