//! The disk tier: one checksummed file per block under `--cache-dir`, indexed in RocksDB so the
//! cache survives restarts (unmount, kill -9, reboot of the daemon).
//!
//! Write order is file first (written to a temporary name, then renamed), index second: after a
//! crash an index entry always points at a complete file, and a file without an entry is an
//! orphan removed at the next start. Every read verifies the file (see [`crate::block_file`]); a
//! bad file is counted, deleted and reported as a miss, so the caller fetches the block again.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::block_file;
use crate::policy::{new_policy, EvictionPolicy, PolicyKind};
use crate::BlockKey;

/// Where and how big the disk tier is.
#[derive(Clone, Debug)]
pub struct L2Config {
    /// Cache directory (holds `LOCK`, `index/` and `blocks/`).
    pub dir: PathBuf,
    /// Byte budget for block files.
    pub budget: u64,
    /// Free space to leave on the file system, whatever the budget says.
    pub min_free: u64,
    /// Which blocks to give up first when full (see docs/BENCHMARKS.md, "Eviction policies").
    pub policy: PolicyKind,
}

/// Errors opening the disk tier.
#[derive(Debug, thiserror::Error)]
pub enum L2Error {
    /// Another process holds the cache directory.
    #[error("cache directory {dir} is in use by another cairn ({holder}); give each mount its own --cache-dir")]
    Locked {
        /// The directory.
        dir: String,
        /// Who holds it, from the lock file.
        holder: String,
    },
    /// File-system error.
    #[error("cache directory {dir}: {source}")]
    Io {
        /// The path involved.
        dir: String,
        /// The error.
        source: std::io::Error,
    },
    /// The RocksDB index could not be opened.
    #[error("cache index {dir}: {msg}")]
    Index {
        /// The index path.
        dir: String,
        /// RocksDB's message.
        msg: String,
    },
}

/// Counters of the disk tier.
#[derive(Debug, Default)]
pub struct L2Stats {
    /// Reads served from disk.
    pub hits: AtomicU64,
    /// Lookups that found nothing.
    pub misses: AtomicU64,
    /// Bytes returned by hits.
    pub bytes_served: AtomicU64,
    /// Bytes written.
    pub bytes_admitted: AtomicU64,
    /// Blocks evicted to stay within the budget or the free-space floor.
    pub evictions: AtomicU64,
    /// Files found corrupt, truncated or missing (dropped and re-fetched).
    pub checksum_failures: AtomicU64,
    /// Blocks not admitted because the tier was degraded or the admission queue full.
    pub admissions_skipped: AtomicU64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    id: u64,
    size: u64,
}

struct Inner {
    entries: HashMap<BlockKey, Entry>,
    policy: Box<dyn EvictionPolicy<BlockKey>>,
    /// Bytes of the indexed block files.
    used: u64,
    /// Bytes of blocks being written (room made for them, not indexed yet).
    reserved: u64,
    budget: u64,
    next_id: u64,
}

/// The disk tier.
pub struct L2Cache {
    dir: PathBuf,
    blocks: PathBuf,
    db: rocksdb::DB,
    inner: Mutex<Inner>,
    min_free: AtomicU64,
    degraded: AtomicBool,
    degraded_since: Mutex<Option<Instant>>,
    stats: L2Stats,
    /// Held for the whole of an insert and by resizes: a block admitted under the old budget
    /// cannot land after a shrink returned.
    admission: Mutex<()>,
    _lock: File,
}

/// How long a degraded tier waits before trying to write again.
const DEGRADED_RETRY: Duration = Duration::from_secs(30);

fn io_err(dir: &Path) -> impl FnOnce(std::io::Error) -> L2Error + '_ {
    move |source| L2Error::Io {
        dir: dir.display().to_string(),
        source,
    }
}

/// Index key: object, NUL, version, NUL, block index (big endian, so blocks sort in order).
fn index_key(k: &BlockKey) -> Vec<u8> {
    let mut v = Vec::with_capacity(k.object.len() + k.version.len() + 10);
    v.extend_from_slice(k.object.as_bytes());
    v.push(0);
    v.extend_from_slice(k.version.as_bytes());
    v.push(0);
    v.extend_from_slice(&k.index.to_be_bytes());
    v
}

fn parse_index_key(raw: &[u8]) -> Option<BlockKey> {
    if raw.len() < 10 {
        return None;
    }
    let (head, idx) = raw.split_at(raw.len() - 8);
    let head = head.strip_suffix(&[0])?;
    let sep = head.iter().position(|&b| b == 0)?;
    let object = std::str::from_utf8(&head[..sep]).ok()?;
    let version = std::str::from_utf8(&head[sep + 1..]).ok()?;
    Some(BlockKey::new(
        Arc::from(object),
        Arc::from(version),
        u64::from_be_bytes(idx.try_into().ok()?),
    ))
}

fn entry_value(e: Entry) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&e.id.to_le_bytes());
    v[8..].copy_from_slice(&e.size.to_le_bytes());
    v
}

fn parse_entry(v: &[u8]) -> Option<Entry> {
    if v.len() != 16 {
        return None;
    }
    Some(Entry {
        id: u64::from_le_bytes(v[..8].try_into().ok()?),
        size: u64::from_le_bytes(v[8..].try_into().ok()?),
    })
}

/// Free bytes available to us on the file system holding `dir`.
pub fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and s a valid out pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}

impl L2Cache {
    /// Opens (or creates) the tier in `cfg.dir`: takes the directory lock, loads the index,
    /// drops entries whose file is gone and files no entry points at, then trims to the budget.
    pub fn open(cfg: &L2Config) -> Result<Self, L2Error> {
        let dir = cfg.dir.clone();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock = Self::lock(&dir)?;
        let blocks = dir.join("blocks");
        fs::create_dir_all(&blocks).map_err(io_err(&blocks))?;
        let index_dir = dir.join("index");
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.set_max_open_files(64);
        opts.set_keep_log_file_num(2);
        let db = rocksdb::DB::open(&opts, &index_dir).map_err(|e| L2Error::Index {
            dir: index_dir.display().to_string(),
            msg: e.to_string(),
        })?;
        let mut loaded: Vec<(BlockKey, Entry)> = Vec::new();
        let mut bad_keys: Vec<Box<[u8]>> = Vec::new();
        for item in db.iterator(rocksdb::IteratorMode::Start) {
            let (k, v) = item.map_err(|e| L2Error::Index {
                dir: index_dir.display().to_string(),
                msg: e.to_string(),
            })?;
            match (parse_index_key(&k), parse_entry(&v)) {
                (Some(key), Some(e)) => loaded.push((key, e)),
                _ => bad_keys.push(k),
            }
        }
        for k in bad_keys {
            let _ = db.delete(k);
        }
        // Oldest first, so the recency order after a restart follows insertion order.
        loaded.sort_by_key(|(_, e)| e.id);
        let me = Self {
            dir: dir.clone(),
            blocks,
            db,
            inner: Mutex::new(Inner {
                entries: HashMap::with_capacity(loaded.len()),
                policy: new_policy(cfg.policy),
                used: 0,
                reserved: 0,
                budget: cfg.budget,
                next_id: 1,
            }),
            min_free: AtomicU64::new(cfg.min_free),
            degraded: AtomicBool::new(false),
            degraded_since: Mutex::new(None),
            admission: Mutex::new(()),
            stats: L2Stats::default(),
            _lock: lock,
        };
        let mut live_ids = std::collections::HashSet::with_capacity(loaded.len());
        {
            let mut inner = me.inner.lock().unwrap();
            for (key, e) in loaded {
                let ok = fs::metadata(me.path_of(e.id))
                    .map(|m| m.len() == e.size)
                    .unwrap_or(false);
                inner.next_id = inner.next_id.max(e.id + 1);
                if !ok {
                    me.stats.checksum_failures.fetch_add(1, Ordering::Relaxed);
                    let _ = me.db.delete(index_key(&key));
                    let _ = fs::remove_file(me.path_of(e.id));
                    continue;
                }
                live_ids.insert(e.id);
                inner.used += e.size;
                inner.policy.on_insert(key.clone(), e.size);
                inner.entries.insert(key, e);
            }
        }
        me.remove_orphans(&live_ids);
        me.evict_to_fit(0);
        Ok(me)
    }

    fn lock(dir: &Path) -> Result<File, L2Error> {
        let path = dir.join("LOCK");
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(dir))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            return Err(L2Error::Locked {
                dir: dir.display().to_string(),
                holder: if holder.trim().is_empty() {
                    "unknown process".into()
                } else {
                    holder.trim().to_string()
                },
            });
        }
        f.set_len(0).map_err(io_err(dir))?;
        let _ = write!(f, "pid {}", std::process::id());
        Ok(f)
    }

    fn path_of(&self, id: u64) -> PathBuf {
        self.blocks
            .join(format!("{:02x}", id % 256))
            .join(format!("{id:016x}.blk"))
    }

    fn remove_orphans(&self, live: &std::collections::HashSet<u64>) {
        let Ok(subdirs) = fs::read_dir(&self.blocks) else {
            return;
        };
        for sub in subdirs.flatten() {
            let Ok(files) = fs::read_dir(sub.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name();
                let name = name.to_string_lossy();
                let id = name
                    .strip_suffix(".blk")
                    .and_then(|h| u64::from_str_radix(h, 16).ok());
                match id {
                    Some(id) if live.contains(&id) => {}
                    _ => {
                        let _ = fs::remove_file(f.path());
                    }
                }
            }
        }
    }

    /// Returns the block if present and intact; a damaged file is dropped and reported as a miss.
    pub fn get(&self, key: &BlockKey) -> Option<Bytes> {
        let entry = {
            let mut inner = self.inner.lock().unwrap();
            let e = inner.entries.get(key).copied();
            if e.is_none() {
                inner.policy.on_miss(key);
            }
            e
        };
        let Some(e) = entry else {
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let result = fs::read(self.path_of(e.id))
            .map_err(|err| err.to_string())
            .and_then(|raw| {
                block_file::decode(key, Bytes::from(raw)).map_err(|err| err.to_string())
            });
        match result {
            Ok(data) => {
                let mut inner = self.inner.lock().unwrap();
                if inner.entries.contains_key(key) {
                    inner.policy.on_hit(key);
                }
                drop(inner);
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .bytes_served
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                Some(data)
            }
            Err(why) => {
                self.stats.checksum_failures.fetch_add(1, Ordering::Relaxed);
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    object = %key.object,
                    block = key.index,
                    "cache block file rejected ({why}); dropping it and fetching the block again"
                );
                self.remove(key);
                None
            }
        }
    }

    /// True when the block has an index entry (its file is verified only on `get`).
    pub fn contains(&self, key: &BlockKey) -> bool {
        self.inner.lock().unwrap().entries.contains_key(key)
    }

    /// Writes a block. Skipped (and counted) while degraded; a write error degrades the tier.
    /// Safe to call from several threads at once: room is reserved under the admission lock, the
    /// file is written outside it (so concurrent inserts overlap their I/O), and it is put in
    /// place and indexed under the lock again, after making room once more against the budget
    /// of that moment (a shrink may have come in between). Committed bytes ([`Self::used`])
    /// never exceed the budget.
    pub fn insert(&self, key: BlockKey, data: &[u8]) {
        if self.is_degraded() {
            self.stats
                .admissions_skipped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Header and data are written one after the other: no copy of the block.
        let header = block_file::header(&key, data);
        let size = (header.len() + data.len()) as u64;
        let id = {
            let _admission = self.admission.lock().unwrap();
            if self.contains(&key) {
                return;
            }
            if !self.evict_to_fit(size) {
                self.stats
                    .admissions_skipped
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            let mut inner = self.inner.lock().unwrap();
            // Counted by evict_to_fit, so that inserts running alongside make room for it too.
            inner.reserved += size;
            let id = inner.next_id;
            inner.next_id += 1;
            id
        };
        let path = self.path_of(id);
        let tmp = path.with_extension("tmp");
        let written = self.write_tmp(&tmp, &[&header, data]);
        let _admission = self.admission.lock().unwrap();
        self.inner.lock().unwrap().reserved -= size;
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            self.degrade(&format!("cannot write cache block file: {e}"));
            return;
        }
        if self.contains(&key) {
            let _ = fs::remove_file(&tmp);
            return;
        }
        if !self.evict_to_fit(size) {
            let _ = fs::remove_file(&tmp);
            self.stats
                .admissions_skipped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            self.degrade(&format!("cannot write cache block file: {e}"));
            return;
        }
        let entry = Entry { id, size };
        if let Err(e) = self.db.put(index_key(&key), entry_value(entry)) {
            let _ = fs::remove_file(&path);
            self.degrade(&format!("cannot update the cache index: {e}"));
            return;
        }
        let mut inner = self.inner.lock().unwrap();
        inner.used += size;
        inner.entries.insert(key.clone(), entry);
        inner.policy.on_insert(key, size);
        self.stats
            .bytes_admitted
            .fetch_add(data.len() as u64, Ordering::Relaxed);
    }

    /// Writes `parts` to the temporary file `tmp` (its directory is created when missing).
    fn write_tmp(&self, tmp: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
        if let Some(parent) = tmp.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut f = File::create(tmp)?;
        for part in parts {
            f.write_all(part)?;
        }
        Ok(())
    }

    fn degrade(&self, why: &str) {
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                dir = %self.dir.display(),
                "{why}; the disk cache is degraded to read-only, RAM caching continues (retry in {}s)",
                DEGRADED_RETRY.as_secs()
            );
        }
        *self.degraded_since.lock().unwrap() = Some(Instant::now());
    }

    /// True while writes are suspended after a write error (disk full, read-only, I/O error).
    pub fn is_degraded(&self) -> bool {
        if !self.degraded.load(Ordering::Relaxed) {
            return false;
        }
        let since = *self.degraded_since.lock().unwrap();
        if since.is_some_and(|t| t.elapsed() >= DEGRADED_RETRY) {
            self.degraded.store(false, Ordering::Relaxed);
            tracing::info!(dir = %self.dir.display(), "retrying writes to the disk cache");
            return false;
        }
        true
    }

    /// Drops one block.
    pub fn remove(&self, key: &BlockKey) {
        let e = {
            let mut inner = self.inner.lock().unwrap();
            let e = inner.entries.remove(key);
            if let Some(e) = e {
                inner.used -= e.size;
                inner.policy.on_remove(key);
            }
            e
        };
        if let Some(e) = e {
            let _ = fs::remove_file(self.path_of(e.id));
            let _ = self.db.delete(index_key(key));
        }
    }

    /// Drops every block of `object` whose version is not `keep_version`.
    pub fn invalidate_object(&self, object: &str, keep_version: &str) {
        let stale: Vec<BlockKey> = self
            .inner
            .lock()
            .unwrap()
            .entries
            .keys()
            .filter(|k| &*k.object == object && &*k.version != keep_version)
            .cloned()
            .collect();
        for k in stale {
            self.remove(&k);
        }
    }

    /// Evicts until `incoming` more bytes fit within the budget and the free-space floor.
    /// Returns false when they cannot fit (block larger than the budget, or the floor cannot be
    /// met even with the tier empty).
    fn evict_to_fit(&self, incoming: u64) -> bool {
        loop {
            let victim = {
                let mut inner = self.inner.lock().unwrap();
                if incoming > inner.budget {
                    return false;
                }
                let over_budget = inner.used + inner.reserved + incoming > inner.budget;
                let floor = self.min_free.load(Ordering::Relaxed);
                let low_space =
                    floor > 0 && free_space(&self.dir).is_some_and(|free| free < floor + incoming);
                if !over_budget && !low_space {
                    return true;
                }
                match inner.policy.evict() {
                    Some(k) => match inner.entries.remove(&k) {
                        Some(e) => {
                            inner.used -= e.size;
                            Some((k, e))
                        }
                        // The policy and the index disagree: never loop on it.
                        None => None,
                    },
                    None => return !over_budget && !low_space,
                }
            };
            if let Some((k, e)) = victim {
                let _ = fs::remove_file(self.path_of(e.id));
                let _ = self.db.delete(index_key(&k));
                self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Changes the byte budget; a shrink evicts down to it before returning.
    pub fn resize(&self, budget: u64) {
        let _admission = self.admission.lock().unwrap();
        self.inner.lock().unwrap().budget = budget;
        self.evict_to_fit(0);
    }

    /// Changes the free-space floor.
    pub fn set_min_free(&self, bytes: u64) {
        self.min_free.store(bytes, Ordering::Relaxed);
        self.evict_to_fit(0);
    }

    /// Bytes of block files held.
    pub fn used(&self) -> u64 {
        self.inner.lock().unwrap().used
    }

    /// Current budget.
    pub fn budget(&self) -> u64 {
        self.inner.lock().unwrap().budget
    }

    /// Number of blocks held.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().entries.len()
    }

    /// True when no block is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters of this tier.
    pub fn stats(&self) -> &L2Stats {
        &self.stats
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the file holding `key` (tests use it to damage blocks on purpose).
    pub fn file_of(&self, key: &BlockKey) -> Option<PathBuf> {
        let id = self.inner.lock().unwrap().entries.get(key)?.id;
        Some(self.path_of(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "cairn-l2-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn key(obj: &str, i: u64) -> BlockKey {
        BlockKey::new(Arc::from(obj), Arc::from("v1"), i)
    }

    fn cfg(dir: &Path, budget: u64) -> L2Config {
        L2Config {
            dir: dir.to_path_buf(),
            budget,
            min_free: 0,
            policy: PolicyKind::Adaptive,
        }
    }

    #[test]
    fn insert_get_survive_reopen() {
        let d = tmpdir("reopen");
        {
            let c = L2Cache::open(&cfg(&d, 1 << 20)).unwrap();
            c.insert(key("o", 0), b"block zero");
            c.insert(key("o", 1), b"block one");
            assert_eq!(
                c.get(&key("o", 0)).unwrap(),
                Bytes::from_static(b"block zero")
            );
        }
        let c = L2Cache::open(&cfg(&d, 1 << 20)).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.get(&key("o", 1)).unwrap(),
            Bytes::from_static(b"block one")
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn second_open_of_same_dir_is_refused() {
        let d = tmpdir("lock");
        let _a = L2Cache::open(&cfg(&d, 1 << 20)).unwrap();
        let e = L2Cache::open(&cfg(&d, 1 << 20)).err().unwrap().to_string();
        assert!(e.contains("in use by another cairn"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(_a);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn corrupt_truncated_and_missing_files_are_dropped() {
        let d = tmpdir("corrupt");
        let c = L2Cache::open(&cfg(&d, 1 << 20)).unwrap();
        for i in 0..3 {
            c.insert(key("o", i), &[i as u8; 500]);
        }
        let f0 = c.file_of(&key("o", 0)).unwrap();
        let mut raw = fs::read(&f0).unwrap();
        let n = raw.len();
        raw[n - 10] ^= 0xff;
        fs::write(&f0, raw).unwrap();
        let f1 = c.file_of(&key("o", 1)).unwrap();
        let raw = fs::read(&f1).unwrap();
        fs::write(&f1, &raw[..raw.len() / 2]).unwrap();
        fs::remove_file(c.file_of(&key("o", 2)).unwrap()).unwrap();
        for i in 0..3 {
            assert!(c.get(&key("o", i)).is_none());
            assert!(!c.contains(&key("o", i)));
        }
        assert_eq!(c.stats().checksum_failures.load(Ordering::Relaxed), 3);
        assert_eq!(c.used(), 0);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn restart_drops_entries_without_files_and_files_without_entries() {
        let d = tmpdir("orphans");
        let (gone, orphan) = {
            let c = L2Cache::open(&cfg(&d, 1 << 20)).unwrap();
            c.insert(key("o", 0), b"a");
            c.insert(key("o", 1), b"b");
            let gone = c.file_of(&key("o", 0)).unwrap();
            fs::remove_file(&gone).unwrap();
            let orphan = d.join("blocks/00/00000000000000ff.blk");
            fs::create_dir_all(orphan.parent().unwrap()).unwrap();
            fs::write(&orphan, b"stray").unwrap();
            (gone, orphan)
        };
        let c = L2Cache::open(&cfg(&d, 1 << 20)).unwrap();
        assert!(!gone.exists());
        assert!(!orphan.exists(), "orphan file must be removed at start");
        assert!(!c.contains(&key("o", 0)));
        assert_eq!(c.get(&key("o", 1)).unwrap(), Bytes::from_static(b"b"));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn shrink_evicts_down_to_budget_and_files_go() {
        let d = tmpdir("shrink");
        let c = L2Cache::open(&cfg(&d, 1 << 20)).unwrap();
        for i in 0..20 {
            c.insert(key("o", i), &[1u8; 10_000]);
        }
        let before = c.used();
        c.resize(before / 4);
        assert!(c.used() <= before / 4);
        let files: u64 = walk_size(&d.join("blocks"));
        assert_eq!(files, c.used(), "bytes on disk match the accounting");
        fs::remove_dir_all(&d).unwrap();
    }

    fn walk_size(p: &Path) -> u64 {
        let mut n = 0;
        for e in fs::read_dir(p).unwrap().flatten() {
            let m = e.metadata().unwrap();
            n += if m.is_dir() {
                walk_size(&e.path())
            } else {
                m.len()
            };
        }
        n
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u16),
        Get(u8),
        Remove(u8),
        Resize(u32),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..24, 1u16..3000).prop_map(|(k, n)| Op::Insert(k, n)),
            3 => (0u8..24).prop_map(Op::Get),
            1 => (0u8..24).prop_map(Op::Remove),
            1 => (1000u32..40_000).prop_map(Op::Resize),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Random insert/get/remove/resize/restart sequences never return bytes other than the
        /// ones inserted for that key and never exceed the budget (on disk or in the accounting).
        #[test]
        fn model(ops in proptest::collection::vec(op(), 1..60)) {
            let d = tmpdir("prop");
            let mut budget = 20_000u64;
            let mut c = L2Cache::open(&cfg(&d, budget)).unwrap();
            let mut model: HashMap<u8, Vec<u8>> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, n) => {
                        let data = vec![k ^ (n as u8); n as usize];
                        if !c.contains(&key("o", k as u64)) {
                            c.insert(key("o", k as u64), &data);
                            model.insert(k, data);
                        }
                    }
                    Op::Get(k) => {
                        if let Some(got) = c.get(&key("o", k as u64)) {
                            prop_assert_eq!(Some(&got.to_vec()), model.get(&k));
                        }
                    }
                    Op::Remove(k) => c.remove(&key("o", k as u64)),
                    Op::Resize(b) => { budget = b as u64; c.resize(budget) }
                    Op::Reopen => { drop(c); c = L2Cache::open(&cfg(&d, budget)).unwrap(); }
                }
                prop_assert!(c.used() <= budget);
                prop_assert_eq!(walk_size(&d.join("blocks")), c.used());
            }
            drop(c);
            fs::remove_dir_all(&d).unwrap();
        }
    }
}
