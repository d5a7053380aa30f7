//! A cache disk that fills up or turns read-only degrades the disk tier (L2) instead of failing
//! reads: on a real mount against a real S3 server (moto), with the cache directory on a small
//! tmpfs, every byte read through the mount stays correct, the tier reports itself degraded
//! (`cairn_cache_l2_degraded 1`, the "L2 is DEGRADED" line of `cairn stats`), the daemon logs a
//! warning, and the mount stays up.
//!
//! Needs root (to mount tmpfs); skipped with a message when `mount -t tmpfs` is refused.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{sha256_bytes, Mount, MountSpec, S3Server, TempDir};

const MIB: usize = 1 << 20;

/// Size of the tmpfs holding the cache directory in the full-disk test.
const TMPFS_MIB: usize = 24;
/// Objects read in the full-disk test (3 x 16 MiB: twice the tmpfs).
const FULL_OBJECTS: usize = 3;
const OBJECT_MIB: usize = 16;

/// A tmpfs mounted on a fresh temp dir. Dropping it lazily unmounts it (as many times as needed:
/// the read-only test may stack a read-only bind mount on it), then removes the dir. Declare it
/// before the [`Mount`] that uses it, so the cairn mount goes first.
struct Tmpfs {
    path: PathBuf,
    _dir: TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_mib` MiB, or returns why it could not (not root, no permission).
    fn mount(tag: &str, size_mib: usize) -> Result<Tmpfs, String> {
        let dir = TempDir::new(tag);
        let path = dir.join("fs");
        fs::create_dir(&path).expect("create tmpfs mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m,mode=0755")])
            .arg("tmpfs")
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() || !common::is_mounted(&path) {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { path, _dir: dir })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the file system read-only for every new open. `mount -o remount,ro` is refused
    /// (EBUSY) while a file on it is open for writing, which cairn's RocksDB index always has;
    /// then a read-only bind mount of the tmpfs on top of itself does the same for every path
    /// lookup (so new block files cannot be created), which is what cairn sees.
    fn make_read_only(&self) {
        let p = self.path.to_str().unwrap();
        if run(&["mount", "-o", "remount,ro", p]) {
            eprintln!("[test] {p}: remounted read-only");
        } else {
            assert!(run(&["mount", "--bind", p, p]), "mount --bind {p} {p}");
            assert!(
                run(&["mount", "-o", "remount,bind,ro", p]),
                "mount -o remount,bind,ro {p}"
            );
            eprintln!("[test] {p}: busy, so covered by a read-only bind mount of itself");
        }
        let probe = self.path.join("probe");
        let err = fs::write(&probe, b"x").expect_err("the cache disk must now be read-only");
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        for _ in 0..5 {
            if !common::is_mounted(&self.path) {
                break;
            }
            let p = self.path.to_str().unwrap();
            if !run(&["umount", "-l", p]) {
                eprintln!("[test] umount -l {p} failed");
                break;
            }
        }
        // `_dir` (the TempDir) is removed after this, and refuses to if a mount is left.
    }
}

fn run(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Mounts a tmpfs or prints why the test is skipped.
macro_rules! tmpfs_or_skip {
    ($tag:expr, $mib:expr) => {
        match Tmpfs::mount($tag, $mib) {
            Ok(t) => t,
            Err(why) => {
                eprintln!("SKIPPED: this test needs to mount a tmpfs (run as root): {why}");
                return;
            }
        }
    };
}

fn drop_page_cache() {
    // Makes the next read reach the daemon instead of the kernel's page cache.
    fs::write("/proc/sys/vm/drop_caches", "3").expect("drop the page cache (needs root)");
}

fn metric(mnt: &Path, series: &str) -> u64 {
    common::metric(mnt, series) as u64
}

fn degraded(mnt: &Path) -> u64 {
    metric(mnt, "cairn_cache_l2_degraded ")
}

/// Waits (up to 20 s) for the disk tier to report itself degraded. The tier retries writes 30 s
/// after it degraded, so the check must come soon after the failing write.
fn wait_degraded(m: &Mount) {
    let start = Instant::now();
    while degraded(m.path()) != 1 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        degraded(m.path()),
        1,
        "cairn_cache_l2_degraded must be 1; log:\n{}",
        m.log()
    );
}

/// Reads `rel` through the mount and checks every byte.
fn check_file(m: &Mount, rel: &str, want: &[u8]) {
    let path = m.join(rel);
    let got = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!(got.len(), want.len(), "{rel}: length");
    assert!(
        got == want,
        "{rel}: bytes differ (sha256 {} != {})",
        sha256_bytes(&got),
        sha256_bytes(want)
    );
}

/// The degraded state as a user sees it: metric, `cairn stats`, a warning in the log, and the
/// skipped admissions.
fn assert_degraded_everywhere(m: &Mount, why: &str) {
    wait_degraded(m);
    let stats = common::cairn_ok(&["stats"], m.path());
    assert!(
        stats.contains("L2 is DEGRADED"),
        "`cairn stats` must show the degraded disk tier:\n{stats}"
    );
    let log = m.log();
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("disk cache is degraded"));
    let warning = warning.unwrap_or_else(|| panic!("no degraded warning in the log:\n{log}"));
    assert!(
        warning.contains(why),
        "the warning should say why ({why:?}): {warning}"
    );
    assert!(
        metric(
            m.path(),
            "cairn_cache_admissions_skipped_total{tier=\"l2\"}"
        ) > 0,
        "blocks must be skipped while degraded"
    );
}

fn write_config(dir: &TempDir) -> String {
    let cfg = dir.join("cairn.toml");
    fs::write(
        &cfg,
        // Budget far above the tmpfs, no free-space floor: the disk fills before the budget
        // does. A small RAM tier, so re-reads go past it. Read-only: no write journal.
        "read_only = true\n\
         l2_cache_size = \"1GiB\"\n\
         l2_min_free = \"0\"\n\
         l1_cache_size = \"8MiB\"\n",
    )
    .unwrap();
    cfg.to_str().unwrap().to_string()
}

#[test]
fn full_cache_disk_degrades_to_ram_and_reads_stay_correct() {
    let conf = TempDir::new("degrade-full-conf");
    let server = S3Server::start();
    let objects: Vec<(String, Vec<u8>)> = (0..FULL_OBJECTS)
        .map(|i| {
            (
                format!("full/obj{i}.bin"),
                common::pseudo_random_bytes(700 + i as u64, OBJECT_MIB * MIB + 4321 * i),
            )
        })
        .collect();
    for (k, v) in &objects {
        server.put(k, v);
    }
    // Declared before the mount: dropped (unmounted) after it, also on a failed assertion.
    let disk = tmpfs_or_skip!("degrade-full", TMPFS_MIB);
    let cache_dir = disk.path().join("cache");
    let cfg = write_config(&conf);
    let mut m = MountSpec::s3(&server)
        .args(&["--cache-dir", cache_dir.to_str().unwrap(), "--config", &cfg])
        .start();
    assert_eq!(degraded(m.path()), 0, "a fresh disk tier is healthy");

    for (k, v) in &objects {
        check_file(&m, k, v);
    }
    assert_degraded_everywhere(&m, "No space left on device");
    // The disk really is full, and the tier holds only what fit.
    let free = free_bytes(disk.path());
    assert!(
        free < 2 * MIB as u64,
        "tmpfs should be full, {free} bytes free"
    );
    let used = metric(m.path(), "cairn_cache_size_bytes{tier=\"l2\"}");
    assert!(
        used > 0 && used <= (TMPFS_MIB * MIB) as u64,
        "L2 holds {used} bytes"
    );

    // Reads keep working, from RAM, what the disk holds, and the bucket.
    drop_page_cache();
    let l2_hits = metric(m.path(), "cairn_cache_hits_total{tier=\"l2\"}");
    for (k, v) in &objects {
        check_file(&m, k, v);
    }
    assert!(
        metric(m.path(), "cairn_cache_hits_total{tier=\"l2\"}") > l2_hits,
        "the blocks already on the full disk are still served"
    );
    drop_page_cache();
    for (k, v) in objects.iter().rev() {
        check_file(&m, k, v);
    }
    m.assert_alive();
    let stopped = m.unmount();
    assert!(stopped.unmounted, "cairn left the mount behind");
    assert!(
        stopped.status.is_some_and(|s| s.success()),
        "cairn did not exit cleanly ({:?}):\n{}",
        stopped.status,
        stopped.stderr
    );
    drop(disk);
}

#[test]
fn read_only_cache_disk_degrades_to_ram_and_reads_stay_correct() {
    let conf = TempDir::new("degrade-ro-conf");
    let server = S3Server::start();
    let before = common::pseudo_random_bytes(801, 8 * MIB + 17);
    let after: Vec<(String, Vec<u8>)> = (0..2)
        .map(|i| {
            (
                format!("ro/new{i}.bin"),
                common::pseudo_random_bytes(810 + i as u64, 12 * MIB + 999 * i),
            )
        })
        .collect();
    server.put("ro/before.bin", &before);
    for (k, v) in &after {
        server.put(k, v);
    }
    let disk = tmpfs_or_skip!("degrade-ro", 64);
    let cache_dir = disk.path().join("cache");
    let cfg = write_config(&conf);
    let mut m = MountSpec::s3(&server)
        .args(&["--cache-dir", cache_dir.to_str().unwrap(), "--config", &cfg])
        .start();

    // While the disk is writable, the tier fills and stays healthy.
    check_file(&m, "ro/before.bin", &before);
    let start = Instant::now();
    while metric(m.path(), "cairn_cache_size_bytes{tier=\"l2\"}") < before.len() as u64
        && start.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        metric(m.path(), "cairn_cache_size_bytes{tier=\"l2\"}") >= before.len() as u64,
        "the disk tier did not fill while writable"
    );
    assert_eq!(degraded(m.path()), 0, "healthy while the disk is writable");

    disk.make_read_only();
    for (k, v) in &after {
        check_file(&m, k, v);
    }
    assert_degraded_everywhere(&m, "Read-only file system");

    drop_page_cache();
    let l2_hits = metric(m.path(), "cairn_cache_hits_total{tier=\"l2\"}");
    check_file(&m, "ro/before.bin", &before);
    assert!(
        metric(m.path(), "cairn_cache_hits_total{tier=\"l2\"}") > l2_hits,
        "blocks on the read-only disk are still served"
    );
    for (k, v) in &after {
        check_file(&m, k, v);
    }
    m.assert_alive();
    let stopped = m.unmount();
    assert!(stopped.unmounted, "cairn left the mount behind");
    assert!(
        stopped.status.is_some_and(|s| s.success()),
        "cairn did not exit cleanly ({:?}):\n{}",
        stopped.status,
        stopped.stderr
    );
    drop(disk);
}

fn free_bytes(p: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and s a valid out pointer.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
    s.f_bavail as u64 * s.f_frsize as u64
}
