//! Loading real block traces.

use std::io::{self, BufRead};
use std::path::Path;

use super::{Access, Trace};

/// Loads a CSV block trace with columns `version,time,op,size,lbn` (size in bytes, `lbn` in
/// 512-byte sectors; the CloudPhysics format of `cloudPhysicsIO.csv`) and maps every request to
/// the `block`-byte blocks it touches. Reads (SCSI op `28`) and writes (`2a`) both count as
/// accesses: the gateway caches what it writes (write-allocate). Every access is a whole block.
/// Hits count from the first access (cold misses included).
pub fn load_block_trace(path: &Path, block: u64) -> io::Result<Trace> {
    let file = std::fs::File::open(path)?;
    let mut accesses = Vec::new();
    let bad = |line: usize, what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}:{}: {}", path.display(), line + 1, what),
        )
    };
    for (n, line) in io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        let cols: Vec<&str> = line.trim().split(',').collect();
        if cols.len() < 5 || cols[0] == "version" || line.trim().is_empty() {
            continue;
        }
        let size: u64 = cols[3].parse().map_err(|_| bad(n, "bad size"))?;
        let lbn: u64 = cols[4].parse().map_err(|_| bad(n, "bad lbn"))?;
        if size == 0 {
            continue;
        }
        let start = lbn * 512;
        let end = start + size; // exclusive
        for b in start / block..=(end - 1) / block {
            accesses.push(Access {
                key: b,
                size: block as u32,
            });
        }
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "trace".to_string());
    Ok(Trace {
        name: format!("{name} ({} KiB blocks)", block >> 10),
        accesses,
        warmup: 0,
    })
}
