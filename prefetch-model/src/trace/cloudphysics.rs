//! The real block trace `cloudPhysicsIO.csv` (columns `version,time,op,size,lbn`; op is the SCSI
//! opcode, `28` read and `2a` write; `lbn` in 512-byte sectors) as trace records of one stream
//! over one file (the volume). The time column counts coarse ticks (it spans ~7,200 values with
//! up to ~1,500 requests per value, so one tick is about a second, not a microsecond); records
//! carry `tick * 1000` ns here, and `workloads::cloudphysics` rescales and spreads them.

use std::io::{self, BufRead};
use std::path::Path;

use super::{FormatClass, Op, TraceRecord};

/// Loads a CloudPhysics CSV block trace. The volume becomes inode 1, sized to the largest
/// offset touched; each request becomes one read or write record of stream 0. Unparseable
/// lines are errors (with their line number); the header line is skipped.
pub fn load_cloudphysics(path: &Path) -> io::Result<Vec<TraceRecord>> {
    let file = std::fs::File::open(path)?;
    let bad = |line: usize, what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}:{}: {}", path.display(), line + 1, what),
        )
    };
    let mut out = Vec::new();
    let mut t0 = None;
    for (n, line) in io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        let line = line.trim();
        if line.is_empty() || line.starts_with("version") {
            continue;
        }
        let cols: Vec<&str> = line.split(',').collect();
        if cols.len() < 5 {
            return Err(bad(n, "expected 5 columns"));
        }
        let time_us: u64 = cols[1].parse().map_err(|_| bad(n, "bad time"))?;
        let op = match cols[2] {
            "28" => Op::Read,
            "2a" | "2A" => Op::Write,
            _ => continue,
        };
        let size: u64 = cols[3].parse().map_err(|_| bad(n, "bad size"))?;
        let lbn: u64 = cols[4].parse().map_err(|_| bad(n, "bad lbn"))?;
        if size == 0 {
            continue;
        }
        let t0 = *t0.get_or_insert(time_us);
        out.push(TraceRecord {
            time_ns: time_us.saturating_sub(t0) * 1000,
            stream: 0,
            program_hash: 0,
            handle: 1,
            inode: 1,
            path_hash: 1,
            dir_hash: 0,
            offset: lbn * 512,
            len: size.min(u32::MAX as u64) as u32,
            format: FormatClass::Other,
            op,
            file_size: 0,
        });
    }
    let size = out
        .iter()
        .map(|r| r.offset + r.len as u64)
        .max()
        .unwrap_or(0);
    for r in &mut out {
        r.file_size = size;
    }
    Ok(out)
}
