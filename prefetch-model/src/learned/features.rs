//! Candidate features: small categorical values (buckets) hashed, alone and crossed, into
//! slots of the FTRL table.

use super::ftrl::Ftrl;

/// Most slots one candidate activates.
pub const MAX_FEATURES: usize = 16;

/// The categorical description of one candidate, before hashing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Context {
    /// Which generator proposed it (`Gen as u8`).
    pub gen: u8,
    /// Depth bucket: how far ahead of the current read (or which successor rank) it lies.
    pub depth: u8,
    /// File format class code.
    pub format: u8,
    /// File size bucket ([`size_bucket`]).
    pub size: u8,
    /// Request (read length) bucket ([`size_bucket`]).
    pub req: u8,
    /// The handle's sequential run length bucket ([`count_bucket`]).
    pub run: u8,
    /// Recent used ratio of this generator for the class ([`ratio_bucket`]).
    pub ratio: u8,
    /// Program hash bucket (16 buckets; 0 = unknown).
    pub program: u8,
    /// Access shape of the handle (see `Shape`).
    pub shape: u8,
}

/// Slots of the features a candidate activates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureVec {
    slots: [u32; MAX_FEATURES],
    len: u8,
}

impl FeatureVec {
    /// The active slots.
    pub fn slots(&self) -> &[u32] {
        &self.slots[..self.len as usize]
    }
}

/// log2 bucket of a byte count: 0 for 0, then one bucket per power of two from 4 KiB, capped.
pub fn size_bucket(bytes: u64) -> u8 {
    if bytes == 0 {
        return 0;
    }
    let kib4 = (bytes >> 12).max(1);
    (1 + 63 - kib4.leading_zeros()).min(24) as u8
}

/// log2 bucket of a count, capped at 12.
pub fn count_bucket(n: u64) -> u8 {
    if n == 0 {
        0
    } else {
        (1 + 63 - n.leading_zeros()).min(12) as u8
    }
}

/// Bucket of a ratio in [0, 1] (5 buckets), or 0 when nothing is known yet.
pub fn ratio_bucket(r: Option<f32>) -> u8 {
    match r {
        None => 0,
        Some(r) => 1 + ((r.clamp(0.0, 1.0) * 4.0).round() as u8),
    }
}

/// Program bucket: 0 for unknown, else 1..=15.
pub fn program_bucket(program_hash: u32) -> u8 {
    if program_hash == 0 {
        0
    } else {
        1 + (program_hash % 15) as u8
    }
}

#[inline]
fn mix(template: u64, a: u64) -> u64 {
    let mut h = template.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ a;
    h = (h ^ (h >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^ (h >> 29)
}

#[inline]
fn pack(vals: &[u8]) -> u64 {
    vals.iter().fold(0u64, |acc, &v| (acc << 8) | v as u64)
}

impl Context {
    /// Hashes the features and their crosses into slots of `model`.
    pub fn features(&self, model: &Ftrl) -> FeatureVec {
        let c = self;
        let templates: [u64; MAX_FEATURES] = [
            pack(&[0]),
            pack(&[c.gen]),
            pack(&[c.gen, c.depth]),
            pack(&[c.gen, c.format]),
            pack(&[c.gen, c.size]),
            pack(&[c.gen, c.req]),
            pack(&[c.gen, c.run]),
            pack(&[c.gen, c.ratio]),
            pack(&[c.gen, c.program, c.format]),
            pack(&[c.gen, c.depth, c.run]),
            pack(&[c.gen, c.depth, c.format]),
            pack(&[c.gen, c.format, c.size]),
            pack(&[c.gen, c.depth, c.ratio]),
            pack(&[c.gen, c.shape, c.depth]),
            pack(&[c.gen, c.depth, c.req, c.run]),
            pack(&[c.gen, c.format, c.shape, c.depth, c.size]),
        ];
        let mut slots = [0u32; MAX_FEATURES];
        for (i, v) in templates.iter().enumerate() {
            slots[i] = model.slot(mix(i as u64 + 1, *v));
        }
        FeatureVec {
            slots,
            len: MAX_FEATURES as u8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learned::ftrl::FtrlParams;

    #[test]
    fn buckets() {
        assert_eq!(size_bucket(0), 0);
        assert_eq!(size_bucket(4096), 1);
        assert_eq!(size_bucket(8192), 2);
        assert_eq!(size_bucket(1 << 20), 9);
        assert_eq!(size_bucket(u64::MAX), 24);
        assert_eq!(count_bucket(0), 0);
        assert_eq!(count_bucket(1), 1);
        assert_eq!(count_bucket(1000), 10);
        assert_eq!(ratio_bucket(None), 0);
        assert_eq!(ratio_bucket(Some(1.0)), 5);
        assert_eq!(program_bucket(0), 0);
    }

    #[test]
    fn distinct_contexts_get_distinct_slots() {
        let m = Ftrl::new(18, FtrlParams::default());
        let a = Context {
            gen: 1,
            depth: 2,
            ..Default::default()
        }
        .features(&m);
        let b = Context {
            gen: 1,
            depth: 3,
            ..Default::default()
        }
        .features(&m);
        assert_eq!(a.slots()[0], b.slots()[0]); // bias
        assert_eq!(a.slots()[1], b.slots()[1]); // generator alone
        assert_ne!(a.slots()[2], b.slots()[2]); // generator x depth
        assert!(a.slots().iter().all(|&s| (s as usize) < m.slots()));
    }
}
