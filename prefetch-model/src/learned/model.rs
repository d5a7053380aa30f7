//! The model file: the FTRL table behind a versioned header, weights as little-endian f32.
//!
//! Layout: magic `CAIRNPM1` (8 bytes), version (u32), table bits (u32), alpha, beta, l1, l2
//! (f32 each), then `2^bits` pairs `(z, n)` as f32, then an FNV-1a 64 checksum of everything
//! before it. Loading checks magic, version, size and checksum before trusting a byte.

use std::path::Path;

use super::ftrl::{Ftrl, FtrlParams};
use crate::trace::stable_hash;

/// File magic.
pub const MODEL_MAGIC: [u8; 8] = *b"CAIRNPM1";
/// Current file version.
pub const MODEL_VERSION: u32 = 1;
/// Largest model file accepted or written.
pub const MAX_MODEL_BYTES: u64 = 16 << 20;
const HEADER: usize = 8 + 4 + 4 + 16;

/// Why a model file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file could not be read or written.
    #[error("model file I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Not a model file.
    #[error("not a cairn prefetch model (bad magic)")]
    BadMagic,
    /// A model file of another version.
    #[error("model file version {found}, this build reads version {expected}")]
    Version {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// The size does not match the header (truncated or padded), or is over the limit.
    #[error("model file is {found} bytes, its header implies {expected}")]
    Size {
        /// Bytes present.
        found: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// The table size in the header is out of range.
    #[error("model table of 2^{0} slots is out of range")]
    Bits(u32),
    /// The checksum does not match (corrupted bytes).
    #[error("model file checksum mismatch (corrupted)")]
    Checksum,
    /// A parameter or weight is not finite.
    #[error("model file holds a non-finite value")]
    NotFinite,
}

/// A trained scoring model (the FTRL state; it keeps learning online).
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// The logistic regression.
    pub ftrl: Ftrl,
}

impl Model {
    /// An untrained model with `2^bits` slots.
    pub fn new(bits: u32, params: FtrlParams) -> Self {
        Self {
            ftrl: Ftrl::new(bits, params),
        }
    }

    /// The model as file bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let t = self.ftrl.table();
        let bits = t.len().trailing_zeros();
        let p = self.ftrl.params();
        let mut b = Vec::with_capacity(HEADER + t.len() * 8 + 8);
        b.extend_from_slice(&MODEL_MAGIC);
        b.extend_from_slice(&MODEL_VERSION.to_le_bytes());
        b.extend_from_slice(&bits.to_le_bytes());
        for v in [p.alpha, p.beta, p.l1, p.l2] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for [z, n] in t {
            b.extend_from_slice(&z.to_le_bytes());
            b.extend_from_slice(&n.to_le_bytes());
        }
        let sum = stable_hash(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        b
    }

    /// Parses file bytes, validating everything.
    pub fn from_bytes(b: &[u8]) -> Result<Model, ModelError> {
        if b.len() < 8 || b[..8] != MODEL_MAGIC {
            return Err(ModelError::BadMagic);
        }
        if b.len() < HEADER {
            return Err(ModelError::Size {
                found: b.len() as u64,
                expected: HEADER as u64 + 8,
            });
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let f32_at = |o: usize| f32::from_bits(u32_at(o));
        let version = u32_at(8);
        if version != MODEL_VERSION {
            return Err(ModelError::Version {
                found: version,
                expected: MODEL_VERSION,
            });
        }
        let bits = u32_at(12);
        if !(4..=20).contains(&bits) {
            return Err(ModelError::Bits(bits));
        }
        let slots = 1usize << bits;
        let expected = (HEADER + slots * 8 + 8) as u64;
        if b.len() as u64 != expected || expected > MAX_MODEL_BYTES {
            return Err(ModelError::Size {
                found: b.len() as u64,
                expected,
            });
        }
        let body = b.len() - 8;
        let sum = u64::from_le_bytes(b[body..].try_into().map_err(|_| ModelError::Checksum)?);
        if stable_hash(&b[..body]) != sum {
            return Err(ModelError::Checksum);
        }
        let params = FtrlParams {
            alpha: f32_at(16),
            beta: f32_at(20),
            l1: f32_at(24),
            l2: f32_at(28),
        };
        let mut zn = Vec::with_capacity(slots);
        for i in 0..slots {
            let o = HEADER + i * 8;
            let (z, n) = (f32_at(o), f32_at(o + 4));
            if !z.is_finite() || !n.is_finite() {
                return Err(ModelError::NotFinite);
            }
            zn.push([z, n]);
        }
        if ![params.alpha, params.beta, params.l1, params.l2]
            .iter()
            .all(|v| v.is_finite())
        {
            return Err(ModelError::NotFinite);
        }
        Ok(Model {
            ftrl: Ftrl::from_parts(params, zn),
        })
    }

    /// Writes the model file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ModelError> {
        std::fs::write(path, self.to_bytes())?;
        Ok(())
    }

    /// Reads and validates a model file.
    pub fn load(path: impl AsRef<Path>) -> Result<Model, ModelError> {
        let path = path.as_ref();
        let len = std::fs::metadata(path)?.len();
        if len > MAX_MODEL_BYTES {
            return Err(ModelError::Size {
                found: len,
                expected: MAX_MODEL_BYTES,
            });
        }
        Model::from_bytes(&std::fs::read(path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trained() -> Model {
        let mut m = Model::new(12, FtrlParams::default());
        for i in 0..200u32 {
            m.ftrl.update(&[i % 7, 100 + i % 3], i % 2 == 0, 1.0);
        }
        m
    }

    #[test]
    fn round_trips_through_a_file() {
        let m = trained();
        let dir = std::env::temp_dir().join(format!("cairn-pm-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.bin");
        m.save(&path).unwrap();
        let back = Model::load(&path).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.ftrl.predict(&[1, 101]), m.ftrl.predict(&[1, 101]));
        assert!(std::fs::metadata(&path).unwrap().len() <= MAX_MODEL_BYTES);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_bad_files() {
        let b = trained().to_bytes();
        let mut bad = b.clone();
        bad[0] ^= 1;
        assert!(matches!(Model::from_bytes(&bad), Err(ModelError::BadMagic)));
        let mut bad = b.clone();
        bad[8] = 9;
        assert!(matches!(
            Model::from_bytes(&bad),
            Err(ModelError::Version { found: 9, .. })
        ));
        assert!(matches!(
            Model::from_bytes(&b[..b.len() - 3]),
            Err(ModelError::Size { .. })
        ));
        assert!(matches!(
            Model::from_bytes(&b[..20]),
            Err(ModelError::Size { .. })
        ));
        let mut bad = b.clone();
        bad[HEADER + 17] ^= 0x40;
        assert!(matches!(Model::from_bytes(&bad), Err(ModelError::Checksum)));
        let mut bad = b.clone();
        bad[12] = 40;
        assert!(matches!(Model::from_bytes(&bad), Err(ModelError::Bits(40))));
        assert!(Model::from_bytes(&[]).is_err());
        assert!(Model::load("/nonexistent/cairn/model").is_err());
        // the error messages say what is wrong
        let e = Model::from_bytes(&b[..b.len() - 3])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bytes"), "{e}");
    }

    #[test]
    fn default_table_fits_the_limit() {
        let m = Model::new(18, FtrlParams::default());
        assert!(m.to_bytes().len() as u64 <= MAX_MODEL_BYTES);
        // the largest table the constructor allows still fits
        let big = Model::new(40, FtrlParams::default());
        assert!(big.to_bytes().len() as u64 <= MAX_MODEL_BYTES);
        assert_eq!(
            Model::from_bytes(&big.to_bytes()).unwrap().ftrl.slots(),
            1 << 20
        );
    }
}
