//! The prefetcher's view of the namespace: files seen recently, their directories' members and
//! the layouts parsed from their footers and headers. Bounded; never asks the store anything.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use cairn_prefetch_model::trace::{stable_hash, FormatClass};
use cairn_prefetch_model::{Catalog, FileRef, Layout};
use lru::LruCache;

use crate::read::ObjectVersion;

/// Files remembered (with the object version a prefetch of them reads).
const FILES: usize = 200_000;
/// Directories whose member lists are remembered.
const DIRS: usize = 4096;
/// Layouts remembered.
const LAYOUTS: usize = 4096;
/// Members of one directory offered to the prefetcher.
pub const MAX_SIBLINGS: usize = 4096;

/// Identity of a file as the prefetcher and the trace see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    /// Hash of the path inside the mount.
    pub path_hash: u64,
    /// Hash of the parent directory's path.
    pub dir_hash: u64,
    /// Format class by extension.
    pub format: FormatClass,
}

impl FileIdentity {
    /// The identity of the file at `path` (relative to the mount root).
    pub fn of_path(path: &str) -> Self {
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        Self {
            path_hash: stable_hash(path.as_bytes()),
            dir_hash: stable_hash(dir.as_bytes()),
            format: FormatClass::from_name(path),
        }
    }
}

/// The gateway's [`Catalog`].
pub struct GatewayCatalog {
    files: Mutex<LruCache<u64, (FileRef, ObjectVersion)>>,
    dirs: Mutex<LruCache<u64, Arc<Vec<FileRef>>>>,
    layouts: Mutex<LruCache<u64, Arc<Layout>>>,
}

impl Default for GatewayCatalog {
    fn default() -> Self {
        let n = |x| NonZeroUsize::new(x).unwrap();
        Self {
            files: Mutex::new(LruCache::new(n(FILES))),
            dirs: Mutex::new(LruCache::new(n(DIRS))),
            layouts: Mutex::new(LruCache::new(n(LAYOUTS))),
        }
    }
}

impl FileIdentity {
    /// The catalog entry of the file with this identity.
    pub fn file_ref(&self, inode: u64, size: u64) -> FileRef {
        FileRef {
            inode,
            size,
            format: self.format,
            path_hash: self.path_hash,
            dir_hash: self.dir_hash,
        }
    }
}

impl GatewayCatalog {
    /// Remembers a file and the version a prefetch of it should read.
    pub fn note_file(&self, inode: u64, id: FileIdentity, obj: &ObjectVersion) -> FileRef {
        let f = id.file_ref(inode, obj.size);
        let mut files = self.files.lock().unwrap();
        match files.get(&inode) {
            Some((_, o)) if o.etag == obj.etag && o.size == obj.size && o.key == obj.key => {}
            _ => {
                files.put(inode, (f, obj.clone()));
                self.layouts.lock().unwrap().pop(&inode);
            }
        }
        f
    }

    /// Whether the members of this directory are known.
    pub fn knows_dir(&self, dir_hash: u64) -> bool {
        self.dirs.lock().unwrap().contains(&dir_hash)
    }

    /// Records the members of a directory (in listing order) with their versions.
    pub fn note_dir(&self, dir_hash: u64, members: Vec<(u64, FileIdentity, ObjectVersion)>) {
        let mut refs = Vec::with_capacity(members.len().min(MAX_SIBLINGS));
        {
            let mut files = self.files.lock().unwrap();
            for (inode, id, obj) in members.into_iter().take(MAX_SIBLINGS) {
                let f = id.file_ref(inode, obj.size);
                refs.push(f);
                if files.peek(&inode).is_none() {
                    files.put(inode, (f, obj));
                }
            }
        }
        self.dirs.lock().unwrap().put(dir_hash, Arc::new(refs));
    }

    /// The object version to read for a prefetch of `inode`.
    pub fn version_of(&self, inode: u64) -> Option<ObjectVersion> {
        self.files
            .lock()
            .unwrap()
            .peek(&inode)
            .map(|(_, o)| o.clone())
    }

    /// Installs a parsed layout.
    pub fn set_layout(&self, inode: u64, layout: Layout) {
        self.layouts.lock().unwrap().put(inode, Arc::new(layout));
    }

    /// Whether a layout of `inode` is known.
    pub fn has_layout(&self, inode: u64) -> bool {
        self.layouts.lock().unwrap().contains(&inode)
    }
}

impl Catalog for GatewayCatalog {
    fn file(&self, inode: u64) -> Option<FileRef> {
        self.files.lock().unwrap().peek(&inode).map(|(f, _)| *f)
    }

    fn siblings(&self, dir_hash: u64) -> Vec<FileRef> {
        self.dirs
            .lock()
            .unwrap()
            .peek(&dir_hash)
            .map(|v| v.as_ref().clone())
            .unwrap_or_default()
    }

    fn layout(&self, inode: u64) -> Option<Arc<Layout>> {
        self.layouts.lock().unwrap().peek(&inode).cloned()
    }
}
