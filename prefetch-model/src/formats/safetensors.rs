//! safetensors headers: the tensors' byte ranges.
//!
//! A file is `<u64 LE N> <N bytes of JSON> <tensor data>`; the JSON maps each tensor name to
//! `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative to the data start,
//! `8 + N`), plus an optional `"__metadata__"` map of strings. Loaders read the header, then
//! every tensor (or the ones they need), so the header gives the prefetcher the whole plan.

use std::ops::Range;

use serde_json::Value;

use super::FormatError;
use crate::Layout;

/// The largest header accepted.
pub const MAX_HEADER_LEN: u64 = 100 << 20;

/// One tensor and where its bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Element type as written (`F32`, `BF16`, ...).
    pub dtype: String,
    /// Absolute byte range in the file.
    pub range: Range<u64>,
}

/// A safetensors file's layout with the tensors' names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetensorsLayout {
    /// Header range and non-empty tensor extents in file order.
    pub layout: Layout,
    /// Every tensor (empty ones included) in file order.
    pub tensors: Vec<TensorInfo>,
}

/// The header length N from a file's first 8 bytes (u64 little-endian).
pub fn safetensors_header_len(first8: &[u8]) -> Result<u64, FormatError> {
    let b: [u8; 8] = first8
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or(FormatError::Short { what: "safetensors length", need: 8, got: first8.len() as u64 })?;
    let n = u64::from_le_bytes(b);
    if n < 2 {
        return Err(FormatError::Invalid(format!("safetensors header of {n} bytes cannot hold a JSON object")));
    }
    if n > MAX_HEADER_LEN {
        return Err(FormatError::OutOfRange(format!(
            "safetensors header of {n} bytes exceeds the {MAX_HEADER_LEN}-byte cap"
        )));
    }
    Ok(n)
}

/// The tensors' ranges from the header JSON (the N bytes after the length).
pub fn safetensors_layout(header_json: &[u8], file_size: u64) -> Result<Layout, FormatError> {
    safetensors_layout_detailed(header_json, file_size).map(|s| s.layout)
}

/// Like [`safetensors_layout`], also naming each tensor.
pub fn safetensors_layout_detailed(header_json: &[u8], file_size: u64) -> Result<SafetensorsLayout, FormatError> {
    let n = header_json.len() as u64;
    if n > MAX_HEADER_LEN {
        return Err(FormatError::OutOfRange(format!("safetensors header of {n} bytes exceeds the cap")));
    }
    let data_start = 8 + n;
    let data_len = file_size.checked_sub(data_start).ok_or_else(|| {
        FormatError::OutOfRange(format!("header of {n} bytes does not fit a {file_size}-byte file"))
    })?;
    let root: Value = serde_json::from_slice(header_json)
        .map_err(|e| FormatError::Invalid(format!("safetensors header is not JSON: {e}")))?;
    let Value::Object(map) = root else {
        return Err(FormatError::Invalid("safetensors header is not a JSON object".into()));
    };
    let mut tensors = Vec::with_capacity(map.len());
    for (name, v) in map {
        if name == "__metadata__" {
            continue;
        }
        let (dtype, rel) = tensor_entry(&name, &v)?;
        if rel.end > data_len {
            return Err(FormatError::OutOfRange(format!(
                "tensor {name:?} ends at {} past the {data_len}-byte data section",
                rel.end
            )));
        }
        tensors.push(TensorInfo { name, dtype, range: data_start + rel.start..data_start + rel.end });
    }
    tensors.sort_by(|a, b| (a.range.start, a.range.end).cmp(&(b.range.start, b.range.end)));
    for w in tensors.windows(2) {
        if w[1].range.start < w[0].range.end {
            return Err(FormatError::Invalid(format!(
                "tensors {:?} and {:?} overlap",
                w[0].name, w[1].name
            )));
        }
    }
    let extents = tensors.iter().filter(|t| !t.range.is_empty()).map(|t| t.range.clone()).collect();
    Ok(SafetensorsLayout { layout: Layout { source: 0..data_start, extents }, tensors })
}

/// A tensor's dtype and data range relative to the data start, checked for consistency.
fn tensor_entry(name: &str, v: &Value) -> Result<(String, Range<u64>), FormatError> {
    let bad = |why: &str| FormatError::Invalid(format!("tensor {name:?}: {why}"));
    let obj = v.as_object().ok_or_else(|| bad("entry is not an object"))?;
    let dtype = obj.get("dtype").and_then(Value::as_str).ok_or_else(|| bad("missing dtype"))?;
    let offs = obj
        .get("data_offsets")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("missing data_offsets"))?;
    let (begin, end) = match offs.as_slice() {
        [b, e] => (
            b.as_u64().ok_or_else(|| bad("data_offsets are not unsigned integers"))?,
            e.as_u64().ok_or_else(|| bad("data_offsets are not unsigned integers"))?,
        ),
        _ => return Err(bad("data_offsets must be [begin, end]")),
    };
    if begin > end {
        return Err(bad(&format!("data_offsets [{begin}, {end}] are reversed")));
    }
    let shape = obj.get("shape").and_then(Value::as_array).ok_or_else(|| bad("missing shape"))?;
    let mut elems: u64 = 1;
    for d in shape {
        let d = d.as_u64().ok_or_else(|| bad("shape has a non-integer dimension"))?;
        elems = elems.checked_mul(d).ok_or_else(|| bad("shape overflows"))?;
    }
    if let Some(bits) = dtype_bits(dtype) {
        let bytes = elems
            .checked_mul(bits)
            .map(|b| b.div_ceil(8))
            .ok_or_else(|| bad("shape overflows"))?;
        if bytes != end - begin {
            return Err(bad(&format!(
                "{dtype} shape {elems} elements needs {bytes} bytes, data_offsets span {}",
                end - begin
            )));
        }
    }
    Ok((dtype.to_string(), begin..end))
}

/// Bits per element of the dtypes we know; unknown dtypes are not size-checked.
fn dtype_bits(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        "F6_E2M3" | "F6_E3M2" => 6,
        "F4" => 4,
        _ => return None,
    })
}
