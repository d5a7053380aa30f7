//! The `cairn` command: mount an object store as a POSIX path.

mod admin;
mod config;
mod memory;
mod mount;
mod prefetch_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// cairn: a tiered caching file-system gateway for object stores.
///
/// Mounts a bucket (S3-compatible, GCS, Azure Blob, or a local directory) as a POSIX directory.
/// Reads are served from a RAM block cache, then from the bucket with ranged GETs and readahead.
#[derive(Parser, Debug)]
#[command(name = "cairn", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mount a bucket at a directory.
    ///
    /// Examples:
    ///   cairn mount s3://my-bucket/datasets /mnt/data
    ///   cairn mount s3://bench /mnt/b --endpoint-url http://127.0.0.1:9000 --foreground
    ///   cairn mount file:///srv/bucket /mnt/local
    ///
    /// S3 credentials come from the standard AWS environment (AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL, AWS_PROFILE);
    /// flags override the environment, and both override the --config file.
    Mount(mount::MountArgs),
    /// Unmount a cairn mount (same as `fusermount3 -u MOUNTPOINT`).
    Unmount {
        /// The mount point.
        mountpoint: PathBuf,
    },
    /// Show a running mount's cache and request counters.
    Stats {
        /// The mount point.
        mountpoint: PathBuf,
        /// Print the Prometheus text format instead of a table.
        #[arg(long)]
        prometheus: bool,
    },
    /// Manage a running mount's caches.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Upload everything written on a mount now and wait until the bucket has it.
    Flush {
        /// The mount point.
        mountpoint: PathBuf,
        /// Give up after this long, e.g. 10m [default: no limit].
        #[arg(long, value_name = "DUR")]
        timeout: Option<String>,
    },
    /// Train and manage prefetch models.
    Prefetch {
        #[command(subcommand)]
        command: PrefetchCommand,
    },
    /// Re-read a running mount's --config file and apply the live settings (same as SIGHUP).
    Reload {
        /// The mount point.
        mountpoint: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum PrefetchCommand {
    /// Train the learned prefetcher on traces recorded with `cairn mount --trace FILE`;
    /// load the result with `cairn mount --prefetch-model FILE`.
    Train {
        /// Trace files.
        #[arg(required = true)]
        traces: Vec<PathBuf>,
        /// Where to write the model.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum CacheCommand {
    /// Change the RAM (L1) and/or disk (L2) cache budgets without remounting; a shrink evicts
    /// down to the new budget before the command returns.
    Resize {
        /// New RAM cache budget, e.g. 2GiB.
        #[arg(long, value_name = "SIZE")]
        l1: Option<String>,
        /// New disk cache budget, e.g. 100GiB.
        #[arg(long, value_name = "SIZE")]
        l2: Option<String>,
        /// The mount point.
        mountpoint: PathBuf,
    },
}

fn resize(mountpoint: &std::path::Path, l1: Option<&str>, l2: Option<&str>) -> anyhow::Result<()> {
    if l1.is_none() && l2.is_none() {
        anyhow::bail!("give --l1 SIZE and/or --l2 SIZE");
    }
    let size = |s: Option<&str>| -> anyhow::Result<String> {
        Ok(match s {
            Some(v) => config::parse_size(v)?.to_string(),
            None => "-".into(),
        })
    };
    let cmd = format!("resize {} {}", size(l1)?, size(l2)?);
    let body = admin::request(mountpoint, &cmd)?;
    print!("{body}");
    Ok(())
}

fn flush(mountpoint: &std::path::Path, timeout: Option<&str>) -> anyhow::Result<()> {
    use std::io::Write;
    let limit = timeout.map(config::parse_duration).transpose()?;
    let start = std::time::Instant::now();
    let parse = |body: String| -> anyhow::Result<(u64, u64)> {
        let mut w = body.split_whitespace();
        let n = w.next().unwrap_or("0").parse()?;
        let b = w.next().unwrap_or("0").parse()?;
        Ok((n, b))
    };
    parse(admin::request(mountpoint, "flush")?)?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_print = std::time::Instant::now() - std::time::Duration::from_secs(10);
    loop {
        let (n, bytes) = parse(admin::request(mountpoint, "pending")?)?;
        if n == 0 {
            if tty {
                eprint!("\r\x1b[K");
            }
            eprintln!(
                "cairn: everything is in the bucket ({:.1} s)",
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if tty || last_print.elapsed() >= std::time::Duration::from_secs(5) {
            let line = format!(
                "cairn: {n} item(s) pending, {:.1} MiB not yet uploaded",
                bytes as f64 / 1048576.0
            );
            if tty {
                eprint!("\r\x1b[K{line}");
            } else {
                eprintln!("{line}");
            }
            let _ = std::io::stderr().flush();
            last_print = std::time::Instant::now();
        }
        if limit.is_some_and(|l| start.elapsed() >= l) {
            if tty {
                eprintln!();
            }
            anyhow::bail!("{n} item(s) still pending after {}", timeout.unwrap_or(""));
        }
        // Keep the flusher forced while we wait.
        admin::request(mountpoint, "flush")?;
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn main() -> ExitCode {
    memory::fix_malloc_mmap_threshold();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mount(args) => mount::run(args),
        Command::Unmount { mountpoint } => mount::unmount(&mountpoint),
        Command::Stats {
            mountpoint,
            prometheus,
        } => admin::request(&mountpoint, if prometheus { "metrics" } else { "stats" })
            .map(|body| print!("{body}")),
        Command::Flush {
            mountpoint,
            timeout,
        } => flush(&mountpoint, timeout.as_deref()),
        Command::Reload { mountpoint } => {
            admin::request(&mountpoint, "reload").map(|body| print!("{body}"))
        }
        Command::Cache {
            command: CacheCommand::Resize { l1, l2, mountpoint },
        } => resize(&mountpoint, l1.as_deref(), l2.as_deref()),
        Command::Prefetch {
            command: PrefetchCommand::Train { traces, output },
        } => prefetch_cmd::train_cmd(&traces, &output),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("cairn: error: {msg}");
            ExitCode::FAILURE
        }
    }
}
