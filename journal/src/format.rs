//! Byte layouts of segment headers, record headers and the checkpoint file.
//!
//! Everything is little-endian. The authoritative description, with tables, is
//! `docs/JOURNAL.md`; keep the two in step.

/// Length of the header at the start of every segment file; the first record starts here.
pub const SEGMENT_HEADER_LEN: u64 = 40;
/// Length of the fixed header in front of every record's payload.
pub const RECORD_HEADER_LEN: u64 = 24;
/// Version written into segment headers and the checkpoint file; others are refused.
pub const FORMAT_VERSION: u32 = 1;

pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"CAIRNSEG";
pub(crate) const CHECKPOINT_MAGIC: [u8; 8] = *b"CAIRNCKP";
/// `"CJRN"` read as a little-endian u32.
pub(crate) const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"CJRN");
/// `"CJPD"` read as a little-endian u32: a padding record (skipped by replay, carries no lsn of
/// its own). Only allowed in segments whose header has [`SEGMENT_FLAG_PADDING`].
pub(crate) const PADDING_MAGIC: u32 = u32::from_le_bytes(*b"CJPD");
/// Segment header flag: the segment may contain padding records. Builds that predate padding
/// refuse the segment (unknown flag) instead of mistaking a padding record for a torn tail.
pub(crate) const SEGMENT_FLAG_PADDING: u32 = 1;
/// Alignment (file offset, memory address and length) of direct-I/O writes.
pub(crate) const DIRECT_ALIGN: u64 = 4096;
pub(crate) const CHECKPOINT_HEADER_LEN: usize = 32;

/// Decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub id: u64,
    /// The lsn the first record of this segment has (or will have).
    pub first_lsn: u64,
    /// [`SEGMENT_FLAG_PADDING`] is set: padding records may appear.
    pub padding: bool,
}

pub(crate) fn encode_segment_header(h: SegmentHeader) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut b = [0u8; SEGMENT_HEADER_LEN as usize];
    b[0..8].copy_from_slice(&SEGMENT_MAGIC);
    b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let flags = if h.padding { SEGMENT_FLAG_PADDING } else { 0 };
    b[12..16].copy_from_slice(&flags.to_le_bytes());
    b[16..24].copy_from_slice(&h.id.to_le_bytes());
    b[24..32].copy_from_slice(&h.first_lsn.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..32]);
    b[32..36].copy_from_slice(&crc.to_le_bytes());
    // 36..40: reserved, zero
    b
}

pub(crate) fn decode_segment_header(
    b: &[u8; SEGMENT_HEADER_LEN as usize],
) -> Result<SegmentHeader, String> {
    if b[0..8] != SEGMENT_MAGIC {
        return Err("bad segment magic: not a cairn journal segment".into());
    }
    let version = u32_at(b, 8);
    if version != FORMAT_VERSION {
        return Err(format!(
            "unsupported segment format version {version} (this build reads {FORMAT_VERSION})"
        ));
    }
    let crc = u32_at(b, 32);
    if crc != crc32c::crc32c(&b[0..32]) {
        return Err("segment header checksum mismatch".into());
    }
    let flags = u32_at(b, 12);
    if flags & !SEGMENT_FLAG_PADDING != 0 || u32_at(b, 36) != 0 {
        return Err("segment header has unknown flags set".into());
    }
    Ok(SegmentHeader {
        id: u64_at(b, 16),
        first_lsn: u64_at(b, 24),
        padding: flags & SEGMENT_FLAG_PADDING != 0,
    })
}

/// Decoded record header (the crc is checked separately, once the payload is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    /// A padding record (magic `CJPD`): `len` filler bytes, `lsn` is the next record's.
    pub padding: bool,
    pub kind: u8,
    pub len: u32,
    pub lsn: u64,
    pub crc: u32,
}

/// Builds a record header. `payload_crc` is crc32c of the payload alone; the stored crc covers
/// header bytes 0..20 followed by the payload, combined without re-reading the payload. (Tests
/// check it against [`encode_record_header_over`], which appends use.)
#[cfg(test)]
pub(crate) fn encode_record_header(
    kind: u8,
    len: u32,
    lsn: u64,
    payload_crc: u32,
) -> [u8; RECORD_HEADER_LEN as usize] {
    let mut b = [0u8; RECORD_HEADER_LEN as usize];
    b[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    b[4] = kind;
    // 5..8 reserved, zero
    b[8..12].copy_from_slice(&len.to_le_bytes());
    b[12..20].copy_from_slice(&lsn.to_le_bytes());
    let crc = record_crc(&b, payload_crc, len);
    b[20..24].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Builds a record header, checksumming header bytes 0..20 and then the payload `parts`
/// in one pass (cheaper than combining a separate payload checksum for large records).
pub(crate) fn encode_record_header_over(
    kind: u8,
    len: u32,
    lsn: u64,
    parts: &[&[u8]],
) -> [u8; RECORD_HEADER_LEN as usize] {
    let mut b = [0u8; RECORD_HEADER_LEN as usize];
    b[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    b[4] = kind;
    b[8..12].copy_from_slice(&len.to_le_bytes());
    b[12..20].copy_from_slice(&lsn.to_le_bytes());
    let crc = parts.iter().fold(crc32c::crc32c(&b[0..20]), |c, p| {
        crc32c::crc32c_append(c, p)
    });
    b[20..24].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Builds a padding record header for `len` zero filler bytes, in front of the record with
/// lsn `next_lsn` (its crc covers header bytes 0..20 and the zeroes, like a record's).
pub(crate) fn encode_padding_header(len: u32, next_lsn: u64) -> [u8; RECORD_HEADER_LEN as usize] {
    let mut b = [0u8; RECORD_HEADER_LEN as usize];
    b[0..4].copy_from_slice(&PADDING_MAGIC.to_le_bytes());
    // 4: kind, always 0; 5..8 reserved, zero
    b[8..12].copy_from_slice(&len.to_le_bytes());
    b[12..20].copy_from_slice(&next_lsn.to_le_bytes());
    let crc = crc_of_zeroes(crc32c::crc32c(&b[0..20]), len as usize);
    b[20..24].copy_from_slice(&crc.to_le_bytes());
    b
}

/// crc32c continued over `len` zero bytes.
fn crc_of_zeroes(mut crc: u32, mut len: usize) -> u32 {
    while len > 0 {
        let n = len.min(ZEROES.len());
        crc = crc32c::crc32c_append(crc, &ZEROES[..n]);
        len -= n;
    }
    crc
}

/// Zero bytes for padding records' filler.
pub(crate) static ZEROES: [u8; DIRECT_ALIGN as usize] = [0; DIRECT_ALIGN as usize];

/// crc32c of (header bytes 0..20 ++ payload), given crc32c(payload).
pub(crate) fn record_crc(
    header: &[u8; RECORD_HEADER_LEN as usize],
    payload_crc: u32,
    len: u32,
) -> u32 {
    crc32c::crc32c_combine(crc32c::crc32c(&header[0..20]), payload_crc, len as usize)
}

pub(crate) fn decode_record_header(
    b: &[u8; RECORD_HEADER_LEN as usize],
) -> Result<RecordHeader, String> {
    let magic = u32_at(b, 0);
    let padding = match magic {
        RECORD_MAGIC => false,
        PADDING_MAGIC => true,
        _ => return Err(format!("bad record magic {magic:#010x}")),
    };
    if b[5..8] != [0, 0, 0] {
        return Err("record header reserved bytes are not zero".into());
    }
    if padding && b[4] != 0 {
        return Err("padding record has a non-zero kind".into());
    }
    Ok(RecordHeader {
        padding,
        kind: b[4],
        len: u32_at(b, 8),
        lsn: u64_at(b, 12),
        crc: u32_at(b, 20),
    })
}

/// Serializes the checkpoint file (header + state).
pub(crate) fn encode_checkpoint(lsn: u64, state: &[u8]) -> Vec<u8> {
    let len = u32::try_from(state.len()).expect("caller checked the checkpoint size");
    let mut b = Vec::with_capacity(CHECKPOINT_HEADER_LEN + state.len());
    b.extend_from_slice(&CHECKPOINT_MAGIC);
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes()); // flags
    b.extend_from_slice(&lsn.to_le_bytes());
    b.extend_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[0..28]), state);
    b.extend_from_slice(&crc.to_le_bytes());
    b.extend_from_slice(state);
    b
}

/// Parses a whole checkpoint file into (lsn, state).
pub(crate) fn decode_checkpoint(b: &[u8]) -> Result<(u64, Vec<u8>), String> {
    if b.len() < CHECKPOINT_HEADER_LEN {
        return Err(format!(
            "file is {} bytes, shorter than its header",
            b.len()
        ));
    }
    if b[0..8] != CHECKPOINT_MAGIC {
        return Err("bad checkpoint magic: not a cairn journal checkpoint".into());
    }
    let version = u32_at(b, 8);
    if version != FORMAT_VERSION {
        return Err(format!(
            "unsupported checkpoint format version {version} (this build reads {FORMAT_VERSION})"
        ));
    }
    if u32_at(b, 12) != 0 {
        return Err("checkpoint has unknown flags set".into());
    }
    let lsn = u64_at(b, 16);
    let len = u32_at(b, 24) as usize;
    if b.len() != CHECKPOINT_HEADER_LEN + len {
        return Err(format!(
            "checkpoint says {len} state bytes but the file holds {}",
            b.len() - CHECKPOINT_HEADER_LEN
        ));
    }
    let state = &b[CHECKPOINT_HEADER_LEN..];
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[0..28]), state);
    if crc != u32_at(b, 28) {
        return Err("checkpoint checksum mismatch".into());
    }
    Ok((lsn, state.to_vec()))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_docs_journal_md() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(RECORD_MAGIC, 0x4e52_4a43);
        let h = encode_segment_header(SegmentHeader {
            id: 0x2a,
            first_lsn: 5,
            padding: true,
        });
        assert_eq!(&h[0..8], b"CAIRNSEG");
        assert_eq!(h[12], 1, "padding flag is bit 0 of the flags");
        assert_eq!(PADDING_MAGIC.to_le_bytes(), *b"CJPD");
        assert_eq!(h[16], 0x2a);
        assert_eq!(h[24], 5);
        let r = encode_record_header(9, 3, 7, crc32c::crc32c(b"abc"));
        assert_eq!(&r[0..4], b"CJRN");
        assert_eq!((r[4], r[8], r[12]), (9, 3, 7));
        let c = encode_checkpoint(11, b"xy");
        assert_eq!(&c[0..8], b"CAIRNCKP");
        assert_eq!((c[16], c[24], c.len()), (11, 2, CHECKPOINT_HEADER_LEN + 2));
    }

    #[test]
    fn segment_header_roundtrip_and_damage() {
        for padding in [false, true] {
            let h = SegmentHeader {
                id: 7,
                first_lsn: 1234,
                padding,
            };
            let b = encode_segment_header(h);
            assert_eq!(decode_segment_header(&b), Ok(h));
            for i in 0..b.len() {
                let mut d = b;
                d[i] ^= 0x10;
                assert!(
                    decode_segment_header(&d).is_err(),
                    "flip at byte {i} went unnoticed"
                );
            }
        }
        // Flags other than the padding bit are refused even with a matching crc.
        let mut b = encode_segment_header(SegmentHeader {
            id: 7,
            first_lsn: 1,
            padding: false,
        });
        b[12] = 2;
        let crc = crc32c::crc32c(&b[0..32]);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        assert!(decode_segment_header(&b).unwrap_err().contains("flags"));
    }

    #[test]
    fn padding_header_roundtrip() {
        for len in [0u32, 1, 4071, 4096, 10_000] {
            let b = encode_padding_header(len, 77);
            assert_eq!(&b[0..4], b"CJPD");
            let h = decode_record_header(&b).unwrap();
            assert!(h.padding);
            assert_eq!((h.kind, h.len, h.lsn), (0, len, 77));
            let mut whole = b[0..20].to_vec();
            whole.resize(20 + len as usize, 0);
            assert_eq!(h.crc, crc32c::crc32c(&whole));
            assert_eq!(h.crc, record_crc(&b, crc32c::crc32c(&whole[20..]), len));
        }
        let mut b = encode_padding_header(8, 1);
        b[4] = 1;
        assert!(decode_record_header(&b).is_err(), "padding with a kind");
        let r = encode_record_header(3, 0, 1, crc32c::crc32c(b""));
        assert!(!decode_record_header(&r).unwrap().padding);
    }

    #[test]
    fn record_crc_covers_header_and_payload() {
        let payload = b"hello journal";
        let b = encode_record_header(3, payload.len() as u32, 99, crc32c::crc32c(payload));
        let (p1, p2) = payload.split_at(payload.len() / 2);
        assert_eq!(
            b,
            encode_record_header_over(3, payload.len() as u32, 99, &[p1, p2])
        );
        let h = decode_record_header(&b).unwrap();
        assert_eq!((h.kind, h.len, h.lsn), (3, payload.len() as u32, 99));
        let mut whole = b[0..20].to_vec();
        whole.extend_from_slice(payload);
        assert_eq!(h.crc, crc32c::crc32c(&whole));
    }

    #[test]
    fn checkpoint_roundtrip_and_damage() {
        let b = encode_checkpoint(42, b"state bytes");
        assert_eq!(decode_checkpoint(&b), Ok((42, b"state bytes".to_vec())));
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x01;
            assert!(
                decode_checkpoint(&d).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
        assert!(decode_checkpoint(&b[..b.len() - 1]).is_err());
    }
}
