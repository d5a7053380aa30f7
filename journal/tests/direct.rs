//! Records written with direct I/O (`O_DIRECT`) behind padding records: layout, reads through
//! the page cache, replay of padding, torn direct tails, and journals from before padding.

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use cairn_journal::{
    Journal, JournalConfig, JournalError, RecordPos, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use common::{bytes, end_of, seg_path, split};

const ALIGN: u64 = 4096;

fn cfg(dir: &Path, segment_bytes: u64, direct: Option<u64>) -> JournalConfig {
    JournalConfig {
        dir: dir.to_path_buf(),
        segment_bytes,
        direct_io_min_bytes: direct,
    }
}

/// Opens with direct I/O from 8 KiB payloads and 1 MiB segments.
fn open(dir: &Path) -> (Journal, cairn_journal::Replay) {
    Journal::open(cfg(dir, 1 << 20, Some(8192))).unwrap()
}

/// Payload sizes that hit every padding case: no trailing padding (record ends on a boundary),
/// gaps of fewer than 24 bytes (padding grows by 4 KiB), small records between big ones.
const SIZES: [usize; 12] = [
    100,
    8192,
    3 * 4096 - 24,
    20_000,
    5,
    4096 * 4 - 24 - 10,
    8192 + 1,
    300_000,
    0,
    4096 * 2 - 24 + 1,
    9000,
    1000,
];

/// Appends records of `SIZES` (as several parts); returns positions and payloads.
fn fill(j: &Journal, seed: u64) -> Vec<(RecordPos, Vec<u8>)> {
    SIZES
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let p = bytes(len, seed + i as u64);
            let parts = split(&p, &[len / 3, len / 2 + 1]);
            (j.append(i as u8, &parts).unwrap(), p)
        })
        .collect()
}

fn read_all(j: &Journal, recs: &[(RecordPos, Vec<u8>)]) {
    for (pos, p) in recs {
        let mut buf = vec![0u8; p.len()];
        j.read_payload(pos, 0, &mut buf).unwrap();
        assert!(&buf == p, "payload of lsn {}", pos.lsn);
    }
}

/// Walks a segment file item by item: (offset, is padding, payload len, lsn).
fn items(path: &Path) -> Vec<(u64, bool, u32, u64)> {
    let d = fs::read(path).unwrap();
    let mut at = SEGMENT_HEADER_LEN as usize;
    let mut out = Vec::new();
    while at < d.len() {
        let magic = &d[at..at + 4];
        assert!(magic == b"CJRN" || magic == b"CJPD", "item at {at}");
        let len = u32::from_le_bytes(d[at + 8..at + 12].try_into().unwrap());
        let lsn = u64::from_le_bytes(d[at + 12..at + 20].try_into().unwrap());
        out.push((at as u64, magic == b"CJPD", len, lsn));
        at += RECORD_HEADER_LEN as usize + len as usize;
    }
    assert_eq!(at, d.len(), "items end exactly at the end of the file");
    out
}

fn flip(path: &Path, at: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x08;
    f.write_all_at(&b, at).unwrap();
}

#[test]
fn direct_records_round_trip_aligned_and_readable_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path());
    if !j.direct_io() {
        eprintln!(
            "note: {} has no O_DIRECT; testing the fallback",
            dir.path().display()
        );
    }
    let mut recs = Vec::new();
    for (i, &len) in SIZES.iter().enumerate() {
        let p = bytes(len, 100 + i as u64);
        let pos = j.append(i as u8, &[&p]).unwrap();
        // Read straight after the direct write, through the page cache.
        let mut buf = vec![0u8; len];
        j.read_payload(&pos, 0, &mut buf).unwrap();
        assert!(buf == p, "lsn {} read back at once", pos.lsn);
        if j.direct_io() && len >= 8192 {
            assert_eq!(
                pos.offset % ALIGN,
                0,
                "direct record of {len} bytes is aligned"
            );
        }
        recs.push((pos, p));
    }
    let id = j.active_segment();
    let path = seg_path(dir.path(), id);
    assert_eq!(j.segments(), vec![(id, fs::metadata(&path).unwrap().len())]);
    // The file is records and padding records, back to back; records are where the journal said.
    let on_disk = items(&path);
    let real: Vec<(u64, u32, u64)> = on_disk
        .iter()
        .filter(|i| !i.1)
        .map(|i| (i.0, i.2, i.3))
        .collect();
    let want: Vec<(u64, u32, u64)> = recs
        .iter()
        .map(|r| (r.0.offset, r.0.len, r.0.lsn))
        .collect();
    assert_eq!(real, want);
    if j.direct_io() {
        let pads = on_disk.iter().filter(|i| i.1).count();
        assert!(pads >= 8, "padding around direct records: {on_disk:?}");
        assert_eq!(
            fs::metadata(&path).unwrap().len() % ALIGN,
            24 + 1000,
            "last record is buffered"
        );
    }
    j.sync(j.last_lsn()).unwrap();
    drop(j);
    let (j, replay) = open(dir.path());
    assert_eq!(replay.truncated_tail_bytes, 0);
    let got: Vec<(RecordPos, Vec<u8>)> = replay
        .records
        .into_iter()
        .map(|r| (r.pos, r.payload))
        .collect();
    assert!(got == recs, "replay returns exactly the records");
    read_all(&j, &recs);
    // Appends continue after the last record.
    let more = fill(&j, 7);
    read_all(&j, &more);
    assert_eq!(more[0].0.lsn, recs.len() as u64 + 1);
}

#[test]
fn big_records_span_segments_and_chunks() {
    // A record larger than the staging buffer's 8 MiB chunk and than a segment.
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(cfg(dir.path(), 1 << 20, Some(8192))).unwrap();
    let small = j.append(1, &[b"small"]).unwrap();
    let p = bytes(9 << 20 | 123, 5);
    let big = j.append(2, &split(&p, &[1 << 20, 5 << 20])).unwrap();
    assert_ne!(
        big.segment, small.segment,
        "a record larger than a segment gets its own"
    );
    let after = j.append(3, &[&p[..10_000]]).unwrap();
    assert_ne!(after.segment, big.segment);
    let mut buf = vec![0u8; p.len()];
    j.read_payload(&big, 0, &mut buf).unwrap();
    assert!(buf == p);
    drop(j);
    let (_, replay) = Journal::open(cfg(dir.path(), 1 << 20, Some(8192))).unwrap();
    assert_eq!(replay.records.len(), 3);
    assert!(replay.records[1].payload == p);
    assert_eq!(replay.records[1].pos, big);
}

#[test]
fn padding_records_are_skipped_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path());
    if !j.direct_io() {
        eprintln!("SKIPPED: no O_DIRECT on {}", dir.path().display());
        return;
    }
    let recs = fill(&j, 1);
    let old = j.active_segment();
    j.rotate().unwrap();
    let newer = fill(&j, 2);
    let last = j.active_segment();
    drop(j);
    let (_, replay) = open(dir.path());
    let lsns: Vec<u64> = replay.records.iter().map(|r| r.pos.lsn).collect();
    assert_eq!(
        lsns,
        (1..=2 * SIZES.len() as u64).collect::<Vec<_>>(),
        "no lsn for padding"
    );
    drop(replay);

    // A damaged padding record in an older segment is corruption, named at its offset.
    let pad = items(&seg_path(dir.path(), old))
        .into_iter()
        .find(|i| i.1 && i.2 > 100)
        .unwrap();
    flip(&seg_path(dir.path(), old), pad.0 + RECORD_HEADER_LEN + 50);
    match Journal::open(cfg(dir.path(), 1 << 20, Some(8192))) {
        Err(JournalError::Corrupt {
            segment,
            offset,
            reason,
        }) => {
            assert_eq!((segment, offset), (old, pad.0));
            assert!(reason.contains("padding"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    flip(&seg_path(dir.path(), old), pad.0 + RECORD_HEADER_LEN + 50);
    assert_eq!(open(dir.path()).1.records.len(), recs.len() + newer.len());

    // In the last segment it ends the log: the tail from the padding record on is cut.
    let path = seg_path(dir.path(), last);
    let len = fs::metadata(&path).unwrap().len();
    let pads: Vec<_> = items(&path).into_iter().filter(|i| i.1).collect();
    let pad = pads[pads.len() / 2];
    flip(&path, pad.0 + 13); // the lsn field
    let (_, replay) = open(dir.path());
    let kept = newer.iter().filter(|r| r.0.offset < pad.0).count();
    assert_eq!(replay.records.len(), recs.len() + kept);
    assert_eq!(replay.truncated_tail_bytes, len - pad.0);
    assert_eq!(fs::metadata(&path).unwrap().len(), pad.0);
}

#[test]
fn torn_direct_tail_is_truncated() {
    // Three ways a crash can leave the tail of a direct write: the file cut short, a block of
    // the record never written (reads as zeroes though the size was updated), zeroes past it.
    for case in ["cut", "zero block", "zeroes after"] {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(dir.path());
        let a = bytes(100_000, 1);
        let b = bytes(200_000, 2);
        let pa = j.append(1, &[&a]).unwrap();
        j.sync(pa.lsn).unwrap();
        let pb = j.append(2, &[&b]).unwrap();
        let id = j.active_segment();
        let seg_end = j.segments()[0].1;
        drop(j);
        let path = seg_path(dir.path(), id);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        let (len, keep_b) = match case {
            "cut" => {
                f.set_len(pb.offset + 70_000).unwrap();
                (pb.offset + 70_000, false)
            }
            "zero block" => {
                let at = (pb.offset + 100_000) / ALIGN * ALIGN;
                f.write_all_at(&[0u8; ALIGN as usize], at).unwrap();
                (seg_end, false)
            }
            _ => {
                f.write_all_at(&[0u8; 3 * ALIGN as usize], seg_end).unwrap();
                (seg_end + 3 * ALIGN, true)
            }
        };
        drop(f);
        let (j, replay) = open(dir.path());
        let lsns: Vec<u64> = replay.records.iter().map(|r| r.pos.lsn).collect();
        let valid_end = if keep_b { seg_end } else { pb.offset };
        assert_eq!(lsns, if keep_b { vec![1, 2] } else { vec![1] }, "{case}");
        assert_eq!(replay.truncated_tail_bytes, len - valid_end, "{case}");
        assert_eq!(fs::metadata(&path).unwrap().len(), valid_end, "{case}");
        assert!(replay.records[0].payload == a);
        // The next record goes where the cut one was (its leading padding survived).
        let pc = j.append(3, &[&b]).unwrap();
        assert_eq!(pc.lsn, if keep_b { 3 } else { 2 }, "{case}");
        if !keep_b && j.direct_io() {
            assert_eq!(pc.offset, pb.offset, "{case}");
        }
        let mut buf = vec![0u8; b.len()];
        j.read_payload(&pc, 0, &mut buf).unwrap();
        assert!(buf == b, "{case}: no stale page cache after the truncation");
        drop(j);
        let (_, replay) = open(dir.path());
        assert_eq!(replay.truncated_tail_bytes, 0, "{case}");
        assert!(replay.records.last().unwrap().payload == b, "{case}");
    }
}

#[test]
fn journal_from_before_padding_is_read_and_its_segment_stays_unpadded() {
    let dir = tempfile::tempdir().unwrap();
    // Direct I/O off: segment headers without the padding flag, as older builds wrote them.
    let (j, _) = Journal::open(cfg(dir.path(), 1 << 20, None)).unwrap();
    assert!(!j.direct_io());
    let old = fill(&j, 3);
    for w in old.windows(2) {
        assert_eq!(
            w[1].0.offset,
            end_of(&w[0].0),
            "no padding without direct I/O"
        );
    }
    let id = j.active_segment();
    drop(j);
    let header = fs::read(seg_path(dir.path(), id)).unwrap();
    assert_eq!(&header[12..16], &[0, 0, 0, 0], "flags stay zero");

    let (j, replay) = open(dir.path());
    assert_eq!(replay.records.len(), old.len());
    // Appends to the old segment stay packed (an older build must still be able to read it) ...
    let p = bytes(50_000, 4);
    let pos = j.append(1, &[&p]).unwrap();
    assert_eq!(
        (pos.segment, pos.offset),
        (id, end_of(&old.last().unwrap().0))
    );
    // ... until the next segment, which allows padding.
    j.rotate().unwrap();
    let pos = j.append(1, &[&p]).unwrap();
    if j.direct_io() {
        assert_eq!(pos.offset % ALIGN, 0);
    }
    drop(j);
    let (_, replay) = open(dir.path());
    assert_eq!(replay.records.len(), old.len() + 2);
}

#[test]
fn padding_in_a_segment_without_the_flag_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path());
    if !j.direct_io() {
        eprintln!("SKIPPED: no O_DIRECT on {}", dir.path().display());
        return;
    }
    fill(&j, 9);
    let old = j.active_segment();
    j.rotate().unwrap();
    j.append(0, &[b"x"]).unwrap();
    drop(j);
    // Clear the flag (with a valid header crc): the first padding record is now an error.
    let path = seg_path(dir.path(), old);
    let mut h = fs::read(&path).unwrap()[..40].to_vec();
    h[12] = 0;
    let crc = crc32c(&h[..32]);
    h[32..36].copy_from_slice(&crc.to_le_bytes());
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&h, 0)
        .unwrap();
    let first_pad = items(&path).into_iter().find(|i| i.1).unwrap();
    match Journal::open(cfg(dir.path(), 1 << 20, Some(8192))) {
        Err(JournalError::Corrupt {
            segment,
            offset,
            reason,
        }) => {
            assert_eq!((segment, offset), (old, first_pad.0));
            assert!(reason.contains("padding"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// CRC-32C (Castagnoli), bitwise; the tests do not depend on the crc32c crate.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
