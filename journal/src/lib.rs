//! cairn's local write-ahead log.
//!
//! The write-back path appends every mutation here before acknowledging it, so data survives a
//! crash (kill -9 or power loss) until it has been uploaded to the object store. The journal is an
//! append-only sequence of checksummed records spread over numbered segment files in one
//! directory, plus one atomically replaced checkpoint file:
//!
//! - [`Journal::append`] writes one record with a single `pwritev` (or, for large payloads, with
//!   `O_DIRECT` from an aligned staging buffer, bypassing the page cache) and hands back its
//!   [`RecordPos`]; [`Journal::sync`] makes records durable with group commit (concurrent callers
//!   share one `fdatasync`, and appends continue while it runs).
//! - [`Journal::open`] replays: it returns the last checkpoint and every complete record after it,
//!   cuts a torn tail off the last segment, and refuses ([`JournalError::Corrupt`]) to skip over
//!   damage anywhere else.
//! - [`Journal::write_checkpoint`] and [`Journal::delete_segment`] let the caller bound replay
//!   time and reclaim space.
//!
//! The on-disk format and the replay rules are documented in one place, `docs/JOURNAL.md` at the
//! root of the cairn repository.
//!
//! All calls are blocking std I/O; async callers run them under `tokio::task::spawn_blocking`.
//! [`Journal`] is `Send + Sync` and meant to be shared behind an `Arc`.

mod direct;
mod error;
mod format;
mod sys;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, IoSlice, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

pub use error::JournalError;
pub use format::{FORMAT_VERSION, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};

use error::{corrupt, invalid, io_error, poisoned_error};
use format::{SegmentHeader, DIRECT_ALIGN};

/// Default size past which the journal rolls over to a new segment (64 MiB).
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Default payload size from which appends use direct I/O (256 KiB).
pub const DEFAULT_DIRECT_IO_MIN_BYTES: u64 = 256 << 10;

const LOCK_FILE: &str = "LOCK";
const CHECKPOINT_FILE: &str = "checkpoint";
const CHECKPOINT_TMP_FILE: &str = "checkpoint.tmp";

/// Where and how to keep a journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// Directory holding the segments, the checkpoint and the LOCK file; created if missing.
    pub dir: PathBuf,
    /// A record that would take the active segment past this many bytes goes into a new segment
    /// (a single record larger than this gets a segment of its own). Default 64 MiB.
    pub segment_bytes: u64,
    /// Records whose payload has at least this many bytes are written with `O_DIRECT` at a
    /// 4 KiB-aligned offset (behind a padding record), bypassing the page cache; `None` never
    /// uses direct I/O. Where the file system refuses `O_DIRECT` the journal falls back to
    /// buffered writes by itself. Default 256 KiB.
    pub direct_io_min_bytes: Option<u64>,
}

impl JournalConfig {
    /// A config for `dir` with the default segment size.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JournalConfig {
            dir: dir.into(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            direct_io_min_bytes: Some(DEFAULT_DIRECT_IO_MIN_BYTES),
        }
    }
}

/// Where one record lives (enough to read its payload back later with pread).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordPos {
    /// Segment id (the number in `seg-<id>.log`).
    pub segment: u64,
    /// Byte offset of the record header in the segment file (4 KiB-aligned for a record written
    /// with direct I/O).
    pub offset: u64,
    /// The record's log sequence number.
    pub lsn: u64,
    /// Payload length in bytes.
    pub len: u32,
}

/// One record given back by replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayedRecord {
    /// Where it is; valid for [`Journal::read_payload`] until its segment is deleted.
    pub pos: RecordPos,
    /// The caller's record type byte, as passed to [`Journal::append`].
    pub kind: u8,
    /// The whole payload.
    pub payload: Vec<u8>,
}

/// What [`Journal::open`] found on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// State bytes of the last checkpoint written, if any.
    pub checkpoint: Option<Vec<u8>>,
    /// Every complete record with lsn greater than the checkpoint's, in lsn order.
    pub records: Vec<ReplayedRecord>,
    /// Bytes cut off the end of the last segment (a torn or garbled tail left by a crash).
    pub truncated_tail_bytes: u64,
}

/// One segment file kept open for appends (the active one) and preads.
struct Segment {
    id: u64,
    file: File,
    /// Bytes of complete records and padding (plus header) in the file; readers never look past
    /// this.
    len: AtomicU64,
    /// The header carries the padding flag, so records may be padded to 4 KiB for direct I/O.
    padding: bool,
}

/// What appends need, guarded by one mutex that is never held across an fdatasync of the
/// active segment by `sync` (rolling to a new segment does sync under it, which is rare).
struct AppendState {
    active: Arc<Segment>,
    /// Next lsn to hand out.
    next_lsn: u64,
    /// `O_DIRECT` descriptor of the active segment, when large appends bypass the page cache.
    direct: Option<File>,
    /// Staging buffer of direct writes, kept between appends (so it stays faulted in).
    buf: direct::AlignedBuf,
}

/// The write-ahead log. See the crate docs; cheap calls take short locks, `sync` coordinates a
/// single fdatasync among concurrent callers.
pub struct Journal {
    dir: PathBuf,
    dir_file: File,
    segment_bytes: u64,
    /// `JournalConfig::direct_io_min_bytes`.
    direct_min: Option<u64>,
    /// Cleared once the file system refused `O_DIRECT`: from then on every append is buffered.
    direct_ok: AtomicBool,
    /// Holds the flock on `<dir>/LOCK` for the journal's lifetime.
    _lock: File,
    append: Mutex<AppendState>,
    /// Every live segment, active one included, by id.
    segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    active_id: AtomicU64,
    last_lsn: AtomicU64,
    durable_lsn: AtomicU64,
    /// True while one caller of `sync` is running the fdatasync for everyone.
    sync_running: Mutex<bool>,
    sync_done: Condvar,
    /// Set when a failed fdatasync or cleanup leaves the on-disk state unknown; every later
    /// mutating call fails until the journal is reopened (and replay re-establishes the truth).
    poison: Mutex<Option<String>>,
    /// Serializes checkpoint writers; holds the lsn of the current checkpoint.
    checkpoint: Mutex<u64>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("active_segment", &self.active_segment())
            .field("last_lsn", &self.last_lsn())
            .field("durable_lsn", &self.durable_lsn())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a journal lock cannot leave acknowledged data inconsistent (state is
    // only advanced after a write completes), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn segment_file_name(id: u64) -> String {
    format!("seg-{id:016x}.log")
}

fn parse_segment_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if hex.len() != 16 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

impl Journal {
    /// Opens (creating if needed) and replays: returns the latest checkpoint payload and every
    /// complete record with lsn > the checkpoint's lsn, in lsn order. A torn/garbled tail of the
    /// LAST segment is truncated to the end of the last complete record (and reported in
    /// `truncated_tail_bytes`). A bad record in an older segment is not dropped: the result is
    /// [`JournalError::Corrupt`] naming the segment and offset. Replay reads and checksums every
    /// segment on disk; everything replayed is made durable before this returns.
    pub fn open(cfg: JournalConfig) -> Result<(Journal, Replay), JournalError> {
        let dir = cfg.dir;
        if !dir.is_dir() {
            fs::create_dir_all(&dir)
                .map_err(|e| io_error(e, format_args!("creating {}", dir.display())))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sys::fsync_dir(parent)
                    .map_err(|e| io_error(e, format_args!("fsync of {}", parent.display())))?;
            }
        }
        let dir_file = File::open(&dir)
            .map_err(|e| io_error(e, format_args!("opening directory {}", dir.display())))?;
        let lock_file = sys::lock_dir(&dir, LOCK_FILE)?;

        let tmp = dir.join(CHECKPOINT_TMP_FILE);
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(e, format_args!("removing {}", tmp.display()))),
        }
        let checkpoint = read_checkpoint(&dir)?;
        let ckpt_lsn = checkpoint.as_ref().map_or(0, |c| c.0);

        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir)
            .map_err(|e| io_error(e, format_args!("listing {}", dir.display())))?
        {
            let entry =
                entry.map_err(|e| io_error(e, format_args!("listing {}", dir.display())))?;
            if let Some(id) = entry.file_name().to_str().and_then(parse_segment_file_name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();

        let padding = cfg.direct_io_min_bytes.is_some();
        let mut scan = Scan {
            dir: &dir,
            padding,
            ckpt_lsn,
            records: Vec::new(),
            truncated: 0,
        };
        let mut segments = BTreeMap::new();
        // The lsn the next record must carry; None until the first segment is read.
        let mut expected: Option<u64> = None;
        for (i, &id) in ids.iter().enumerate() {
            let last = i + 1 == ids.len();
            let (seg, next) = scan.segment(id, last, expected)?;
            expected = Some(next);
            segments.insert(id, Arc::new(seg));
        }

        if let Some(last) = ids.last().map(|id| &segments[id]) {
            // What replay read may only have been in the page cache of a process that died
            // before syncing; make it durable before claiming durable_lsn covers it. (Older
            // segments were synced when the log rolled past them.)
            last.file
                .sync_all()
                .map_err(|e| io_error(e, format_args!("fsync of segment {:016x}", last.id)))?;
        }
        let (active, next_lsn) = match (ids.last(), expected) {
            (Some(&id), Some(next)) if next > ckpt_lsn => (segments[&id].clone(), next),
            // No segment yet, or the checkpoint covers more than the log holds (records it
            // covers were lost or deleted): continue after the checkpoint in a fresh segment.
            (last, _) => {
                let id = last.map_or(1, |id| id + 1);
                let seg = Arc::new(create_segment(&dir, &dir_file, id, ckpt_lsn + 1, padding)?);
                segments.insert(id, seg.clone());
                (seg, ckpt_lsn + 1)
            }
        };

        let direct_ok = AtomicBool::new(padding);
        let direct = open_direct(&dir, &active, &direct_ok);
        let last_lsn = next_lsn - 1;
        let replay = Replay {
            checkpoint: checkpoint.map(|c| c.1),
            records: scan.records,
            truncated_tail_bytes: scan.truncated,
        };
        let journal = Journal {
            dir,
            dir_file,
            segment_bytes: cfg.segment_bytes,
            direct_min: cfg.direct_io_min_bytes,
            direct_ok,
            _lock: lock_file,
            active_id: AtomicU64::new(active.id),
            append: Mutex::new(AppendState {
                active,
                next_lsn,
                direct,
                buf: direct::AlignedBuf::default(),
            }),
            segments: RwLock::new(segments),
            last_lsn: AtomicU64::new(last_lsn),
            durable_lsn: AtomicU64::new(last_lsn),
            sync_running: Mutex::new(false),
            sync_done: Condvar::new(),
            poison: Mutex::new(None),
            checkpoint: Mutex::new(ckpt_lsn),
        };
        Ok((journal, replay))
    }

    /// Appends one record (payload = concatenation of `parts`, written with one `pwritev`, no
    /// copy of the payload). A payload of at least `JournalConfig::direct_io_min_bytes` is
    /// instead staged in an aligned buffer and written with `O_DIRECT` at a 4 KiB boundary,
    /// behind a padding record and followed by one up to the next boundary (see
    /// `docs/JOURNAL.md`). Rolls to a new segment first if this record would take the active
    /// one past `segment_bytes` (the old segment is fdatasynced before the new one is used; the
    /// directory is fsynced after creating the file). On ENOSPC or any write error the segment is
    /// truncated back to its previous end, so nothing half-written stays, and
    /// [`JournalError::NoSpace`] (ENOSPC / EDQUOT / `StorageFull`) or [`JournalError::Io`] is
    /// returned. The record is not durable until [`Journal::sync`] covers its lsn.
    pub fn append(&self, kind: u8, parts: &[&[u8]]) -> Result<RecordPos, JournalError> {
        let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let len = u32::try_from(total)
            .map_err(|_| invalid(format!("record payload of {total} bytes exceeds 4 GiB - 1")))?;
        let mut guard = lock(&self.append);
        let st = &mut *guard;
        self.check_poison()?;
        let big = self.direct_min.is_some_and(|min| total >= min);
        let end = st.active.len.load(Ordering::Acquire);
        if end > SEGMENT_HEADER_LEN && layout(st, big, end, total).2 > self.segment_bytes {
            self.roll(st)?;
        }
        let seg = st.active.clone();
        let start = seg.len.load(Ordering::Acquire);
        let (direct, offset, new_end) = layout(st, big, start, total);
        let lsn = st.next_lsn;
        // One checksum pass over header and payload, under the lock (the lsn is only known
        // here); combining a payload checksum taken outside cost more CPU than it saved.
        let header = format::encode_record_header_over(kind, len, lsn, parts);
        let written = if direct {
            self.write_direct(st, &seg, start, offset, new_end, &header, parts)
        } else {
            let mut iov = Vec::with_capacity(parts.len() + 1);
            iov.push(IoSlice::new(&header));
            iov.extend(
                parts
                    .iter()
                    .filter(|p| !p.is_empty())
                    .map(|p| IoSlice::new(p)),
            );
            sys::pwritev_all(&seg.file, &mut iov, offset)
        };

        if let Err(e) = written {
            let err = io_error(
                e,
                format_args!(
                    "appending lsn {lsn} to segment {:016x} at offset {offset}",
                    seg.id
                ),
            );
            // Cut off whatever part of the record (or its padding) reached the file, and make
            // the cut durable so a crash cannot bring the fragment back.
            if let Err(te) = seg.file.set_len(start).and_then(|()| seg.file.sync_all()) {
                self.set_poison(format!(
                    "could not truncate segment {:016x} back to {start} after a failed append \
                     ({te}); the append failed with: {err}",
                    seg.id
                ));
            }
            return Err(err);
        }
        seg.len.store(new_end, Ordering::Release);
        st.next_lsn += 1;
        self.last_lsn.store(lsn, Ordering::Release);
        Ok(RecordPos {
            segment: seg.id,
            offset,
            lsn,
            len,
        })
    }

    /// Writes a record at the aligned `offset`: a padding record from `start` up to it (buffered;
    /// it ends at a page boundary, so no page is shared with the direct write), then header,
    /// payload and a padding record up to `end` in one direct write. If the file system refuses
    /// direct I/O the bytes go through the page cache instead and later appends stay buffered.
    #[allow(clippy::too_many_arguments)]
    fn write_direct(
        &self,
        st: &mut AppendState,
        seg: &Segment,
        start: u64,
        offset: u64,
        end: u64,
        header: &[u8; RECORD_HEADER_LEN as usize],
        parts: &[&[u8]],
    ) -> io::Result<()> {
        let lsn = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
        if offset > start {
            let fill = offset - start - RECORD_HEADER_LEN;
            let pad = format::encode_padding_header(fill as u32, lsn);
            let mut iov = [
                IoSlice::new(&pad),
                IoSlice::new(&format::ZEROES[..fill as usize]),
            ];
            sys::pwritev_all(&seg.file, &mut iov, start)?;
        }
        let record_end =
            offset + RECORD_HEADER_LEN + parts.iter().map(|p| p.len() as u64).sum::<u64>();
        let tail;
        let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 3);
        all.push(header);
        all.extend_from_slice(parts);
        if end > record_end {
            let fill = end - record_end - RECORD_HEADER_LEN;
            tail = format::encode_padding_header(fill as u32, lsn + 1);
            all.push(&tail);
            all.push(&format::ZEROES[..fill as usize]);
        }
        let fd = st.direct.as_ref().expect("layout chose direct I/O");
        if direct::write(fd, &seg.file, &mut st.buf, &all, offset)? == direct::Written::FellBack {
            st.direct = None;
            self.direct_ok.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Returns once every record with lsn <= `lsn` is durable (fdatasync). Group commit:
    /// concurrent callers share one fdatasync, and appends are not blocked while it runs. An
    /// `lsn` above [`Journal::last_lsn`] is an error. A failed fdatasync poisons the journal:
    /// this and every later call fail until it is reopened, because what reached the disk is
    /// then unknown.
    pub fn sync(&self, lsn: u64) -> Result<(), JournalError> {
        let last = self.last_lsn();
        if lsn > last {
            return Err(invalid(format!(
                "sync({lsn}) asked for records not appended yet (last lsn is {last})"
            )));
        }
        loop {
            if self.durable_lsn() >= lsn {
                return Ok(());
            }
            self.check_poison()?;
            let mut running = lock(&self.sync_running);
            if *running {
                // Someone else's fdatasync is in flight; it may or may not cover `lsn`.
                drop(
                    self.sync_done
                        .wait(running)
                        .unwrap_or_else(|e| e.into_inner()),
                );
                continue;
            }
            if self.durable_lsn() >= lsn {
                return Ok(());
            }
            *running = true;
            drop(running);

            let result = self.sync_active();

            *lock(&self.sync_running) = false;
            self.sync_done.notify_all();
            result?;
        }
    }

    /// One group-commit round: fdatasync the active segment and advance durable_lsn to what was
    /// appended before it started. Older segments were synced when they were rolled away from.
    fn sync_active(&self) -> Result<(), JournalError> {
        let (seg, target) = {
            let st = lock(&self.append);
            (st.active.clone(), st.next_lsn - 1)
        };
        match seg.file.sync_data() {
            Ok(()) => {
                self.durable_lsn.fetch_max(target, Ordering::AcqRel);
                Ok(())
            }
            Err(e) => {
                let err = io_error(e, format_args!("fdatasync of segment {:016x}", seg.id));
                self.set_poison(format!("{err}"));
                Err(err)
            }
        }
    }

    /// Highest lsn appended so far (0 for a journal that never had a record).
    pub fn last_lsn(&self) -> u64 {
        self.last_lsn.load(Ordering::Acquire)
    }

    /// Highest lsn known durable: every record up to it survives a crash.
    pub fn durable_lsn(&self) -> u64 {
        self.durable_lsn.load(Ordering::Acquire)
    }

    /// Reads `buf.len()` bytes of a record's payload starting at `payload_offset` (pread; works
    /// for any live segment, the active one included). Used to serve reads of not-yet-uploaded
    /// data and by the uploader. The record header at `pos` is checked to match `pos` (lsn and
    /// length), so a stale position fails instead of returning other data; the payload checksum
    /// is not re-verified (replay did that).
    pub fn read_payload(
        &self,
        pos: &RecordPos,
        payload_offset: u64,
        buf: &mut [u8],
    ) -> Result<(), JournalError> {
        let end = payload_offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > u64::from(pos.len)) {
            return Err(invalid(format!(
                "read of {} bytes at payload offset {payload_offset} is outside the {}-byte \
                 payload of lsn {}",
                buf.len(),
                pos.len,
                pos.lsn
            )));
        }
        let seg = self
            .segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&pos.segment)
            .cloned()
            .ok_or_else(|| {
                invalid(format!(
                    "segment {:016x} of lsn {} is not live (deleted, or never existed)",
                    pos.segment, pos.lsn
                ))
            })?;
        let record_end = pos.offset + RECORD_HEADER_LEN + u64::from(pos.len);
        if pos.offset < SEGMENT_HEADER_LEN || record_end > seg.len.load(Ordering::Acquire) {
            return Err(invalid(format!(
                "lsn {} at offset {} is past the end of segment {:016x}",
                pos.lsn, pos.offset, pos.segment
            )));
        }
        let mut hb = [0u8; RECORD_HEADER_LEN as usize];
        seg.file
            .read_exact_at(&mut hb, pos.offset)
            .map_err(|e| io_error(e, format_args!("reading segment {:016x}", pos.segment)))?;
        match format::decode_record_header(&hb) {
            Ok(h) if !h.padding && h.lsn == pos.lsn && h.len == pos.len => {}
            _ => {
                return Err(invalid(format!(
                    "no record with lsn {} and length {} at offset {} of segment {:016x}",
                    pos.lsn, pos.len, pos.offset, pos.segment
                )))
            }
        }
        seg.file
            .read_exact_at(buf, pos.offset + RECORD_HEADER_LEN + payload_offset)
            .map_err(|e| io_error(e, format_args!("reading segment {:016x}", pos.segment)))
    }

    /// Forces a new segment now (the current one is fdatasynced first); returns its id.
    pub fn rotate(&self) -> Result<u64, JournalError> {
        let mut st = lock(&self.append);
        self.check_poison()?;
        self.roll(&mut st)
    }

    /// Makes the active segment durable, then creates and switches to the next one.
    fn roll(&self, st: &mut AppendState) -> Result<u64, JournalError> {
        let old = st.active.clone();
        if let Err(e) = old.file.sync_data() {
            let err = io_error(e, format_args!("fdatasync of segment {:016x}", old.id));
            self.set_poison(format!("{err}"));
            return Err(err);
        }
        self.durable_lsn
            .fetch_max(st.next_lsn - 1, Ordering::AcqRel);
        let id = old.id + 1;
        let padding = self.direct_min.is_some() && self.direct_ok.load(Ordering::Acquire);
        let seg = match create_segment(&self.dir, &self.dir_file, id, st.next_lsn, padding) {
            Ok(seg) => Arc::new(seg),
            Err(CreateError::Clean(e)) => return Err(e),
            Err(CreateError::Stray(e)) => {
                self.set_poison(format!(
                    "a half-created segment file {} could not be removed: {e}",
                    segment_file_name(id)
                ));
                return Err(e);
            }
        };
        // Insert before publishing the id: delete_segment refuses ids >= active_id.
        self.segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, seg.clone());
        self.active_id.store(id, Ordering::Release);
        st.direct = open_direct(&self.dir, &seg, &self.direct_ok);
        st.active = seg;
        Ok(id)
    }

    /// Atomically replaces the checkpoint (tmp file + fsync + rename + dir fsync). `state` is
    /// opaque bytes from the caller describing everything up to and including `lsn`; after it,
    /// replay starts at records with lsn > `lsn`. Records up to `lsn` are synced first if they
    /// are not durable yet. `lsn` must not exceed [`Journal::last_lsn`] nor go below the current
    /// checkpoint's lsn. Segments are not deleted by this call.
    pub fn write_checkpoint(&self, lsn: u64, state: &[u8]) -> Result<(), JournalError> {
        if u32::try_from(state.len()).is_err() {
            return Err(invalid(format!(
                "checkpoint state of {} bytes exceeds 4 GiB - 1",
                state.len()
            )));
        }
        let mut current = lock(&self.checkpoint);
        if lsn < *current {
            return Err(invalid(format!(
                "checkpoint lsn {lsn} is below the current checkpoint's lsn {}",
                *current
            )));
        }
        self.check_poison()?;
        self.sync(lsn)?;

        let tmp = self.dir.join(CHECKPOINT_TMP_FILE);
        let path = self.dir.join(CHECKPOINT_FILE);
        let write = || -> io::Result<()> {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all_at(&format::encode_checkpoint(lsn, state), 0)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &path)?;
            self.dir_file.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io_error(e, format_args!("writing {}", path.display())));
        }
        *current = lsn;
        Ok(())
    }

    /// Deletes a segment file that is not the active one (the caller decides when it holds
    /// nothing live, i.e. its records are covered by a checkpoint and uploaded). Reads already
    /// running on it finish normally; later `read_payload` calls for it fail.
    pub fn delete_segment(&self, id: u64) -> Result<(), JournalError> {
        let seg = {
            let mut segs = self.segments.write().unwrap_or_else(|e| e.into_inner());
            let active = self.active_id.load(Ordering::Acquire);
            if id >= active {
                return Err(invalid(format!(
                    "segment {id:016x} is the active one (or newer); only older segments can be \
                     deleted"
                )));
            }
            segs.remove(&id)
                .ok_or_else(|| invalid(format!("segment {id:016x} does not exist")))?
        };
        let path = self.dir.join(segment_file_name(id));
        if let Err(e) = fs::remove_file(&path) {
            self.segments
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, seg);
            return Err(io_error(e, format_args!("deleting {}", path.display())));
        }
        self.dir_file
            .sync_all()
            .map_err(|e| io_error(e, format_args!("fsync of {}", self.dir.display())))
    }

    /// (id, bytes) of every segment on disk, in id order; the active segment is counted up to the
    /// end of its last complete record.
    pub fn segments(&self) -> Vec<(u64, u64)> {
        self.segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|s| (s.id, s.len.load(Ordering::Acquire)))
            .collect()
    }

    /// True while large appends are written with direct I/O: enabled by the config and not
    /// refused by the file system (a refusal switches the journal to buffered writes for good).
    pub fn direct_io(&self) -> bool {
        self.direct_min.is_some() && self.direct_ok.load(Ordering::Acquire)
    }

    /// Id of the segment appends currently go to.
    pub fn active_segment(&self) -> u64 {
        self.active_id.load(Ordering::Acquire)
    }

    fn check_poison(&self) -> Result<(), JournalError> {
        match &*lock(&self.poison) {
            Some(why) => Err(poisoned_error(why)),
            None => Ok(()),
        }
    }

    fn set_poison(&self, why: String) {
        let mut p = lock(&self.poison);
        if p.is_none() {
            *p = Some(why);
        }
    }
}

/// Rounds `at` up to the next 4 KiB boundary that leaves room for a padding record header
/// (a gap of 1..24 bytes cannot hold one, so it grows by 4 KiB).
fn pad_to_boundary(at: u64) -> u64 {
    let up = at.next_multiple_of(DIRECT_ALIGN);
    if up != at && up - at < RECORD_HEADER_LEN {
        up + DIRECT_ALIGN
    } else {
        up
    }
}

/// Where a record of `total` payload bytes appended at `at` goes: (written with direct I/O,
/// offset of its header, end of what it occupies including padding).
fn layout(st: &AppendState, big: bool, at: u64, total: u64) -> (bool, u64, u64) {
    if big && st.direct.is_some() && st.active.padding {
        let offset = pad_to_boundary(at);
        (
            true,
            offset,
            pad_to_boundary(offset + RECORD_HEADER_LEN + total),
        )
    } else {
        (false, at, at + RECORD_HEADER_LEN + total)
    }
}

/// Opens the `O_DIRECT` descriptor for appends to `seg`, if direct I/O is still on and the
/// segment allows padding. EINVAL (the file system has no direct I/O) turns it off for good;
/// other errors only cost this segment its direct writes.
fn open_direct(dir: &Path, seg: &Segment, enabled: &AtomicBool) -> Option<File> {
    if !seg.padding || !enabled.load(Ordering::Acquire) {
        return None;
    }
    match direct::open(&dir.join(segment_file_name(seg.id))) {
        Ok(f) => Some(f),
        Err(e) => {
            if e.raw_os_error() == Some(libc::EINVAL) {
                enabled.store(false, Ordering::Release);
            }
            None
        }
    }
}

/// Reads `<dir>/checkpoint`, if present, into (lsn, state).
fn read_checkpoint(dir: &Path) -> Result<Option<(u64, Vec<u8>)>, JournalError> {
    let path = dir.join(CHECKPOINT_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(e, format_args!("reading {}", path.display()))),
    };
    format::decode_checkpoint(&bytes)
        .map(Some)
        .map_err(|reason| JournalError::BadCheckpoint { path, reason })
}

enum CreateError {
    /// Nothing was left behind.
    Clean(JournalError),
    /// The file may still exist and could confuse a later replay.
    Stray(JournalError),
}

impl From<CreateError> for JournalError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::Clean(e) | CreateError::Stray(e) => e,
        }
    }
}

/// Creates `seg-<id>.log` holding just its header, durable (file fdatasync + dir fsync). On
/// failure the file is removed again. `padding` sets the header flag that allows padding records.
fn create_segment(
    dir: &Path,
    dir_file: &File,
    id: u64,
    first_lsn: u64,
    padding: bool,
) -> Result<Segment, CreateError> {
    let path = dir.join(segment_file_name(id));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| {
            CreateError::Clean(io_error(e, format_args!("creating {}", path.display())))
        })?;
    let header = format::encode_segment_header(SegmentHeader {
        id,
        first_lsn,
        padding,
    });
    let init = file
        .write_all_at(&header, 0)
        .and_then(|()| file.sync_data())
        .and_then(|()| dir_file.sync_all());
    if let Err(e) = init {
        let err = io_error(e, format_args!("initializing {}", path.display()));
        drop(file);
        return match fs::remove_file(&path) {
            Ok(()) => Err(CreateError::Clean(err)),
            Err(_) => Err(CreateError::Stray(err)),
        };
    }
    Ok(Segment {
        id,
        file,
        len: AtomicU64::new(SEGMENT_HEADER_LEN),
        padding,
    })
}

/// Replay state carried across segments.
struct Scan<'a> {
    dir: &'a Path,
    /// Whether a segment header rewritten by replay gets the padding flag.
    padding: bool,
    ckpt_lsn: u64,
    records: Vec<ReplayedRecord>,
    truncated: u64,
}

impl Scan<'_> {
    /// Validates one segment and collects its records past the checkpoint. `expected` is the lsn
    /// the previous segment's records lead up to. Returns the open segment and the lsn its next
    /// record would carry.
    fn segment(
        &mut self,
        id: u64,
        last: bool,
        expected: Option<u64>,
    ) -> Result<(Segment, u64), JournalError> {
        let path = self.dir.join(segment_file_name(id));
        let ctx = |e: io::Error| io_error(e, format_args!("replaying {}", path.display()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(ctx)?;
        let file_len = file.metadata().map_err(ctx)?.len();
        let resume = expected.unwrap_or(0).max(self.ckpt_lsn + 1);

        let mut hb = [0u8; SEGMENT_HEADER_LEN as usize];
        let torn_header = file_len < SEGMENT_HEADER_LEN || {
            file.read_exact_at(&mut hb, 0).map_err(ctx)?;
            file_len == SEGMENT_HEADER_LEN && hb.iter().all(|&b| b == 0)
        };
        if torn_header {
            if !last {
                return Err(corrupt(id, 0, "segment header is missing or zeroed"));
            }
            // A crash while the segment was being created (the header is synced before any record
            // goes in, so nothing acknowledged can be lost here): write the header again.
            let header = format::encode_segment_header(SegmentHeader {
                id,
                first_lsn: resume,
                padding: self.padding,
            });
            file.set_len(0)
                .and_then(|()| file.write_all_at(&header, 0))
                .and_then(|()| file.sync_all())
                .map_err(ctx)?;
            self.truncated += file_len;
            let seg = Segment {
                id,
                file,
                len: AtomicU64::new(SEGMENT_HEADER_LEN),
                padding: self.padding,
            };
            return Ok((seg, resume));
        }
        let header = format::decode_segment_header(&hb).map_err(|r| corrupt(id, 0, r))?;
        if header.id != id {
            return Err(corrupt(
                id,
                0,
                format!(
                    "header says this is segment {:016x}: the file was renamed or copied",
                    header.id
                ),
            ));
        }
        match expected {
            None if header.first_lsn > self.ckpt_lsn + 1 => {
                return Err(corrupt(
                    id,
                    0,
                    format!(
                        "the oldest segment starts at lsn {} but the checkpoint only covers lsns \
                         up to {}: records {}..{} are missing (segment deleted too early?)",
                        header.first_lsn,
                        self.ckpt_lsn,
                        self.ckpt_lsn + 1,
                        header.first_lsn - 1
                    ),
                ))
            }
            Some(e)
                if header.first_lsn != e
                    && !(e..=self.ckpt_lsn + 1).contains(&header.first_lsn) =>
            {
                return Err(corrupt(
                    id,
                    0,
                    format!(
                        "segment starts at lsn {} but the previous segment ends before lsn {e} and \
                         the checkpoint covers lsns up to {}: records are missing or duplicated",
                        header.first_lsn, self.ckpt_lsn
                    ),
                ))
            }
            _ => {}
        }

        let mut reader = BufReader::with_capacity(1 << 20, &file);
        reader
            .seek(SeekFrom::Start(SEGMENT_HEADER_LEN))
            .map_err(ctx)?;
        let mut offset = SEGMENT_HEADER_LEN;
        let mut next = header.first_lsn;
        let bad: Option<String> = loop {
            let left = file_len - offset;
            if left == 0 {
                break None;
            }
            if left < RECORD_HEADER_LEN {
                break Some(format!(
                    "{left} bytes at the end are too short for a record header"
                ));
            }
            let mut rb = [0u8; RECORD_HEADER_LEN as usize];
            reader.read_exact(&mut rb).map_err(ctx)?;
            let rh = match format::decode_record_header(&rb) {
                Ok(h) => h,
                Err(reason) => break Some(reason),
            };
            if rh.padding && !header.padding {
                break Some("padding record in a segment whose header does not allow them".into());
            }
            if u64::from(rh.len) > left - RECORD_HEADER_LEN {
                break Some(format!(
                    "record of {} payload bytes runs past the end of the file",
                    rh.len
                ));
            }
            if rh.lsn != next {
                let what = if rh.padding {
                    "padding record"
                } else {
                    "record"
                };
                break Some(format!(
                    "{what} has lsn {} where lsn {next} was expected",
                    rh.lsn
                ));
            }
            let mut payload = vec![0u8; rh.len as usize];
            reader.read_exact(&mut payload).map_err(ctx)?;
            if format::record_crc(&rb, crc32c::crc32c(&payload), rh.len) != rh.crc {
                let what = if rh.padding {
                    "padding before"
                } else {
                    "record"
                };
                break Some(format!("checksum mismatch in {what} lsn {}", rh.lsn));
            }
            if rh.padding {
                // Filler in front of a direct-I/O record (or after one): no lsn of its own.
                offset += RECORD_HEADER_LEN + u64::from(rh.len);
                continue;
            }
            if rh.lsn > self.ckpt_lsn {
                self.records.push(ReplayedRecord {
                    pos: RecordPos {
                        segment: id,
                        offset,
                        lsn: rh.lsn,
                        len: rh.len,
                    },
                    kind: rh.kind,
                    payload,
                });
            }
            offset += RECORD_HEADER_LEN + u64::from(rh.len);
            next += 1;
        };
        if let Some(reason) = bad {
            if !last {
                return Err(corrupt(id, offset, reason));
            }
            // The tail of the last segment: a write cut short by the crash, or stale bytes past
            // an earlier truncation. Everything from here on was never acknowledged as durable.
            drop(reader);
            file.set_len(offset).map_err(ctx)?;
            file.sync_all().map_err(ctx)?;
            self.truncated += file_len - offset;
        }
        let seg = Segment {
            id,
            file,
            len: AtomicU64::new(offset),
            padding: header.padding,
        };
        Ok((seg, next))
    }
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Journal>();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file system that takes `O_DIRECT` at open but refuses the writes (EINVAL): the record
    /// still lands (buffered), and the journal stays buffered from then on.
    #[test]
    fn einval_on_a_direct_write_falls_back_to_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = JournalConfig {
            segment_bytes: 1 << 20,
            direct_io_min_bytes: Some(8192),
            ..JournalConfig::new(dir.path())
        };
        let (j, _) = Journal::open(cfg.clone()).unwrap();
        if !j.direct_io() {
            eprintln!("SKIPPED: no O_DIRECT on {}", dir.path().display());
            return;
        }
        let p: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let first = j.append(1, &[&p]).unwrap();
        assert_eq!(first.offset % DIRECT_ALIGN, 0);
        direct::FAIL_WITH_EINVAL.with(|f| f.set(true));
        let second = j.append(2, &[&p[..50_000], &p[50_000..]]);
        direct::FAIL_WITH_EINVAL.with(|f| f.set(false));
        let second = second.unwrap();
        assert!(!j.direct_io(), "EINVAL turned direct I/O off");
        assert_eq!(
            second.offset % DIRECT_ALIGN,
            0,
            "laid out for direct I/O before it failed"
        );
        let third = j.append(3, &[&p]).unwrap();
        let end = |pos: &RecordPos| pos.offset + RECORD_HEADER_LEN + u64::from(pos.len);
        // The failed direct write kept its trailing padding; after that, records are packed.
        assert!(third.offset >= end(&second));
        let fourth = j.append(4, &[&p]).unwrap();
        assert_eq!(fourth.offset, end(&third), "buffered from now on: packed");
        j.rotate().unwrap();
        let fifth = j.append(5, &[&p]).unwrap();
        assert_eq!(
            fifth.offset, SEGMENT_HEADER_LEN,
            "new segments are buffered too"
        );
        let all = [first, second, third, fourth, fifth];
        for pos in &all {
            let mut buf = vec![0u8; p.len()];
            j.read_payload(pos, 0, &mut buf).unwrap();
            assert!(buf == p);
        }
        drop(j);
        let (_, replay) = Journal::open(cfg).unwrap();
        assert_eq!(replay.truncated_tail_bytes, 0);
        let got: Vec<RecordPos> = replay.records.iter().map(|r| r.pos).collect();
        assert_eq!(got, all);
        assert!(replay.records.iter().all(|r| r.payload == p));
    }
}
