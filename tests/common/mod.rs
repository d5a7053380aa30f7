//! Test harness for cairn's end-to-end tests.
//!
//! - [`S3Server`]: a private `moto_server` on 127.0.0.1 (free port, one fresh bucket), killed on
//!   drop, plus an independent admin client (`tests/support/s3admin.py`, boto3, path-style) to put,
//!   list, head and delete objects without going through cairn.
//! - [`Mount`] / [`MountSpec`]: runs the real `cairn mount URL MOUNTPOINT --foreground` binary,
//!   waits until the kernel shows the mount, and always unmounts on drop (also on panic).
//! - Helpers: deterministic pseudo-random data, sha256, temp dirs, timeouts.
//!
//! Requirements (installed by `scripts/install-test-deps.sh`): `/dev/fuse`, `fusermount3`, and a
//! Python venv with `moto[server]` and `boto3` at `$CAIRN_TEST_VENV` (default
//! `$HOME/.cache/cairn/test-venv`).
//!
//! Env knobs: `CAIRN_TEST_VENV`, `CAIRN_TEST_BIN` (binary to test instead of the cargo-built one), `CAIRN_TEST_BLOCK_SIZE` (bytes, default 8 MiB),
//! `CAIRN_TEST_RUST_LOG` (passed to the cairn child as `RUST_LOG`), `CAIRN_TEST_KEEP_TMP=1`
//! (keep temp dirs and logs for inspection).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

pub const KIB: usize = 1024;
pub const MIB: usize = 1024 * 1024;

/// cairn's default read block size. Tests place objects at block size +-1 and exactly.
pub const DEFAULT_BLOCK_SIZE: usize = 8 * MIB;

/// The block size the tests assume: `CAIRN_TEST_BLOCK_SIZE` (bytes) or [`DEFAULT_BLOCK_SIZE`].
pub fn block_size() -> usize {
    match std::env::var("CAIRN_TEST_BLOCK_SIZE") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("CAIRN_TEST_BLOCK_SIZE={v:?} is not a number of bytes")),
        Err(_) => DEFAULT_BLOCK_SIZE,
    }
}

/// Access key / secret used for the default (non-auth) moto server; moto accepts any.
pub const TEST_ACCESS_KEY: &str = "test";
pub const TEST_SECRET_KEY: &str = "test";
pub const TEST_REGION: &str = "us-east-1";

// ---------------------------------------------------------------------------------------------
// Paths and environment
// ---------------------------------------------------------------------------------------------

/// The repository root (the root package's manifest dir). Read at run time first: cargo sets it
/// for test processes, and a test binary reused from a shared target dir built in another
/// checkout would otherwise point at that checkout.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// `tests/support/` in the repository.
pub fn support_dir() -> PathBuf {
    repo_root().join("tests").join("support")
}

/// The cairn binary under test: `$CAIRN_TEST_BIN` if set (e.g. a release build), else the one
/// cargo built for this test run.
pub fn cairn_bin() -> PathBuf {
    match std::env::var_os("CAIRN_TEST_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_cairn")),
    }
}

/// The test venv (`$CAIRN_TEST_VENV` or `$HOME/.cache/cairn/test-venv`).
pub fn venv_dir() -> PathBuf {
    if let Some(v) = std::env::var_os("CAIRN_TEST_VENV") {
        return PathBuf::from(v);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/cairn/test-venv")
}

fn missing_deps(what: &str) -> ! {
    panic!(
        "{what} not found: run `scripts/install-test-deps.sh` first \
         (it creates the venv at {} with moto[server] and boto3, and installs fuse3)",
        venv_dir().display()
    )
}

/// The venv's Python (has boto3). Used for `s3admin.py` and the other support scripts.
pub fn python() -> PathBuf {
    let p = venv_dir().join("bin").join("python");
    if !p.exists() {
        missing_deps(&format!("python at {}", p.display()));
    }
    p
}

/// The venv's `moto_server`.
pub fn moto_server_bin() -> PathBuf {
    let p = venv_dir().join("bin").join("moto_server");
    if !p.exists() {
        missing_deps(&format!("moto_server at {}", p.display()));
    }
    p
}

/// Panics with a clear message unless FUSE mounts can work here.
pub fn require_fuse() {
    if !Path::new("/dev/fuse").exists() {
        panic!("/dev/fuse does not exist: FUSE end-to-end tests cannot run on this machine");
    }
    if which("fusermount3").is_none() {
        missing_deps("fusermount3 (Debian package fuse3)");
    }
}

/// Looks a program up on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{n}-{nanos:x}", std::process::id())
}

// ---------------------------------------------------------------------------------------------
// Temp dirs
// ---------------------------------------------------------------------------------------------

/// A temp directory removed on drop (unless `CAIRN_TEST_KEEP_TMP=1`). It refuses to delete
/// anything that is (or contains) a live mount, so a failed unmount can never turn into deleting
/// objects through the mount.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("cairn-test-{tag}-{}", unique_suffix()));
        fs::create_dir_all(&path).expect("create temp dir");
        let path = path.canonicalize().expect("canonicalize temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var("CAIRN_TEST_KEEP_TMP").as_deref() == Ok("1") {
            eprintln!("[harness] keeping {}", self.path.display());
            return;
        }
        let mounts = mounts_under(&self.path);
        if !mounts.is_empty() {
            eprintln!(
                "[harness] NOT removing {}: still mounted: {mounts:?}",
                self.path.display()
            );
            return;
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------
// Mount table
// ---------------------------------------------------------------------------------------------

fn unescape_mountinfo(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo (octal).
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = (oct[0] - b'0') as u32 * 64
                    + (oct[1] - b'0') as u32 * 8
                    + (oct[2] - b'0') as u32;
                out.push(v as u8);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `(mount point, fs type)` of every mount in `/proc/self/mountinfo`.
pub fn mount_table() -> Vec<(PathBuf, String)> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 5 {
            continue;
        }
        let mp = PathBuf::from(unescape_mountinfo(fields[4]));
        let fstype = fields
            .iter()
            .position(|f| *f == "-")
            .and_then(|i| fields.get(i + 1))
            .map(|s| s.to_string())
            .unwrap_or_default();
        out.push((mp, fstype));
    }
    out
}

/// Whether `path` is a mount point right now.
pub fn is_mounted(path: &Path) -> bool {
    mount_table().iter().any(|(mp, _)| mp == path)
}

/// Mount points at or below `path`.
pub fn mounts_under(path: &Path) -> Vec<PathBuf> {
    mount_table()
        .into_iter()
        .map(|(mp, _)| mp)
        .filter(|mp| mp.starts_with(path))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Processes and timeouts
// ---------------------------------------------------------------------------------------------

/// Runs `cmd` to completion with a deadline; kills it (SIGKILL) and panics when the deadline
/// passes. Stdout and stderr are captured.
pub fn run_with_deadline(cmd: &mut Command, deadline: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = t_err.join().unwrap_or_default();
            panic!(
                "{desc} did not finish within {deadline:?}; stderr:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

/// Runs `f` on a helper thread and panics if it does not return within `deadline` (the helper is
/// left behind; a read blocked on a hung mount is released when the [`Mount`] is dropped).
/// Panics inside `f` are propagated. Do not create a [`Mount`] or [`S3Server`] inside `f` that
/// should outlive it.
pub fn with_deadline<T: Send + 'static>(
    what: &str,
    deadline: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = thread::Builder::new()
        .name(format!("deadline:{what}"))
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r);
        })
        .expect("spawn deadline thread");
    match rx.recv_timeout(deadline) {
        Ok(Ok(v)) => {
            let _ = handle.join();
            v
        }
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what}: did not finish within {deadline:?} (hung read?)"),
    }
}

fn wait_child_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) => {}
            Err(_) => return None,
        }
        if start.elapsed() >= timeout {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn send_signal(child: &Child, sig: i32) {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

// ---------------------------------------------------------------------------------------------
// Data helpers
// ---------------------------------------------------------------------------------------------

/// splitmix64: a tiny, fast, seeded PRNG; the data it makes is the same on every machine and
/// with every crate version.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let v = self.next_u64().to_le_bytes();
            let n = rest.len();
            rest.copy_from_slice(&v[..n]);
        }
    }
}

/// `len` deterministic pseudo-random bytes for `seed`.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    SplitMix64::new(seed).fill(&mut v);
    v
}

/// Writes `len` deterministic pseudo-random bytes for `seed` to `path` (streamed, so it works for
/// large files) and returns their sha256 (hex). Same bytes as [`pseudo_random_bytes`].
pub fn write_pseudo_random_file(path: &Path, seed: u64, len: u64) -> String {
    let mut rng = SplitMix64::new(seed);
    let mut f = io::BufWriter::with_capacity(MIB, File::create(path).expect("create data file"));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; MIB];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        // fill whole u64 words so the stream matches pseudo_random_bytes
        let fill_len = n.next_multiple_of(8).min(buf.len());
        rng.fill(&mut buf[..fill_len]);
        f.write_all(&buf[..n]).unwrap();
        h.update(&buf[..n]);
        left -= n as u64;
    }
    f.flush().unwrap();
    hex(&h.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub fn sha256_bytes(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// sha256 (hex) and length of everything read from `r`, reading `chunk` bytes at a time.
pub fn sha256_reader(mut r: impl Read, chunk: usize) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; chunk.max(1)];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&h.finalize()), total))
}

/// sha256 (hex) and length of a file, read with 1 MiB reads.
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    sha256_reader(File::open(path)?, MIB)
}

/// Minimal JSON string encoder (for s3admin batch lines).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Pulls `"field": "value"` or `"field": number` out of one line of flat JSON (enough for the
/// output of s3admin.py, whose keys we control).
fn json_field(line: &str, field: &str) -> Option<String> {
    let pat = format!("\"{field}\": ");
    let start = line.find(&pat)? + pat.len();
    let rest = &line[start..];
    if let Some(rest) = rest.strip_prefix('"') {
        // json.dumps escapes: \" \\ \n \uXXXX ...
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(out),
                '\\' => match chars.next()? {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'u' => {
                        let code: String = chars.by_ref().take(4).collect();
                        let cp = u32::from_str_radix(&code, 16).ok()?;
                        if (0xD800..0xDC00).contains(&cp) {
                            // surrogate pair
                            let _bs = chars.next()?;
                            let _u = chars.next()?;
                            let low: String = chars.by_ref().take(4).collect();
                            let lo = u32::from_str_radix(&low, 16).ok()?;
                            let full = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                            out.push(char::from_u32(full)?);
                        } else {
                            out.push(char::from_u32(cp)?);
                        }
                    }
                    other => out.push(other),
                },
                c => out.push(c),
            }
        }
        None
    } else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(rest[..end].trim().to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// S3 server (moto) + admin client
// ---------------------------------------------------------------------------------------------

/// A private moto S3 server on 127.0.0.1 with one fresh bucket. Killed on drop.
pub struct S3Server {
    child: Option<Child>,
    port: u16,
    bucket: String,
    access_key: String,
    secret_key: String,
    auth: bool,
    dir: TempDir,
}

impl S3Server {
    /// Starts moto (accepts any credentials) and creates a uniquely named bucket.
    pub fn start() -> S3Server {
        Self::start_inner(false)
    }

    /// Starts moto with IAM authentication enforced (`INITIAL_NO_AUTH_ACTION_COUNT=4`): the first
    /// four actions create the bucket, an IAM user with an allow-all policy and its access key;
    /// after that moto rejects unknown access keys (`InvalidAccessKeyId`, 403) and wrong secrets
    /// (`SignatureDoesNotMatch`, 403). [`S3Server::access_key`]/[`S3Server::secret_key`] return
    /// the valid generated key.
    pub fn start_with_auth() -> S3Server {
        Self::start_inner(true)
    }

    fn start_inner(auth: bool) -> S3Server {
        let bin = moto_server_bin();
        let bucket = format!("cairn-{}", unique_suffix()).to_lowercase();
        let mut dir = TempDir::new(if auth { "moto-auth" } else { "moto" });
        let mut last_log = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let log_path = dir.join(format!("moto-{attempt}.log"));
            let log = File::create(&log_path).expect("create moto log");
            let mut cmd = Command::new(&bin);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .env_remove("AWS_PROFILE")
                .env("MOTO_PORT", port.to_string());
            if auth {
                cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "4");
            } else {
                cmd.env_remove("INITIAL_NO_AUTH_ACTION_COUNT");
            }
            let child = cmd.spawn().expect("spawn moto_server");
            let mut server = S3Server {
                child: Some(child),
                port,
                bucket: bucket.clone(),
                access_key: TEST_ACCESS_KEY.into(),
                secret_key: TEST_SECRET_KEY.into(),
                auth,
                dir,
            };
            match server.wait_ready(Duration::from_secs(60)) {
                Ok(()) => {
                    if auth {
                        let out = server.admin(&["setup-auth", &bucket], None);
                        let line = String::from_utf8_lossy(&out.stdout).to_string();
                        server.access_key = json_field(&line, "access_key")
                            .unwrap_or_else(|| panic!("setup-auth output: {line}"));
                        server.secret_key = json_field(&line, "secret_key")
                            .unwrap_or_else(|| panic!("setup-auth output: {line}"));
                    } else {
                        server.create_bucket(&bucket);
                    }
                    return server;
                }
                Err(e) => {
                    last_log =
                        format!("{e}\n{}", fs::read_to_string(&log_path).unwrap_or_default());
                    // port clash or slow start: kill, take the dir back and retry on a new port
                    server.kill();
                    dir = std::mem::replace(&mut server.dir, TempDir::new("moto-dead"));
                }
            }
        }
        panic!("moto_server did not start after 5 attempts; last log:\n{last_log}");
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("moto_server exited early: {st}"));
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let req = format!(
                    "GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
                    self.port
                );
                if s.write_all(req.as_bytes()).is_ok() {
                    let mut line = String::new();
                    if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("HTTP/") {
                        return Ok(());
                    }
                }
            }
            if start.elapsed() > timeout {
                return Err(format!("moto_server not answering after {timeout:?}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    pub fn region(&self) -> &str {
        TEST_REGION
    }

    /// Whether this server enforces IAM auth ([`S3Server::start_with_auth`]).
    pub fn enforces_auth(&self) -> bool {
        self.auth
    }

    /// `s3://BUCKET`
    pub fn url(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    /// `s3://BUCKET/PREFIX`
    pub fn url_with_prefix(&self, prefix: &str) -> String {
        format!("s3://{}/{}", self.bucket, prefix.trim_start_matches('/'))
    }

    /// The moto server's log so far.
    pub fn log(&self) -> String {
        let mut out = String::new();
        if let Ok(rd) = fs::read_dir(self.dir.path()) {
            for e in rd.flatten() {
                out.push_str(&fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        out
    }

    /// The env a client of this server needs (cairn child, admin script).
    pub fn client_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_ACCESS_KEY_ID".into(), self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret_key.clone()),
            ("AWS_REGION".into(), TEST_REGION.into()),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
        ]
    }

    /// Runs `s3admin.py` against this server with the server's credentials, panicking (with the
    /// script's stderr) on failure. `stdin` is piped in when given.
    pub fn admin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let out = self.admin_with_creds(&self.access_key, &self.secret_key, args, stdin);
        if !out.status.success() {
            panic!(
                "s3admin.py {args:?} failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out
    }

    /// Runs `s3admin.py` with the given credentials and returns its output whatever the status.
    pub fn admin_with_creds(
        &self,
        access_key: &str,
        secret_key: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Output {
        let mut cmd = Command::new(python());
        cmd.arg(support_dir().join("s3admin.py"))
            .args(["--endpoint", &self.endpoint()])
            .args(["--access-key", access_key, "--secret-key", secret_key])
            .args(["--region", TEST_REGION])
            .args(args)
            .env_remove("AWS_CA_BUNDLE")
            .env_remove("AWS_PROFILE")
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let deadline = Duration::from_secs(600);
        match stdin {
            None => {
                cmd.stdin(Stdio::null());
                run_with_deadline(&mut cmd, deadline)
            }
            Some(data) => {
                // write stdin from a thread so large bodies cannot deadlock with the pipes
                cmd.stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let mut child = cmd.spawn().expect("spawn s3admin.py");
                let mut sin = child.stdin.take().unwrap();
                let data = data.to_vec();
                let writer = thread::spawn(move || {
                    let _ = sin.write_all(&data);
                });
                let out = child.wait_with_output().expect("s3admin.py output");
                let _ = writer.join();
                out
            }
        }
    }

    /// Creates another bucket on this server.
    pub fn create_bucket(&self, name: &str) {
        self.admin(&["create-bucket", name], None);
    }

    /// Puts an object into the test bucket (body through stdin, so any size and any bytes).
    pub fn put(&self, key: &str, data: &[u8]) {
        self.admin(&["put", &self.bucket, key], Some(data));
    }

    /// Puts an object from a local file (streamed; multipart above 64 MiB).
    pub fn put_file(&self, key: &str, path: &Path) {
        let p = path.to_str().expect("utf-8 path");
        self.admin(&["put", &self.bucket, key, "--file", p], None);
    }

    /// Puts many small objects with one Python process.
    pub fn put_many(&self, objects: &[(&str, &[u8])]) {
        let mut lines = String::new();
        for (k, v) in objects {
            lines.push_str(&format!(
                "{{\"op\": \"put\", \"key\": {}, \"hex\": \"{}\"}}\n",
                json_string(k),
                hex(v)
            ));
        }
        self.admin(&["batch", &self.bucket], Some(lines.as_bytes()));
    }

    pub fn delete(&self, key: &str) {
        self.admin(&["delete", &self.bucket, key], None);
    }

    /// All `(key, size)` in the bucket under `prefix`, as S3 lists them.
    pub fn list(&self, prefix: &str) -> Vec<(String, u64)> {
        let out = self.admin(&["list", &self.bucket, "--prefix", prefix], None);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let key = json_field(l, "key").unwrap_or_else(|| panic!("bad list line {l}"));
                let size = json_field(l, "size")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("bad list line {l}"));
                (key, size)
            })
            .collect()
    }

    /// Every object under `prefix` as key -> (size, sha256), read back by an independent client
    /// (boto3).
    pub fn hashes(&self, prefix: &str) -> std::collections::BTreeMap<String, (u64, String)> {
        let out = self.admin(&["hashes", &self.bucket, "--prefix", prefix], None);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let key = json_field(l, "key").unwrap_or_else(|| panic!("bad line {l}"));
                let size = json_field(l, "size")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("bad line {l}"));
                let sha = json_field(l, "sha256").unwrap_or_else(|| panic!("bad line {l}"));
                (key, (size, sha))
            })
            .collect()
    }

    /// The object's size, or None when it does not exist.
    pub fn head(&self, key: &str) -> Option<u64> {
        let out = self.admin_with_creds(
            &self.access_key,
            &self.secret_key,
            &["head", &self.bucket, key],
            None,
        );
        match out.status.code() {
            Some(0) => json_field(&String::from_utf8_lossy(&out.stdout), "size")
                .and_then(|s| s.parse().ok()),
            Some(3) => None,
            _ => panic!(
                "s3admin.py head {key} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that was free a moment ago on 127.0.0.1 (bind port 0, read it, release it).
pub fn free_port() -> u16 {
    let l = TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// A port on 127.0.0.1 with nothing listening (for "unreachable endpoint" tests).
pub fn closed_port() -> u16 {
    for _ in 0..20 {
        let p = free_port();
        if TcpStream::connect_timeout(&([127, 0, 0, 1], p).into(), Duration::from_millis(200))
            .is_err()
        {
            return p;
        }
    }
    panic!("could not find a closed port on 127.0.0.1");
}

// ---------------------------------------------------------------------------------------------
// Mount
// ---------------------------------------------------------------------------------------------

/// What to mount and how. Build with [`MountSpec::new`] (any URL) or [`MountSpec::s3`] /
/// [`MountSpec::s3_prefix`] (a server's bucket, with the server's endpoint and credentials in the
/// child's environment).
#[derive(Clone, Debug)]
pub struct MountSpec {
    pub url: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub env_remove: Vec<String>,
    /// How long to wait for the mount to appear (or the child to exit). Default 30 s.
    pub timeout: Duration,
}

impl MountSpec {
    pub fn new(url: impl Into<String>) -> MountSpec {
        MountSpec {
            url: url.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }

    /// `s3://BUCKET` of `server`, with the server's env.
    pub fn s3(server: &S3Server) -> MountSpec {
        MountSpec::new(server.url()).server_env(server)
    }

    /// `s3://BUCKET/PREFIX` of `server`, with the server's env.
    pub fn s3_prefix(server: &S3Server, prefix: &str) -> MountSpec {
        MountSpec::new(server.url_with_prefix(prefix)).server_env(server)
    }

    /// Adds the server's endpoint/credentials/region env (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP=true).
    pub fn server_env(mut self, server: &S3Server) -> MountSpec {
        self.env.extend(server.client_env());
        self
    }

    /// Sets (or overrides) one env var for the child.
    pub fn env(mut self, k: &str, v: &str) -> MountSpec {
        self.env.retain(|(ek, _)| ek != k);
        self.env.push((k.into(), v.into()));
        self
    }

    /// Removes an env var from the child's environment.
    pub fn without_env(mut self, k: &str) -> MountSpec {
        self.env.retain(|(ek, _)| ek != k);
        self.env_remove.push(k.into());
        self
    }

    pub fn arg(mut self, a: &str) -> MountSpec {
        self.args.push(a.into());
        self
    }

    pub fn args(mut self, a: &[&str]) -> MountSpec {
        self.args.extend(a.iter().map(|s| s.to_string()));
        self
    }

    pub fn timeout(mut self, t: Duration) -> MountSpec {
        self.timeout = t;
        self
    }

    /// Mounts or panics with cairn's stderr.
    pub fn start(self) -> Mount {
        let url = self.url.clone();
        match self.try_start() {
            Ok(m) => m,
            Err(f) => panic!(
                "cairn mount {url} failed ({}) after {:?}; stderr:\n{}",
                f.status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "still running, killed".into()),
                f.elapsed,
                f.stderr
            ),
        }
    }

    /// Mounts; on failure returns the exit status and captured stderr.
    pub fn try_start(self) -> Result<Mount, MountFailure> {
        Mount::try_start(self)
    }
}

/// Why a mount did not come up.
#[derive(Debug)]
pub struct MountFailure {
    /// The child's exit status; None if it was still running at the deadline (then it was killed).
    pub status: Option<ExitStatus>,
    /// Everything the child wrote to stderr.
    pub stderr: String,
    /// From spawn to exit (or to the deadline).
    pub elapsed: Duration,
    /// Whether anything was left mounted at the mount point when the child exited (it was
    /// cleaned up by the harness).
    pub left_mounted: bool,
}

impl MountFailure {
    /// The stderr lines that start with `cairn: error:`.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("cairn: error:"))
            .collect()
    }
}

/// How a mount ended ([`Mount::sigterm`], [`Mount::unmount`]).
#[derive(Debug)]
pub struct Stopped {
    /// cairn's exit status; None if it did not exit in time and was killed.
    pub status: Option<ExitStatus>,
    /// Whether the mount point was unmounted when cairn exited.
    pub unmounted: bool,
    /// Everything cairn wrote to stderr.
    pub stderr: String,
}

/// A running `cairn mount ... --foreground`. Dropping it unmounts (fusermount3 -u, falling back
/// to a lazy unmount), waits up to 10 s for the child, then kills it; it never leaves a mount
/// behind.
pub struct Mount {
    child: Option<Child>,
    mountpoint: PathBuf,
    log_path: PathBuf,
    dir: TempDir,
    url: String,
}

impl Mount {
    /// Mounts `s3://BUCKET` of `server` with `extra_args`, or panics with cairn's stderr.
    pub fn start(server: &S3Server, extra_args: &[&str]) -> Mount {
        MountSpec::s3(server).args(extra_args).start()
    }

    /// Spawns cairn for `spec` and waits until the mount point is mounted, the child exits, or
    /// `spec.timeout` passes.
    pub fn try_start(spec: MountSpec) -> Result<Mount, MountFailure> {
        require_fuse();
        let dir = TempDir::new("mount");
        let mountpoint = dir.join("mnt");
        fs::create_dir(&mountpoint).expect("create mountpoint");
        let log_path = dir.join("cairn.stderr.log");
        let log = File::create(&log_path).expect("create cairn log");

        let mut cmd = Command::new(cairn_bin());
        cmd.arg("mount")
            .arg(&spec.url)
            .arg(&mountpoint)
            .arg("--foreground")
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // hermetic AWS env: nothing from a developer's profile, no instance-metadata lookups
        for k in [
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
            "AWS_ALLOW_HTTP",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        ] {
            cmd.env_remove(k);
        }
        cmd.env("AWS_EC2_METADATA_DISABLED", "true");
        if let Ok(l) = std::env::var("CAIRN_TEST_RUST_LOG") {
            cmd.env("RUST_LOG", l);
        }
        for k in &spec.env_remove {
            cmd.env_remove(k);
        }
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }

        let start = Instant::now();
        let child = cmd.spawn().expect("spawn cairn");
        let mut mount = Mount {
            child: Some(child),
            mountpoint: mountpoint.clone(),
            log_path,
            dir,
            url: spec.url.clone(),
        };
        loop {
            if is_mounted(&mountpoint) {
                return Ok(mount);
            }
            let exited = mount.child.as_mut().unwrap().try_wait().unwrap();
            if let Some(st) = exited {
                let left_mounted = is_mounted(&mountpoint);
                let stderr = mount.log();
                // Drop cleans up a stray mount and the dir.
                drop(mount);
                return Err(MountFailure {
                    status: Some(st),
                    stderr,
                    elapsed: start.elapsed(),
                    left_mounted,
                });
            }
            if start.elapsed() > spec.timeout {
                let elapsed = start.elapsed();
                let stderr = mount.log();
                drop(mount);
                return Err(MountFailure {
                    status: None,
                    stderr,
                    elapsed,
                    left_mounted: false,
                });
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// The mount point (canonical path).
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// `mountpoint/rel`
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.mountpoint.join(rel)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// cairn's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// cairn's stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A directory for test scratch files next to (not inside) the mount.
    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether cairn is still running (None if it exited, with its status).
    pub fn still_running(&mut self) -> Result<(), ExitStatus> {
        match self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            Some(st) => Err(st),
            None => Ok(()),
        }
    }

    /// Asserts that cairn is still running and the mount is still there (for "did not crash").
    pub fn assert_alive(&mut self) {
        if let Err(st) = self.still_running() {
            panic!("cairn exited ({st}); stderr:\n{}", self.log());
        }
        assert!(
            is_mounted(&self.mountpoint),
            "{} is no longer mounted; cairn stderr:\n{}",
            self.mountpoint.display(),
            self.log()
        );
    }

    /// Unmounts with `fusermount3 -u` (the harness's way, as on drop) and waits up to 10 s for
    /// cairn to exit. `status` is None if cairn had to be killed.
    pub fn unmount(mut self) -> Stopped {
        let status = self.cleanup();
        Stopped {
            status,
            unmounted: !is_mounted(&self.mountpoint),
            stderr: self.log(),
        }
    }

    /// Sends SIGTERM to cairn and waits up to 10 s for it to exit. `status` is None if it did not
    /// exit in time (the harness then cleans up); `unmounted` says whether the mount was gone
    /// right after cairn exited (before any harness cleanup).
    pub fn sigterm(mut self) -> Stopped {
        let mut status = None;
        if let Some(c) = self.child.as_mut() {
            send_signal(c, libc::SIGTERM);
            status = wait_child_timeout(c, Duration::from_secs(10));
        }
        let unmounted = !is_mounted(&self.mountpoint);
        if status.is_some() {
            self.child = None;
        }
        let stderr = self.log();
        self.cleanup();
        Stopped {
            status,
            unmounted,
            stderr,
        }
    }

    fn unmount_cmds(&self, lazy: bool) -> bool {
        let mp = &self.mountpoint;
        let mut ok = Command::new("fusermount3")
            .arg(if lazy { "-uz" } else { "-u" })
            .arg(mp)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok && lazy {
            ok = Command::new("umount")
                .arg("-l")
                .arg(mp)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
        }
        ok || !is_mounted(mp)
    }

    fn cleanup(&mut self) -> Option<ExitStatus> {
        // 1. unmount (a few polite tries, then lazy)
        if is_mounted(&self.mountpoint) {
            let mut done = false;
            for _ in 0..10 {
                if self.unmount_cmds(false) {
                    done = true;
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
            if !done {
                self.unmount_cmds(true);
            }
        }
        // 2. wait for the child, then kill it
        let mut status = None;
        if let Some(mut c) = self.child.take() {
            status = wait_child_timeout(&mut c, Duration::from_secs(10));
            if status.is_none() {
                eprintln!(
                    "[harness] cairn (pid {}) did not exit 10 s after unmount; killing it",
                    c.id()
                );
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // 3. a dead daemon can leave a stale mount behind
        if is_mounted(&self.mountpoint) {
            self.unmount_cmds(true);
        }
        if is_mounted(&self.mountpoint) {
            eprintln!(
                "[harness] WARNING: {} is still mounted",
                self.mountpoint.display()
            );
        }
        status
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.cleanup();
        if thread::panicking() {
            eprintln!(
                "[harness] cairn stderr ({}):\n{}",
                self.url,
                fs::read_to_string(&self.log_path).unwrap_or_default()
            );
        }
    }
}

/// Runs `cairn ARGS MOUNTPOINT` (60 s deadline) and returns its stdout; panics on failure.
pub fn cairn_ok(args: &[&str], mnt: &Path) -> String {
    let out = run_with_deadline(
        Command::new(cairn_bin()).args(args).arg(mnt),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "cairn {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One Prometheus sample of a mount, e.g. `metric(m, "cairn_cache_hits_total{tier=\"l2\"}")`
/// (a series without labels needs its trailing space: `"cairn_store_get_requests_total "`).
pub fn metric(mnt: &Path, series: &str) -> f64 {
    let text = cairn_ok(&["stats", "--prometheus"], mnt);
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

// ---------------------------------------------------------------------------------------------
// Filesystem helpers for assertions
// ---------------------------------------------------------------------------------------------

/// Sorted names from `std::fs::read_dir(path)` (panics on error).
pub fn dir_names(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(path)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", path.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("read_dir entry in {}: {e}", path.display()))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

/// Raw names from readdir(3), including whatever `.`/`..` entries the filesystem returns
/// (std's read_dir hides those).
pub fn raw_readdir(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    use std::ffi::{CStr, CString};
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: opendir/readdir/closedir on a valid C string; entries copied before the next call.
    unsafe {
        let d = libc::opendir(c.as_ptr());
        if d.is_null() {
            return Err(io::Error::last_os_error());
        }
        let mut out = Vec::new();
        loop {
            *libc::__errno_location() = 0;
            let ent = libc::readdir(d);
            if ent.is_null() {
                let err = *libc::__errno_location();
                libc::closedir(d);
                if err != 0 {
                    return Err(io::Error::from_raw_os_error(err));
                }
                break;
            }
            out.push(CStr::from_ptr((*ent).d_name.as_ptr()).to_bytes().to_vec());
        }
        Ok(out)
    }
}

/// Readable form of raw names for assertion messages (long runs of one byte abbreviated).
pub fn show_names(names: &[Vec<u8>]) -> String {
    let shown: Vec<String> = names
        .iter()
        .map(|n| {
            let s = String::from_utf8_lossy(n).into_owned();
            if n.len() > 40 && n.iter().all(|b| *b == n[0]) {
                format!("{:?}x{}", n[0] as char, n.len())
            } else {
                format!("{s:?}")
            }
        })
        .collect();
    format!("[{}]", shown.join(", "))
}

/// The set of entries of `root` as `find` would list them: `("f"|"d"|..., relative path, size)`
/// for every entry below root (sizes only for regular files, 0 otherwise).
pub fn walk(root: &Path) -> BTreeSet<(String, String, u64)> {
    fn rec(root: &Path, dir: &Path, out: &mut BTreeSet<(String, String, u64)>) {
        for name in dir_names(dir) {
            let p = dir.join(&name);
            let md =
                fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if md.is_dir() {
                out.insert(("d".into(), rel, 0));
                rec(root, &p, out);
            } else if md.is_file() {
                out.insert(("f".into(), rel, md.len()));
            } else {
                out.insert(("?".into(), rel, 0));
            }
        }
    }
    let mut out = BTreeSet::new();
    rec(root, root, &mut out);
    out
}

/// Runs a support script with the venv's Python under a deadline; panics on non-zero exit.
pub fn run_support_script(script: &str, args: &[&str], deadline: Duration) -> Output {
    let mut cmd = Command::new(python());
    cmd.arg(support_dir().join(script))
        .args(args)
        .stdin(Stdio::null())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let out = run_with_deadline(&mut cmd, deadline);
    if !out.status.success() {
        panic!(
            "{script} {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}
