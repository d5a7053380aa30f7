//! Targeted tests of the journal's contract: corruption handling, locking, reads, group sync,
//! checkpoints and segment bookkeeping.

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use cairn_journal::{
    Journal, JournalConfig, JournalError, RecordPos, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use common::{bytes, end_of, seg_path};

fn cfg(dir: &Path, segment_bytes: u64) -> JournalConfig {
    JournalConfig {
        dir: dir.to_path_buf(),
        segment_bytes,
        ..JournalConfig::new(dir)
    }
}

fn open(dir: &Path) -> (Journal, cairn_journal::Replay) {
    Journal::open(cfg(dir, 64 * 1024)).unwrap()
}

fn flip(path: &Path, at: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x40;
    f.write_all_at(&b, at).unwrap();
}

/// Appends `n` records of 100..1100 bytes; returns their positions and payloads.
fn fill(j: &Journal, n: usize, seed: u64) -> Vec<(RecordPos, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let p = bytes(100 + (i * 37) % 1000, seed + i as u64);
            (j.append(i as u8, &[&p]).unwrap(), p)
        })
        .collect()
}

#[test]
fn config_default_segment_size_is_64_mib() {
    assert_eq!(JournalConfig::new("/x").segment_bytes, 64 << 20);
}

#[test]
fn corrupt_record_in_an_older_segment_is_an_error_naming_it() {
    for (what, delta) in [
        ("payload", RECORD_HEADER_LEN + 5),
        ("header", 0),
        ("lsn", 12),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(dir.path());
        let recs = fill(&j, 5, 1);
        let old = j.active_segment();
        j.rotate().unwrap();
        fill(&j, 3, 2);
        drop(j);
        let bad = recs[2].0;
        flip(&seg_path(dir.path(), old), bad.offset + delta);
        match Journal::open(cfg(dir.path(), 64 * 1024)) {
            Err(e @ JournalError::Corrupt { .. }) => {
                let JournalError::Corrupt {
                    segment, offset, ..
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!((*segment, *offset), (old, bad.offset), "{what}");
                let msg = e.to_string();
                assert!(msg.contains(&format!("seg-{old:016x}.log")), "{msg}");
                assert!(msg.contains(&bad.offset.to_string()), "{msg}");
            }
            other => panic!("damaged {what}: expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn truncated_older_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path());
    let recs = fill(&j, 4, 3);
    let old = j.active_segment();
    j.rotate().unwrap();
    drop(j);
    let f = OpenOptions::new()
        .write(true)
        .open(seg_path(dir.path(), old))
        .unwrap();
    f.set_len(end_of(&recs[3].0) - 1).unwrap();
    let err = Journal::open(cfg(dir.path(), 64 * 1024)).unwrap_err();
    assert!(
        matches!(err, JournalError::Corrupt { segment, offset, .. } if segment == old && offset == recs[3].0.offset),
        "{err:?}"
    );
}

#[test]
fn renamed_or_foreign_segment_file_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path());
    fill(&j, 2, 4);
    let id = j.active_segment();
    drop(j);
    fs::copy(seg_path(dir.path(), id), seg_path(dir.path(), 9)).unwrap();
    let err = Journal::open(cfg(dir.path(), 64 * 1024)).unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::Corrupt {
                segment: 9,
                offset: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("renamed"), "{err}");

    fs::write(seg_path(dir.path(), 9), vec![0x55u8; 100]).unwrap();
    let err = Journal::open(cfg(dir.path(), 64 * 1024)).unwrap_err();
    assert!(err.to_string().contains("magic"), "{err}");
}

#[test]
fn second_open_of_a_locked_dir_is_refused_with_the_pid() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path());
    match Journal::open(cfg(dir.path(), 64 * 1024)) {
        Err(JournalError::Locked(msg)) => {
            assert!(
                msg.contains(&format!("pid {}", std::process::id())),
                "{msg}"
            )
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert_eq!(
        fs::read_to_string(dir.path().join("LOCK")).unwrap().trim(),
        std::process::id().to_string()
    );
    drop(j);
    open(dir.path());
}

#[test]
fn read_payload_from_old_and_active_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(cfg(dir.path(), 4096)).unwrap();
    let recs = fill(&j, 40, 5);
    let segs: std::collections::BTreeSet<u64> = recs.iter().map(|r| r.0.segment).collect();
    assert!(segs.len() > 3, "small segments roll: {segs:?}");
    assert!(recs.last().unwrap().0.segment == j.active_segment());
    let check = |j: &Journal, recs: &[(RecordPos, Vec<u8>)]| {
        for (pos, p) in recs {
            let mut all = vec![0u8; p.len()];
            j.read_payload(pos, 0, &mut all).unwrap();
            assert_eq!(&all, p);
            let mut mid = vec![0u8; p.len() / 3];
            j.read_payload(pos, 17, &mut mid).unwrap();
            assert_eq!(mid, p[17..17 + p.len() / 3]);
        }
    };
    check(&j, &recs);
    // Out of the payload's range.
    let (pos, _) = recs[0];
    let mut buf = vec![0u8; 10];
    assert!(matches!(
        j.read_payload(&pos, u64::from(pos.len) - 9, &mut buf),
        Err(JournalError::InvalidArgument(_))
    ));
    // A stale position (wrong lsn) is caught instead of returning other data.
    let stale = RecordPos {
        lsn: pos.lsn + 1,
        ..pos
    };
    assert!(j.read_payload(&stale, 0, &mut buf).is_err());
    // Reads still work after a reopen.
    drop(j);
    let (j, replay) = Journal::open(cfg(dir.path(), 4096)).unwrap();
    assert_eq!(replay.records.len(), recs.len());
    check(&j, &recs);
    // And fail once the segment is gone.
    let first = recs[0].0.segment;
    j.delete_segment(first).unwrap();
    assert!(matches!(
        j.read_payload(&recs[0].0, 0, &mut buf),
        Err(JournalError::InvalidArgument(_))
    ));
}

#[test]
fn group_sync_from_many_threads() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(cfg(dir.path(), 256 * 1024)).unwrap();
    let j = Arc::new(j);
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let j = j.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..40u64 {
                    let p = bytes(((t * 131 + i * 71) % 3000) as usize, t * 1000 + i);
                    let pos = j
                        .append(t as u8, &[&p[..p.len() / 2], &p[p.len() / 2..]])
                        .unwrap();
                    j.sync(pos.lsn).unwrap();
                    assert!(j.durable_lsn() >= pos.lsn);
                    mine.push((pos, p));
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<(RecordPos, Vec<u8>)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort_by_key(|r| r.0.lsn);
    assert_eq!(all.len(), 320);
    assert!(all.iter().enumerate().all(|(i, r)| r.0.lsn == i as u64 + 1));
    assert_eq!(j.last_lsn(), 320);
    assert_eq!(j.durable_lsn(), 320);
    drop(j);
    let (_, replay) = Journal::open(cfg(dir.path(), 256 * 1024)).unwrap();
    let got: Vec<(RecordPos, Vec<u8>)> = replay
        .records
        .into_iter()
        .map(|r| (r.pos, r.payload))
        .collect();
    assert!(got == all);
}

#[test]
fn sync_beyond_last_lsn_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path());
    j.sync(0).unwrap();
    assert!(matches!(j.sync(1), Err(JournalError::InvalidArgument(_))));
    j.append(0, &[b"x"]).unwrap();
    j.sync(1).unwrap();
    assert_eq!(j.durable_lsn(), 1);
}

#[test]
fn torn_tail_is_cut_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path());
    let recs = fill(&j, 4, 6);
    j.sync(3).unwrap();
    let id = j.active_segment();
    drop(j);
    let cut = recs[3].0.offset + 30;
    OpenOptions::new()
        .write(true)
        .open(seg_path(dir.path(), id))
        .unwrap()
        .set_len(cut)
        .unwrap();
    let (j, replay) = open(dir.path());
    assert_eq!(replay.records.len(), 3);
    assert_eq!(replay.truncated_tail_bytes, 30);
    assert_eq!(
        fs::metadata(seg_path(dir.path(), id)).unwrap().len(),
        recs[3].0.offset
    );
    let pos = j.append(1, &[b"after"]).unwrap();
    assert_eq!(pos.lsn, 4);
    assert_eq!(pos.offset, recs[3].0.offset);
    drop(j);
    let (_, replay) = open(dir.path());
    assert_eq!(replay.records.len(), 4);
    assert_eq!(replay.records[3].payload, b"after");
    assert_eq!(replay.truncated_tail_bytes, 0);
}

#[test]
fn stale_record_after_the_end_is_not_replayed() {
    // A complete, checksummed record whose lsn does not follow on ends the log.
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path());
    let recs = fill(&j, 3, 7);
    let id = j.active_segment();
    drop(j);
    let path = seg_path(dir.path(), id);
    let data = fs::read(&path).unwrap();
    // Append a copy of record 2 (valid crc, lsn 2) after record 3.
    let r2 = &data[recs[1].0.offset as usize..end_of(&recs[1].0) as usize];
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(r2, data.len() as u64).unwrap();
    let (_, replay) = open(dir.path());
    assert_eq!(replay.records.len(), 3);
    assert_eq!(replay.truncated_tail_bytes, r2.len() as u64);
}

#[test]
fn checkpoint_limits_replay_and_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path());
    fill(&j, 6, 8);
    j.write_checkpoint(2, b"two").unwrap();
    j.write_checkpoint(4, b"four").unwrap();
    assert!(matches!(
        j.write_checkpoint(3, b"back"),
        Err(JournalError::InvalidArgument(_))
    ));
    assert!(matches!(
        j.write_checkpoint(7, b"future"),
        Err(JournalError::InvalidArgument(_))
    ));
    assert!(
        j.durable_lsn() >= 4,
        "checkpointed records were synced first"
    );
    drop(j);
    // A leftover temporary file from a crash mid-checkpoint is ignored.
    fs::write(dir.path().join("checkpoint.tmp"), b"half").unwrap();
    let (j, replay) = open(dir.path());
    assert_eq!(replay.checkpoint.as_deref(), Some(&b"four"[..]));
    let lsns: Vec<u64> = replay.records.iter().map(|r| r.pos.lsn).collect();
    assert_eq!(lsns, vec![5, 6]);
    assert!(!dir.path().join("checkpoint.tmp").exists());
    drop(j);
    flip(&dir.path().join("checkpoint"), 33);
    let err = Journal::open(cfg(dir.path(), 64 * 1024)).unwrap_err();
    assert!(matches!(err, JournalError::BadCheckpoint { .. }), "{err:?}");
}

#[test]
fn deleting_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(cfg(dir.path(), 4096)).unwrap();
    let recs = fill(&j, 30, 9);
    let segs = j.segments();
    assert!(segs.len() >= 3);
    for (id, len) in &segs {
        assert_eq!(fs::metadata(seg_path(dir.path(), *id)).unwrap().len(), *len);
    }
    let active = j.active_segment();
    assert_eq!(segs.last().unwrap().0, active);
    assert!(matches!(
        j.delete_segment(active),
        Err(JournalError::InvalidArgument(_))
    ));
    assert!(j.delete_segment(active + 1).is_err());
    // Checkpoint past the first two segments, then delete them.
    let (s0, s1) = (segs[0].0, segs[1].0);
    let last_in_s1 = recs.iter().rfind(|r| r.0.segment == s1).unwrap().0.lsn;
    j.write_checkpoint(last_in_s1, b"ck").unwrap();
    j.delete_segment(s0).unwrap();
    j.delete_segment(s1).unwrap();
    assert!(j.delete_segment(s0).is_err());
    assert!(!seg_path(dir.path(), s0).exists());
    assert_eq!(j.segments().first().unwrap().0, segs[2].0);
    drop(j);
    let (j, replay) = Journal::open(cfg(dir.path(), 4096)).unwrap();
    assert_eq!(replay.records.first().unwrap().pos.lsn, last_in_s1 + 1);
    assert_eq!(replay.records.len(), 30 - last_in_s1 as usize);
    // Deleting a segment whose records the checkpoint does not cover loses records: replay says so.
    let s2 = segs[2].0;
    j.delete_segment(s2).unwrap();
    drop(j);
    let err = Journal::open(cfg(dir.path(), 4096)).unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn crash_while_creating_a_segment_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path());
    fill(&j, 3, 10);
    let id = j.active_segment();
    j.sync(3).unwrap();
    drop(j);
    // The next segment's file exists but its header never made it.
    fs::write(seg_path(dir.path(), id + 1), b"CAIRN").unwrap();
    let (j, replay) = open(dir.path());
    assert_eq!(replay.records.len(), 3);
    assert_eq!(replay.truncated_tail_bytes, 5);
    assert_eq!(j.active_segment(), id + 1);
    let pos = j.append(0, &[b"next"]).unwrap();
    assert_eq!(
        (pos.segment, pos.offset, pos.lsn),
        (id + 1, SEGMENT_HEADER_LEN, 4)
    );
    drop(j);
    let (_, replay) = open(dir.path());
    assert_eq!(replay.records.len(), 4);
}

#[test]
fn checkpoint_ahead_of_the_log_continues_after_it() {
    // If the disk lost records the checkpoint covers, new records follow the checkpoint's lsn
    // in a fresh segment, and later replays accept the gap the checkpoint covers.
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path());
    fill(&j, 5, 11);
    j.write_checkpoint(5, b"five").unwrap();
    let id = j.active_segment();
    drop(j);
    OpenOptions::new()
        .write(true)
        .open(seg_path(dir.path(), id))
        .unwrap()
        .set_len(SEGMENT_HEADER_LEN)
        .unwrap();
    let (j, replay) = open(dir.path());
    assert!(replay.records.is_empty());
    assert_eq!(j.last_lsn(), 5);
    assert!(j.active_segment() > id);
    assert_eq!(j.append(0, &[b"six"]).unwrap().lsn, 6);
    drop(j);
    let (_, replay) = open(dir.path());
    assert_eq!(replay.records.len(), 1);
    assert_eq!(replay.records[0].pos.lsn, 6);
}

#[test]
fn empty_and_multi_part_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path());
    let a = j.append(1, &[]).unwrap();
    let b = j.append(2, &[b"", b"ab", b"", b"cd", b""]).unwrap();
    let many: Vec<Vec<u8>> = (0..2000).map(|i| vec![i as u8; 3]).collect();
    let parts: Vec<&[u8]> = many.iter().map(|v| &v[..]).collect();
    let c = j.append(3, &parts).unwrap();
    assert_eq!((a.len, b.len, c.len), (0, 4, 6000));
    drop(j);
    let (_, replay) = open(dir.path());
    assert_eq!(replay.records[0].payload, b"");
    assert_eq!(replay.records[1].payload, b"abcd");
    assert_eq!(replay.records[2].payload, many.concat());
    assert_eq!(replay.records[2].kind, 3);
}
