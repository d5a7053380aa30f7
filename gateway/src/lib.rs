//! cairn core: the storage seam, the namespace (inodes, key mapping, metadata cache) and the
//! read path. No FUSE types live here; the `cairn-fuse` crate adapts kernel requests to these calls.

pub mod error;
pub mod gateway;
pub mod metrics;
pub mod namespace;
pub mod read;
pub mod stats;
pub mod store;
pub mod trace_recorder;
pub mod write;
pub mod write_ops;
