//! Out-of-space behaviour on a real full file system: a 1 MiB tmpfs mounted for the test (needs
//! root; skipped with a message otherwise).

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
        let target = CString::new(at.as_os_str().as_bytes()).unwrap();
        let opts = CString::new(format!("size={size}")).unwrap();
        // SAFETY: valid NUL-terminated strings that live across the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mount tmpfs on {}: {}",
            at.display(),
            std::io::Error::last_os_error()
        );
        Mount(target)
    }
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

fn cfg(dir: &Path) -> JournalConfig {
    JournalConfig {
        dir: dir.to_path_buf(),
        segment_bytes: 256 * 1024,
        ..JournalConfig::new(dir)
    }
}

/// Every segment file ends exactly at its last complete record: nothing partial stays.
fn assert_no_partial_record(dir: &Path, j: &Journal, acked: &[(RecordPos, u8, Vec<u8>)]) {
    for (id, len) in j.segments() {
        let want = acked
            .iter()
            .rfind(|r| r.0.segment == id)
            .map_or(SEGMENT_HEADER_LEN, |r| end_of(&r.0));
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
    // SAFETY: trivial libc call.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED enospc test: mounting a tmpfs needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _mount = Mount::tmpfs(tmp.path(), "1m");
    let dir = tmp.path().join("journal");
    let (j, _) = Journal::open(cfg(&dir)).unwrap();

    let mut acked: Vec<(RecordPos, u8, Vec<u8>)> = Vec::new();
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
                acked.push((pos, (i % 251) as u8, p));
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

    let (j, replay) = Journal::open(cfg(&dir)).unwrap();
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
