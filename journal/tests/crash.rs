//! Process-level crash test of the journal: a child process appends and syncs records from
//! several threads (small buffered ones and large direct-I/O ones, with segment rolls,
//! checkpoints and segment deletion like the gateway's flusher does) and reports every record
//! whose `sync` returned; the parent kills it with SIGKILL at a random moment, reopens the
//! journal and checks that every acknowledged record is there, whole, exactly once (or covered
//! by the checkpoint), and that nothing that was never appended appears. The next cycle's child
//! continues from the replayed journal.
//!
//! `JOURNAL_CRASH_CYCLES` (default 25) and `JOURNAL_CRASH_SEED` set the run's length and seed.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_journal::{Journal, JournalConfig};

const CHILD_ENV: &str = "JOURNAL_CRASH_CHILD_DIR";
const THREADS: u32 = 4;
/// Records of at least this many payload bytes go through direct I/O (when on).
const DIRECT_MIN: u64 = 64 << 10;
const SEGMENT_BYTES: u64 = 2 << 20;
/// Bytes in front of each payload: cycle, thread, seq.
const TAG: usize = 16;

/// splitmix64 step.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Who wrote a record: (cycle, thread) and the writer's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Tag {
    writer: (u32, u32),
    seq: u64,
}

fn payload_len(seed: u64, tag: Tag) -> usize {
    let r =
        mix(seed ^ mix(u64::from(tag.writer.0) << 40 ^ u64::from(tag.writer.1) << 32 ^ tag.seq));
    let (lo, hi) = match r % 10 {
        0..=6 => (TAG as u64, 16 << 10),
        7..=8 => (16 << 10, DIRECT_MIN + 4096),
        _ => (DIRECT_MIN, 400 << 10),
    };
    (lo + (r >> 8) % (hi - lo)) as usize
}

fn payload(seed: u64, tag: Tag) -> Vec<u8> {
    let len = payload_len(seed, tag);
    let mut p = Vec::with_capacity(len);
    p.extend_from_slice(&tag.writer.0.to_le_bytes());
    p.extend_from_slice(&tag.writer.1.to_le_bytes());
    p.extend_from_slice(&tag.seq.to_le_bytes());
    p.extend_from_slice(&common::bytes(
        len - TAG,
        seed ^ u64::from(tag.writer.0) << 48 ^ u64::from(tag.writer.1) << 40 ^ tag.seq,
    ));
    p
}

fn tag_of(p: &[u8]) -> Option<Tag> {
    if p.len() < TAG {
        return None;
    }
    Some(Tag {
        writer: (
            u32::from_le_bytes(p[0..4].try_into().unwrap()),
            u32::from_le_bytes(p[4..8].try_into().unwrap()),
        ),
        seq: u64::from_le_bytes(p[8..16].try_into().unwrap()),
    })
}

/// Checkpoint state: per writer, the highest seq the checkpoint covers (a writer's records
/// are appended in seq order, so the covered ones are a prefix).
fn encode_covered(m: &BTreeMap<(u32, u32), u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len() * 16);
    for (&(c, t), &seq) in m {
        out.extend_from_slice(&c.to_le_bytes());
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
    }
    out
}

fn decode_covered(b: &[u8]) -> BTreeMap<(u32, u32), u64> {
    b.chunks_exact(16)
        .map(|c| {
            (
                (
                    u32::from_le_bytes(c[0..4].try_into().unwrap()),
                    u32::from_le_bytes(c[4..8].try_into().unwrap()),
                ),
                u64::from_le_bytes(c[8..16].try_into().unwrap()),
            )
        })
        .collect()
}

fn config(dir: &Path, direct: bool) -> JournalConfig {
    JournalConfig {
        segment_bytes: SEGMENT_BYTES,
        direct_io_min_bytes: direct.then_some(DIRECT_MIN),
        ..JournalConfig::new(dir)
    }
}

/// What the child shares between its threads: appended-but-not-checkpointed records by lsn
/// (and the segment each went to), and the checkpoint's coverage. Appends happen under this
/// lock, as the gateway appends under its state lock.
struct ChildState {
    pending: BTreeMap<u64, (Tag, u64)>,
    covered: BTreeMap<(u32, u32), u64>,
}

/// The child process: runs until killed.
fn child(dir: &Path, cycle: u32, seed: u64, direct: bool) {
    let (j, replay) = Journal::open(config(dir, direct)).expect("child: open");
    let j = Arc::new(j);
    let mut st = ChildState {
        pending: BTreeMap::new(),
        covered: replay
            .checkpoint
            .as_deref()
            .map(decode_covered)
            .unwrap_or_default(),
    };
    for r in &replay.records {
        st.pending
            .insert(r.pos.lsn, (tag_of(&r.payload).expect("tag"), r.pos.segment));
    }
    let st = Arc::new(Mutex::new(st));
    let out = Arc::new(Mutex::new(std::io::stdout()));
    {
        let mut o = out.lock().unwrap();
        writeln!(o, "READY").unwrap();
        o.flush().unwrap();
    }
    let mut threads = Vec::new();
    for t in 0..THREADS {
        let (j, st, out) = (j.clone(), st.clone(), out.clone());
        threads.push(std::thread::spawn(move || {
            for seq in 0u64.. {
                let tag = Tag {
                    writer: (cycle, t),
                    seq,
                };
                let p = payload(seed, tag);
                let cut = (mix(seq ^ seed) as usize) % p.len();
                let pos = {
                    let mut s = st.lock().unwrap();
                    let pos = j.append(1, &[&p[..cut], &p[cut..]]).expect("append");
                    s.pending.insert(pos.lsn, (tag, pos.segment));
                    pos
                };
                // Not every record is synced on its own (group commit covers the rest).
                if mix(seed ^ seq ^ u64::from(t) << 32).is_multiple_of(3) {
                    continue;
                }
                j.sync(pos.lsn).expect("sync");
                let mut o = out.lock().unwrap();
                writeln!(o, "ACK {} {} {}", cycle, t, seq).unwrap();
                o.flush().unwrap();
            }
        }));
    }
    // Checkpoint and reclaim, like the flusher: state and lsn taken together, then the
    // checkpoint, then every segment older than the active one at that moment.
    let mut r = seed ^ u64::from(cycle);
    loop {
        r = mix(r);
        std::thread::sleep(Duration::from_millis(5 + r % 40));
        let (lsn, active, bytes) = {
            let mut s = st.lock().unwrap();
            let lsn = j.last_lsn();
            let pending = std::mem::take(&mut s.pending);
            for (_, (tag, _)) in pending {
                let e = s.covered.entry(tag.writer).or_insert(tag.seq);
                *e = (*e).max(tag.seq);
            }
            (lsn, j.active_segment(), encode_covered(&s.covered))
        };
        if r % 4 == 0 {
            j.rotate().expect("rotate");
        }
        j.write_checkpoint(lsn, &bytes).expect("checkpoint");
        for (id, _) in j.segments() {
            if id < active {
                j.delete_segment(id).expect("delete segment");
            }
        }
    }
}

/// Entry point of the child process (does nothing in a normal test run).
#[test]
fn crash_child_process() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap().parse::<u64>().unwrap();
    child(
        Path::new(&dir),
        var("JOURNAL_CRASH_CYCLE") as u32,
        var("JOURNAL_CRASH_CHILD_SEED"),
        var("JOURNAL_CRASH_DIRECT") == 1,
    );
}

/// Reopens the journal and checks every acknowledged record against it.
fn verify(dir: &Path, seed: u64, direct: bool, acked: &HashSet<Tag>, cycle: u32) -> usize {
    let (j, replay) = Journal::open(config(dir, direct)).expect("parent: reopen");
    let covered = replay
        .checkpoint
        .as_deref()
        .map(decode_covered)
        .unwrap_or_default();
    let mut seen: HashMap<Tag, u64> = HashMap::new();
    for r in &replay.records {
        let tag = tag_of(&r.payload)
            .unwrap_or_else(|| panic!("cycle {cycle}: lsn {} has no tag", r.pos.lsn));
        assert!(
            r.payload == payload(seed, tag),
            "cycle {cycle}: lsn {} ({tag:?}) came back with other bytes",
            r.pos.lsn
        );
        assert!(
            covered.get(&tag.writer).is_none_or(|&s| tag.seq > s),
            "cycle {cycle}: lsn {} ({tag:?}) is replayed though the checkpoint covers it",
            r.pos.lsn
        );
        if let Some(prev) = seen.insert(tag, r.pos.lsn) {
            panic!(
                "cycle {cycle}: {tag:?} replayed twice (lsn {prev} and {})",
                r.pos.lsn
            );
        }
    }
    let mut lost = Vec::new();
    for tag in acked {
        let in_ckpt = covered.get(&tag.writer).is_some_and(|&s| tag.seq <= s);
        if !in_ckpt && !seen.contains_key(tag) {
            lost.push(*tag);
        }
    }
    lost.sort();
    assert!(
        lost.is_empty(),
        "cycle {cycle}: {} synced records are gone after replay (first: {:?}); replay cut {} \
         tail bytes, {} records replayed, segments {:?}",
        lost.len(),
        &lost[..lost.len().min(5)],
        replay.truncated_tail_bytes,
        replay.records.len(),
        j.segments()
    );
    replay.records.len()
}

#[test]
fn kill_9_during_appends_loses_no_synced_record() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let cycles: u32 = std::env::var("JOURNAL_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    let seed: u64 = std::env::var("JOURNAL_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("journal crash test: {cycles} cycles, JOURNAL_CRASH_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: HashSet<Tag> = HashSet::new();
    let mut r = seed;
    let started = Instant::now();
    for cycle in 0..cycles {
        r = mix(r);
        // Mostly direct I/O on; sometimes off, as after a config change.
        let direct = r % 5 != 0;
        let mut child = Command::new(&exe)
            .args([
                "crash_child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("JOURNAL_CRASH_CYCLE", cycle.to_string())
            .env("JOURNAL_CRASH_CHILD_SEED", seed.to_string())
            .env("JOURNAL_CRASH_DIRECT", u8::from(direct).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for READY, then let it run a random while.
        let ready = loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                // libtest's "test crash_child_process ... " has no newline of its own.
                Ok(l) if l.ends_with("READY") => break true,
                Ok(_) => continue,
                Err(_) => break false,
            }
        };
        if !ready {
            let _ = child.kill();
            let status = child.wait().unwrap();
            panic!("cycle {cycle}: child never became ready ({status})");
        }
        std::thread::sleep(Duration::from_millis(20 + mix(r ^ 1) % 300));
        // Child::kill sends SIGKILL.
        let _ = child.kill();
        let status = child.wait().unwrap();
        reader.join().unwrap();
        let mut this_cycle = 0usize;
        for line in rx.try_iter() {
            let Some(at) = line.find("ACK ") else {
                continue;
            };
            let mut f = line[at + 4..].split_whitespace();
            let mut n = || f.next().unwrap().parse::<u64>().unwrap();
            let (c, t, seq) = (n() as u32, n() as u32, n());
            acked.insert(Tag {
                writer: (c, t),
                seq,
            });
            this_cycle += 1;
        }
        assert!(
            status.signal_is_kill(),
            "cycle {cycle}: child exited by itself ({status}); it should only stop when killed"
        );
        let replayed = verify(dir.path(), seed, direct, &acked, cycle);
        if cycle % 10 == 0 || cycle + 1 == cycles {
            eprintln!(
                "cycle {cycle}: {this_cycle} acks this cycle, {} in all, {replayed} records \
                 replayed ({:.0?})",
                acked.len(),
                started.elapsed()
            );
        }
    }
}

trait KilledBySigkill {
    fn signal_is_kill(&self) -> bool;
}

impl KilledBySigkill for std::process::ExitStatus {
    fn signal_is_kill(&self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        self.signal() == Some(9)
    }
}
