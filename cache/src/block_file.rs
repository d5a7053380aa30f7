//! On-disk format of one L2 block file: a checksummed header naming the block, then the data.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "CRNB"
//! 4       2     format version (1)
//! 6       2     reserved (0)
//! 8       8     data length
//! 16      4     CRC32C of the data
//! 20      8     block index
//! 28      4     object name length (n)
//! 32      4     version length (v)
//! 36      n     object name (UTF-8)
//! 36+n    v     version (ETag)
//! 36+n+v  4     CRC32C of bytes 0 .. 36+n+v
//! 40+n+v  ...   data
//! ```
//! Every read checks the magic, both checksums, the key and the length, so a corrupt, truncated or
//! misplaced file is detected and never served.

use bytes::Bytes;

use crate::BlockKey;

const MAGIC: &[u8; 4] = b"CRNB";
const FORMAT: u16 = 1;
const FIXED: usize = 36;

/// Why a block file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockFileError {
    /// Shorter than its header or its declared data.
    #[error("truncated block file")]
    Truncated,
    /// Not a cairn block file, or another format version.
    #[error("bad magic or format version")]
    BadMagic,
    /// The header checksum does not match.
    #[error("header checksum mismatch")]
    HeaderChecksum,
    /// The data checksum does not match.
    #[error("data checksum mismatch")]
    DataChecksum,
    /// The file holds another block than the index says.
    #[error("block file holds another block")]
    WrongKey,
}

/// Serializes `key` and `data` into the file format.
pub fn encode(key: &BlockKey, data: &[u8]) -> Vec<u8> {
    let mut out = header(key, data);
    out.extend_from_slice(data);
    out
}

/// The file's header for `key` and `data` (everything before the data): writing it and then
/// `data` gives the same file as [`encode`] without copying the block.
pub fn header(key: &BlockKey, data: &[u8]) -> Vec<u8> {
    let obj = key.object.as_bytes();
    let ver = key.version.as_bytes();
    let mut out = Vec::with_capacity(FIXED + obj.len() + ver.len() + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
    out.extend_from_slice(&key.index.to_le_bytes());
    out.extend_from_slice(&(obj.len() as u32).to_le_bytes());
    out.extend_from_slice(&(ver.len() as u32).to_le_bytes());
    out.extend_from_slice(obj);
    out.extend_from_slice(ver);
    let hcrc = crc32c::crc32c(&out);
    out.extend_from_slice(&hcrc.to_le_bytes());
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Verifies a whole file's bytes against the expected key and returns the data (zero-copy slice).
pub fn decode(expected: &BlockKey, file: Bytes) -> Result<Bytes, BlockFileError> {
    if file.len() < FIXED + 4 {
        return Err(BlockFileError::Truncated);
    }
    if &file[0..4] != MAGIC || u16::from_le_bytes([file[4], file[5]]) != FORMAT {
        return Err(BlockFileError::BadMagic);
    }
    let data_len = u64_at(&file, 8) as usize;
    let data_crc = u32_at(&file, 16);
    let index = u64_at(&file, 20);
    let n = u32_at(&file, 28) as usize;
    let v = u32_at(&file, 32) as usize;
    let header_end = FIXED
        .checked_add(n)
        .and_then(|x| x.checked_add(v))
        .ok_or(BlockFileError::Truncated)?;
    if file.len() < header_end + 4 {
        return Err(BlockFileError::Truncated);
    }
    if crc32c::crc32c(&file[..header_end]) != u32_at(&file, header_end) {
        return Err(BlockFileError::HeaderChecksum);
    }
    let obj = &file[FIXED..FIXED + n];
    let ver = &file[FIXED + n..header_end];
    if obj != expected.object.as_bytes()
        || ver != expected.version.as_bytes()
        || index != expected.index
    {
        return Err(BlockFileError::WrongKey);
    }
    let data_start = header_end + 4;
    if file.len() != data_start + data_len {
        return Err(BlockFileError::Truncated);
    }
    let data = file.slice(data_start..);
    if crc32c::crc32c(&data) != data_crc {
        return Err(BlockFileError::DataChecksum);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn key() -> BlockKey {
        BlockKey::new(Arc::from("s3://b/k"), Arc::from("\"etag\""), 3)
    }

    #[test]
    fn round_trip() {
        let f = encode(&key(), b"hello block");
        assert_eq!(
            decode(&key(), Bytes::from(f)).unwrap(),
            Bytes::from_static(b"hello block")
        );
    }

    #[test]
    fn detects_truncation_corruption_and_wrong_key() {
        let f = encode(&key(), &[7u8; 1000]);
        assert_eq!(
            decode(&key(), Bytes::from(f[..f.len() - 1].to_vec())),
            Err(BlockFileError::Truncated)
        );
        let mut bad = f.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            decode(&key(), Bytes::from(bad)),
            Err(BlockFileError::DataChecksum)
        );
        let mut bad = f.clone();
        bad[40] ^= 1;
        assert_eq!(
            decode(&key(), Bytes::from(bad)),
            Err(BlockFileError::HeaderChecksum)
        );
        let other = BlockKey::new(Arc::from("s3://b/k"), Arc::from("\"new\""), 3);
        assert_eq!(
            decode(&other, Bytes::from(f)),
            Err(BlockFileError::WrongKey)
        );
        assert_eq!(
            decode(&key(), Bytes::from_static(b"junk")),
            Err(BlockFileError::Truncated)
        );
    }

    proptest! {
        /// Any single flipped byte or truncation is detected; nothing but the original data is
        /// ever returned.
        #[test]
        fn any_damage_is_detected(data in proptest::collection::vec(any::<u8>(), 0..300), pos in any::<usize>(), flip in 1u8..=255, cut in any::<usize>()) {
            let f = encode(&key(), &data);
            let p = pos % f.len();
            let mut bad = f.clone();
            bad[p] ^= flip;
            prop_assert!(decode(&key(), Bytes::from(bad)).is_err());
            let c = cut % f.len();
            prop_assert!(decode(&key(), Bytes::from(f[..c].to_vec())).is_err());
            prop_assert_eq!(decode(&key(), Bytes::from(f)).unwrap(), Bytes::from(data));
        }
    }
}
