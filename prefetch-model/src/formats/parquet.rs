//! Parquet footers: the column chunks' byte ranges, from `FileMetaData`.
//!
//! A Parquet file is `"PAR1" <column chunks> <FileMetaData, Thrift compact> <u32 LE length>
//! "PAR1"`. Readers fetch the footer first, then the column chunks of the columns they project,
//! so the footer tells the prefetcher exactly which ranges come next. Field ids follow
//! `parquet.thrift`: FileMetaData 4 row_groups; RowGroup 1 columns; ColumnChunk 1 file_path,
//! 3 meta_data; ColumnMetaData 7 total_compressed_size, 9 data_page_offset,
//! 11 dictionary_page_offset. Everything else is skipped.

use std::ops::Range;

use super::thrift::{Reader, TType};
use super::FormatError;
use crate::Layout;

/// The largest footer accepted (real footers are KiBs to a few MiB).
pub const MAX_FOOTER_LEN: u64 = 64 << 20;

/// The most column chunks accepted (row groups x columns), bounding memory per footer.
pub const MAX_CHUNKS: usize = 1 << 20;

const MAGIC: &[u8; 4] = b"PAR1";
const MAGIC_ENCRYPTED: &[u8; 4] = b"PARE";

/// One column chunk of one row group and where its pages lie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Row group index, in footer order.
    pub row_group: u32,
    /// Column index within the row group.
    pub column: u32,
    /// Bytes of the chunk (dictionary page, if any, through the last data page), clipped to
    /// the data region of the file.
    pub range: Range<u64>,
}

/// A Parquet file's layout plus which (row group, column) each extent is, so a prefetcher can
/// follow the columns a reader projects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParquetLayout {
    /// Footer range and column chunk extents sorted by offset.
    pub layout: Layout,
    /// Column chunks in footer order (row group, then column); chunks stored in other files
    /// (`file_path` set), without metadata, or empty after clipping are left out.
    pub chunks: Vec<ChunkInfo>,
}

/// The length of the Thrift `FileMetaData` from a file's last 8 bytes
/// (`<u32 LE length> "PAR1"`).
pub fn parquet_footer_len(tail8: &[u8]) -> Result<u64, FormatError> {
    if tail8.len() != 8 {
        return Err(FormatError::Short {
            what: "parquet tail",
            need: 8,
            got: tail8.len() as u64,
        });
    }
    let magic = &tail8[4..8];
    if magic == MAGIC_ENCRYPTED {
        return Err(FormatError::Unsupported(
            "parquet file with an encrypted footer (PARE)".into(),
        ));
    }
    if magic != MAGIC {
        return Err(FormatError::BadMagic(format!(
            "parquet tail ends with {magic:02x?}, not PAR1"
        )));
    }
    let len = u32::from_le_bytes([tail8[0], tail8[1], tail8[2], tail8[3]]) as u64;
    if len == 0 {
        return Err(FormatError::Invalid("parquet footer length is 0".into()));
    }
    if len > MAX_FOOTER_LEN {
        return Err(FormatError::OutOfRange(format!(
            "parquet footer of {len} bytes exceeds the {MAX_FOOTER_LEN}-byte cap"
        )));
    }
    Ok(len)
}

/// The column chunk ranges of a Parquet file from its footer.
///
/// `footer` is the `FileMetaData` bytes, optionally followed by the 8-byte tail (so the whole
/// source range `file_size - 8 - len .. file_size` may be passed as read).
pub fn parquet_layout(footer: &[u8], file_size: u64) -> Result<Layout, FormatError> {
    parquet_layout_detailed(footer, file_size).map(|p| p.layout)
}

/// Like [`parquet_layout`], also naming each chunk's row group and column.
pub fn parquet_layout_detailed(
    footer: &[u8],
    file_size: u64,
) -> Result<ParquetLayout, FormatError> {
    let meta = strip_tail(footer);
    let len = meta.len() as u64;
    if len == 0 {
        return Err(FormatError::Short {
            what: "parquet footer",
            need: 1,
            got: 0,
        });
    }
    if len > MAX_FOOTER_LEN {
        return Err(FormatError::OutOfRange(format!(
            "parquet footer of {len} bytes exceeds the cap"
        )));
    }
    // The footer and tail sit at the end, after the leading magic.
    let footer_start = file_size
        .checked_sub(len + 8)
        .filter(|s| *s >= 4)
        .ok_or_else(|| {
            FormatError::OutOfRange(format!(
                "footer of {len} bytes does not fit a {file_size}-byte file"
            ))
        })?;
    let data = 4..footer_start;

    let mut r = Reader::new(meta);
    let raw = read_file_metadata(&mut r)?;
    let chunks: Vec<ChunkInfo> = raw
        .into_iter()
        .filter_map(|c| {
            let range = c.range.start.max(data.start)..c.range.end.min(data.end);
            (range.start < range.end).then_some(ChunkInfo {
                row_group: c.row_group,
                column: c.column,
                range,
            })
        })
        .collect();
    let mut sorted: Vec<&ChunkInfo> = chunks.iter().collect();
    sorted.sort_by_key(|c| (c.range.start, c.range.end));
    let group = row_group_len(&sorted);
    let extents: Vec<Range<u64>> = sorted.iter().map(|c| c.range.clone()).collect();
    Ok(ParquetLayout {
        layout: Layout {
            source: footer_start..file_size,
            extents,
            group,
        },
        chunks,
    })
}

/// Chunks per row group when, in file order, every row group is one run of the same columns
/// in the same order (what writers produce); 0 otherwise.
fn row_group_len(sorted: &[&ChunkInfo]) -> usize {
    let Some(first) = sorted.first() else {
        return 0;
    };
    let g = sorted
        .iter()
        .take_while(|c| c.row_group == first.row_group)
        .count();
    if g == 0 || sorted.len() % g != 0 {
        return 0;
    }
    let regular = sorted.chunks(g).enumerate().all(|(r, run)| {
        let rg = run[0].row_group;
        (r == 0 || rg != sorted[(r - 1) * g].row_group)
            && run
                .iter()
                .zip(&sorted[..g])
                .all(|(c, c0)| c.row_group == rg && c.column == c0.column)
    });
    if regular {
        g
    } else {
        0
    }
}

/// Drops a trailing `<u32 LE len> "PAR1"` when it describes the bytes before it. A
/// `FileMetaData` ends with a stop byte (0), never with `'1'`, so this is unambiguous.
fn strip_tail(footer: &[u8]) -> &[u8] {
    if footer.len() >= 8 && footer.ends_with(MAGIC) {
        let n = footer.len() - 8;
        let l = &footer[n..n + 4];
        if u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize == n {
            return &footer[..n];
        }
    }
    footer
}

fn expect(ty: TType, want: TType, what: &str) -> Result<(), FormatError> {
    if ty == want {
        Ok(())
    } else {
        Err(FormatError::Invalid(format!(
            "{what} has type {ty:?}, expected {want:?}"
        )))
    }
}

fn read_file_metadata(r: &mut Reader<'_>) -> Result<Vec<ChunkInfo>, FormatError> {
    let mut chunks = Vec::new();
    let mut seen_row_groups = false;
    let mut last = 0;
    while let Some((id, ty)) = r.field(last)? {
        if id == 4 {
            expect(ty, TType::List, "FileMetaData.row_groups")?;
            if seen_row_groups {
                return Err(FormatError::Invalid(
                    "FileMetaData.row_groups appears twice".into(),
                ));
            }
            seen_row_groups = true;
            let (n, elem) = r.list_header()?;
            expect(elem, TType::Struct, "row group")?;
            for rg in 0..n {
                read_row_group(r, rg as u32, &mut chunks)?;
            }
        } else {
            r.skip(ty, 1)?;
        }
        last = id;
    }
    if !seen_row_groups {
        return Err(FormatError::Invalid(
            "FileMetaData has no row_groups (field 4)".into(),
        ));
    }
    Ok(chunks)
}

fn read_row_group(
    r: &mut Reader<'_>,
    rg: u32,
    out: &mut Vec<ChunkInfo>,
) -> Result<(), FormatError> {
    let mut last = 0;
    while let Some((id, ty)) = r.field(last)? {
        if id == 1 {
            expect(ty, TType::List, "RowGroup.columns")?;
            let (n, elem) = r.list_header()?;
            expect(elem, TType::Struct, "column chunk")?;
            for col in 0..n {
                if let Some(range) = read_column_chunk(r)? {
                    if out.len() >= MAX_CHUNKS {
                        return Err(FormatError::OutOfRange(format!(
                            "more than {MAX_CHUNKS} column chunks"
                        )));
                    }
                    out.push(ChunkInfo {
                        row_group: rg,
                        column: col as u32,
                        range,
                    });
                }
            }
        } else {
            r.skip(ty, 3)?;
        }
        last = id;
    }
    Ok(())
}

/// The chunk's range, or `None` when it lives in another file or has no metadata here.
fn read_column_chunk(r: &mut Reader<'_>) -> Result<Option<Range<u64>>, FormatError> {
    let mut range = None;
    let mut external = false;
    let mut last = 0;
    while let Some((id, ty)) = r.field(last)? {
        match id {
            1 => {
                expect(ty, TType::Binary, "ColumnChunk.file_path")?;
                external = true;
                r.skip(ty, 5)?;
            }
            3 => {
                expect(ty, TType::Struct, "ColumnChunk.meta_data")?;
                range = Some(read_column_meta(r)?);
            }
            _ => r.skip(ty, 5)?,
        }
        last = id;
    }
    Ok(if external { None } else { range })
}

fn read_column_meta(r: &mut Reader<'_>) -> Result<Range<u64>, FormatError> {
    let (mut size, mut data, mut dict) = (None, None, None);
    let mut last = 0;
    while let Some((id, ty)) = r.field(last)? {
        match id {
            7 => size = Some(r.int(ty)?),
            9 => data = Some(r.int(ty)?),
            11 => dict = Some(r.int(ty)?),
            _ => r.skip(ty, 6)?,
        }
        last = id;
    }
    let size = size.ok_or_else(|| {
        FormatError::Invalid("ColumnMetaData without total_compressed_size".into())
    })?;
    let data =
        data.ok_or_else(|| FormatError::Invalid("ColumnMetaData without data_page_offset".into()))?;
    if size < 0 || data < 0 {
        return Err(FormatError::Invalid(format!(
            "negative column chunk offset {data} or size {size}"
        )));
    }
    // Some writers store dictionary_page_offset = 0 for "no dictionary"; offset 0 is the magic.
    let start = match dict {
        Some(d) if d >= 4 && d < data => d,
        _ => data,
    } as u64;
    let end = start
        .checked_add(size as u64)
        .ok_or_else(|| FormatError::OutOfRange("column chunk end overflows".into()))?;
    Ok(start..end)
}

#[cfg(test)]
#[path = "parquet_tests.rs"]
mod tests;
