//! Mount lifecycle on a real FUSE mount: signals, kill -9, daemon mode, `cairn unmount`, config
//! errors, a 100k-entry directory, and an object changed in the bucket while it is open.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cairn_bin, is_mounted, with_deadline, MountSpec, S3Server, TempDir};

fn local_bucket(tag: &str) -> TempDir {
    let d = TempDir::new(tag);
    fs::create_dir_all(d.join("sub")).unwrap();
    fs::write(d.join("hello.txt"), b"hello\n").unwrap();
    fs::write(
        d.join("sub/data.bin"),
        common::pseudo_random_bytes(7, 300_000),
    )
    .unwrap();
    d
}

fn file_url(d: &TempDir) -> String {
    format!("file://{}", d.path().display())
}

#[test]
fn sigterm_unmounts_cleanly_and_exits_zero() {
    let bucket = local_bucket("sigterm");
    let m = MountSpec::new(file_url(&bucket)).start();
    assert_eq!(fs::read(m.join("hello.txt")).unwrap(), b"hello\n");
    let stopped = m.sigterm();
    let status = stopped.status.expect("cairn exited after SIGTERM");
    assert!(status.success(), "exit status {status}: {}", stopped.stderr);
    assert!(stopped.unmounted, "mount still present after SIGTERM");
}

#[test]
fn kill_9_leaves_no_mount_that_hangs_callers() {
    let bucket = local_bucket("kill9");
    let mut m = MountSpec::new(file_url(&bucket)).start();
    let mnt = m.path().to_path_buf();
    assert!(m.join("sub/data.bin").exists());
    let pid = m.pid().unwrap() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = m.still_running();
    // The kernel aborts the connection of a dead daemon: callers get an error, never a hang.
    let mnt2 = mnt.clone();
    with_deadline("stat after kill -9", Duration::from_secs(20), move || {
        if let Err(e) = fs::metadata(mnt2.join("hello.txt")) {
            assert!(
                [libc::ENOTCONN, libc::ECONNABORTED, libc::ENOENT]
                    .contains(&e.raw_os_error().unwrap_or(0)),
                "unexpected error after kill -9: {e}"
            );
        }
    });
    // fusermount3's auto_unmount usually removes the dead mount within moments; if it is still
    // there, a remount says what to do and `cairn unmount` clears it.
    let start = Instant::now();
    while is_mounted(&mnt) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if is_mounted(&mnt) {
        let out = common::run_with_deadline(
            Command::new(cairn_bin())
                .args(["mount", &file_url(&bucket)])
                .arg(&mnt)
                .arg("--foreground")
                .stdin(Stdio::null()),
            Duration::from_secs(30),
        );
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("cairn unmount"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = common::run_with_deadline(
            Command::new(cairn_bin()).arg("unmount").arg(&mnt),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(!is_mounted(&mnt));
}

/// Removes a mount left by a failed test (daemon-mode mounts are not owned by a harness `Mount`).
struct LazyUnmount<'a>(&'a Path);
impl Drop for LazyUnmount<'_> {
    fn drop(&mut self) {
        if is_mounted(self.0) {
            let _ = Command::new("fusermount3").arg("-uz").arg(self.0).status();
        }
    }
}

#[test]
fn daemon_mode_detaches_and_cairn_unmount_unmounts() {
    common::require_fuse();
    let bucket = local_bucket("daemon");
    let dir = TempDir::new("daemon-mnt");
    let mnt = dir.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let _guard = LazyUnmount(&mnt);
    let out = common::run_with_deadline(
        Command::new(cairn_bin())
            .args(["mount", &file_url(&bucket)])
            .arg(&mnt)
            .arg("--log-file")
            .arg(dir.join("cairn.log"))
            .stdin(Stdio::null()),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "daemon mount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_mounted(&mnt), "parent returned before the mount was up");
    assert!(String::from_utf8_lossy(&out.stderr).contains("mounted"));
    assert_eq!(fs::read(mnt.join("hello.txt")).unwrap(), b"hello\n");
    // A second mount on the same point is refused with a clear error.
    let again = common::run_with_deadline(
        Command::new(cairn_bin())
            .args(["mount", &file_url(&bucket)])
            .arg(&mnt)
            .stdin(Stdio::null()),
        Duration::from_secs(30),
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already a mount point"));
    let out = common::run_with_deadline(
        Command::new(cairn_bin()).arg("unmount").arg(&mnt),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "cairn unmount: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!is_mounted(&mnt));
    let out = common::run_with_deadline(
        Command::new(cairn_bin()).arg("unmount").arg(&mnt),
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not mounted"));
}

fn mount_error(args: &[&str]) -> String {
    let out = common::run_with_deadline(
        Command::new(cairn_bin()).args(args).stdin(Stdio::null()),
        Duration::from_secs(30),
    );
    assert!(!out.status.success(), "expected failure for {args:?}");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("cairn: error:"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one error line expected for {args:?}: {err}"
    );
    lines[0].to_string()
}

#[test]
fn bad_input_gives_one_clear_error_line() {
    let bucket = local_bucket("badinput");
    let dir = TempDir::new("badinput-mnt");
    let mnt = dir.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let m = mnt.to_str().unwrap();
    let url = file_url(&bucket);

    let e = mount_error(&["mount", "ftp://x", m, "--foreground"]);
    assert!(e.contains("unsupported scheme"), "{e}");
    let e = mount_error(&["mount", &url, "/definitely/not/here", "--foreground"]);
    assert!(e.contains("does not exist"), "{e}");
    let e = mount_error(&["mount", "file:///definitely/not/here", m, "--foreground"]);
    assert!(e.contains("does not exist"), "{e}");
    let e = mount_error(&["mount", &url, m, "--foreground", "--metadata-ttl", "soon"]);
    assert!(e.contains("invalid duration"), "{e}");
    let cfg = dir.join("bad.toml");
    fs::write(&cfg, "metadata_ttl = \"1s\"\nno_such_setting = true\n").unwrap();
    let e = mount_error(&[
        "mount",
        &url,
        m,
        "--foreground",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(
        e.contains("invalid config file") && e.contains("no_such_setting"),
        "{e}"
    );
    fs::write(&cfg, "block_size = \"3 parsecs\"\n").unwrap();
    let e = mount_error(&[
        "mount",
        &url,
        m,
        "--foreground",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(e.contains("invalid size"), "{e}");
    assert!(!is_mounted(&mnt));
}

#[test]
fn config_file_settings_apply() {
    let bucket = local_bucket("config");
    let dir = TempDir::new("config-file");
    let cfg = dir.join("cairn.toml");
    fs::write(&cfg, "uid = 4321\ngid = 8765\nmetadata_ttl = \"2s\"\n").unwrap();
    let m = MountSpec::new(file_url(&bucket))
        .args(&["--config", cfg.to_str().unwrap(), "--gid", "99"])
        .start();
    use std::os::unix::fs::MetadataExt;
    let md = fs::metadata(m.join("hello.txt")).unwrap();
    assert_eq!(md.uid(), 4321, "uid from the config file");
    assert_eq!(md.gid(), 99, "the --gid flag overrides the config file");
}

#[test]
fn hundred_thousand_entry_directory_lists_in_pages() {
    let bucket = TempDir::new("bigdir");
    let big = bucket.join("big");
    fs::create_dir(&big).unwrap();
    const N: usize = 100_000;
    for i in 0..N {
        fs::File::create(big.join(format!("f{i:06}"))).unwrap();
    }
    let m = MountSpec::new(file_url(&bucket)).start();
    let path = m.join("big");
    let (count, first, last) =
        with_deadline("list 100k entries", Duration::from_secs(300), move || {
            let mut names: Vec<String> = fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            (
                names.len(),
                names[0].clone(),
                names[names.len() - 1].clone(),
            )
        });
    assert_eq!(count, N);
    assert_eq!(first, "f000000");
    assert_eq!(last, format!("f{:06}", N - 1));
    let md = fs::metadata(m.join("big/f054321")).unwrap();
    assert!(md.is_file());
    assert_eq!(md.len(), 0);
}

#[test]
fn object_changed_while_open_fails_clearly_never_mixes_bytes() {
    let server = S3Server::start();
    let old = common::pseudo_random_bytes(11, 24 << 20);
    let new = common::pseudo_random_bytes(12, 24 << 20);
    server.put("obj.bin", &old);
    // No prefetching: the block at 20 MiB must be fetched after the change, so the stale path
    // (the conditional GET failing) is what this test exercises.
    let m = MountSpec::s3(&server)
        .args(&["--metadata-ttl", "0s", "--prefetch", "off"])
        .start();
    let f = fs::File::open(m.join("obj.bin")).unwrap();
    let mut buf = vec![0u8; 4096];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..], &old[..4096]);
    server.put("obj.bin", &new);
    // A block this handle has not read yet must not come from the new version.
    let mut buf = vec![0u8; 4096];
    let off = 20 << 20;
    match f.read_exact_at(&mut buf, off as u64) {
        Ok(()) => assert_eq!(
            &buf[..],
            &old[off..off + 4096],
            "an open handle returned bytes of another version"
        ),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ESTALE), "{e}"),
    }
    drop(f);
    // A new open sees the new version.
    let data = fs::read(m.join("obj.bin")).unwrap();
    assert!(
        data == new,
        "reopen after the change must read the new version"
    );
    assert!(
        m.log().contains("changed in the bucket"),
        "no log line: {}",
        m.log()
    );
}
