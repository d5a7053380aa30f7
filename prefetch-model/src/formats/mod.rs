//! Parsers that turn a file's footer or header bytes into a [`crate::Layout`].
//!
//! The gateway reads a few bytes a format names ([`layout_hint`]), then the footer or header
//! they point to, and hands them here; the resulting layout (the byte ranges the format is read
//! in) lets the prefetcher fetch the next column chunks, tensors or tar members before they are
//! asked for. All input is untrusted: parsers return [`FormatError`], never panic, and never
//! allocate more than a small multiple of their input.

mod parquet;
mod safetensors;
mod tar;
mod thrift;

use std::ops::Range;

use crate::trace::FormatClass;
use crate::Layout;

pub use parquet::{
    parquet_footer_len, parquet_layout, parquet_layout_detailed, ChunkInfo, ParquetLayout,
    MAX_CHUNKS, MAX_FOOTER_LEN,
};
pub use safetensors::{
    safetensors_header_len, safetensors_layout, safetensors_layout_detailed, SafetensorsLayout,
    TensorInfo, MAX_HEADER_LEN,
};
pub use tar::{next_tar_header, pax_size, tar_layout, tar_members, TarBlock, TarEntry, BLOCK};

/// Why bytes could not be read as a format's layout.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// Fewer bytes than the structure needs.
    #[error("{what}: need {need} bytes, got {got}")]
    Short {
        /// The structure being read.
        what: &'static str,
        /// Bytes it needs.
        need: u64,
        /// Bytes given.
        got: u64,
    },
    /// A magic number did not match.
    #[error("bad magic: {0}")]
    BadMagic(String),
    /// A length or offset points outside the file or exceeds a safety cap.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// Malformed Thrift compact-protocol bytes.
    #[error("thrift: {0}")]
    Thrift(String),
    /// A structure is well-formed on the wire but its content is inconsistent.
    #[error("invalid: {0}")]
    Invalid(String),
    /// A valid feature this parser does not handle (encrypted footers, ...).
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Which bytes of a file reveal its layout, so the gateway knows what to read first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Read the last `tail` bytes; they give the length of a footer just before them
    /// ([`layout_source`]); the source range (footer and tail) is then parsed ([`parse_layout`]).
    Footer {
        /// Bytes at the end of the file holding the footer length.
        tail: u64,
    },
    /// Read the first `head` bytes; they give the length of the header that follows
    /// ([`layout_source`]); the source range (from byte 0) is then parsed ([`parse_layout`]).
    Header {
        /// Bytes at the start of the file holding the header length.
        head: u64,
    },
    /// Headers are interleaved with data (tar): parse each `block`-byte header as the reader
    /// passes it with [`next_tar_header`], or a window of whole blocks with [`tar_layout`].
    Headers {
        /// Header block size.
        block: u64,
    },
}

impl Probe {
    /// The range of the file to read first (clipped to the file).
    pub fn first_range(&self, file_size: u64) -> Range<u64> {
        match *self {
            Probe::Footer { tail } => file_size.saturating_sub(tail)..file_size,
            Probe::Header { head } => 0..head.min(file_size),
            Probe::Headers { block } => 0..block.min(file_size),
        }
    }
}

/// What to read first to learn a format's layout; `None` for formats without one we parse.
pub fn layout_hint(format: FormatClass) -> Option<Probe> {
    match format {
        FormatClass::Parquet => Some(Probe::Footer { tail: 8 }),
        FormatClass::Safetensors => Some(Probe::Header { head: 8 }),
        FormatClass::Tar => Some(Probe::Headers { block: BLOCK }),
        _ => None,
    }
}

/// The range holding the layout (footer or header, with its length bytes), given the bytes of
/// [`Probe::first_range`]. Only for `Footer` and `Header` probes.
pub fn layout_source(
    format: FormatClass,
    first: &[u8],
    file_size: u64,
) -> Result<Range<u64>, FormatError> {
    match format {
        FormatClass::Parquet => {
            let len = parquet_footer_len(first)?;
            let start = file_size.checked_sub(len + 8 + 4).ok_or_else(|| {
                FormatError::OutOfRange(format!(
                    "footer of {len} bytes does not fit a {file_size}-byte file"
                ))
            })?;
            Ok(start + 4..file_size)
        }
        FormatClass::Safetensors => {
            let len = safetensors_header_len(first)?;
            let end = 8 + len;
            if end > file_size {
                return Err(FormatError::OutOfRange(format!(
                    "header of {len} bytes does not fit a {file_size}-byte file"
                )));
            }
            Ok(0..end)
        }
        other => Err(FormatError::Unsupported(format!(
            "no footer or header layout for {other:?}"
        ))),
    }
}

/// Parses the bytes of [`layout_source`]'s range into the file's layout.
pub fn parse_layout(
    format: FormatClass,
    source: &[u8],
    file_size: u64,
) -> Result<Layout, FormatError> {
    match format {
        FormatClass::Parquet => parquet_layout(source, file_size),
        FormatClass::Safetensors => {
            let json = source.get(8..).ok_or(FormatError::Short {
                what: "safetensors header",
                need: 8,
                got: source.len() as u64,
            })?;
            let len = safetensors_header_len(source)?;
            if len != json.len() as u64 {
                return Err(FormatError::Invalid(format!(
                    "header length {len} but {} header bytes given",
                    json.len()
                )));
            }
            safetensors_layout(json, file_size)
        }
        FormatClass::Tar => tar_layout(source, 0, file_size),
        other => Err(FormatError::Unsupported(format!(
            "no layout parser for {other:?}"
        ))),
    }
}

#[cfg(test)]
mod fuzz_tests;
