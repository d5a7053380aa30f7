//! Access traces: what the gateway records and what the simulator replays.
//!
//! A trace is a sequence of [`TraceRecord`]s ordered by time. The binary file format (one fixed
//! header, then fixed-size little-endian records) is documented in `docs/PREFETCH.md` and
//! implemented by [`TraceWriter`] and [`TraceReader`].

mod cloudphysics;
mod codec;

pub use cloudphysics::load_cloudphysics;
pub use codec::{TraceError, TraceReader, TraceWriter, RECORD_SIZE, TRACE_MAGIC, TRACE_VERSION};

/// What a trace record describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    /// A file was opened (offset and length 0).
    Open = 1,
    /// A read of `len` bytes at `offset` (demand: the application asked for it).
    Read = 2,
    /// A write of `len` bytes at `offset`.
    Write = 3,
    /// A handle was closed.
    Close = 4,
}

impl Op {
    /// The op for its on-disk code.
    pub fn from_code(code: u8) -> Option<Op> {
        Some(match code {
            1 => Op::Open,
            2 => Op::Read,
            3 => Op::Write,
            4 => Op::Close,
            _ => return None,
        })
    }
}

/// Coarse file format, from the file name's extension. Format-aware prefetching keys on it, and
/// it is a model feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum FormatClass {
    /// Unknown or no extension.
    #[default]
    Other = 0,
    /// Apache Parquet (`.parquet`): footer first, then column chunks.
    Parquet = 1,
    /// safetensors (`.safetensors`): JSON header, then tensors.
    Safetensors = 2,
    /// tar archives, WebDataset shards (`.tar`).
    Tar = 3,
    /// TFRecord shards (`.tfrecord`, `.tfrecords`).
    TfRecord = 4,
    /// NumPy archives and arrays (`.npz`, `.npy`).
    Npz = 5,
    /// HDF5 (`.h5`, `.hdf5`).
    Hdf5 = 6,
    /// Checkpoints (`.pt`, `.pth`, `.ckpt`, `.bin`).
    Checkpoint = 7,
    /// Images and small media (`.jpg`, `.jpeg`, `.png`, `.webp`).
    Image = 8,
    /// Text and sources (`.txt`, `.json`, `.csv`, `.rs`, `.c`, `.h`, `.o`, ...).
    Text = 9,
}

impl FormatClass {
    /// Every class, in code order.
    pub const ALL: [FormatClass; 10] = [
        FormatClass::Other,
        FormatClass::Parquet,
        FormatClass::Safetensors,
        FormatClass::Tar,
        FormatClass::TfRecord,
        FormatClass::Npz,
        FormatClass::Hdf5,
        FormatClass::Checkpoint,
        FormatClass::Image,
        FormatClass::Text,
    ];

    /// The class of a file name (by its extension, case-insensitive).
    pub fn from_name(name: &str) -> FormatClass {
        let ext = match name.rsplit_once('.') {
            Some((_, e)) => e.to_ascii_lowercase(),
            None => return FormatClass::Other,
        };
        match ext.as_str() {
            "parquet" | "pq" => FormatClass::Parquet,
            "safetensors" => FormatClass::Safetensors,
            "tar" => FormatClass::Tar,
            "tfrecord" | "tfrecords" => FormatClass::TfRecord,
            "npz" | "npy" => FormatClass::Npz,
            "h5" | "hdf5" => FormatClass::Hdf5,
            "pt" | "pth" | "ckpt" | "bin" => FormatClass::Checkpoint,
            "jpg" | "jpeg" | "png" | "webp" => FormatClass::Image,
            "txt" | "json" | "csv" | "rs" | "c" | "h" | "cc" | "cpp" | "o" | "py" => {
                FormatClass::Text
            }
            _ => FormatClass::Other,
        }
    }

    /// The class for its on-disk code (unknown codes read as `Other`).
    pub fn from_code(code: u8) -> FormatClass {
        FormatClass::ALL
            .get(code as usize)
            .copied()
            .unwrap_or(FormatClass::Other)
    }
}

/// One access, as recorded by the gateway or written by a workload generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceRecord {
    /// Nanoseconds since the start of the trace.
    pub time_ns: u64,
    /// The requesting thread or process (FUSE gives the pid); a closed-loop replay runs each
    /// stream's records in order.
    pub stream: u32,
    /// Hash of the requesting program's name (0 when unknown).
    pub program_hash: u32,
    /// The open file handle.
    pub handle: u64,
    /// The file's inode.
    pub inode: u64,
    /// Hash of the file's path inside the mount.
    pub path_hash: u64,
    /// Hash of the parent directory's path.
    pub dir_hash: u64,
    /// Byte offset (0 for open and close).
    pub offset: u64,
    /// Bytes (0 for open and close).
    pub len: u32,
    /// File format by extension.
    pub format: FormatClass,
    /// What happened.
    pub op: Op,
    /// The file's size when the access happened.
    pub file_size: u64,
}

/// A stable 64-bit hash (FNV-1a) of a path or name, the same in the gateway, the generators
/// and the model (std's hasher is randomly seeded per process).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_from_name() {
        assert_eq!(
            FormatClass::from_name("a/b/part-0.parquet"),
            FormatClass::Parquet
        );
        assert_eq!(
            FormatClass::from_name("model.SAFETENSORS"),
            FormatClass::Safetensors
        );
        assert_eq!(FormatClass::from_name("shard-000.tar"), FormatClass::Tar);
        assert_eq!(FormatClass::from_name("noext"), FormatClass::Other);
        for c in FormatClass::ALL {
            assert_eq!(FormatClass::from_code(c as u8), c);
        }
    }

    #[test]
    fn stable_hash_is_fnv1a() {
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(stable_hash(b"a/b"), stable_hash(b"a/c"));
    }
}
