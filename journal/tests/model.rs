//! Model-based crash test: random sequences of appends, syncs, rotations, checkpoints, segment
//! deletions, reads and crashes (drop without sync, then damage of the last segment past its
//! durable point), checked against a plain in-memory model of what must come back. Each case
//! runs with direct I/O off, on from 4 KiB payloads, or on for every record, so padding records
//! and their interaction with crashes are covered too.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;

use cairn_journal::{Journal, JournalConfig, JournalError, RecordPos, SEGMENT_HEADER_LEN};
use common::{bytes, end_of, seg_path, split};
use proptest::prelude::*;

const SEGMENT_BYTES: u64 = 64 * 1024;
/// Alignment of records written with direct I/O.
const ALIGN: u64 = 4096;

#[derive(Debug, Clone)]
enum Damage {
    /// Truncate to a length between the durable end and the current end.
    Truncate(u64),
    /// Append `len` garbage bytes.
    Garbage { len: usize, seed: u64 },
    /// Flip one bit at a byte past the durable end.
    Flip { at: u64, bit: u8 },
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        kind: u8,
        len: usize,
        seed: u64,
        cuts: Vec<u16>,
    },
    Sync,
    Rotate,
    Checkpoint {
        sel: u64,
        beyond_durable: bool,
        state_len: usize,
        seed: u64,
    },
    DeleteDead,
    Read {
        sel: u64,
        off: u64,
        len: u64,
    },
    Crash(Damage),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<u64>().prop_map(Damage::Truncate),
        (0usize..300, any::<u64>()).prop_map(|(len, seed)| Damage::Garbage { len, seed }),
        (any::<u64>(), 0u8..8).prop_map(|(at, bit)| Damage::Flip { at, bit }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![
        4 => 0usize..=256,
        3 => 0usize..=8192,
        2 => 0usize..=200 * 1024,
    ];
    prop_oneof![
        12 => (any::<u8>(), len, any::<u64>(), prop::collection::vec(any::<u16>(), 0..4))
            .prop_map(|(kind, len, seed, cuts)| Op::Append { kind, len, seed, cuts }),
        3 => Just(Op::Sync),
        1 => Just(Op::Rotate),
        2 => (any::<u64>(), any::<bool>(), 0usize..64, any::<u64>()).prop_map(
            |(sel, beyond_durable, state_len, seed)| Op::Checkpoint { sel, beyond_durable, state_len, seed }
        ),
        1 => Just(Op::DeleteDead),
        2 => (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(sel, off, len)| Op::Read { sel, off, len }),
        2 => damage().prop_map(Op::Crash),
    ]
}

/// One appended record the model still expects to exist.
#[derive(Debug, Clone)]
struct Rec {
    pos: RecordPos,
    kind: u8,
    payload: Vec<u8>,
    /// End of the segment right after this append (past the record's trailing padding, if any).
    end: u64,
}

struct Model {
    dir: tempfile::TempDir,
    direct_min: Option<u64>,
    /// Every item boundary (record or padding record start/end) the model knows of, per
    /// segment: items are contiguous, so after damage at byte `c` replay keeps exactly the
    /// items up to the highest boundary <= `c`.
    bounds: BTreeMap<u64, BTreeSet<u64>>,
    journal: Option<Journal>,
    /// Every appended record not lost in a crash; lsn of `recs[i]` is i + 1.
    recs: Vec<Rec>,
    checkpoint: Option<(u64, Vec<u8>)>,
    deleted: BTreeSet<u64>,
    /// Lowest durable lsn the model knows the journal must have reached.
    durable: u64,
}

impl Model {
    fn new(direct_min: Option<u64>) -> Model {
        let dir = tempfile::tempdir().unwrap();
        let (journal, replay) = Journal::open(cfg(dir.path(), direct_min)).unwrap();
        assert_eq!(replay, Default::default());
        assert_eq!((journal.last_lsn(), journal.durable_lsn()), (0, 0));
        Model {
            dir,
            direct_min,
            bounds: BTreeMap::new(),
            journal: Some(journal),
            recs: Vec::new(),
            checkpoint: None,
            deleted: BTreeSet::new(),
            durable: 0,
        }
    }

    fn j(&self) -> &Journal {
        self.journal.as_ref().unwrap()
    }

    fn ckpt_lsn(&self) -> u64 {
        self.checkpoint.as_ref().map_or(0, |c| c.0)
    }

    fn last(&self) -> u64 {
        self.recs.len() as u64
    }

    /// Where the model knows segment `id` to end.
    fn end(&self, id: u64) -> u64 {
        self.bounds
            .get(&id)
            .and_then(|b| b.last().copied())
            .unwrap_or(SEGMENT_HEADER_LEN)
    }

    fn append(&mut self, kind: u8, len: usize, seed: u64, cuts: &[u16]) {
        let payload = bytes(len, seed);
        let cuts: Vec<usize> = cuts.iter().map(|&c| c as usize * len / 65536).collect();
        let parts = split(&payload, &cuts);
        let pos = self.j().append(kind, &parts).unwrap();
        assert_eq!(pos.lsn, self.last() + 1, "lsns are contiguous");
        assert_eq!(pos.len as usize, len);
        assert_eq!(pos.segment, self.j().active_segment());
        assert_eq!(self.j().last_lsn(), pos.lsn);
        if let Some(prev) = self.recs.last() {
            assert!(pos.segment >= prev.pos.segment);
        }
        let seg_end = self
            .j()
            .segments()
            .iter()
            .find(|s| s.0 == pos.segment)
            .unwrap()
            .1;
        // Records are packed, except that a direct-I/O record starts at a 4 KiB boundary
        // behind a padding record and is followed by one up to the next boundary.
        let direct = self.j().direct_io() && self.direct_min.is_some_and(|m| len as u64 >= m);
        let prev_end = self.end(pos.segment);
        let rec_end = end_of(&pos);
        for (from, to) in [(prev_end, pos.offset), (rec_end, seg_end)] {
            if direct {
                assert_eq!(to % ALIGN, 0, "direct record and its padding are aligned");
                assert!(
                    to == from || (24..ALIGN + 24).contains(&(to - from)),
                    "{from}..{to}"
                );
            } else {
                assert_eq!(from, to, "a buffered record is packed");
            }
        }
        let b = self.bounds.entry(pos.segment).or_default();
        b.extend([SEGMENT_HEADER_LEN, prev_end, pos.offset, rec_end, seg_end]);
        self.recs.push(Rec {
            pos,
            kind,
            payload,
            end: seg_end,
        });
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append {
                kind,
                len,
                seed,
                cuts,
            } => self.append(*kind, *len, *seed, cuts),
            Op::Sync => {
                let last = self.j().last_lsn();
                self.j().sync(last).unwrap();
                assert!(self.j().durable_lsn() >= last);
                self.durable = last;
            }
            Op::Rotate => {
                let before = self.j().active_segment();
                let id = self.j().rotate().unwrap();
                assert!(id > before);
                assert_eq!(self.j().active_segment(), id);
                // The old segment was synced before the new one was made.
                assert_eq!(self.j().durable_lsn(), self.last());
                self.durable = self.last();
            }
            Op::Checkpoint {
                sel,
                beyond_durable,
                state_len,
                seed,
            } => {
                let lo = self.ckpt_lsn();
                let hi = if *beyond_durable {
                    self.last()
                } else {
                    self.j().durable_lsn()
                };
                let lsn = lo + sel % (hi - lo + 1);
                let state = bytes(*state_len, *seed);
                self.j().write_checkpoint(lsn, &state).unwrap();
                assert!(self.j().durable_lsn() >= lsn);
                self.durable = self.durable.max(lsn);
                if lo > 0 {
                    assert!(matches!(
                        self.j().write_checkpoint(lo - 1, b"older"),
                        Err(JournalError::InvalidArgument(_))
                    ));
                }
                self.checkpoint = Some((lsn, state));
            }
            Op::DeleteDead => {
                let active = self.j().active_segment();
                let ckpt = self.ckpt_lsn();
                for (id, _) in self.j().segments() {
                    let dead = id != active
                        && self
                            .recs
                            .iter()
                            .filter(|r| r.pos.segment == id)
                            .all(|r| r.pos.lsn <= ckpt);
                    if dead {
                        self.j().delete_segment(id).unwrap();
                        self.deleted.insert(id);
                        assert!(!seg_path(self.dir.path(), id).exists());
                    }
                }
                assert!(self.j().delete_segment(active).is_err());
                let live: Vec<u64> = self.j().segments().iter().map(|s| s.0).collect();
                assert!(live.iter().all(|id| !self.deleted.contains(id)));
            }
            Op::Read { sel, off, len } => {
                let live: Vec<&Rec> = self
                    .recs
                    .iter()
                    .filter(|r| !self.deleted.contains(&r.pos.segment))
                    .collect();
                if live.is_empty() {
                    return;
                }
                let r = live[(*sel % live.len() as u64) as usize];
                let plen = u64::from(r.pos.len);
                let off = off % (plen + 1);
                let len = len % (plen - off + 1);
                let mut buf = vec![0u8; len as usize];
                self.j().read_payload(&r.pos, off, &mut buf).unwrap();
                assert_eq!(buf, r.payload[off as usize..(off + len) as usize]);
                let mut one = [0u8; 1];
                assert!(self.j().read_payload(&r.pos, plen, &mut one).is_err());
            }
            Op::Crash(damage) => self.crash(damage),
        }
    }

    /// Drops the journal without syncing, damages the last segment past its durable end, reopens
    /// and checks the replay against the model exactly.
    fn crash(&mut self, damage: &Damage) {
        let j = self.journal.take().unwrap();
        let durable = j.durable_lsn();
        assert!(durable >= self.durable, "durable_lsn went backwards");
        let active = j.active_segment();
        let sizes = j.segments();
        drop(j);

        let path = seg_path(self.dir.path(), active);
        let file_len = fs::metadata(&path).unwrap().len();
        let in_active = |r: &&Rec| r.pos.segment == active;
        let full_end = self.end(active);
        assert_eq!(file_len, full_end, "no stray bytes after the last record");
        assert_eq!(sizes.last(), Some(&(active, full_end)));
        let durable_end = self
            .recs
            .iter()
            .filter(in_active)
            .rfind(|r| r.pos.lsn <= durable)
            .map_or(SEGMENT_HEADER_LEN, |r| r.end);

        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        // Records of the active segment that end at or before `cut` are intact.
        let cut = match damage {
            Damage::Truncate(sel) => {
                let len = durable_end + sel % (file_len - durable_end + 1);
                f.set_len(len).unwrap();
                len
            }
            Damage::Garbage { len, seed } => {
                f.write_all_at(&bytes(*len, *seed), file_len).unwrap();
                file_len
            }
            Damage::Flip { at, bit } => {
                if file_len > durable_end {
                    let at = durable_end + at % (file_len - durable_end);
                    let mut b = [0u8];
                    f.read_exact_at(&mut b, at).unwrap();
                    b[0] ^= 1 << bit;
                    f.write_all_at(&b, at).unwrap();
                    at
                } else {
                    file_len
                }
            }
        };
        let damaged_len = f.metadata().unwrap().len();
        drop(f);

        self.recs
            .retain(|r| r.pos.segment != active || end_of(&r.pos) <= cut);
        assert!(self.last() >= durable, "the model dropped a durable record");
        let b = self.bounds.entry(active).or_default();
        b.insert(SEGMENT_HEADER_LEN);
        let valid_end = *b.range(..=cut).next_back().unwrap();
        b.retain(|&x| x <= valid_end);
        for r in self.recs.iter_mut().filter(|r| r.pos.segment == active) {
            r.end = r.end.min(valid_end);
        }

        let (j, replay) = Journal::open(cfg(self.dir.path(), self.direct_min)).unwrap();
        assert_eq!(
            replay.checkpoint,
            self.checkpoint.as_ref().map(|c| c.1.clone()),
            "the checkpoint read back is the last one written"
        );
        let ckpt = self.ckpt_lsn();
        let expected: Vec<&Rec> = self.recs.iter().filter(|r| r.pos.lsn > ckpt).collect();
        assert_eq!(
            replay.records.len(),
            expected.len(),
            "number of replayed records"
        );
        for (got, want) in replay.records.iter().zip(&expected) {
            assert_eq!(got.pos, want.pos);
            assert_eq!(got.kind, want.kind);
            assert!(
                got.payload == want.payload,
                "payload of lsn {} differs",
                want.pos.lsn
            );
        }
        assert_eq!(replay.truncated_tail_bytes, damaged_len - valid_end);
        assert_eq!(j.last_lsn(), self.last());
        assert_eq!(j.durable_lsn(), self.last());
        assert_eq!(j.active_segment(), active);
        let live: Vec<u64> = j.segments().iter().map(|s| s.0).collect();
        assert!(live.iter().all(|id| !self.deleted.contains(id)));
        assert_eq!(live.last(), Some(&active));
        self.durable = self.last();
        self.journal = Some(j);
    }
}

fn cfg(dir: &std::path::Path, direct_io_min_bytes: Option<u64>) -> JournalConfig {
    JournalConfig {
        dir: dir.to_path_buf(),
        segment_bytes: SEGMENT_BYTES,
        direct_io_min_bytes,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn journal_matches_model_across_crashes(
        direct_min in prop_oneof![Just(None), Just(Some(4096)), Just(Some(0))],
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let mut m = Model::new(direct_min);
        for op in &ops {
            m.apply(op);
        }
        // A clean crash, then appending continues with the next lsn and replays stay right.
        m.crash(&Damage::Garbage { len: 0, seed: 0 });
        let next = m.last() + 1;
        m.append(7, 1000, next, &[500]);
        assert_eq!(m.recs.last().unwrap().pos.lsn, next);
        m.apply(&Op::Sync);
        m.crash(&Damage::Truncate(0));
        assert_eq!(m.last(), next);
    }
}
