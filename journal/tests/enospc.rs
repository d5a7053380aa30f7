//! Behaviour on real special file systems mounted for the test (needs root; skipped with a
//! message otherwise): out of space on a full 1 MiB tmpfs, with buffered and with direct-I/O
//! records, and the fallback to buffered writes on ramfs, which has no `O_DIRECT`.

mod common;

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use cairn_journal::{Journal, JournalConfig, JournalError, RecordPos, SEGMENT_HEADER_LEN};
use common::{bytes, end_of, seg_path, split};

/// Unmounts the tmpfs when dropped, also when the test panics.
struct Mount(CString);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Mount {
        Mount::new(c"tmpfs", at, &format!("size={size}"))
    }

    fn new(fs_type: &std::ffi::CStr, at: &Path, opts: &str) -> Mount {
        let target = CString::new(at.as_os_str().as_bytes()).unwrap();
        let opts = CString::new(opts).unwrap();
        // SAFETY: valid NUL-terminated strings that live across the call.
        let rc = unsafe {
            libc::mount(
                fs_type.as_ptr(),
                target.as_ptr(),
                fs_type.as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mount {fs_type:?} on {}: {}",
            at.display(),
            std::io::Error::last_os_error()
        );
        Mount(target)
    }
}

fn is_root() -> bool {
    // SAFETY: trivial libc call.
    unsafe { libc::geteuid() == 0 }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // SAFETY: valid path; MNT_DETACH so open files cannot keep it busy.
        let rc = unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            eprintln!("umount {:?}: {}", self.0, std::io::Error::last_os_error());
        }
    }
}

fn cfg(dir: &Path, direct_io_min_bytes: Option<u64>) -> JournalConfig {
    JournalConfig {
        dir: dir.to_path_buf(),
        segment_bytes: 256 * 1024,
        direct_io_min_bytes,
    }
}

/// An acknowledged record: position, kind, payload, and the segment's end right after it
/// (past its trailing padding record, if it was written with direct I/O).
type Acked = (RecordPos, u8, Vec<u8>, u64);

/// Every segment file ends exactly where its last acknowledged record (with its padding) ended:
/// nothing partial stays.
fn assert_no_partial_record(dir: &Path, j: &Journal, acked: &[Acked]) {
    for (id, len) in j.segments() {
        let want = acked
            .iter()
            .rfind(|r| r.0.segment == id)
            .map_or(SEGMENT_HEADER_LEN, |r| r.3);
        assert_eq!(len, want, "segment {id} as the journal sees it");
        assert_eq!(
            fs::metadata(seg_path(dir, id)).unwrap().len(),
            want,
            "segment {id} on disk"
        );
    }
}

#[test]
fn enospc_keeps_exactly_the_acknowledged_records() {
    enospc(None);
}

#[test]
fn enospc_with_direct_io_records_keeps_exactly_the_acknowledged_records() {
    // tmpfs takes O_DIRECT since Linux 6.6; before, this checks the fallback under ENOSPC.
    enospc(Some(8192));
}

fn enospc(direct: Option<u64>) {
    if !is_root() {
        eprintln!("SKIPPED enospc test: mounting a tmpfs needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _mount = Mount::tmpfs(tmp.path(), "1m");
    let dir = tmp.path().join("journal");
    let (j, _) = Journal::open(cfg(&dir, direct)).unwrap();

    let mut acked: Vec<Acked> = Vec::new();
    let mut no_space = 0;
    // Big records until the first NoSpace, then ever smaller ones to fill the last pages.
    let mut size = 40_000usize;
    for i in 0..10_000u64 {
        let len = size - (i as usize * 7919) % (size / 2 + 1);
        let p = bytes(len, i);
        let parts = split(&p, &[len / 3, len / 2]);
        match j.append((i % 251) as u8, &parts) {
            Ok(pos) => {
                assert_eq!(pos.lsn, acked.len() as u64 + 1);
                let end = j.segments().last().unwrap().1;
                if direct.is_some_and(|d| len as u64 >= d) && j.direct_io() {
                    assert_eq!((pos.offset % 4096, end % 4096), (0, 0), "aligned");
                } else {
                    assert_eq!(end, end_of(&pos));
                }
                acked.push((pos, (i % 251) as u8, p, end));
            }
            Err(JournalError::NoSpace(e)) => {
                no_space += 1;
                assert!(
                    e.to_string().contains("seg-") || e.to_string().contains("segment"),
                    "{e}"
                );
                assert_no_partial_record(&dir, &j, &acked);
                if size == 1 {
                    break;
                }
                size = (size / 4).max(1);
            }
            Err(e) => panic!("expected NoSpace, got {e:?}"),
        }
    }
    assert!(no_space >= 2, "the 1 MiB file system never filled up");
    assert!(acked.len() > 10);
    assert!(
        acked.iter().map(|r| r.2.len()).sum::<usize>() > 700_000,
        "most of the space was used"
    );
    assert!(
        j.segments().len() >= 3,
        "segments rolled: {:?}",
        j.segments()
    );

    // The disk is full to the last page: a new segment cannot be made, and none is left behind.
    let active = j.active_segment();
    match j.rotate() {
        Err(JournalError::NoSpace(_)) => {
            assert_eq!(j.active_segment(), active);
            assert!(
                !seg_path(&dir, active + 1).exists(),
                "half-made segment left behind"
            );
        }
        Ok(id) => panic!("rotate succeeded on a full file system (segment {id})"),
        Err(e) => panic!("expected NoSpace from rotate, got {e:?}"),
    }
    // The journal still works for what was acknowledged.
    let last = acked.last().unwrap().0;
    j.sync(last.lsn).unwrap();
    let mut buf = vec![0u8; last.len as usize];
    j.read_payload(&last, 0, &mut buf).unwrap();
    assert!(buf == acked.last().unwrap().2);
    drop(j);

    let (j, replay) = Journal::open(cfg(&dir, direct)).unwrap();
    assert_eq!(replay.truncated_tail_bytes, 0);
    assert_eq!(replay.records.len(), acked.len());
    for (got, want) in replay.records.iter().zip(&acked) {
        assert_eq!(got.pos, want.0);
        assert_eq!(got.kind, want.1);
        assert!(got.payload == want.2, "payload of lsn {}", want.0.lsn);
    }
    assert_eq!(j.last_lsn(), acked.len() as u64);
    assert_no_partial_record(&dir, &j, &acked);
}

#[test]
fn ramfs_without_direct_io_falls_back_to_buffered_writes() {
    if !is_root() {
        eprintln!("SKIPPED ramfs test: mounting needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _mount = Mount::new(c"ramfs", tmp.path(), "");
    let dir = tmp.path().join("journal");
    let cfg = JournalConfig {
        segment_bytes: 4 << 20,
        ..cfg(&dir, Some(8192))
    };
    let (j, _) = Journal::open(cfg.clone()).unwrap();
    assert!(
        !j.direct_io(),
        "ramfs refuses O_DIRECT at open: direct I/O is off"
    );
    let mut recs = Vec::new();
    for i in 0..12u64 {
        let p = bytes(5_000 + 20_000 * i as usize, i);
        let pos = j.append(i as u8, &split(&p, &[p.len() / 2])).unwrap();
        if let Some((prev, _)) = recs.last() {
            assert_eq!(pos.offset, end_of(prev), "buffered records are packed");
        }
        let mut buf = vec![0u8; p.len()];
        j.read_payload(&pos, 0, &mut buf).unwrap();
        assert!(buf == p);
        recs.push((pos, p));
        if i == 5 {
            j.rotate().unwrap();
            recs.clear();
        }
    }
    // Segments made after the refusal do not carry the padding flag.
    let header = fs::read(seg_path(&dir, j.active_segment())).unwrap();
    assert_eq!(&header[12..16], &[0, 0, 0, 0]);
    let last = j.last_lsn();
    j.sync(last).unwrap();
    drop(j);
    let (_, replay) = Journal::open(cfg).unwrap();
    assert_eq!(replay.records.len(), 12);
    assert_eq!(replay.truncated_tail_bytes, 0);
    for (got, want) in replay.records[6..].iter().zip(&recs) {
        assert_eq!(got.pos, want.0);
        assert!(got.payload == want.1);
    }
}
