//! Helpers shared by the journal's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use cairn_journal::{RecordPos, RECORD_HEADER_LEN};

/// Deterministic pseudo-random bytes (splitmix64), so big payloads cost no proptest shrinking.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Path of segment `id` in `dir` (the documented naming scheme).
pub fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("seg-{id:016x}.log"))
}

/// Offset just past a record.
pub fn end_of(pos: &RecordPos) -> u64 {
    pos.offset + RECORD_HEADER_LEN + u64::from(pos.len)
}

/// Splits `payload` at the given cut points (any order, clamped), for multi-part appends.
pub fn split<'a>(payload: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(payload.len())).collect();
    cuts.sort_unstable();
    let mut parts = Vec::new();
    let mut at = 0;
    for c in cuts {
        parts.push(&payload[at..c]);
        at = c;
    }
    parts.push(&payload[at..]);
    parts
}
