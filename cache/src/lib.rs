//! cairn block cache tiers.
//!
//! The unit of caching is a fixed-size block of one *version* of an object: the key carries the
//! object's identity and its ETag, so a changed object can never be served from stale blocks once
//! the gateway has seen the new ETag. This crate holds the tiers; the gateway's read path decides
//! what to fetch and when.

mod block_key;
mod l1;

pub use block_key::BlockKey;
pub use l1::{L1Cache, L1Stats};
