//! The local admin channel of a running mount: a Unix socket per mount point that `cairn stats`
//! and `cairn cache resize` talk to, and the optional Prometheus HTTP endpoint.
//!
//! Protocol: the client sends one line (`stats`, `metrics`, `resize L1 L2` with byte counts or
//! `-`, `reload`); the daemon answers `OK` or `ERR <message>` on the first line, then the body.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_gateway::gateway::Gateway;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Directory holding admin sockets: `/run/cairn` for root, else `$XDG_RUNTIME_DIR/cairn` or
/// `/tmp/cairn-<uid>`.
fn socket_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if uid == 0 && Path::new("/run").is_dir() {
        return PathBuf::from("/run/cairn");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("cairn"),
        None => std::env::temp_dir().join(format!("cairn-{uid}")),
    }
}

/// Absolute path of a mount point without touching it (it may be a dead mount).
pub fn absolute(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|c| c.join(name))
            .unwrap_or(abs.clone()),
        _ => abs,
    }
}

/// The admin socket of the mount at `mountpoint` (named by a hash of its absolute path, since
/// socket paths are limited to 108 bytes).
pub fn socket_path(mountpoint: &Path) -> PathBuf {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in absolute(mountpoint).as_os_str().as_encoded_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    socket_dir().join(format!("mount-{h:016x}.sock"))
}

/// What the daemon does for `reload` (and SIGHUP): re-read the config file and apply what can
/// change live. Returns a line describing what was applied.
pub type Reloader = Arc<dyn Fn() -> Result<String> + Send + Sync>;

/// Serves the admin socket until the runtime stops. Removes a stale socket first.
pub async fn serve_socket(path: PathBuf, gw: Arc<Gateway>, reload: Reloader) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let gw = gw.clone();
        let reload = reload.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut line = String::new();
            let mut r = BufReader::new(r.take(4096));
            let reply =
                match tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line)).await {
                    Ok(Ok(_)) => handle(line.trim(), &gw, &reload).await,
                    _ => Err(anyhow::anyhow!("no request")),
                };
            let text = match reply {
                Ok(body) => format!("OK\n{body}"),
                Err(e) => format!("ERR {}\n", format!("{e:#}").replace('\n', " ")),
            };
            let _ = w.write_all(text.as_bytes()).await;
            let _ = w.shutdown().await;
        });
    }
}

use tokio::io::AsyncReadExt;

async fn handle(line: &str, gw: &Arc<Gateway>, reload: &Reloader) -> Result<String> {
    let mut words = line.split_whitespace();
    match words.next() {
        Some("stats") => Ok(gw.stats().to_table()),
        Some("metrics") => Ok(gw.render_metrics()),
        Some("resize") => {
            let parse = |w: Option<&str>| -> Result<Option<u64>> {
                match w {
                    None | Some("-") => Ok(None),
                    Some(n) => Ok(Some(n.parse().context("resize takes byte counts")?)),
                }
            };
            let l1 = parse(words.next())?;
            let l2 = parse(words.next())?;
            gw.resize(l1, l2).await.map_err(|e| anyhow::anyhow!(e))?;
            let s = gw.stats();
            Ok(format!(
                "L1 budget {} (using {}){}\n",
                s.l1.budget,
                s.l1.used,
                s.l2.map(|t| format!(", L2 budget {} (using {})", t.budget, t.used))
                    .unwrap_or_default()
            ))
        }
        Some("reload") => {
            let r = reload.clone();
            tokio::task::spawn_blocking(move || r())
                .await
                .context("reload task")?
        }
        Some("flush") => {
            // Asks for everything to be uploaded now; the caller polls `pending`.
            let wb = gw
                .write_back()
                .context("this mount is read-only: nothing to flush")?;
            let (n, bytes) = wb.pending();
            wb.request_flush();
            Ok(format!("{n} {bytes}\n"))
        }
        Some("pending") => {
            let (n, bytes) = gw.write_back().map(|w| w.pending()).unwrap_or((0, 0));
            Ok(format!("{n} {bytes}\n"))
        }
        other => bail!("unknown admin command {other:?}"),
    }
}

/// Sends one admin command to the mount at `mountpoint` and returns the body of the reply.
pub fn request(mountpoint: &Path, command: &str) -> Result<String> {
    use std::io::{Read, Write};
    let path = socket_path(mountpoint);
    let mut s = std::os::unix::net::UnixStream::connect(&path).with_context(|| {
        format!(
            "no cairn daemon answers for {} (admin socket {})",
            mountpoint.display(),
            path.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    s.write_all(format!("{command}\n").as_bytes())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    match reply.split_once('\n') {
        Some(("OK", body)) => Ok(body.to_string()),
        Some((err, _)) if err.starts_with("ERR ") => bail!("{}", &err[4..]),
        _ => bail!("unexpected reply from the daemon: {reply:?}"),
    }
}

/// Serves `GET /metrics` (any path) in the Prometheus text format on `addr`.
pub async fn serve_metrics(addr: std::net::SocketAddr, gw: Arc<Gateway>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on --metrics-addr {addr}"))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let gw = gw.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r.take(16 * 1024));
            let mut line = String::new();
            // Read the request head; the body (if any) is ignored.
            loop {
                line.clear();
                match tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line)).await {
                    Ok(Ok(n)) if n > 0 && line != "\r\n" && line != "\n" => continue,
                    _ => break,
                }
            }
            let body = gw.render_metrics();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = w.write_all(head.as_bytes()).await;
            let _ = w.write_all(body.as_bytes()).await;
            let _ = w.shutdown().await;
        });
    }
}
