//! The namespace: object keys shown as files and directories.
//!
//! One object is one file (`<prefix>a/b.bin` is `/a/b.bin`); directories come from common
//! prefixes and from `dir/` marker objects. Inode numbers are handed out once per (path, kind)
//! and never reused for the life of the mount. Attributes and whole directory listings are cached
//! for `metadata_ttl`; misses are cached for `negative_ttl`.

mod names;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use names::{check_name, join, NameProblem, MAX_NAME_BYTES};

use crate::error::{FsError, FsResult};
use crate::metrics::Metrics;
use crate::store::{BlobStore, ObjectInfo, StoreError};
use crate::write::records::{Special, SpecialKind};
use crate::write::state::is_within;
use crate::write::{LocalAttr, LocalEntry, WriteBack};

/// Inode number.
pub type Ino = u64;
/// Inode of the mount's root directory.
pub const ROOT_INO: Ino = 1;

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A directory (common prefix or marker object).
    Dir,
    /// A regular file (one object).
    File,
    /// A symbolic link (kept by this mount's journal).
    Symlink,
    /// A named pipe (kept by this mount's journal).
    Fifo,
    /// A Unix socket (kept by this mount's journal).
    Socket,
    /// A character device (kept by this mount's journal).
    CharDev,
    /// A block device (kept by this mount's journal).
    BlockDev,
}

impl NodeKind {
    /// The node kind of a special node.
    pub fn of_special(k: SpecialKind) -> Self {
        match k {
            SpecialKind::Symlink => NodeKind::Symlink,
            SpecialKind::Fifo => NodeKind::Fifo,
            SpecialKind::Socket => NodeKind::Socket,
            SpecialKind::CharDev => NodeKind::CharDev,
            SpecialKind::BlockDev => NodeKind::BlockDev,
        }
    }
}

/// Attributes of one node as last seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAttr {
    /// Inode number.
    pub ino: Ino,
    /// File or directory.
    pub kind: NodeKind,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Modification time (object's Last-Modified; mount time for directories).
    pub mtime: SystemTime,
    /// ETag of the object version these attributes describe (`None` for local files).
    pub etag: Option<Arc<str>>,
    /// Permission bits where known (set or created on this mount); `None` shows the mount's
    /// defaults.
    pub perm: Option<u16>,
    /// Owner where set on this mount; `None` shows the mount's owner.
    pub uid: Option<u32>,
    /// Group where set on this mount.
    pub gid: Option<u32>,
    /// Access time where set on this mount (else = mtime).
    pub atime: Option<SystemTime>,
    /// Change time where known (else = mtime).
    pub ctime: Option<SystemTime>,
    /// Device number of device nodes.
    pub rdev: u32,
    /// The name is gone but an open handle keeps the file (link count 0).
    pub unlinked: bool,
}

/// One entry of a directory listing.
#[derive(Clone, Debug)]
pub struct DirEntry {
    /// File name.
    pub name: String,
    /// Its attributes.
    pub attr: NodeAttr,
}

/// A snapshot of one directory's children, sorted by name.
#[derive(Debug)]
pub struct DirListing {
    /// Entries in name order.
    pub entries: Vec<DirEntry>,
    by_name: HashMap<String, usize>,
    fetched: Instant,
}

impl DirListing {
    /// Finds a child by name.
    pub fn get(&self, name: &str) -> Option<&DirEntry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }
}

struct Inode {
    kind: NodeKind,
    /// Path relative to the mount root, no leading or trailing `/`; empty for the root.
    /// Changes only when a rename moves the node.
    path: Mutex<Arc<str>>,
    state: Mutex<InodeState>,
}

impl Inode {
    fn path(&self) -> Arc<str> {
        self.path.lock().unwrap().clone()
    }
}

/// How often a lookup, revalidation or listing is sent again when its answer crossed a change
/// this mount made meanwhile; after that the mount keeps what it knows.
const MAX_ASKS: u32 = 4;

struct InodeState {
    size: u64,
    mtime: SystemTime,
    etag: Option<Arc<str>>,
    validated: Instant,
    /// Since when the mount knows better than any store answer to a request sent earlier: the
    /// send time of the request whose answer is held, or the moment this mount itself changed
    /// the object (upload, delete, rename). An answer to an older request is stale and never
    /// replaces it (it may describe the object from before our own change).
    known_since: Option<Instant>,
}

/// Cache lifetimes of the namespace.
#[derive(Clone, Copy, Debug)]
pub struct NamespaceConfig {
    /// How long attributes and listings are trusted.
    pub metadata_ttl: Duration,
    /// How long a miss is trusted.
    pub negative_ttl: Duration,
    /// Most entries kept in the negative cache.
    pub negative_capacity: usize,
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        Self {
            metadata_ttl: Duration::from_secs(5),
            negative_ttl: Duration::from_secs(5),
            negative_capacity: 100_000,
        }
    }
}

/// The mount's view of the bucket.
pub struct Namespace {
    store: Arc<dyn BlobStore>,
    prefix: String,
    cfg: NamespaceConfig,
    mount_time: SystemTime,
    next_ino: AtomicU64,
    inodes: Mutex<HashMap<Ino, Arc<Inode>>>,
    by_path: Mutex<HashMap<(Arc<str>, NodeKind), Ino>>,
    listings: Mutex<HashMap<Ino, Arc<DirListing>>>,
    /// Listings dropped by an invalidation, kept to answer from while the store is unreachable.
    stale_listings: Mutex<HashMap<Ino, Arc<DirListing>>>,
    /// Last time an "answering from the last listing" warning was logged.
    outage_warned: Mutex<Option<Instant>>,
    negative: Mutex<HashMap<(Ino, String), Instant>>,
    warned_keys: Mutex<HashSet<String>>,
    metrics: Arc<Metrics>,
    /// Local changes not yet (or just) in the bucket; they take precedence over it.
    wb: Option<Arc<WriteBack>>,
    /// Bumped by every invalidation: a listing fetched across one is used once, not cached
    /// (it may predate an upload whose file the local state no longer shows).
    generation: AtomicU64,
}

impl Namespace {
    /// A namespace over `store`, showing keys under `prefix` (empty or ending in `/`).
    pub fn new(
        store: Arc<dyn BlobStore>,
        prefix: String,
        cfg: NamespaceConfig,
        metrics: Arc<Metrics>,
        wb: Option<Arc<WriteBack>>,
    ) -> Self {
        let now = SystemTime::now();
        let root = Arc::new(Inode {
            kind: NodeKind::Dir,
            path: Mutex::new(Arc::from("")),
            state: Mutex::new(InodeState {
                size: 0,
                mtime: now,
                etag: None,
                validated: Instant::now(),
                known_since: None,
            }),
        });
        let mut inodes = HashMap::new();
        inodes.insert(ROOT_INO, root);
        let mut by_path = HashMap::new();
        by_path.insert((Arc::from(""), NodeKind::Dir), ROOT_INO);
        Self {
            store,
            prefix,
            cfg,
            mount_time: now,
            next_ino: AtomicU64::new(ROOT_INO + 1),
            inodes: Mutex::new(inodes),
            by_path: Mutex::new(by_path),
            listings: Mutex::new(HashMap::new()),
            stale_listings: Mutex::new(HashMap::new()),
            outage_warned: Mutex::new(None),
            negative: Mutex::new(HashMap::new()),
            warned_keys: Mutex::new(HashSet::new()),
            metrics,
            wb,
            generation: AtomicU64::new(0),
        }
    }

    /// The store this namespace reads.
    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.store
    }

    /// Bucket key of a file at `path`.
    pub fn file_key(&self, path: &str) -> String {
        format!("{}{}", self.prefix, path)
    }

    /// Listing prefix of a directory at `path` (`""` is the mount root).
    pub fn dir_prefix(&self, path: &str) -> String {
        if path.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}{}/", self.prefix, path)
        }
    }

    /// Files in the directory holding `ino`, from its last listing (never a store request):
    /// relative path and attributes, in name order. Empty when that directory was not listed.
    pub fn cached_siblings(&self, ino: Ino) -> Vec<(String, NodeAttr)> {
        let Ok(node) = self.inode(ino) else {
            return Vec::new();
        };
        let path = node.path();
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let Some(dir_ino) = self
            .by_path
            .lock()
            .unwrap()
            .get(&(Arc::from(dir), NodeKind::Dir))
            .copied()
        else {
            return Vec::new();
        };
        let Some(listing) = self.last_listing(dir_ino) else {
            return Vec::new();
        };
        listing
            .entries
            .iter()
            .filter(|e| e.attr.kind == NodeKind::File)
            .map(|e| (names::join(dir, &e.name), e.attr.clone()))
            .collect()
    }

    /// Relative path of an inode (for logs and keys).
    pub fn path_of(&self, ino: Ino) -> FsResult<Arc<str>> {
        Ok(self.inode(ino)?.path())
    }

    fn inode(&self, ino: Ino) -> FsResult<Arc<Inode>> {
        self.inodes
            .lock()
            .unwrap()
            .get(&ino)
            .cloned()
            .ok_or(FsError::BadHandle)
    }

    fn attr_of(&self, ino: Ino, node: &Inode) -> NodeAttr {
        let st = node.state.lock().unwrap();
        NodeAttr {
            ino,
            kind: node.kind,
            size: st.size,
            mtime: st.mtime,
            etag: st.etag.clone(),
            perm: None,
            uid: None,
            gid: None,
            atime: None,
            ctime: None,
            rdev: 0,
            unlinked: false,
        }
    }

    /// `a` with the POSIX attributes this mount keeps for its path.
    fn overlay(&self, mut a: NodeAttr) -> NodeAttr {
        let Some(wb) = &self.wb else {
            return a;
        };
        let Some(node) = self.inodes.lock().unwrap().get(&a.ino).cloned() else {
            return a;
        };
        if let Some(x) = wb.attrs(&node.path()) {
            let t = |ns: u64| SystemTime::UNIX_EPOCH + Duration::from_nanos(ns);
            if let Some(m) = x.mode {
                a.perm = Some((m & 0o7777) as u16);
            }
            a.uid = x.uid.or(a.uid);
            a.gid = x.gid.or(a.gid);
            if let Some(ns) = x.mtime_ns {
                a.mtime = t(ns);
            }
            a.atime = x.atime_ns.map(t).or(a.atime);
            a.ctime = x.ctime_ns.map(t).or(a.ctime);
        }
        a
    }

    /// Attributes of a special node at `path`.
    pub fn intern_special(&self, path: &str, sp: &Special) -> NodeAttr {
        let mut a = self.intern(path, NodeKind::of_special(sp.kind), None);
        a.size = sp.target.len() as u64;
        a.rdev = sp.rdev;
        a.etag = None;
        self.overlay(a)
    }

    /// Returns the inode for (path, kind), creating it on first sight, and records `seen`.
    fn intern(&self, path: &str, kind: NodeKind, seen: Option<&ObjectInfo>) -> NodeAttr {
        let (ino, node) = self.node_at(path, kind);
        if let Some(info) = seen {
            let mut st = node.state.lock().unwrap();
            Self::apply_info(&mut st, info);
            st.known_since = Some(Instant::now());
        } else if kind == NodeKind::Dir {
            node.state.lock().unwrap().validated = Instant::now();
        }
        self.attr_of(ino, &node)
    }

    /// Records what the store answered about the file at `path` to a request sent at `asked`.
    /// `Err` (with the attributes kept) when the mount has learned something newer since the
    /// request left, e.g. its own upload finished while the answer was in flight: the answer
    /// may describe the previous version and is dropped.
    fn intern_answer(
        &self,
        path: &str,
        info: &ObjectInfo,
        asked: Instant,
    ) -> Result<NodeAttr, NodeAttr> {
        let (ino, node) = self.node_at(path, NodeKind::File);
        {
            let mut st = node.state.lock().unwrap();
            if st.known_since.is_some_and(|k| k > asked) {
                drop(st);
                self.metrics.stale_answers.inc();
                return Err(self.attr_of(ino, &node));
            }
            Self::apply_info(&mut st, info);
            st.known_since = Some(asked);
        }
        Ok(self.attr_of(ino, &node))
    }

    fn apply_info(st: &mut InodeState, info: &ObjectInfo) {
        st.size = info.size;
        st.mtime = info.last_modified;
        st.etag = Some(Arc::from(version_token(info).as_str()));
        st.validated = Instant::now();
    }

    /// The inode at (`path`, `kind`), created on first sight.
    fn node_at(&self, path: &str, kind: NodeKind) -> (Ino, Arc<Inode>) {
        let key = (Arc::<str>::from(path), kind);
        let mut by_path = self.by_path.lock().unwrap();
        let (ino, node) = match by_path.get(&key) {
            Some(&ino) => (ino, self.inodes.lock().unwrap()[&ino].clone()),
            None => {
                let ino = self.next_ino.fetch_add(1, Ordering::Relaxed);
                let node = Arc::new(Inode {
                    kind,
                    path: Mutex::new(key.0.clone()),
                    state: Mutex::new(InodeState {
                        size: 0,
                        mtime: self.mount_time,
                        etag: None,
                        validated: Instant::now(),
                        known_since: None,
                    }),
                });
                self.inodes.lock().unwrap().insert(ino, node.clone());
                by_path.insert(key, ino);
                (ino, node)
            }
        };
        (ino, node)
    }

    fn warn_key(&self, key: &str, why: &str) {
        self.metrics.invalid_keys.inc();
        let mut warned = self.warned_keys.lock().unwrap();
        if warned.len() < 10_000 && warned.insert(key.to_string()) {
            tracing::warn!(key, "object key not shown: {why}");
        }
    }

    /// The last listing of `dir` known, however old (for answers while the store is down).
    fn last_listing(&self, dir: Ino) -> Option<Arc<DirListing>> {
        if let Some(l) = self.listings.lock().unwrap().get(&dir) {
            return Some(l.clone());
        }
        self.stale_listings.lock().unwrap().get(&dir).cloned()
    }

    /// True for errors that mean "the store did not answer" (after retries), as opposed to
    /// answers such as not-found or access-denied.
    fn unreachable(e: &StoreError) -> bool {
        matches!(e, StoreError::Transient(_) | StoreError::Throttled(_))
    }

    fn warn_outage(&self, what: &str, e: &StoreError) {
        let mut last = self.outage_warned.lock().unwrap();
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            *last = Some(Instant::now());
            tracing::warn!(
                "{} is unreachable ({e}); {what} from what this mount last saw",
                self.store.describe()
            );
        }
    }

    fn fresh_listing(&self, dir: Ino) -> Option<Arc<DirListing>> {
        let l = self.listings.lock().unwrap().get(&dir).cloned()?;
        (l.fetched.elapsed() < self.cfg.metadata_ttl).then_some(l)
    }

    /// Resolves `name` in directory `parent`.
    pub async fn lookup(&self, parent: Ino, name: &str) -> FsResult<NodeAttr> {
        let a = self.lookup_inner(parent, name).await?;
        Ok(self.overlay(a))
    }

    async fn lookup_inner(&self, parent: Ino, name: &str) -> FsResult<NodeAttr> {
        let dir = self.inode(parent)?;
        if dir.kind != NodeKind::Dir {
            return Err(FsError::NotDir);
        }
        match check_name(name) {
            Ok(()) => {}
            Err(NameProblem::TooLong) => return Err(FsError::NameTooLong),
            Err(_) => return Err(FsError::NotFound),
        }
        let path = join(&dir.path(), name);
        if let Some(wb) = &self.wb {
            match wb.entry(&path) {
                Some(LocalEntry::File(a)) => return Ok(self.intern_local(&path, &a)),
                Some(LocalEntry::Dir) => return Ok(self.intern(&path, NodeKind::Dir, None)),
                Some(LocalEntry::Special(sp)) => return Ok(self.intern_special(&path, &sp)),
                Some(LocalEntry::Gone) if !wb.has_local_children(&path) => {
                    return Err(FsError::NotFound)
                }
                _ if wb.has_local_children(&path) => {
                    return Ok(self.intern(&path, NodeKind::Dir, None))
                }
                _ => {}
            }
        }
        if let Some(listing) = self.fresh_listing(parent) {
            self.metrics.lookup_from_listing.inc();
            return listing
                .get(name)
                .map(|e| e.attr.clone())
                .ok_or(FsError::NotFound);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let generation = self.generation.load(Ordering::SeqCst);
            let neg_key = (parent, name.to_string());
            if let Some(&exp) = self.negative.lock().unwrap().get(&neg_key) {
                if exp > Instant::now() {
                    self.metrics.negative_hits.inc();
                    return Err(FsError::NotFound);
                }
            }
            let file_key = self.file_key(&path);
            let dir_prefix = self.dir_prefix(&path);
            let asked = Instant::now();
            let (head, list) = tokio::join!(
                self.store.head(&file_key),
                self.store.list(&dir_prefix, None, Some(1))
            );
            // The store is down: answer from the last listing of the parent, or from what we
            // know of this very name (writes go on; uploads wait in the journal).
            let outage = [&head.as_ref().err(), &list.as_ref().err()]
                .into_iter()
                .flatten()
                .find(|e| Self::unreachable(e))
                .map(|e| e.to_string());
            if let Some(err) = outage {
                let e = StoreError::Transient(err);
                if let Some(l) = self.last_listing(parent) {
                    self.warn_outage("names are resolved", &e);
                    return l.get(name).map(|e| e.attr.clone()).ok_or(FsError::NotFound);
                }
                let known = {
                    let by_path = self.by_path.lock().unwrap();
                    [NodeKind::Dir, NodeKind::File]
                        .into_iter()
                        .find_map(|k| by_path.get(&(Arc::<str>::from(path.as_str()), k)).copied())
                };
                if let Some(ino) = known {
                    self.warn_outage("names are resolved", &e);
                    let node = self.inode(ino)?;
                    return Ok(self.attr_of(ino, &node));
                }
                return Err(FsError::from_store(e, &file_key));
            }
            let is_dir = match list {
                Ok(p) => !p.objects.is_empty() || !p.prefixes.is_empty(),
                Err(StoreError::NotFound(_)) => false,
                Err(e) => return Err(FsError::from_store(e, &dir_prefix)),
            };
            let file = match head {
                Ok(info) => Some(info),
                Err(StoreError::NotFound(_)) | Err(StoreError::InvalidKey(_)) => None,
                Err(e) => return Err(FsError::from_store(e, &file_key)),
            };
            if is_dir {
                if file.is_some() {
                    self.warn_key(
                        &file_key,
                        "the key is also a directory prefix; the directory is shown",
                    );
                }
                return Ok(self.intern(&path, NodeKind::Dir, None));
            }
            if let Some(info) = file {
                match self.intern_answer(&path, &info, asked) {
                    Ok(a) => return Ok(a),
                    // This mount changed the object while the answer was in flight: ask again.
                    Err(newer) if attempt >= MAX_ASKS => return Ok(newer),
                    Err(_) => continue,
                }
            }
            if self.generation.load(Ordering::SeqCst) != generation {
                // Something changed while we asked: a miss seen now may already be stale.
                return Err(FsError::NotFound);
            }
            let mut neg = self.negative.lock().unwrap();
            if neg.len() >= self.cfg.negative_capacity {
                neg.clear();
            }
            neg.insert(neg_key, Instant::now() + self.cfg.negative_ttl);
            return Err(FsError::NotFound);
        }
    }

    /// Attributes of `ino`, revalidating a file with HEAD once its TTL has passed.
    pub async fn getattr(&self, ino: Ino) -> FsResult<NodeAttr> {
        let a = self.getattr_inner(ino).await?;
        Ok(self.overlay(a))
    }

    async fn getattr_inner(&self, ino: Ino) -> FsResult<NodeAttr> {
        let node = self.inode(ino)?;
        if let Some(wb) = &self.wb {
            let path = node.path();
            match (node.kind, wb.entry(&path)) {
                (NodeKind::File, Some(LocalEntry::File(a))) => {
                    return Ok(self.intern_local(&path, &a))
                }
                (_, Some(LocalEntry::Special(sp))) => return Ok(self.intern_special(&path, &sp)),
                _ => {}
            }
            if !matches!(node.kind, NodeKind::File | NodeKind::Dir) {
                // A special node that no longer exists.
                return Err(FsError::NotFound);
            }
        }
        let stale = node.state.lock().unwrap().validated.elapsed() >= self.cfg.metadata_ttl;
        if node.kind == NodeKind::File && stale {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let path = node.path();
                let key = self.file_key(&path);
                let asked = Instant::now();
                let info = match self.store.head(&key).await {
                    Ok(info) => info,
                    Err(e) if Self::unreachable(&e) => {
                        self.warn_outage("attributes are served", &e);
                        return Ok(self.attr_of(ino, &node));
                    }
                    Err(e) => return Err(FsError::from_store(e, &key)),
                };
                match self.intern_answer(&path, &info, asked) {
                    Ok(a) => return Ok(a),
                    // Changed by this mount while the HEAD was in flight: ask again.
                    Err(newer) if attempt >= MAX_ASKS => return Ok(newer),
                    Err(_) => continue,
                }
            }
        }
        Ok(self.attr_of(ino, &node))
    }

    /// The children of directory `ino` (bucket listing merged with local changes): a cached
    /// snapshot while fresh, else a full listing.
    pub async fn list_dir(&self, ino: Ino) -> FsResult<Arc<DirListing>> {
        let dir = self.inode(ino)?;
        if dir.kind != NodeKind::Dir {
            return Err(FsError::NotDir);
        }
        if let Some(l) = self.fresh_listing(ino) {
            return Ok(self.merge_local(&dir.path(), l));
        }
        // A listing that raced with an upload or delete of this mount may show the bucket from
        // before it while the local state already forgot it: list again (a few times at most).
        let mut attempts = 0;
        loop {
            let generation = self.generation.load(Ordering::SeqCst);
            let base = match self.list_bucket_dir(ino, &dir).await {
                Ok(b) => b,
                Err(FsError::Io(m)) => match self.last_listing(ino) {
                    Some(l) => {
                        self.warn_outage("directories are listed", &StoreError::Transient(m));
                        l
                    }
                    None => return Err(FsError::Io(m)),
                },
                Err(e) => return Err(e),
            };
            attempts += 1;
            if self.generation.load(Ordering::SeqCst) == generation || attempts >= MAX_ASKS {
                return Ok(self.merge_local(&dir.path(), base));
            }
        }
    }

    /// Applies local changes (files written here, removals, new directories) to a listing.
    fn merge_local(&self, dir_path: &str, base: Arc<DirListing>) -> Arc<DirListing> {
        let Some(wb) = &self.wb else {
            return base;
        };
        let local = wb.children(dir_path);
        if local.is_empty() && !wb.has_attrs_in(dir_path) {
            return base;
        }
        let mut entries: std::collections::BTreeMap<String, DirEntry> = base
            .entries
            .iter()
            .map(|e| (e.name.clone(), e.clone()))
            .collect();
        for (name, e) in local {
            let path = join(dir_path, &name);
            match e {
                LocalEntry::File(a) => {
                    let attr = self.intern_local(&path, &a);
                    entries.insert(name.clone(), DirEntry { name, attr });
                }
                LocalEntry::Dir => {
                    let attr = self.intern(&path, NodeKind::Dir, None);
                    entries
                        .entry(name.clone())
                        .or_insert(DirEntry { name, attr });
                }
                LocalEntry::Special(sp) => {
                    let attr = self.intern_special(&path, &sp);
                    entries.insert(name.clone(), DirEntry { name, attr });
                }
                LocalEntry::Gone => {
                    if wb.has_local_children(&path) {
                        let attr = self.intern(&path, NodeKind::Dir, None);
                        entries.insert(name.clone(), DirEntry { name, attr });
                    } else {
                        entries.remove(&name);
                    }
                }
            }
        }
        let entries: Vec<DirEntry> = entries
            .into_values()
            .map(|mut e| {
                e.attr = self.overlay(e.attr);
                e
            })
            .collect();
        let by_name = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        Arc::new(DirListing {
            entries,
            by_name,
            fetched: base.fetched,
        })
    }

    async fn list_bucket_dir(&self, ino: Ino, dir: &Inode) -> FsResult<Arc<DirListing>> {
        let generation = self.generation.load(Ordering::SeqCst);
        let asked = Instant::now();
        let dir_path = dir.path();
        let prefix = self.dir_prefix(&dir_path);
        let mut files: Vec<ObjectInfo> = Vec::new();
        let mut dirs: Vec<String> = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .store
                .list(&prefix, token, None)
                .await
                .map_err(|e| FsError::from_store(e, &prefix))?;
            files.extend(page.objects);
            dirs.extend(page.prefixes);
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        let mut entries: Vec<DirEntry> = Vec::with_capacity(files.len() + dirs.len());
        let mut dir_names: HashSet<String> = HashSet::new();
        for p in dirs {
            let Some(name) = p.strip_prefix(&prefix).and_then(|n| n.strip_suffix('/')) else {
                continue;
            };
            if let Err(why) = check_name(name) {
                self.warn_key(&p, &why.to_string());
                continue;
            }
            let attr = self.intern(&join(&dir_path, name), NodeKind::Dir, None);
            dir_names.insert(name.to_string());
            entries.push(DirEntry {
                name: name.to_string(),
                attr,
            });
        }
        for o in files {
            // The directory's own marker object (`dir/`) lists as the prefix itself.
            let Some(name) = o.key.strip_prefix(&prefix) else {
                continue;
            };
            if name.is_empty() {
                continue;
            }
            if let Err(why) = check_name(name) {
                self.warn_key(&o.key, &why.to_string());
                continue;
            }
            if dir_names.contains(name) {
                self.warn_key(
                    &o.key,
                    "the key is also a directory prefix; the directory is shown",
                );
                continue;
            }
            // A file this mount changed while the listing was in flight keeps what it knows.
            let attr = self
                .intern_answer(&join(&dir_path, name), &o, asked)
                .unwrap_or_else(|newer| newer);
            entries.push(DirEntry {
                name: name.to_string(),
                attr,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let by_name = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        let listing = Arc::new(DirListing {
            entries,
            by_name,
            fetched: Instant::now(),
        });
        if self.generation.load(Ordering::SeqCst) == generation {
            self.listings.lock().unwrap().insert(ino, listing.clone());
        }
        self.metrics.listings.inc();
        Ok(listing)
    }

    /// The object version an open of `ino` should read: revalidated if its TTL passed.
    pub async fn open_file(&self, ino: Ino) -> FsResult<(Arc<str>, NodeAttr)> {
        let node = self.inode(ino)?;
        if node.kind == NodeKind::Dir {
            return Err(FsError::IsDir);
        }
        let attr = self.getattr(ino).await?;
        Ok((Arc::from(self.file_key(&node.path()).as_str()), attr))
    }

    /// Attributes of a file written here, under its (stable) inode.
    pub fn intern_local(&self, path: &str, a: &LocalAttr) -> NodeAttr {
        let mut attr = self.intern(path, NodeKind::File, None);
        attr.size = a.size;
        attr.mtime = a.mtime;
        attr.etag = None;
        attr.perm = Some((a.mode & 0o7777) as u16);
        self.overlay(attr)
    }

    /// The inode of a directory at `path`, created on first sight.
    pub fn intern_dir(&self, path: &str) -> NodeAttr {
        self.intern(path, NodeKind::Dir, None)
    }

    /// Forgets cached knowledge about `path`: its parent's listing, a negative entry for it,
    /// and the freshness of its own attributes.
    pub fn invalidate(&self, path: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.forget_ancestors(path);
        let by_path = self.by_path.lock().unwrap();
        for kind in [NodeKind::File, NodeKind::Dir] {
            if let Some(&ino) = by_path.get(&(Arc::<str>::from(path), kind)) {
                self.listings.lock().unwrap().remove(&ino);
                if let Some(node) = self.inodes.lock().unwrap().get(&ino) {
                    let mut st = node.state.lock().unwrap();
                    let stale = self.cfg.metadata_ttl + Duration::from_secs(1);
                    st.validated = Instant::now().checked_sub(stale).unwrap_or(st.validated);
                    // Answers to requests sent before this change are out of date.
                    st.known_since = Some(Instant::now());
                }
            }
        }
    }

    /// Drops the cached listings of every directory above `path` and negative entries on the
    /// way: a key appearing or vanishing can create or remove implied directories up the tree.
    fn forget_ancestors(&self, path: &str) {
        let by_path = self.by_path.lock().unwrap();
        let mut listings = self.listings.lock().unwrap();
        let mut negative = self.negative.lock().unwrap();
        let mut child = path;
        loop {
            let (parent, name) = child.rsplit_once('/').unwrap_or(("", child));
            if let Some(&pino) = by_path.get(&(Arc::<str>::from(parent), NodeKind::Dir)) {
                if let Some(l) = listings.remove(&pino) {
                    self.stale_listings.lock().unwrap().insert(pino, l);
                }
                negative.remove(&(pino, name.to_string()));
            }
            if parent.is_empty() {
                break;
            }
            child = parent;
        }
    }

    /// Records an object this mount just wrote at `path`.
    pub fn uploaded(&self, path: &str, info: &ObjectInfo) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.intern(path, NodeKind::File, Some(info));
        self.forget_ancestors(path);
    }

    /// Moves inode numbers at and under `from` to `to` (a rename keeps inode numbers); nodes
    /// that were at the destination are dropped from the path index.
    pub fn rename_paths(&self, from: &str, to: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut by_path = self.by_path.lock().unwrap();
        let inodes = self.inodes.lock().unwrap();
        let dest: Vec<(Arc<str>, NodeKind)> = by_path
            .keys()
            .filter(|(p, _)| is_within(p, to))
            .cloned()
            .collect();
        for k in dest {
            by_path.remove(&k);
        }
        let moving: Vec<((Arc<str>, NodeKind), Ino)> = by_path
            .iter()
            .filter(|((p, _), _)| is_within(p, from))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for ((p, kind), ino) in moving {
            by_path.remove(&(p.clone(), kind));
            let np: Arc<str> = Arc::from(format!("{to}{}", &p[from.len()..]).as_str());
            if let Some(node) = inodes.get(&ino) {
                *node.path.lock().unwrap() = np.clone();
            }
            by_path.insert((np, kind), ino);
        }
        drop(inodes);
        drop(by_path);
        self.listings.lock().unwrap().clear();
        self.stale_listings.lock().unwrap().clear();
        self.negative.lock().unwrap().clear();
    }

    /// Number of inodes handed out (for stats).
    pub fn inode_count(&self) -> usize {
        self.inodes.lock().unwrap().len()
    }
}

/// The version token of an object: its ETag, or size+mtime where a store has none.
pub fn version_token(info: &ObjectInfo) -> String {
    match &info.etag {
        Some(e) => e.clone(),
        None => format!(
            "size{}-mtime{}",
            info.size,
            info.last_modified
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ),
    }
}
