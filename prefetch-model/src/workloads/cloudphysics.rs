//! The real CloudPhysics block trace as a replayable workload.

use std::path::Path;

use crate::trace::{load_cloudphysics, stable_hash, FormatClass, Op, TraceRecord};
use crate::{FileRef, Namespace, Workload};

/// Why a workload could not be built.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The trace file could not be read or parsed.
    #[error("loading trace {path}: {source}")]
    Trace {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Path the volume is given inside the mount (hashed into the records).
const VOLUME_PATH: &str = "cloudphysics/volume.vmdk";
/// Inode of the volume.
const VOLUME_INODE: u64 = 2;
/// Stream of the virtual machine's I/O.
const VM_STREAM: u32 = 1000;

/// Duration of one tick of the CSV's `time` column (see [`cloudphysics`]).
pub const CLOUDPHYSICS_TICK_NS: u64 = 1_000_000_000;

/// A VM's virtual disk as seen by the storage under it (`cloudPhysicsIO.csv`: a CloudPhysics
/// block trace of one VMware volume, 113,872 reads and writes): every request of the CSV becomes
/// a read or write of the same bytes of one file, `volume.vmdk`, sized to the largest offset
/// touched, by one stream between an open at time 0 and a close after the last request. Mixed
/// sizes (512 B to 64 KiB and more), mostly writes, partly sequential.
///
/// Think times come from the trace's own timestamps. Its `time` column spans 7,200 ticks with
/// 6,754 distinct values and up to 1,479 requests sharing one, which only makes sense as
/// seconds (two hours of a VM's I/O; as microseconds it would be 16 million IOPS), so a tick
/// is [`CLOUDPHYSICS_TICK_NS`] and the requests of one tick are spread evenly over it: the gap
/// closed-loop replay uses as think time is the VM's own pacing.
pub fn cloudphysics(path: &Path) -> Result<Workload, WorkloadError> {
    cloudphysics_with_tick(path, CLOUDPHYSICS_TICK_NS)
}

/// [`cloudphysics`] with another duration for one tick of the `time` column (a shorter tick
/// compresses the think times, e.g. for a faster replay).
pub fn cloudphysics_with_tick(path: &Path, tick_ns: u64) -> Result<Workload, WorkloadError> {
    let raw = load_cloudphysics(path).map_err(|source| WorkloadError::Trace {
        path: path.display().to_string(),
        source,
    })?;
    let size = raw
        .iter()
        .map(|r| r.offset + r.len as u64)
        .max()
        .unwrap_or(0);
    let file = FileRef {
        inode: VOLUME_INODE,
        size,
        format: FormatClass::from_name(VOLUME_PATH),
        path_hash: stable_hash(VOLUME_PATH.as_bytes()),
        dir_hash: stable_hash(b"cloudphysics"),
    };
    let stamp = |time_ns: u64, op: Op, offset: u64, len: u32| TraceRecord {
        time_ns,
        stream: VM_STREAM,
        program_hash: 0,
        handle: 1,
        inode: file.inode,
        path_hash: file.path_hash,
        dir_hash: file.dir_hash,
        offset,
        len,
        format: file.format,
        op,
        file_size: size,
    };
    let mut records = Vec::with_capacity(raw.len() + 2);
    records.push(stamp(0, Op::Open, 0, 0));
    // The loader turns each tick into 1000 ns since the first request; recover the ticks.
    let tick_of = |r: &TraceRecord| r.time_ns / 1000;
    let mut last = 0;
    let mut i = 0;
    while i < raw.len() {
        let tick = tick_of(&raw[i]);
        let n = raw[i..].iter().take_while(|r| tick_of(r) == tick).count();
        for (k, r) in raw[i..i + n].iter().enumerate() {
            // Shifted by 1 us so every request follows the open; never earlier than the last.
            let t = 1_000 + tick * tick_ns + k as u64 * tick_ns / n as u64;
            last = last.max(t);
            records.push(stamp(last, r.op, r.offset, r.len));
        }
        i += n;
    }
    records.push(stamp(last + 1_000, Op::Close, 0, 0));
    let mut namespace = Namespace::default();
    namespace.add_file(file);
    Ok(Workload {
        name: "cloudphysics".to_string(),
        records,
        namespace,
    })
}
