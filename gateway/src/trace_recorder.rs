//! Records the mount's accesses to a trace file (`--trace FILE`) for offline training and replay.
//!
//! The FUSE threads hand records to a bounded queue; one writer thread encodes them into a
//! buffered file in the format of [`cairn_prefetch_model::trace`]. A full queue drops the
//! record and counts it (recording must never slow the reads it watches). When tracing is off
//! the gateway holds no recorder at all, so the cost is one `Option` check per access.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Instant;

use cairn_prefetch_model::trace::{stable_hash, TraceRecord, TraceWriter};

/// Records waiting for the writer thread; beyond this they are dropped (and counted).
const QUEUE: usize = 65_536;

/// A running trace recording.
pub struct TraceRecorder {
    tx: Mutex<Option<SyncSender<TraceRecord>>>,
    writer: Mutex<Option<JoinHandle<Result<u64, String>>>>,
    start: Instant,
    dropped: AtomicU64,
    recorded: AtomicU64,
}

impl TraceRecorder {
    /// Creates (truncates) `path` and starts recording into it.
    pub fn create(path: &Path) -> Result<Self, String> {
        let file = File::create(path)
            .map_err(|e| format!("cannot create trace file {}: {e}", path.display()))?;
        let mut w = TraceWriter::new(BufWriter::with_capacity(1 << 20, file))
            .map_err(|e| format!("cannot write trace file {}: {e}", path.display()))?;
        let (tx, rx) = sync_channel::<TraceRecord>(QUEUE);
        let shown = path.display().to_string();
        let writer = std::thread::Builder::new()
            .name("cairn-trace".into())
            .spawn(move || {
                while let Ok(r) = rx.recv() {
                    w.write(&r)
                        .map_err(|e| format!("trace file {shown}: {e}"))?;
                }
                let n = w.records();
                w.finish().map_err(|e| format!("trace file {shown}: {e}"))?;
                Ok(n)
            })
            .map_err(|e| format!("cannot start the trace writer: {e}"))?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            start: Instant::now(),
            dropped: AtomicU64::new(0),
            recorded: AtomicU64::new(0),
        })
    }

    /// Nanoseconds since recording started (the records' clock).
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Queues one record; drops it when the writer is behind.
    pub fn record(&self, r: TraceRecord) {
        let tx = self.tx.lock().unwrap();
        let Some(tx) = tx.as_ref() else {
            return;
        };
        match tx.try_send(r) {
            Ok(()) => {
                self.recorded.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records queued for writing so far.
    pub fn recorded(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    /// Stops recording, writes what is queued and closes the file; returns the records written.
    pub fn finish(&self) -> Result<u64, String> {
        self.tx.lock().unwrap().take();
        match self.writer.lock().unwrap().take() {
            Some(h) => h.join().map_err(|_| "trace writer panicked".to_string())?,
            None => Ok(0),
        }
    }
}

impl Drop for TraceRecorder {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Hashes of programs by pid (read from `/proc/PID/comm` once per pid; bounded).
#[derive(Default)]
pub struct ProgramNames {
    by_pid: Mutex<HashMap<u32, u32>>,
}

impl ProgramNames {
    /// Most pids remembered before the table is cleared.
    const CAP: usize = 4096;

    /// The 32-bit hash of the program name of `pid` (0 when unknown).
    pub fn hash_of(&self, pid: u32) -> u32 {
        if pid == 0 {
            return 0;
        }
        if let Some(h) = self.by_pid.lock().unwrap().get(&pid) {
            return *h;
        }
        let h = std::fs::read(format!("/proc/{pid}/comm"))
            .map(|name| stable_hash(name.trim_ascii()) as u32)
            .unwrap_or(0);
        let mut m = self.by_pid.lock().unwrap();
        if m.len() >= Self::CAP {
            m.clear();
        }
        m.insert(pid, h);
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_prefetch_model::trace::{FormatClass, Op, TraceReader};

    #[test]
    fn records_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.trace");
        let rec = TraceRecorder::create(&path).unwrap();
        for i in 0..1000u64 {
            rec.record(TraceRecord {
                time_ns: rec.now_ns(),
                stream: 7,
                program_hash: 1,
                handle: 3,
                inode: 9,
                path_hash: 11,
                dir_hash: 12,
                offset: i * 4096,
                len: 4096,
                format: FormatClass::Parquet,
                op: Op::Read,
                file_size: 1 << 30,
            });
        }
        assert_eq!(rec.finish().unwrap() + rec.dropped(), 1000);
        let back = TraceReader::new(File::open(&path).unwrap())
            .unwrap()
            .read_all()
            .unwrap();
        assert_eq!(back.len() as u64, 1000 - rec.dropped());
        assert!(back.windows(2).all(|w| w[0].offset < w[1].offset));
        assert_eq!(back[0].format, FormatClass::Parquet);
    }

    #[test]
    fn unwritable_path_is_a_clear_error() {
        let e = TraceRecorder::create(Path::new("/nonexistent-dir/t.trace"))
            .err()
            .unwrap();
        assert!(e.contains("cannot create trace file"), "{e}");
    }

    #[test]
    fn own_program_name_hashes() {
        let names = ProgramNames::default();
        assert_ne!(names.hash_of(std::process::id()), 0);
        assert_eq!(names.hash_of(0), 0);
    }
}
