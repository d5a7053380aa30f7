//! The write path on a real mount against a real S3 server (moto), checked with an independent
//! client (boto3): POSIX writes land as plain objects, a kill -9 never loses an fsynced byte,
//! uploads wait out an unreachable store, a changed object is never silently overwritten, and
//! a full journal disk gives ENOSPC without corrupting anything.
//!
//! The crash test runs `CAIRN_CRASH_CYCLES` cycles (default 4; the long variant in
//! docs/BENCHMARKS.md uses 200); `CAIRN_CRASH_DIRECT_IO=0` mounts with `journal_direct_io = false`
//! (the default, direct-I/O records on, otherwise).

mod common;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    cairn_bin, pseudo_random_bytes, run_with_deadline, sha256_bytes, Mount, MountSpec, S3Server,
    SplitMix64, TempDir,
};

fn cairn(args: &[&str], mnt: &Path) -> std::process::Output {
    run_with_deadline(
        Command::new(cairn_bin()).args(args).arg(mnt),
        Duration::from_secs(120),
    )
}

fn flush(mnt: &Path) {
    let out = cairn(&["flush"], mnt);
    assert!(
        out.status.success(),
        "cairn flush failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

use common::metric;

fn mount(server: &S3Server, cache: &Path, extra: &[&str]) -> Mount {
    MountSpec::s3(server)
        .args(&[
            "--cache-dir",
            cache.to_str().unwrap(),
            "--drain-timeout",
            "30s",
        ])
        .args(extra)
        .start()
}

fn expect_bucket(server: &S3Server, expected: &BTreeMap<String, Vec<u8>>) {
    let got = server.hashes("");
    let want: BTreeMap<String, (u64, String)> = expected
        .iter()
        .map(|(k, v)| (k.clone(), (v.len() as u64, sha256_bytes(v))))
        .collect();
    assert_eq!(got, want, "bucket (read back with boto3) differs");
}

#[test]
fn posix_writes_become_plain_objects() {
    let server = S3Server::start();
    server.put("data/old.bin", &pseudo_random_bytes(1, 300_000));
    server.put("data/sub/keep.txt", b"keep");
    server.put("edit.txt", b"0123456789");
    let cache = TempDir::new("w-basic");
    let m = mount(&server, cache.path(), &["--flush-delay", "60s"]);
    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();

    // A new 20 MiB file (multipart: parts of 16 MiB), written with cp-like 1 MiB writes.
    let big = pseudo_random_bytes(2, 20 << 20);
    fs::write(m.join("big.bin"), &big).unwrap();
    expected.insert("big.bin".into(), big.clone());
    // Read-your-writes before any upload.
    assert_eq!(fs::read(m.join("big.bin")).unwrap(), big);
    assert_eq!(
        fs::metadata(m.join("big.bin")).unwrap().len(),
        big.len() as u64
    );
    assert!(
        server.head("big.bin").is_none(),
        "uploaded before its quiet period"
    );

    // Random writes into an existing object (copied in first), a sparse extension, append.
    {
        let f = OpenOptions::new()
            .write(true)
            .open(m.join("edit.txt"))
            .unwrap();
        f.write_at(b"AB", 3).unwrap();
        f.write_at(b"Z", 15).unwrap();
        f.sync_all().unwrap();
    }
    {
        let mut f = OpenOptions::new()
            .append(true)
            .open(m.join("edit.txt"))
            .unwrap();
        f.write_all(b"tail").unwrap();
    }
    let edit = b"012AB56789\0\0\0\0\0Ztail".to_vec();
    assert_eq!(fs::read(m.join("edit.txt")).unwrap(), edit);
    expected.insert("edit.txt".into(), edit);

    // Truncate an existing object down, and a new file up.
    let old = pseudo_random_bytes(1, 300_000);
    {
        let f = OpenOptions::new()
            .write(true)
            .open(m.join("data/old.bin"))
            .unwrap();
        f.set_len(1000).unwrap();
    }
    expected.insert("data/old.bin".into(), old[..1000].to_vec());
    {
        let f = File::create(m.join("sparse.bin")).unwrap();
        f.set_len(70_000).unwrap();
        f.write_at(b"x", 69_999).unwrap();
    }
    let mut sparse = vec![0u8; 70_000];
    sparse[69_999] = b'x';
    expected.insert("sparse.bin".into(), sparse);

    // Directories: mkdir, nested files, rmdir of an empty one, rmdir of a non-empty one fails.
    fs::create_dir(m.join("newdir")).unwrap();
    fs::write(m.join("newdir/a.txt"), b"a").unwrap();
    fs::create_dir(m.join("gone")).unwrap();
    fs::remove_dir(m.join("gone")).unwrap();
    let e = fs::remove_dir(m.join("newdir")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY));

    // Renames: a local file, a bucket object, a directory with bucket objects in it.
    fs::rename(m.join("newdir/a.txt"), m.join("newdir/b.txt")).unwrap();
    expected.insert("newdir/b.txt".into(), b"a".to_vec());
    fs::rename(m.join("data/sub/keep.txt"), m.join("kept.txt")).unwrap();
    expected.insert("kept.txt".into(), b"keep".to_vec());
    fs::rename(m.join("data"), m.join("moved")).unwrap();
    let moved = expected.remove("data/old.bin").unwrap();
    expected.insert("moved/old.bin".into(), moved);
    assert!(!m.join("data").exists());
    assert_eq!(fs::read(m.join("moved/old.bin")).unwrap().len(), 1000);

    // Unlink.
    fs::write(m.join("tmp.txt"), b"temporary").unwrap();
    fs::remove_file(m.join("tmp.txt")).unwrap();
    assert!(!m.join("tmp.txt").exists());

    // Every name the mount shows is what we expect, before the upload.
    let mut names: Vec<String> = common::walk(m.path())
        .into_iter()
        .filter(|(kind, _, _)| kind == "f")
        .map(|(_, p, _)| p)
        .collect();
    names.sort();
    assert_eq!(names, expected.keys().cloned().collect::<Vec<_>>());

    flush(m.path());
    let mut in_bucket = expected.clone();
    // The new directory's marker and the emptied directory's marker are plain empty objects.
    in_bucket.insert("newdir/".into(), Vec::new());
    in_bucket.insert("moved/sub/".into(), Vec::new());
    expect_bucket(&server, &in_bucket);
    assert!(metric(m.path(), "cairn_write_uploads_total ") >= 5.0);
    assert_eq!(metric(m.path(), "cairn_write_dirty_bytes "), 0.0);
    let stopped = m.unmount();
    assert_eq!(stopped.status.map(|s| s.success()), Some(true));

    // A fresh mount (empty caches) reads everything back.
    let cache2 = TempDir::new("w-basic2");
    let m2 = mount(&server, cache2.path(), &[]);
    for (k, v) in &expected {
        assert_eq!(&fs::read(m2.join(k)).unwrap(), v, "{k} after remount");
    }
}

/// What the test knows is durable: file name -> bytes, as of the last fsync.
type Model = BTreeMap<String, Vec<u8>>;

fn fsync_dir(dir: &Path) {
    File::open(dir).unwrap().sync_all().unwrap();
}

/// One random durable operation on the mount, applied to the model once it is synced.
fn random_op(rng: &mut SplitMix64, mnt: &Path, model: &mut Model, counter: &mut u64) {
    let names: Vec<String> = model.keys().cloned().collect();
    let pick = |rng: &mut SplitMix64| names[rng.below(names.len() as u64) as usize].clone();
    match rng.below(10) {
        0..=2 => {
            *counter += 1;
            let name = format!("f{counter}.bin");
            let len = match rng.below(8) {
                0 => 3 << 20,
                1 => 0,
                _ => rng.below(300_000) as usize,
            };
            let data = pseudo_random_bytes(rng.next_u64(), len);
            let mut f = File::create(mnt.join(&name)).unwrap();
            f.write_all(&data).unwrap();
            f.sync_all().unwrap();
            model.insert(name, data);
        }
        3 | 4 if !names.is_empty() => {
            let name = pick(rng);
            let cur = model.get_mut(&name).unwrap();
            let off = rng.below(cur.len() as u64 + 50_000) as usize;
            let data = pseudo_random_bytes(rng.next_u64(), rng.below(100_000) as usize + 1);
            let f = OpenOptions::new()
                .write(true)
                .open(mnt.join(&name))
                .unwrap();
            f.write_all_at(&data, off as u64).unwrap();
            f.sync_data().unwrap();
            if cur.len() < off + data.len() {
                cur.resize(off + data.len(), 0);
            }
            cur[off..off + data.len()].copy_from_slice(&data);
        }
        5 if !names.is_empty() => {
            let name = pick(rng);
            let data = pseudo_random_bytes(rng.next_u64(), rng.below(60_000) as usize + 1);
            let mut f = OpenOptions::new()
                .append(true)
                .open(mnt.join(&name))
                .unwrap();
            f.write_all(&data).unwrap();
            f.sync_all().unwrap();
            model.get_mut(&name).unwrap().extend_from_slice(&data);
        }
        6 if !names.is_empty() => {
            let name = pick(rng);
            *counter += 1;
            let to = format!("r{counter}.bin");
            fs::rename(mnt.join(&name), mnt.join(&to)).unwrap();
            fsync_dir(mnt);
            let data = model.remove(&name).unwrap();
            model.insert(to, data);
        }
        7 if !names.is_empty() => {
            let name = pick(rng);
            let len = rng.below(model[&name].len() as u64 + 1);
            let f = OpenOptions::new()
                .write(true)
                .open(mnt.join(&name))
                .unwrap();
            f.set_len(len).unwrap();
            f.sync_all().unwrap();
            model.get_mut(&name).unwrap().resize(len as usize, 0);
        }
        8 if names.len() > 3 => {
            let name = pick(rng);
            fs::remove_file(mnt.join(&name)).unwrap();
            fsync_dir(mnt);
            model.remove(&name);
        }
        _ => {
            // Overwrite a whole file in place (O_TRUNC), like a checkpoint rewrite.
            if names.is_empty() {
                return;
            }
            let name = pick(rng);
            let data = pseudo_random_bytes(rng.next_u64(), rng.below(200_000) as usize);
            let mut f = File::create(mnt.join(&name)).unwrap();
            f.write_all(&data).unwrap();
            f.sync_all().unwrap();
            model.insert(name, data);
        }
    }
}

/// Bytes written to scratch files without fsync: byte i of scratch file n is `scratch_byte(n, i)`.
fn scratch_byte(n: u64, i: usize) -> u8 {
    (i as u64).wrapping_mul(31).wrapping_add(n * 7) as u8
}

/// Checks the mount's files: every model file exact; scratch files (never synced) may be
/// missing or short but never hold a byte that was not written.
fn check_view(mnt: &Path, model: &Model, when: &str) {
    let mut seen = BTreeMap::new();
    for e in fs::read_dir(mnt).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if let Some(n) = name
            .strip_prefix("scratch")
            .and_then(|s| s.strip_suffix(".bin"))
        {
            let n: u64 = n.parse().unwrap();
            let data = fs::read(e.path())
                .unwrap_or_else(|err| panic!("{when}: {name} is listed but cannot be read: {err}"));
            for (i, b) in data.iter().enumerate() {
                assert!(
                    *b == scratch_byte(n, i) || *b == 0,
                    "{when}: scratch file {name} holds byte {b} at {i} that was never written"
                );
            }
            continue;
        }
        let data = fs::read(e.path())
            .unwrap_or_else(|err| panic!("{when}: {name} is listed but cannot be read: {err}"));
        seen.insert(name, data);
    }
    let summary = |m: &Model| -> BTreeMap<String, (usize, String)> {
        m.iter()
            .map(|(k, v)| (k.clone(), (v.len(), sha256_bytes(v))))
            .collect()
    };
    assert_eq!(
        summary(&seen),
        summary(model),
        "{when}: mount view differs from the fsynced model"
    );
}

#[test]
fn kill_9_never_loses_an_fsynced_byte() {
    let cycles: u64 = std::env::var("CAIRN_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let seed: u64 = std::env::var("CAIRN_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let server = S3Server::start();
    let cache = TempDir::new("w-crash");
    let direct = std::env::var("CAIRN_CRASH_DIRECT_IO").as_deref() != Ok("0");
    let conf_dir = TempDir::new("w-crash-conf");
    let config = conf_dir.join("cairn.toml");
    fs::write(&config, format!("journal_direct_io = {direct}\n")).unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    let args = ["--flush-delay", "100ms", "--config", config_arg.as_str()];
    eprintln!("crash test: seed {seed}, journal_direct_io = {direct}");
    let mut rng = SplitMix64::new(seed);
    let mut model = Model::new();
    let mut counter = 0u64;
    let mut bytes_synced = 0u64;
    let started = Instant::now();
    for cycle in 0..cycles {
        // Short quiet period: uploads run while we write, so the kill also interrupts them.
        let mut m = mount(&server, cache.path(), &args);
        check_view(m.path(), &model, &format!("cycle {cycle} start"));
        let ops = 5 + rng.below(25);
        for _ in 0..ops {
            random_op(&mut rng, m.path(), &mut model, &mut counter);
        }
        bytes_synced += model.values().map(|v| v.len() as u64).sum::<u64>();
        // Unsynced writes in flight when the daemon dies.
        let stop = Arc::new(AtomicBool::new(false));
        let scratch_n = cycle;
        let path = m.join(format!("scratch{scratch_n}.bin"));
        let writer = {
            let stop = stop.clone();
            thread::spawn(move || {
                let Ok(mut f) = File::create(&path) else {
                    return;
                };
                let mut at = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let chunk: Vec<u8> = (at..at + 65536)
                        .map(|i| scratch_byte(scratch_n, i))
                        .collect();
                    if f.write_all(&chunk).is_err() {
                        return;
                    }
                    at += chunk.len();
                }
            })
        };
        thread::sleep(Duration::from_millis(rng.below(300)));
        let pid = m.pid().unwrap() as i32;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        stop.store(true, Ordering::Relaxed);
        let _ = m.still_running();
        writer.join().unwrap();
        drop(m);
    }
    // Restart once more, drain, and check the bucket with an independent client.
    let m = mount(&server, cache.path(), &args);
    check_view(m.path(), &model, "after the last restart");
    flush(m.path());
    let got = server.hashes("");
    for (k, v) in &model {
        assert_eq!(
            got.get(k),
            Some(&(v.len() as u64, sha256_bytes(v))),
            "{k} in the bucket"
        );
    }
    for k in got.keys() {
        assert!(
            model.contains_key(k) || k.starts_with("scratch"),
            "{k} is in the bucket but was never written (or was deleted)"
        );
    }
    eprintln!(
        "crash test: {cycles} cycles (seed {seed}), {} files, {bytes_synced} fsynced bytes checked, 0 lost, {:.0} s",
        model.len(),
        started.elapsed().as_secs_f64()
    );
}

/// A TCP forwarder that can go down (closing every connection) and come back on the same port:
/// the object store becoming unreachable and reachable again.
struct Proxy {
    port: u16,
    target: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    listener: Option<thread::JoinHandle<()>>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        let port = common::free_port();
        let mut p = Proxy {
            port,
            target,
            up: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            listener: None,
        };
        p.set_up(true);
        p
    }

    fn set_up(&mut self, up: bool) {
        if up == self.up.load(Ordering::SeqCst) {
            return;
        }
        self.up.store(up, Ordering::SeqCst);
        if !up {
            // Wake the accept loop so it drops the listener, then cut every connection.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            if let Some(t) = self.listener.take() {
                t.join().unwrap();
            }
            for c in self.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
            return;
        }
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("proxy port");
        let (up, conns, target) = (self.up.clone(), self.conns.clone(), self.target);
        self.listener = Some(thread::spawn(move || {
            for s in listener.incoming() {
                if !up.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = s else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut g = conns.lock().unwrap();
                g.push(client.try_clone().unwrap());
                g.push(server.try_clone().unwrap());
                drop(g);
                for (mut a, mut b) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    thread::spawn(move || {
                        let mut buf = [0u8; 65536];
                        loop {
                            match a.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if b.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = b.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        }));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.set_up(false);
    }
}

#[test]
fn uploads_wait_for_an_unreachable_store_and_lose_nothing() {
    let server = S3Server::start();
    let mut proxy = Proxy::start(server.port());
    let cache = TempDir::new("w-outage");
    let m = MountSpec::s3(&server)
        .args(&[
            "--endpoint-url",
            &format!("http://127.0.0.1:{}", proxy.port),
            "--cache-dir",
            cache.path().to_str().unwrap(),
            "--flush-delay",
            "100ms",
            "--drain-timeout",
            "30s",
        ])
        .start();
    let mut expected = BTreeMap::new();
    let first = pseudo_random_bytes(10, 2 << 20);
    fs::write(m.join("before.bin"), &first).unwrap();
    flush(m.path());
    expected.insert("before.bin".to_string(), first);
    // The mount has seen the directory: while the store is down it answers from that.
    assert!(m.join("before.bin").exists());
    let _ = fs::read_dir(m.path()).unwrap().count();

    proxy.set_up(false);
    // Writes keep working while the store is gone: they land in the journal.
    for i in 0..5 {
        let data = pseudo_random_bytes(20 + i, 700_000);
        let mut f = File::create(m.join(format!("during{i}.bin"))).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
        expected.insert(format!("during{i}.bin"), data);
    }
    let out = cairn(&["flush", "--timeout", "3s"], m.path());
    assert!(
        !out.status.success(),
        "flush cannot finish while the store is down"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pending"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(metric(m.path(), "cairn_write_pending_items ") >= 5.0);

    // Files written during the outage can be changed again.
    {
        let f = OpenOptions::new()
            .write(true)
            .open(m.join("during0.bin"))
            .unwrap();
        f.write_all_at(b"changed during the outage", 0).unwrap();
        f.sync_all().unwrap();
        expected.get_mut("during0.bin").unwrap()[..25]
            .copy_from_slice(b"changed during the outage");
    }
    proxy.set_up(true);
    flush(m.path());
    expect_bucket(&server, &expected);
    assert_eq!(metric(m.path(), "cairn_write_pending_items "), 0.0);
}

#[test]
fn a_changed_object_is_kept_and_the_local_version_goes_to_a_conflict_name() {
    let server = S3Server::start();
    server.put("shared.txt", b"version 1\n");
    let cache = TempDir::new("w-conflict");
    let m = mount(&server, cache.path(), &["--flush-delay", "60s"]);
    {
        let mut f = OpenOptions::new()
            .append(true)
            .open(m.join("shared.txt"))
            .unwrap();
        f.write_all(b"local line\n").unwrap();
        f.sync_all().unwrap();
    }
    // Someone else replaces the object before our upload.
    server.put("shared.txt", b"version 2 from another writer\n");
    flush(m.path());
    let got = server.hashes("");
    assert_eq!(
        got.get("shared.txt"),
        Some(&(30, sha256_bytes(b"version 2 from another writer\n"))),
        "the other writer's version must stay"
    );
    let local = b"version 1\nlocal line\n";
    let conflict: Vec<&String> = got
        .keys()
        .filter(|k| k.starts_with("shared.txt.cairn-conflict-"))
        .collect();
    assert_eq!(conflict.len(), 1, "one conflict copy: {got:?}");
    assert_eq!(got[conflict[0]], (local.len() as u64, sha256_bytes(local)));
    assert_eq!(metric(m.path(), "cairn_write_conflicts_total "), 1.0);
    let log_says = (0..50).any(|_| {
        let found = m
            .log()
            .contains("changed in the bucket since this mount read it");
        if !found {
            thread::sleep(Duration::from_millis(100));
        }
        found
    });
    assert!(log_says, "no conflict log line:\n{}", m.log());
}

/// A tmpfs of `mib` MiB mounted at a fresh directory, unmounted on drop.
struct SmallDisk {
    dir: TempDir,
    path: PathBuf,
}

impl SmallDisk {
    fn new(mib: u64) -> SmallDisk {
        let dir = TempDir::new("w-smalldisk");
        let path = dir.join("fs");
        fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir, path }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        let _ = &self.dir;
    }
}

#[test]
fn a_full_journal_disk_gives_enospc_and_corrupts_nothing() {
    let server = S3Server::start();
    let disk = SmallDisk::new(24);
    let m = mount(&server, &disk.path, &["--flush-delay", "60s"]);
    let good = pseudo_random_bytes(30, 1 << 20);
    {
        let mut f = File::create(m.join("good.bin")).unwrap();
        f.write_all(&good).unwrap();
        f.sync_all().unwrap();
    }
    let err = {
        let mut f = File::create(m.join("huge.bin")).unwrap();
        let chunk = vec![7u8; 1 << 20];
        let mut err = None;
        for _ in 0..64 {
            if let Err(e) = f.write_all(&chunk) {
                err = Some(e);
                break;
            }
        }
        if err.is_none() {
            err = f.sync_all().err();
        }
        err.expect("64 MiB cannot fit a 24 MiB journal disk")
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    // The mount is alive, the synced file intact; removing the big file and flushing works.
    assert_eq!(fs::read(m.join("good.bin")).unwrap(), good);
    fs::remove_file(m.join("huge.bin")).unwrap();
    flush(m.path());
    let mut expected = BTreeMap::new();
    expected.insert("good.bin".to_string(), good);
    expect_bucket(&server, &expected);
}
