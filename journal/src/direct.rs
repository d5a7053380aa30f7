//! Direct-I/O (`O_DIRECT`) writes of large records: the bytes are staged in a reusable
//! 4 KiB-aligned buffer (a user-space memcpy into memory that stays faulted in) and written
//! without going through the page cache, which on some machines copies far slower than memcpy.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::format::DIRECT_ALIGN;
use crate::sys;

const ALIGN: usize = DIRECT_ALIGN as usize;

/// Largest chunk staged and written at once; bigger records go out in several writes.
const MAX_CHUNK: usize = 8 << 20;

#[cfg(test)]
thread_local! {
    /// Test hook: the next direct writes on this thread fail with EINVAL, as on a file system
    /// that accepts `O_DIRECT` at open but not our alignment.
    pub(crate) static FAIL_WITH_EINVAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Opens `path` for writing with `O_DIRECT`. File systems without direct I/O (ramfs, some
/// FUSE file systems, tmpfs before Linux 6.6) fail with EINVAL.
pub(crate) fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

/// A growable byte buffer whose usable part starts at a 4 KiB-aligned address (a `Vec` over-
/// allocated by the alignment and sliced at the right offset: no unsafe code).
#[derive(Default)]
pub(crate) struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    cap: usize,
}

impl AlignedBuf {
    /// Makes at least `cap` aligned bytes available; false if no aligned start could be found
    /// (`align_offset` is allowed to give up, though it does not for byte pointers today).
    fn reserve(&mut self, cap: usize) -> bool {
        if self.cap >= cap {
            return true;
        }
        let raw = vec![0u8; cap + ALIGN];
        let start = raw.as_ptr().align_offset(ALIGN);
        if start >= ALIGN {
            return false;
        }
        *self = AlignedBuf { raw, start, cap };
        true
    }

    fn slice(&mut self, len: usize) -> &mut [u8] {
        &mut self.raw[self.start..self.start + len]
    }
}

/// How a [`write`] went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// Everything went through the direct descriptor.
    Direct,
    /// The file system refused direct I/O (EINVAL) part-way, or no aligned buffer could be made;
    /// the rest was written through the buffered descriptor. The caller should stop trying.
    FellBack,
}

/// Writes the concatenation of `parts` at `offset` through `direct` (opened with `O_DIRECT`),
/// staging at most 8 MiB at a time in `buf`. `offset` and the total length must be multiples of
/// 4 KiB. Short writes and EINTR are retried; after a short write that leaves an unaligned
/// remainder, or on EINVAL, the remaining bytes go through `buffered` (a descriptor of the same
/// file without `O_DIRECT`; the kernel keeps the two coherent).
pub(crate) fn write(
    direct: &File,
    buffered: &File,
    buf: &mut AlignedBuf,
    parts: &[&[u8]],
    offset: u64,
) -> io::Result<Written> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    debug_assert!(offset.is_multiple_of(DIRECT_ALIGN) && total.is_multiple_of(ALIGN));
    if !buf.reserve(total.min(MAX_CHUNK)) {
        let mut iov: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        sys::pwritev_all(buffered, &mut iov, offset)?;
        return Ok(Written::FellBack);
    }
    // (part index, bytes of it already staged)
    let (mut pi, mut pdone) = (0usize, 0usize);
    let mut at = offset;
    let mut left = total;
    while left > 0 {
        let n = left.min(MAX_CHUNK);
        let chunk = buf.slice(n);
        let mut filled = 0;
        while filled < n {
            let p = &parts[pi][pdone..];
            let k = p.len().min(n - filled);
            chunk[filled..filled + k].copy_from_slice(&p[..k]);
            filled += k;
            pdone += k;
            if pdone == parts[pi].len() {
                pi += 1;
                pdone = 0;
            }
        }
        let mut done = 0;
        while done < n {
            #[cfg(test)]
            let r = if FAIL_WITH_EINVAL.with(|f| f.get()) {
                Err(io::Error::from_raw_os_error(libc::EINVAL))
            } else {
                direct.write_at(&chunk[done..], at + done as u64)
            };
            #[cfg(not(test))]
            let r = direct.write_at(&chunk[done..], at + done as u64);
            match r {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "direct write wrote nothing",
                    ))
                }
                Ok(w) if (done + w).is_multiple_of(ALIGN) => done += w,
                Ok(w) => {
                    // An unaligned short write: direct I/O cannot continue from there.
                    done += w;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    let mut iov = vec![IoSlice::new(&chunk[done..])];
                    if pi < parts.len() {
                        iov.push(IoSlice::new(&parts[pi][pdone..]));
                        iov.extend(parts[pi + 1..].iter().map(|p| IoSlice::new(p)));
                    }
                    sys::pwritev_all(buffered, &mut iov, at + done as u64)?;
                    return Ok(Written::FellBack);
                }
                Err(e) => return Err(e),
            }
        }
        if done < n {
            buffered.write_all_at(&chunk[done..], at + done as u64)?;
        }
        at += n as u64;
        left -= n;
    }
    Ok(Written::Direct)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffer_is_aligned_and_reused() {
        let mut b = AlignedBuf::default();
        assert!(b.reserve(10_000));
        let p = b.slice(10_000).as_ptr() as usize;
        assert_eq!(p % ALIGN, 0);
        assert!(b.reserve(5000));
        assert_eq!(
            b.slice(5000).as_ptr() as usize,
            p,
            "a smaller need reuses the buffer"
        );
    }

    #[test]
    fn einval_falls_back_to_buffered_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let buffered = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let direct = open(&path).unwrap_or_else(|_| buffered.try_clone().unwrap());
        let a = vec![1u8; 3 * ALIGN + 17];
        let b = vec![2u8; ALIGN - 17];
        let mut buf = AlignedBuf::default();
        let w = write(&direct, &buffered, &mut buf, &[&a, &b], 2 * DIRECT_ALIGN).unwrap();
        assert_eq!(w, Written::Direct);
        FAIL_WITH_EINVAL.with(|f| f.set(true));
        let w = write(&direct, &buffered, &mut buf, &[&b, &a], 6 * DIRECT_ALIGN).unwrap();
        FAIL_WITH_EINVAL.with(|f| f.set(false));
        assert_eq!(w, Written::FellBack);
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len(), 10 * ALIGN);
        assert!(data[..2 * ALIGN].iter().all(|&x| x == 0));
        assert_eq!(&data[2 * ALIGN..6 * ALIGN], [a.clone(), b.clone()].concat());
        assert_eq!(&data[6 * ALIGN..], [b, a].concat());
    }
}
