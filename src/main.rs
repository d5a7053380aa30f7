//! The `cairn` command: mount an object store as a POSIX path.

mod config;
mod mount;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mount(args) => mount::run(args),
        Command::Unmount { mountpoint } => mount::unmount(&mountpoint),
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
