//! tar archives (WebDataset shards): members' byte ranges from their 512-byte headers.
//!
//! A tar is a sequence of members, each a 512-byte header then its data padded to 512 bytes,
//! ended by zero blocks. Headers are interleaved with data, so the gateway learns the layout
//! one header at a time as a reader streams through ([`next_tar_header`]), or from a window of
//! whole blocks ([`tar_members`]). Sizes are octal (ustar) or GNU base-256; pax extended
//! headers (`x`) may override the next member's size; extended headers (`x`, `g`, GNU `L`/`K`
//! long names) are counted as part of the member that follows them.

use std::ops::Range;

use super::FormatError;
use crate::Layout;

/// Tar block size: headers are one block, data is padded to whole blocks.
pub const BLOCK: u64 = 512;

/// One parsed header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TarEntry {
    /// Offset of the header block.
    pub header: u64,
    /// The typeflag byte (`b'0'` file, `b'5'` directory, `b'x'` pax header, ...).
    pub typeflag: u8,
    /// The member's data bytes (unpadded).
    pub data: Range<u64>,
    /// Offset of the next header (data rounded up to a block).
    pub next: u64,
}

impl TarEntry {
    /// The entry with its data size replaced (a pax `size` record overrides the header's).
    pub fn with_size(&self, size: u64, file_size: u64) -> Result<TarEntry, FormatError> {
        entry(self.header, self.typeflag, size, file_size)
    }
}

/// What one header block says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TarBlock {
    /// A member header.
    Entry(TarEntry),
    /// A zero block: the end-of-archive marker.
    End,
}

/// Parses the header block at `offset` (a multiple of 512) of a `file_size`-byte archive.
pub fn next_tar_header(block: &[u8], offset: u64, file_size: u64) -> Result<TarBlock, FormatError> {
    let block = block
        .get(..BLOCK as usize)
        .ok_or(FormatError::Short { what: "tar header", need: BLOCK, got: block.len() as u64 })?;
    if offset % BLOCK != 0 {
        return Err(FormatError::Invalid(format!("tar header offset {offset} is not block aligned")));
    }
    if offset.checked_add(BLOCK).is_none_or(|e| e > file_size) {
        return Err(FormatError::OutOfRange(format!(
            "tar header at {offset} past the end of a {file_size}-byte file"
        )));
    }
    if block.iter().all(|b| *b == 0) {
        return Ok(TarBlock::End);
    }
    let stored = parse_octal(&block[148..156], "checksum")?;
    let (mut unsigned, mut signed) = (8 * b' ' as u64, 8 * b' ' as i64);
    for (i, b) in block.iter().enumerate() {
        if !(148..156).contains(&i) {
            unsigned += *b as u64;
            signed += *b as i8 as i64;
        }
    }
    if stored != unsigned && stored as i64 != signed {
        return Err(FormatError::Invalid(format!(
            "tar header at {offset}: checksum {stored} does not match computed {unsigned}"
        )));
    }
    let typeflag = block[156];
    let size = match typeflag {
        // hard and symbolic links, devices and FIFOs have no data whatever the size field says
        b'1' | b'2' | b'3' | b'4' | b'6' => 0,
        _ => parse_size(&block[124..136])?,
    };
    entry(offset, typeflag, size, file_size).map(TarBlock::Entry)
}

fn entry(header: u64, typeflag: u8, size: u64, file_size: u64) -> Result<TarEntry, FormatError> {
    let start = header + BLOCK;
    let end = start.checked_add(size).filter(|e| *e <= file_size).ok_or_else(|| {
        FormatError::OutOfRange(format!(
            "tar member at {header} of {size} bytes runs past the end of a {file_size}-byte file"
        ))
    })?;
    // end <= file_size, so rounding up cannot overflow
    let next = end.div_ceil(BLOCK) * BLOCK;
    Ok(TarEntry { header, typeflag, data: start..end, next })
}

/// A numeric field: octal digits (leading spaces, ended by NUL or space).
fn parse_octal(field: &[u8], what: &str) -> Result<u64, FormatError> {
    let mut v: u64 = 0;
    let mut digits = field.iter().skip_while(|b| **b == b' ').peekable();
    while let Some(&b) = digits.next() {
        match b {
            b'0'..=b'7' => {
                v = v
                    .checked_mul(8)
                    .and_then(|v| v.checked_add((b - b'0') as u64))
                    .ok_or_else(|| FormatError::Invalid(format!("tar {what} overflows")))?;
            }
            0 | b' ' => break,
            _ => return Err(FormatError::Invalid(format!("tar {what} field has non-octal byte {b:#04x}"))),
        }
    }
    Ok(v)
}

/// The size field: octal, or GNU base-256 (high bit of the first byte set, big-endian).
fn parse_size(field: &[u8]) -> Result<u64, FormatError> {
    let first = field[0];
    if first & 0x80 == 0 {
        return parse_octal(field, "size");
    }
    if first & 0x40 != 0 {
        return Err(FormatError::Invalid("tar base-256 size is negative".into()));
    }
    let mut v: u64 = (first & 0x3f) as u64;
    for b in &field[1..] {
        v = v
            .checked_mul(256)
            .map(|v| v | *b as u64)
            .ok_or_else(|| FormatError::Invalid("tar base-256 size overflows 64 bits".into()))?;
    }
    Ok(v)
}

/// The `size` record of pax extended-header data (`"<len> key=value\n"` records), if any.
pub fn pax_size(records: &[u8]) -> Result<Option<u64>, FormatError> {
    let bad = |why: &str| FormatError::Invalid(format!("pax header: {why}"));
    let mut size = None;
    let mut rest = records;
    // GNU tar pads the data block with NULs after the last record
    while rest.first().is_some_and(|b| *b != 0) {
        let sp = rest.iter().position(|b| *b == b' ').ok_or_else(|| bad("record without length"))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad record length"))?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad("record length does not match its text"));
        }
        let kv = &rest[sp + 1..len - 1];
        let eq = kv.iter().position(|b| *b == b'=').ok_or_else(|| bad("record without '='"))?;
        if &kv[..eq] == b"size" {
            let v = std::str::from_utf8(&kv[eq + 1..])
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| bad("size is not a decimal number"))?;
            size = Some(v);
        }
        rest = &rest[len..];
    }
    Ok(size)
}

/// Walks the headers in `bytes` (which start at the header at `base_offset` of a
/// `file_size`-byte archive) and returns each member's header-through-padded-data range.
///
/// The walk stops at a zero block or at the first header not wholly in `bytes` (a member whose
/// header is in the window is returned even if its data is not). Extended headers are merged
/// into the range of the member they describe.
pub fn tar_members(bytes: &[u8], base_offset: u64, file_size: u64) -> Result<Vec<Range<u64>>, FormatError> {
    walk(bytes, base_offset, file_size).map(|(m, _)| m)
}

/// [`tar_members`] as a [`Layout`] whose source is the span of the archive accounted for:
/// `source.end` is the next header not yet parsed (block aligned, possibly past `bytes` when
/// the last member's data is not in the window), where a later window should start.
pub fn tar_layout(bytes: &[u8], base_offset: u64, file_size: u64) -> Result<Layout, FormatError> {
    let (extents, walked) = walk(bytes, base_offset, file_size)?;
    Ok(Layout { source: base_offset..walked, extents })
}

/// The members and the offset where the walk stopped (the next header not yet accounted for).
fn walk(bytes: &[u8], base: u64, file_size: u64) -> Result<(Vec<Range<u64>>, u64), FormatError> {
    let mut out = Vec::new();
    let mut pos = base;
    let mut pending: Option<u64> = None; // start of extended headers awaiting their member
    let mut size_override: Option<u64> = None;
    loop {
        let rel = (pos - base) as usize;
        let Some(block) = bytes.get(rel..rel + BLOCK as usize) else { break };
        let mut e = match next_tar_header(block, pos, file_size)? {
            TarBlock::End => break,
            TarBlock::Entry(e) => e,
        };
        match e.typeflag {
            b'x' => {
                let d = (e.data.start - base) as usize..(e.data.end - base) as usize;
                let Some(data) = bytes.get(d) else { break };
                if let Some(s) = pax_size(data)? {
                    size_override = Some(s);
                }
                pending.get_or_insert(e.header);
            }
            b'g' | b'L' | b'K' => {
                pending.get_or_insert(e.header);
            }
            _ => {
                if let Some(s) = size_override.take() {
                    e = e.with_size(s, file_size)?;
                }
                out.push(pending.take().unwrap_or(e.header)..e.next.min(file_size));
            }
        }
        pos = e.next;
        if pos - base > bytes.len() as u64 {
            break;
        }
    }
    Ok((out, pending.unwrap_or(pos).min(file_size.max(base))))
}
