//! Model test of the write-back path: random file-system operations through the gateway, with
//! restarts (clean and abandoned mid-flight) over the same journal, small journal segments so
//! checkpoints and segment reclamation happen, then a drain. The mount's view after every
//! restart and the bucket after the final drain must equal a plain in-memory model.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_gateway::error::FsError;
use cairn_gateway::gateway::{Gateway, GatewayConfig};
use cairn_gateway::namespace::{NodeKind, ROOT_INO};
use cairn_gateway::store::{collect_stream, BlobStore, ObjectStoreBlob};
use cairn_gateway::write::WriteConfig;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Create (or truncate) file `name` in directory `dir` (0 = root).
    Create {
        dir: usize,
        name: usize,
    },
    Write {
        file: usize,
        offset: u64,
        len: usize,
        byte: u8,
    },
    Truncate {
        file: usize,
        size: u64,
    },
    Unlink {
        file: usize,
    },
    Rename {
        file: usize,
        dir: usize,
        name: usize,
    },
    Mkdir {
        dir: usize,
    },
    RenameDir {
        from: usize,
        to: usize,
    },
    Flush,
    Crash,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..5usize).prop_map(|(dir, name)| Op::Create { dir, name }),
        8 => (0..8usize, 0..300_000u64, 1..200_000usize, any::<u8>())
            .prop_map(|(file, offset, len, byte)| Op::Write { file, offset, len, byte }),
        2 => (0..8usize, 0..400_000u64).prop_map(|(file, size)| Op::Truncate { file, size }),
        2 => (0..8usize).prop_map(|file| Op::Unlink { file }),
        2 => (0..8usize, 0..3usize, 0..5usize).prop_map(|(file, dir, name)| Op::Rename { file, dir, name }),
        1 => (1..3usize).prop_map(|dir| Op::Mkdir { dir }),
        1 => (1..3usize, 1..3usize).prop_map(|(from, to)| Op::RenameDir { from, to }),
        1 => Just(Op::Flush),
        2 => Just(Op::Crash),
        1 => Just(Op::Restart),
    ]
}

/// The in-memory store with S3's ETags: a single-part object's ETag is the quoted MD5 of its
/// bytes (the write path relies on that to recognise its own upload after a crash). Conditions
/// and ETags are translated to and from the inner store's own version tokens.
#[derive(Debug)]
struct S3LikeEtags {
    inner: ObjectStoreBlob,
    /// key -> (inner etag, S3 etag)
    etags: std::sync::Mutex<std::collections::HashMap<String, (String, String)>>,
}

impl S3LikeEtags {
    fn new() -> Self {
        Self {
            inner: ObjectStoreBlob::from_store(
                Arc::new(object_store::memory::InMemory::new()),
                "memory (S3-like ETags)",
            ),
            etags: Default::default(),
        }
    }

    fn outer(
        &self,
        mut info: cairn_gateway::store::ObjectInfo,
    ) -> cairn_gateway::store::ObjectInfo {
        let map = self.etags.lock().unwrap();
        if let (Some(inner), Some((i, o))) = (&info.etag, map.get(&info.key)) {
            if inner == i {
                info.etag = Some(o.clone());
            }
        }
        info
    }

    fn inner_etag(&self, key: &str, outer: &str) -> Option<String> {
        let map = self.etags.lock().unwrap();
        map.get(key)
            .filter(|(_, o)| o == outer)
            .map(|(i, _)| i.clone())
    }
}

#[async_trait::async_trait]
impl BlobStore for S3LikeEtags {
    async fn list(
        &self,
        prefix: &str,
        token: Option<String>,
        max: Option<usize>,
    ) -> cairn_gateway::store::StoreResult<cairn_gateway::store::ListPage> {
        let mut page = self.inner.list(prefix, token, max).await?;
        page.objects = page.objects.into_iter().map(|o| self.outer(o)).collect();
        Ok(page)
    }
    async fn head(
        &self,
        key: &str,
    ) -> cairn_gateway::store::StoreResult<cairn_gateway::store::ObjectInfo> {
        Ok(self.outer(self.inner.head(key).await?))
    }
    async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        if_match: Option<&str>,
    ) -> cairn_gateway::store::StoreResult<cairn_gateway::store::ByteStream> {
        let inner = match if_match {
            Some(e) => Some(
                self.inner_etag(key, e)
                    .unwrap_or_else(|| "no-such-version".into()),
            ),
            None => None,
        };
        self.inner.get_range(key, range, inner.as_deref()).await
    }
    async fn put(
        &self,
        key: &str,
        data: bytes::Bytes,
        condition: cairn_gateway::store::PutCondition,
    ) -> cairn_gateway::store::StoreResult<cairn_gateway::store::ObjectInfo> {
        use cairn_gateway::store::PutCondition as C;
        use md5::Digest;
        let cond = match condition {
            C::IfMatch(e) => C::IfMatch(
                self.inner_etag(key, &e)
                    .unwrap_or_else(|| "no-such-version".into()),
            ),
            other => other,
        };
        let md5 = format!("\"{:x}\"", md5::Md5::digest(&data));
        let info = self.inner.put(key, data, cond).await?;
        if let Some(i) = &info.etag {
            self.etags
                .lock()
                .unwrap()
                .insert(key.to_string(), (i.clone(), md5));
        }
        Ok(self.outer(info))
    }
    async fn put_multipart(
        &self,
        key: &str,
    ) -> cairn_gateway::store::StoreResult<Box<dyn cairn_gateway::store::MultipartWriter>> {
        self.inner.put_multipart(key).await
    }
    async fn delete(&self, key: &str) -> cairn_gateway::store::StoreResult<()> {
        self.inner.delete(key).await
    }
    async fn copy(&self, from: &str, to: &str) -> cairn_gateway::store::StoreResult<()> {
        self.inner.copy(from, to).await?;
        let copied = self.etags.lock().unwrap().get(from).cloned();
        let info = self.inner.head(to).await?;
        if let (Some((_, o)), Some(i)) = (copied, info.etag) {
            self.etags.lock().unwrap().insert(to.to_string(), (i, o));
        }
        Ok(())
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// The expected file system: directories and file contents by path.
#[derive(Default, Debug)]
struct Model {
    dirs: Vec<String>,
    files: BTreeMap<String, Vec<u8>>,
}

fn dir_name(i: usize) -> String {
    format!("d{i}")
}

struct Harness {
    store: Arc<dyn BlobStore>,
    journal: std::path::PathBuf,
    gw: Arc<Gateway>,
}

fn config(journal: &std::path::Path) -> GatewayConfig {
    let mut w = WriteConfig::new(journal.to_path_buf());
    w.segment_bytes = 256 << 10;
    w.flush_delay = Duration::from_millis(5);
    w.part_size = 5 << 20;
    GatewayConfig {
        write: Some(w),
        ..GatewayConfig::default()
    }
}

impl Harness {
    fn open(store: Arc<dyn BlobStore>, journal: std::path::PathBuf) -> Self {
        let gw = Gateway::new(store.clone(), "mem", String::new(), config(&journal))
            .expect("gateway opens");
        Self { store, journal, gw }
    }

    async fn reopen(&mut self) {
        self.gw.abandon().await;
        // The old gateway (and its journal lock) must be gone before the new one opens.
        let placeholder = Gateway::new(
            Arc::new(ObjectStoreBlob::from_store(
                Arc::new(object_store::memory::InMemory::new()),
                "placeholder",
            )),
            "none",
            String::new(),
            GatewayConfig::default(),
        )
        .unwrap();
        drop(std::mem::replace(&mut self.gw, placeholder));
        // A blocking journal task of the abandoned flusher may still hold the journal briefly.
        let mut tries = 0;
        self.gw = loop {
            match Gateway::new(
                self.store.clone(),
                "mem",
                String::new(),
                config(&self.journal),
            ) {
                Ok(gw) => break gw,
                Err(e) if e.contains("in use") && tries < 500 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("gateway reopens after a restart: {e}"),
            }
        };
    }

    async fn dir_ino(&self, path: &str) -> u64 {
        let mut ino = ROOT_INO;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            ino = match self.gw.lookup(ino, part).await {
                Ok(a) => a.ino,
                Err(e) => {
                    let objects = bucket(&*self.store).await;
                    panic!(
                        "dir {part} of {path} not found ({e}); bucket {:?}; local {}",
                        objects.keys().collect::<Vec<_>>(),
                        self.gw.write_back().unwrap().with_state_debug()
                    );
                }
            };
        }
        ino
    }

    async fn file_ino(&self, path: &str) -> u64 {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let d = self.dir_ino(dir).await;
        let a = self.gw.lookup(d, name).await.expect("file exists");
        assert_eq!(a.kind, NodeKind::File);
        a.ino
    }

    async fn read_all(&self, path: &str) -> Vec<u8> {
        let ino = self.file_ino(path).await;
        common::read_all(&self.gw, ino).await
    }

    /// Every file under `dir` in the mount's view, recursively.
    async fn view(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut todo = vec![(ROOT_INO, String::new())];
        while let Some((ino, path)) = todo.pop() {
            let fh = self.gw.opendir(ino).await.expect("opendir");
            let listing = self.gw.dir_listing(fh).unwrap();
            self.gw.releasedir(fh);
            for e in &listing.entries {
                let p = if path.is_empty() {
                    e.name.clone()
                } else {
                    format!("{path}/{}", e.name)
                };
                match e.attr.kind {
                    NodeKind::Dir => todo.push((e.attr.ino, p)),
                    _ => {
                        let data = self.read_all(&p).await;
                        assert_eq!(data.len() as u64, e.attr.size, "listed size of {p}");
                        out.insert(p, data);
                    }
                }
            }
        }
        out
    }
}

/// Path -> (length, checksum): comparable without printing megabytes on a mismatch.
fn summary(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, (usize, u32)> {
    files
        .iter()
        .map(|(k, v)| {
            let sum = v
                .iter()
                .fold(17u32, |h, b| h.wrapping_mul(31).wrapping_add(*b as u32));
            (k.clone(), (v.len(), sum))
        })
        .collect()
}

/// Every object in the bucket (directory markers excluded), by key.
async fn bucket(store: &dyn BlobStore) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut prefixes = vec![String::new()];
    while let Some(p) = prefixes.pop() {
        let mut token = None;
        loop {
            let page = store.list(&p, token, None).await.unwrap();
            for o in page.objects {
                if o.key.ends_with('/') {
                    continue;
                }
                let data = collect_stream(store.get_range(&o.key, 0..o.size, None).await.unwrap())
                    .await
                    .unwrap();
                out.insert(o.key, data.to_vec());
            }
            prefixes.extend(page.prefixes);
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
    }
    out
}

async fn run(ops: Vec<Op>) {
    let tmp = tempfile::tempdir().unwrap();
    let store: Arc<dyn BlobStore> = Arc::new(S3LikeEtags::new());
    // Something that was in the bucket before the mount.
    store
        .put(
            "d1/pre.bin",
            bytes::Bytes::from(vec![7u8; 70_000]),
            Default::default(),
        )
        .await
        .unwrap();
    let mut model = Model::default();
    model.dirs.push("d1".into());
    model.files.insert("d1/pre.bin".into(), vec![7u8; 70_000]);
    let mut h = Harness::open(store.clone(), tmp.path().join("journal"));
    if std::env::var_os("CAIRN_MODEL_TRACE").is_some() {
        eprintln!("=== case");
    }
    for op in ops {
        let files: Vec<String> = model.files.keys().cloned().collect();
        if std::env::var_os("CAIRN_MODEL_TRACE").is_some() {
            eprintln!("op {op:?} files {files:?} dirs {:?}", model.dirs);
        }
        match op {
            Op::Create { dir, name } => {
                let d = if dir == 0 {
                    String::new()
                } else {
                    dir_name(dir)
                };
                if dir != 0 && !model.dirs.contains(&d) {
                    continue;
                }
                let path = if d.is_empty() {
                    format!("f{name}")
                } else {
                    format!("{d}/f{name}")
                };
                let parent = h.dir_ino(&d).await;
                let (_, opened) =
                    h.gw.create(parent, &format!("f{name}"), 0o644, false, true, None)
                        .await
                        .expect("create");
                h.gw.release(opened.fh);
                model.files.insert(path, Vec::new());
            }
            Op::Write {
                file,
                offset,
                len,
                byte,
            } => {
                let Some(path) = files.get(file % files.len().max(1)) else {
                    continue;
                };
                let ino = h.file_ino(path).await;
                let opened = h.gw.open(ino, true, false).await.expect("open for write");
                let data = vec![byte; len];
                h.gw.write(opened.fh, offset, &data).await.expect("write");
                h.gw.release(opened.fh);
                let f = model.files.get_mut(path).unwrap();
                let end = offset as usize + len;
                if f.len() < end {
                    f.resize(end, 0);
                }
                f[offset as usize..end].copy_from_slice(&data);
            }
            Op::Truncate { file, size } => {
                let Some(path) = files.get(file % files.len().max(1)) else {
                    continue;
                };
                let ino = h.file_ino(path).await;
                h.gw.setattr(ino, None, Some(size), None, (None, None), None, None)
                    .await
                    .expect("truncate");
                model.files.get_mut(path).unwrap().resize(size as usize, 0);
            }
            Op::Unlink { file } => {
                let Some(path) = files.get(file % files.len().max(1)) else {
                    continue;
                };
                let (d, name) = path.rsplit_once('/').unwrap_or(("", path));
                let parent = h.dir_ino(d).await;
                h.gw.unlink(parent, name).await.expect("unlink");
                model.files.remove(path);
            }
            Op::Rename { file, dir, name } => {
                let Some(path) = files.get(file % files.len().max(1)) else {
                    continue;
                };
                let d = if dir == 0 {
                    String::new()
                } else {
                    dir_name(dir)
                };
                if dir != 0 && !model.dirs.contains(&d) {
                    continue;
                }
                let to = if d.is_empty() {
                    format!("g{name}")
                } else {
                    format!("{d}/g{name}")
                };
                let (sd, sname) = path.rsplit_once('/').unwrap_or(("", path));
                let sp = h.dir_ino(sd).await;
                let dp = h.dir_ino(&d).await;
                h.gw.rename(sp, sname, dp, &format!("g{name}"), false)
                    .await
                    .expect("rename");
                let data = model.files.remove(path).unwrap();
                model.files.insert(to, data);
            }
            Op::Mkdir { dir } => {
                let d = dir_name(dir);
                if model.dirs.contains(&d) {
                    continue;
                }
                h.gw.mkdir(ROOT_INO, &d, 0o755, None).await.expect("mkdir");
                model.dirs.push(d);
            }
            Op::RenameDir { from, to } => {
                let (f, t) = (dir_name(from), dir_name(to));
                if f == t || !model.dirs.contains(&f) || model.dirs.contains(&t) {
                    continue;
                }
                h.gw.rename(ROOT_INO, &f, ROOT_INO, &t, false)
                    .await
                    .expect("rename dir");
                model.dirs.retain(|d| d != &f);
                model.dirs.push(t.clone());
                let moved: Vec<String> = model
                    .files
                    .keys()
                    .filter(|p| p.starts_with(&format!("{f}/")))
                    .cloned()
                    .collect();
                for p in moved {
                    let data = model.files.remove(&p).unwrap();
                    model
                        .files
                        .insert(format!("{t}/{}", &p[f.len() + 1..]), data);
                }
            }
            Op::Flush => {
                h.gw.write_back()
                    .unwrap()
                    .flush_all(Duration::from_secs(30), |_, _| {})
                    .await
                    .expect("flush");
            }
            Op::Crash => {
                h.gw.sync().await.expect("sync");
                h.reopen().await;
                assert_eq!(
                    summary(&h.view().await),
                    summary(&model.files),
                    "view after an abandoned restart"
                );
            }
            Op::Restart => {
                h.gw.shutdown(Duration::from_secs(30)).await.expect("drain");
                h.reopen().await;
                assert_eq!(
                    summary(&h.view().await),
                    summary(&model.files),
                    "view after a clean restart"
                );
            }
        }
    }
    let view = h.view().await;
    if view != model.files {
        eprintln!(
            "bucket now: {:?}",
            bucket(&*store).await.keys().collect::<Vec<_>>()
        );
        let st = h.gw.write_back().unwrap().with_state_debug();
        eprintln!("state: {st}");
    }
    assert_eq!(summary(&view), summary(&model.files), "view at the end");
    h.gw.shutdown(Duration::from_secs(60))
        .await
        .expect("final drain");
    assert_eq!(
        summary(&bucket(&*store).await),
        summary(&model.files),
        "bucket after the drain"
    );
    let (pending, _) = h.gw.write_back().unwrap().pending();
    assert_eq!(pending, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn bucket_and_view_match_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run(ops));
    }
}

#[test]
fn errors_are_posix_like() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let store: Arc<dyn BlobStore> = Arc::new(ObjectStoreBlob::from_store(
            Arc::new(object_store::memory::InMemory::new()),
            "memory",
        ));
        let h = Harness::open(store, tmp.path().join("journal"));
        let gw = &h.gw;
        let d = gw.mkdir(ROOT_INO, "d", 0o755, None).await.unwrap();
        assert!(matches!(
            gw.mkdir(ROOT_INO, "d", 0o755, None).await,
            Err(FsError::Exists)
        ));
        let (_, o) = gw
            .create(d.ino, "x", 0o600, true, false, None)
            .await
            .unwrap();
        gw.release(o.fh);
        assert!(matches!(
            gw.create(d.ino, "x", 0o600, true, false, None).await,
            Err(FsError::Exists)
        ));
        assert!(matches!(
            gw.rmdir(ROOT_INO, "d").await,
            Err(FsError::NotEmpty)
        ));
        assert!(matches!(
            gw.unlink(ROOT_INO, "d").await,
            Err(FsError::IsDir)
        ));
        assert!(matches!(gw.rmdir(d.ino, "x").await, Err(FsError::NotDir)));
        assert!(matches!(
            gw.rename(ROOT_INO, "d", d.ino, "inside", false).await,
            Err(FsError::Invalid(_))
        ));
        let (y, o) = gw
            .create(ROOT_INO, "y", 0o640, true, false, None)
            .await
            .unwrap();
        assert_eq!(y.perm, Some(0o640));
        gw.release(o.fh);
        assert!(matches!(
            gw.rename(ROOT_INO, "y", d.ino, "x", true).await,
            Err(FsError::Exists)
        ));
        assert!(matches!(
            gw.rename(ROOT_INO, "y", ROOT_INO, "d", false).await,
            Err(FsError::IsDir)
        ));
        gw.unlink(d.ino, "x").await.unwrap();
        gw.rmdir(ROOT_INO, "d").await.unwrap();
        assert!(matches!(
            gw.lookup(ROOT_INO, "d").await,
            Err(FsError::NotFound)
        ));
        assert_eq!(gw.lookup(ROOT_INO, "y").await.unwrap().kind, NodeKind::File);
        gw.shutdown(Duration::from_secs(10)).await.unwrap();
    });
}

#[test]
#[ignore]
fn debug_case() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(vec![
        Op::Write {
            file: 1,
            offset: 147218,
            len: 126662,
            byte: 79,
        },
        Op::Flush,
        Op::Create { dir: 1, name: 4 },
        Op::Crash,
        Op::Rename {
            file: 5,
            dir: 1,
            name: 0,
        },
        Op::Create { dir: 0, name: 2 },
        Op::Truncate {
            file: 1,
            size: 333838,
        },
        Op::RenameDir { from: 1, to: 2 },
        Op::Write {
            file: 7,
            offset: 159716,
            len: 88594,
            byte: 125,
        },
        Op::Crash,
    ]));
}
