//! Mount failures must be quick, non-zero and explained on exactly one `cairn: error:` line; and
//! a running mount must exit cleanly when told to.
//!
//! Needs `/dev/fuse`, `fusermount3` and the test venv (`scripts/install-test-deps.sh`).

mod common;

use std::fs;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A failing mount must give up within this bound.
const BOUND: Duration = Duration::from_secs(60);

/// Runs the mount, expects it to fail, and checks the failure contract: non-zero exit code (not
/// a signal) within [`BOUND`], exactly one stderr line starting `cairn: error:` with some text
/// after it, and nothing left mounted.
fn expect_failure(spec: MountSpec, what: &str) -> (MountFailure, String) {
    let url = spec.url.clone();
    match spec.timeout(BOUND).try_start() {
        Ok(m) => panic!(
            "{what}: `cairn mount {url}` mounted but should have failed; stderr:\n{}",
            m.log()
        ),
        Err(f) => {
            let status = f.status.unwrap_or_else(|| {
                panic!(
                    "{what}: cairn neither mounted nor exited within {BOUND:?}; stderr:\n{}",
                    f.stderr
                )
            });
            assert!(
                status.code().is_some_and(|c| c != 0),
                "{what}: exit status should be a non-zero exit code, got {status}; stderr:\n{}",
                f.stderr
            );
            let lines = f.error_lines();
            assert_eq!(
                lines.len(),
                1,
                "{what}: expected exactly one line starting `cairn: error:`; stderr:\n{}",
                f.stderr
            );
            let line = lines[0].to_string();
            assert!(
                line.len() >= "cairn: error: ".len() + 10,
                "{what}: the error line says too little: {line:?}"
            );
            assert!(
                !f.left_mounted,
                "{what}: cairn exited but left the mount point mounted"
            );
            eprintln!("{what}: {:?} -> {line}", f.elapsed);
            (f, line)
        }
    }
}

fn mentions_any(line: &str, words: &[&str]) -> bool {
    let l = line.to_lowercase();
    words.iter().any(|w| l.contains(&w.to_lowercase()))
}

// ---------------------------------------------------------------------------------------------
// Harness check: the auth-enforcing moto server really rejects bad credentials.
// ---------------------------------------------------------------------------------------------

#[test]
fn auth_server_enforces_credentials() {
    let server = S3Server::start_with_auth();
    assert!(server.enforces_auth());
    assert_ne!(server.access_key(), TEST_ACCESS_KEY);
    server.put("k", b"v");
    assert_eq!(server.head("k"), Some(1));

    let bad_secret = server.admin_with_creds(
        server.access_key(),
        "wrong-secret",
        &["list", server.bucket()],
        None,
    );
    assert!(!bad_secret.status.success());
    assert!(String::from_utf8_lossy(&bad_secret.stderr).contains("SignatureDoesNotMatch"));

    let bad_key = server.admin_with_creds(
        "AKIAUNKNOWN000000000",
        "x",
        &["list", server.bucket()],
        None,
    );
    assert!(!bad_key.status.success());
    assert!(String::from_utf8_lossy(&bad_key.stderr).contains("InvalidAccessKeyId"));
}

// ---------------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------------

#[test]
fn missing_bucket_fails_with_one_error_line() {
    let server = S3Server::start();
    let missing = format!("{}-missing", server.bucket());
    let spec = MountSpec::new(format!("s3://{missing}")).server_env(&server);
    let (_, line) = expect_failure(spec, "missing bucket");
    assert!(
        line.contains(&missing),
        "the error line should name the missing bucket {missing}: {line}"
    );
}

#[test]
fn wrong_secret_key_fails_with_one_error_line() {
    let server = S3Server::start_with_auth();
    let spec = MountSpec::s3(&server).env("AWS_SECRET_ACCESS_KEY", "definitely-not-the-secret");
    let (_, line) = expect_failure(spec, "wrong secret key");
    assert!(
        mentions_any(
            &line,
            &[
                "credential",
                "access key",
                "signature",
                "denied",
                "forbidden",
                "403",
                "auth"
            ]
        ),
        "the error line should say the credentials were rejected: {line}"
    );
}

#[test]
fn unknown_access_key_fails_with_one_error_line() {
    let server = S3Server::start_with_auth();
    let spec = MountSpec::s3(&server)
        .env("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN000000000")
        .env("AWS_SECRET_ACCESS_KEY", "whatever");
    let (_, line) = expect_failure(spec, "unknown access key");
    assert!(
        mentions_any(
            &line,
            &[
                "credential",
                "access key",
                "signature",
                "denied",
                "forbidden",
                "403",
                "auth"
            ]
        ),
        "the error line should say the credentials were rejected: {line}"
    );
}

#[test]
fn correct_credentials_mount_on_auth_server() {
    // Control for the two tests above: the same server accepts cairn with the right key, so the
    // failures there are about the credentials and not about auth-enforcing moto itself.
    let server = S3Server::start_with_auth();
    server.put("dir/hello.txt", b"hello with auth");
    let mut mount = MountSpec::s3(&server).start();
    assert_eq!(
        fs::read(mount.join("dir/hello.txt")).unwrap(),
        b"hello with auth"
    );
    mount.assert_alive();
}

#[test]
fn unreachable_endpoint_fails_with_one_error_line() {
    let port = closed_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let spec = MountSpec::new("s3://some-bucket")
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY)
        .env("AWS_REGION", TEST_REGION)
        .env("AWS_ALLOW_HTTP", "true");
    let (_, line) = expect_failure(spec, "unreachable endpoint");
    assert!(
        line.contains(&port.to_string())
            || mentions_any(&line, &["connect", "refused", "unreachable", "reach"]),
        "the error line should say the endpoint could not be reached: {line}"
    );
}

#[test]
fn nonexistent_file_url_fails_with_one_error_line() {
    let dir = "/nonexistent-cairn-test/dir";
    assert!(!std::path::Path::new(dir).exists());
    let (_, line) = expect_failure(
        MountSpec::new(format!("file://{dir}")),
        "file:///nonexistent",
    );
    assert!(
        line.contains("/nonexistent-cairn-test"),
        "the error line should name the missing directory: {line}"
    );
}

// ---------------------------------------------------------------------------------------------
// Clean exits of a running mount
// ---------------------------------------------------------------------------------------------

fn wait_for_log(mount: &Mount, needle: &str, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if mount.log().contains(needle) {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn foreground_mount_reports_mounted_and_sigterm_unmounts_cleanly() {
    let server = S3Server::start();
    server.put("x.txt", b"x");
    let mut mount = Mount::start(&server, &[]);
    assert!(
        wait_for_log(&mount, "mounted", Duration::from_secs(5)),
        "--foreground should print a line containing `mounted` to stderr; got:\n{}",
        mount.log()
    );
    assert_eq!(fs::read(mount.join("x.txt")).unwrap(), b"x");
    mount.assert_alive();
    let mp = mount.path().to_path_buf();
    let stopped = mount.sigterm();
    let status = stopped.status.unwrap_or_else(|| {
        panic!(
            "cairn should exit within 10 s of SIGTERM; stderr:\n{}",
            stopped.stderr
        )
    });
    assert!(
        stopped.unmounted,
        "SIGTERM should unmount {} before cairn exits ({status}); stderr:\n{}",
        mp.display(),
        stopped.stderr
    );
    assert!(
        status.success(),
        "cairn should exit 0 after SIGTERM, got {status}; stderr:\n{}",
        stopped.stderr
    );
}

#[test]
fn unmount_subcommand_unmounts_and_daemon_exits() {
    let server = S3Server::start();
    server.put("y.txt", b"y");
    let mount = Mount::start(&server, &[]);
    assert_eq!(fs::read(mount.join("y.txt")).unwrap(), b"y");
    let mp = mount.path().to_path_buf();
    let out = run_with_deadline(
        Command::new(cairn_bin()).arg("unmount").arg(&mp),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "`cairn unmount` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !is_mounted(&mp),
        "`cairn unmount` returned but {} is still mounted",
        mp.display()
    );
    let stopped = mount.unmount();
    let status = stopped.status.unwrap_or_else(|| {
        panic!(
            "cairn should exit within 10 s after `cairn unmount`; stderr:\n{}",
            stopped.stderr
        )
    });
    assert!(
        status.success(),
        "cairn should exit 0 after being unmounted, got {status}; stderr:\n{}",
        stopped.stderr
    );
}
