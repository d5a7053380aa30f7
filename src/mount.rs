//! `cairn mount` / `cairn unmount`: settings, start-up checks, daemonizing, signals.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_fuse::MountOptions;
use cairn_gateway::gateway::{check_bucket, Gateway, GatewayConfig};
use cairn_gateway::store::{
    BlobStore, ObjectStoreBlob, RetryPolicy, RetryingStore, S3Settings, StoreLocation,
};
use clap::Args;

use crate::config::{parse_duration, parse_size, FileConfig};

/// Environment variable through which a daemon child reports readiness to its parent.
const READY_ENV: &str = "CAIRN_DAEMON_READY";

/// Arguments of `cairn mount`.
#[derive(Args, Debug, Clone)]
pub struct MountArgs {
    /// Bucket URL: s3://BUCKET[/PREFIX], gs://BUCKET[/PREFIX], az://CONTAINER[/PREFIX],
    /// or file:///ABSOLUTE/DIR (a local directory acting as the bucket).
    pub url: String,
    /// Existing empty directory to mount on.
    pub mountpoint: PathBuf,
    /// TOML file with any of the settings below (flags override it); see docs/CONFIGURATION.md.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Stay in the foreground (logs to stderr) instead of detaching.
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Mount read-only.
    #[arg(long)]
    pub read_only: bool,
    /// How long file attributes and directory listings are cached [default: 5s].
    #[arg(long, value_name = "DUR")]
    pub metadata_ttl: Option<String>,
    /// S3 endpoint URL (e.g. http://127.0.0.1:9000); overrides AWS_ENDPOINT_URL.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// S3 region; overrides AWS_REGION [default: us-east-1].
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Allow other users to access the mount.
    #[arg(long)]
    pub allow_other: bool,
    /// Owner uid shown for all files [default: the mounting user].
    #[arg(long)]
    pub uid: Option<u32>,
    /// Owner gid shown for all files [default: the mounting user's group].
    #[arg(long)]
    pub gid: Option<u32>,
    /// Directory for the local cache and logs.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// RAM cache budget, e.g. 2GiB [default: 1GiB].
    #[arg(long, value_name = "SIZE")]
    pub l1_cache_size: Option<String>,
    /// Disk cache budget under --cache-dir, e.g. 100GiB [default: 10GiB; 0 disables it].
    #[arg(long, value_name = "SIZE")]
    pub l2_cache_size: Option<String>,
    /// Cache block size, e.g. 1MiB [default: 1MiB].
    #[arg(long, value_name = "SIZE")]
    pub block_size: Option<String>,
    /// FUSE worker threads [default: 2].
    #[arg(long, value_name = "N")]
    pub fuse_threads: Option<usize>,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464 [default: off].
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// How long a written file stays unchanged before it is uploaded [default: 2s].
    #[arg(long, value_name = "DUR")]
    pub flush_delay: Option<String>,
    /// Bound on written bytes not yet uploaded; writers wait past it [default: 16GiB, at most half the cache disk's free space].
    #[arg(long, value_name = "SIZE")]
    pub max_dirty: Option<String>,
    /// At unmount, how long to wait for pending uploads before leaving them in the journal for
    /// the next mount [default: 10m].
    #[arg(long, value_name = "DUR")]
    pub drain_timeout: Option<String>,
    /// Prefetch policy: learned (the trace-trained model plus the sequential readahead window),
    /// readahead (the window only), off (no prefetching at all), or a baseline: none, fixed,
    /// linux, doubling, stride, wholefile [default: learned].
    #[arg(long, value_name = "POLICY")]
    pub prefetch: Option<String>,
    /// Model file for --prefetch learned (from `cairn prefetch train`) [default: the built-in model].
    #[arg(long, value_name = "FILE")]
    pub prefetch_model: Option<PathBuf>,
    /// Bound on prefetch bytes in flight [default: 256MiB].
    #[arg(long, value_name = "SIZE")]
    pub prefetch_inflight: Option<String>,
    /// Record every access of bucket files to this trace file (for `cairn prefetch train`).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Log file when running detached [default: CACHE_DIR/cairn.log or /tmp/cairn-<name>.log].
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

/// Everything a mount needs, merged from defaults, the config file and flags.
struct Settings {
    location: StoreLocation,
    s3: S3Settings,
    gateway: GatewayConfig,
    fuse: MountOptions,
    log_file: Option<PathBuf>,
    metrics_addr: Option<std::net::SocketAddr>,
    drain_timeout: Duration,
    read_only_requested: bool,
}

fn settings(args: &MountArgs) -> Result<Settings> {
    let file = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let location = StoreLocation::parse(&args.url).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut g = GatewayConfig::default();
    if let Some(s) = args.metadata_ttl.as_ref().or(file.metadata_ttl.as_ref()) {
        g.namespace.metadata_ttl = parse_duration(s).context("--metadata-ttl")?;
        g.namespace.negative_ttl = g.namespace.metadata_ttl;
    }
    if let Some(s) = &file.negative_ttl {
        g.namespace.negative_ttl = parse_duration(s).context("negative_ttl")?;
    }
    if let Some(s) = args.block_size.as_ref().or(file.block_size.as_ref()) {
        let b = parse_size(s).context("--block-size")?;
        if !(64 << 10..=64 << 20).contains(&b) {
            bail!("--block-size must be between 64KiB and 64MiB, got {s}");
        }
        g.fetch.block_size = b;
        g.fetch.max_request = g.fetch.max_request.max(b);
    }
    if let Some(s) = &file.max_request_size {
        g.fetch.max_request = parse_size(s)
            .context("max_request_size")?
            .max(g.fetch.block_size);
    }
    if let Some(s) = args.l1_cache_size.as_ref().or(file.l1_cache_size.as_ref()) {
        g.l1_bytes = parse_size(s).context("--l1-cache-size")?;
    }
    if let Some(s) = &file.max_inflight {
        g.fetch.max_inflight_bytes = parse_size(s)
            .context("max_inflight")?
            .max(g.fetch.max_request);
    }
    if let Some(s) = &file.max_readahead {
        g.readahead.max = parse_size(s).context("max_readahead")?;
        g.readahead.initial = g.readahead.initial.min(g.readahead.max);
    }
    if let Some(p) = args.prefetch.as_ref().or(file.prefetch.as_ref()) {
        g.prefetch.policy = p.clone();
    }
    // Absolute: the daemon does not keep the caller's working directory.
    let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    g.prefetch.model = args
        .prefetch_model
        .clone()
        .or(file.prefetch_model.clone())
        .map(absolute);
    if g.prefetch.model.is_some() && g.prefetch.policy != "learned" {
        bail!(
            "--prefetch-model needs --prefetch learned (got --prefetch {})",
            g.prefetch.policy
        );
    }
    if let Some(s) = args
        .prefetch_inflight
        .as_ref()
        .or(file.prefetch_inflight.as_ref())
    {
        g.prefetch.scheduler.max_inflight_bytes = parse_size(s).context("--prefetch-inflight")?;
    }
    if let Some(s) = &file.prefetch_cache_share {
        if !(0.0..=1.0).contains(s) {
            bail!("prefetch_cache_share must be between 0 and 1, got {s}");
        }
        g.prefetch.scheduler.cache_share = *s;
    }
    // Fail at the command line, before detaching, on a bad policy name or model file.
    cairn_gateway::read::prefetch::build_policy(&g.prefetch.policy, g.prefetch.model.as_deref())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    g.trace = args.trace.clone().or(file.trace.clone()).map(absolute);
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let threads = args.fuse_threads.or(file.fuse_threads).unwrap_or(2);
    if threads == 0 || threads > 64 {
        bail!("--fuse-threads must be between 1 and 64");
    }
    let cache_dir = args.cache_dir.clone().or(file.cache_dir.clone());
    let l2_budget = match args.l2_cache_size.as_ref().or(file.l2_cache_size.as_ref()) {
        Some(s) => parse_size(s).context("--l2-cache-size")?,
        None => 10 << 30,
    };
    let l2_min_free = match &file.l2_min_free {
        Some(s) => parse_size(s).context("l2_min_free")?,
        None => 1 << 30,
    };
    g.l2 = match &cache_dir {
        Some(dir) if l2_budget > 0 => Some(cairn_cache::L2Config {
            dir: dir.join("l2"),
            budget: l2_budget,
            min_free: l2_min_free,
            policy: cairn_cache::policy::PolicyKind::Adaptive,
        }),
        _ => None,
    };
    let read_only = args.read_only || file.read_only.unwrap_or(false);
    g.write = match (&cache_dir, read_only) {
        (_, true) => None,
        (None, false) => None,
        (Some(dir), false) => {
            let mut w = cairn_gateway::write::WriteConfig::new(dir.join("journal"));
            if let Some(s) = args.flush_delay.as_ref().or(file.flush_delay.as_ref()) {
                w.flush_delay = parse_duration(s).context("--flush-delay")?;
            }
            if let Some(s) = args.max_dirty.as_ref().or(file.max_dirty.as_ref()) {
                w.max_dirty_bytes = parse_size(s).context("--max-dirty")?;
            }
            if let Some(on) = file.journal_direct_io {
                w.direct_io = on;
            }
            Some(w)
        }
    };
    let drain_timeout = match args.drain_timeout.as_ref().or(file.drain_timeout.as_ref()) {
        Some(s) => parse_duration(s).context("--drain-timeout")?,
        None => Duration::from_secs(600),
    };
    let log_file = args
        .log_file
        .clone()
        .or(file.log_file.clone())
        .or_else(|| cache_dir.as_ref().map(|d| d.join("cairn.log")));
    Ok(Settings {
        s3: S3Settings {
            endpoint_url: args.endpoint_url.clone().or(file.endpoint_url.clone()),
            region: args.region.clone().or(file.region.clone()),
            ..Default::default()
        },
        fuse: MountOptions {
            fs_name: location.display(),
            allow_other: args.allow_other || file.allow_other.unwrap_or(false),
            // Writes need the journal, which lives under --cache-dir.
            read_only: g.write.is_none(),
            threads,
            uid: args.uid.or(file.uid).unwrap_or(uid),
            gid: args.gid.or(file.gid).unwrap_or(gid),
        },
        location,
        gateway: g,
        log_file,
        drain_timeout,
        read_only_requested: read_only,
        metrics_addr: match args.metrics_addr.as_ref().or(file.metrics_addr.as_ref()) {
            Some(a) => Some(a.parse().with_context(|| {
                format!("invalid --metrics-addr '{a}' (expected IP:PORT, e.g. 127.0.0.1:9464)")
            })?),
            None => None,
        },
    })
}

/// `cairn mount`.
pub fn run(args: MountArgs) -> Result<()> {
    let s = settings(&args)?;
    check_mountpoint(&args.mountpoint)?;
    if let Some(dir) = &args.cache_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create cache directory {}", dir.display()))?;
    }
    if !args.foreground {
        return spawn_daemon(&args, &s);
    }
    run_foreground(args, s)
}

fn check_mountpoint(p: &Path) -> Result<()> {
    if is_mounted(p) {
        bail!(
            "{} is already a mount point (if its daemon died, run `cairn unmount {}` first)",
            p.display(),
            p.display()
        );
    }
    let meta = std::fs::metadata(p)
        .with_context(|| format!("mount point {} does not exist", p.display()))?;
    if !meta.is_dir() {
        bail!("mount point {} is not a directory", p.display());
    }
    Ok(())
}

/// True when `p` is a mount point; works on a dead FUSE mount too (no stat of `p` itself).
fn is_mounted(p: &Path) -> bool {
    let canon = crate::admin::absolute(p);
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = canon.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m == want)
}

/// Re-executes ourselves in the foreground, detached, and waits for it to report the mount.
fn spawn_daemon(args: &MountArgs, s: &Settings) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the cairn executable")?;
    let log = s.log_file.clone().unwrap_or_else(|| {
        let name: String = args
            .mountpoint
            .to_string_lossy()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        std::env::temp_dir().join(format!("cairn{name}.log"))
    });
    let log_out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("cannot open log file {}", log.display()))?;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .arg("--foreground")
        .env(READY_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_out);
    // SAFETY: setsid in the child before exec only detaches it from our session.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the cairn daemon")?;
    let out = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).ok();
    let line = line.trim();
    if line == "READY" {
        eprintln!(
            "cairn: mounted {} at {} (pid {}, log {})",
            s.location.display(),
            args.mountpoint.display(),
            child.id(),
            log.display()
        );
        return Ok(());
    }
    let _ = child.wait();
    match line.strip_prefix("ERROR ") {
        Some(msg) => bail!("{msg}"),
        None => bail!(
            "the cairn daemon exited before mounting; see {}",
            log.display()
        ),
    }
}

fn notify_parent(msg: &str) {
    if std::env::var_os(READY_ENV).is_some() {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{msg}");
        let _ = out.flush();
        // Detach stdout from the parent's pipe so it can exit.
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            use std::os::fd::AsRawFd;
            // SAFETY: dup2 onto our own stdout descriptor.
            unsafe { libc::dup2(null.as_raw_fd(), 1) };
        }
    }
}

fn run_foreground(args: MountArgs, s: Settings) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let result = serve(&args, s);
    if let Err(e) = &result {
        notify_parent(&format!("ERROR {}", format!("{e:#}").replace('\n', " ")));
    }
    result
}

fn serve(args: &MountArgs, s: Settings) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cairn-io")
        .build()
        .context("cannot start the async runtime")?;
    let raw = ObjectStoreBlob::open(&s.location, &s.s3).map_err(|e| anyhow::anyhow!("{e}"))?;
    let prefix = s.location.prefix.clone();
    rt.block_on(async {
        match tokio::time::timeout(Duration::from_secs(60), check_bucket(&raw, &prefix)).await {
            Ok(r) => r.map_err(|m| anyhow::anyhow!(m)),
            Err(_) => bail!("no answer from {} within 60 s", raw.describe()),
        }
    })?;
    if s.gateway.write.is_none() && !s.read_only_requested {
        tracing::warn!(
            "no --cache-dir: writes need a local journal there, so this mount is read-only"
        );
    }
    let store_id = s.location.display();
    let store: Arc<dyn BlobStore> = Arc::new(RetryingStore::new(raw, RetryPolicy::default()));
    let gw = {
        let _rt = rt.enter();
        Gateway::new(store, &store_id, prefix, s.gateway.clone()).map_err(|e| anyhow::anyhow!(e))?
    };
    // Catch SIGTERM/SIGINT before the kernel mount exists, so a signal at any moment after it
    // unmounts cleanly instead of killing us with the mount left behind.
    let (mut term, mut int, mut hup) = {
        use tokio::signal::unix::{signal, SignalKind};
        let _rt = rt.enter();
        (
            signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?,
            signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?,
            signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?,
        )
    };
    let reloader = reloader(args.config.clone(), gw.clone());
    let socket = crate::admin::socket_path(&args.mountpoint);
    {
        let (path, gw, reload) = (socket.clone(), gw.clone(), reloader.clone());
        rt.spawn(async move {
            if let Err(e) = crate::admin::serve_socket(path, gw, reload).await {
                tracing::warn!("admin socket stopped: {e:#}");
            }
        });
    }
    if let Some(addr) = s.metrics_addr {
        let listener = rt.block_on(tokio::net::TcpListener::bind(addr));
        drop(listener.with_context(|| format!("cannot listen on --metrics-addr {addr}"))?);
        let gw = gw.clone();
        rt.spawn(async move {
            if let Err(e) = crate::admin::serve_metrics(addr, gw).await {
                tracing::warn!("metrics endpoint stopped: {e:#}");
            }
        });
        tracing::info!("Prometheus metrics on http://{addr}/metrics");
    }
    let mut session = cairn_fuse::mount(gw.clone(), rt.handle().clone(), &args.mountpoint, &s.fuse)
        .with_context(|| {
            format!(
                "cannot mount at {} (is fuse3 installed and /dev/fuse available?)",
                args.mountpoint.display()
            )
        })?;
    tracing::info!(
        "mounted {} at {}",
        s.location.display(),
        args.mountpoint.display()
    );
    eprintln!(
        "cairn: mounted {} at {}",
        s.location.display(),
        args.mountpoint.display()
    );
    notify_parent("READY");
    let signal = rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = term.recv() => return Some("SIGTERM"),
                _ = int.recv() => return Some("SIGINT"),
                _ = hup.recv() => {
                    let r = reloader.clone();
                    match tokio::task::spawn_blocking(move || r()).await {
                        Ok(Ok(msg)) => tracing::info!("SIGHUP: {}", msg.trim()),
                        Ok(Err(e)) => tracing::warn!("SIGHUP: reload failed: {e:#}"),
                        Err(e) => tracing::warn!("SIGHUP: reload failed: {e}"),
                    }
                }
                _ = tick.tick() => if !session.is_running() { return None },
            }
        }
    });
    if let Some(sig) = signal {
        tracing::info!("{sig}: unmounting {}", args.mountpoint.display());
        if let Err(e) = session.unmount() {
            tracing::warn!("unmount through the session failed: {e}");
        }
        // With auto_unmount the session only closes its watcher socket; unmount explicitly so
        // the mount is gone when we exit, not some time later.
        for _ in 0..50 {
            if !is_mounted(&args.mountpoint) {
                break;
            }
            if unmount(&args.mountpoint).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let _ = std::fs::remove_file(&socket);
    session.join().context("FUSE session ended with an error")?;
    tracing::info!("unmounted {}", args.mountpoint.display());
    if let Some(wb) = gw.write_back() {
        let (pending, bytes) = wb.pending();
        if pending > 0 {
            tracing::info!(
                pending,
                bytes,
                "uploading pending writes before exit (up to {})",
                humantime::format_duration(s.drain_timeout)
            );
        }
    }
    match rt.block_on(gw.shutdown(s.drain_timeout)) {
        Ok(()) => {}
        Err(e) => tracing::warn!(
            "{e}; they stay in the journal and are uploaded by the next mount with this --cache-dir"
        ),
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

/// Re-reads the config file and applies what reloads live: the cache budgets and the disk
/// cache's free-space floor.
fn reloader(config: Option<PathBuf>, gw: Arc<Gateway>) -> crate::admin::Reloader {
    Arc::new(move || {
        let Some(path) = &config else {
            bail!("mounted without --config: nothing to reload");
        };
        let file = FileConfig::load(path)?;
        let mut applied = Vec::new();
        if let Some(v) = &file.l1_cache_size {
            let b = parse_size(v).context("l1_cache_size")?;
            gw.l1().resize(b);
            applied.push(format!("l1_cache_size={v}"));
        }
        if let Some(l2) = gw.l2() {
            if let Some(v) = &file.l2_min_free {
                l2.set_min_free(parse_size(v).context("l2_min_free")?);
                applied.push(format!("l2_min_free={v}"));
            }
            if let Some(v) = &file.l2_cache_size {
                l2.resize(parse_size(v).context("l2_cache_size")?);
                applied.push(format!("l2_cache_size={v}"));
            }
        }
        Ok(format!(
            "reloaded {}: {}\n",
            path.display(),
            if applied.is_empty() {
                "no live settings in it".to_string()
            } else {
                applied.join(", ")
            }
        ))
    })
}

/// `cairn unmount`.
pub fn unmount(mountpoint: &Path) -> Result<()> {
    if !is_mounted(mountpoint) {
        bail!("{} is not mounted", mountpoint.display());
    }
    for (prog, args) in [
        ("fusermount3", vec!["-u"]),
        ("fusermount", vec!["-u"]),
        ("umount", vec![]),
    ] {
        let status = Command::new(prog)
            .args(&args)
            .arg(mountpoint)
            .stderr(Stdio::null())
            .status();
        if matches!(status, Ok(s) if s.success()) {
            return Ok(());
        }
    }
    bail!(
        "could not unmount {} (is it busy? try `fusermount3 -uz {}`)",
        mountpoint.display(),
        mountpoint.display()
    )
}
