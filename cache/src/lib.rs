//! cairn block cache tiers.
//!
//! The unit of caching is a fixed-size block of one *version* of an object: the key carries the
//! object's identity and its ETag, so a changed object can never be served from stale blocks once
//! the gateway has seen the new ETag. L1 holds blocks in RAM under a byte budget; L2 holds them in
//! checksummed files on local disk, indexed in RocksDB so they survive restarts. The gateway's
//! read path decides what to fetch and when.

pub mod block_file;
mod block_key;
mod l1;
#[cfg(feature = "disk")]
pub mod l2;
pub mod policy;
pub mod sim;

pub use block_key::BlockKey;
pub use l1::{L1Cache, L1Stats};
#[cfg(feature = "disk")]
pub use l2::{L2Cache, L2Config, L2Error, L2Stats};
