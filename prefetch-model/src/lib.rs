//! cairn prefetch policies.
//!
//! Policies here are pure decision logic (no I/O): the gateway's read path feeds them the reads it
//! sees and asks how far ahead to fetch. The first policy is the sequential readahead window that
//! grows while a stream stays sequential (the shape Mountpoint-s3 and Linux use); learned models
//! will plug in beside it behind the same inputs.

mod readahead;

pub use readahead::{ReadaheadConfig, ReadaheadWindow, StreamObservation};
