//! The read path: per-handle readers on top of a shared block fetcher.
//!
//! A [`FileReader`] turns `read(offset, len)` into block indices, asks its readahead window how
//! far ahead to go, and awaits the blocks from the [`BlockFetcher`], which serves them from the
//! RAM cache or fetches runs of missing blocks with one ranged GET each (single-flight, bounded
//! memory, If-Match on the ETag read at open). The cache tiers and learned prefetchers plug in at
//! the fetcher (where blocks come from) and at the window (how far ahead to ask).

mod fetcher;
pub mod prefetch;
mod reader;

pub use fetcher::{BlockFetcher, FetchConfig, ObjectVersion};
pub use reader::{FileReader, PlannedRead};
