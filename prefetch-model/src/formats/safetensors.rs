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
        .ok_or(FormatError::Short {
            what: "safetensors length",
            need: 8,
            got: first8.len() as u64,
        })?;
    let n = u64::from_le_bytes(b);
    if n < 2 {
        return Err(FormatError::Invalid(format!(
            "safetensors header of {n} bytes cannot hold a JSON object"
        )));
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
pub fn safetensors_layout_detailed(
    header_json: &[u8],
    file_size: u64,
) -> Result<SafetensorsLayout, FormatError> {
    let n = header_json.len() as u64;
    if n > MAX_HEADER_LEN {
        return Err(FormatError::OutOfRange(format!(
            "safetensors header of {n} bytes exceeds the cap"
        )));
    }
    let data_start = 8 + n;
    let data_len = file_size.checked_sub(data_start).ok_or_else(|| {
        FormatError::OutOfRange(format!(
            "header of {n} bytes does not fit a {file_size}-byte file"
        ))
    })?;
    let root: Value = serde_json::from_slice(header_json)
        .map_err(|e| FormatError::Invalid(format!("safetensors header is not JSON: {e}")))?;
    let Value::Object(map) = root else {
        return Err(FormatError::Invalid(
            "safetensors header is not a JSON object".into(),
        ));
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
        tensors.push(TensorInfo {
            name,
            dtype,
            range: data_start + rel.start..data_start + rel.end,
        });
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
    let extents = tensors
        .iter()
        .filter(|t| !t.range.is_empty())
        .map(|t| t.range.clone())
        .collect();
    Ok(SafetensorsLayout {
        layout: Layout {
            source: 0..data_start,
            extents,
            group: 0,
        },
        tensors,
    })
}

/// A tensor's dtype and data range relative to the data start, checked for consistency.
fn tensor_entry(name: &str, v: &Value) -> Result<(String, Range<u64>), FormatError> {
    let bad = |why: &str| FormatError::Invalid(format!("tensor {name:?}: {why}"));
    let obj = v.as_object().ok_or_else(|| bad("entry is not an object"))?;
    let dtype = obj
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("missing dtype"))?;
    let offs = obj
        .get("data_offsets")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("missing data_offsets"))?;
    let (begin, end) = match offs.as_slice() {
        [b, e] => (
            b.as_u64()
                .ok_or_else(|| bad("data_offsets are not unsigned integers"))?,
            e.as_u64()
                .ok_or_else(|| bad("data_offsets are not unsigned integers"))?,
        ),
        _ => return Err(bad("data_offsets must be [begin, end]")),
    };
    if begin > end {
        return Err(bad(&format!("data_offsets [{begin}, {end}] are reversed")));
    }
    let shape = obj
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("missing shape"))?;
    let mut elems: u64 = 1;
    for d in shape {
        let d = d
            .as_u64()
            .ok_or_else(|| bad("shape has a non-integer dimension"))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A whole file: length, header JSON (padded with spaces to 8 bytes), then `data_len` bytes.
    fn file(header: &Value, data_len: usize) -> Vec<u8> {
        let mut h = serde_json::to_vec(header).unwrap();
        while h.len() % 8 != 0 {
            h.push(b' ');
        }
        let mut f = (h.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(&h);
        f.resize(f.len() + data_len, 0x5a);
        f
    }

    fn parse(f: &[u8]) -> Result<SafetensorsLayout, FormatError> {
        let n = safetensors_header_len(&f[..8])? as usize;
        safetensors_layout_detailed(&f[8..8 + n], f.len() as u64)
    }

    fn t(dtype: &str, shape: &[u64], begin: u64, end: u64) -> Value {
        json!({"dtype": dtype, "shape": shape, "data_offsets": [begin, end]})
    }

    #[test]
    fn tensors_in_file_order() {
        let h = json!({
            "__metadata__": {"format": "pt"},
            "b.weight": t("F32", &[4, 4], 16, 80),
            "a.bias": t("BF16", &[8], 0, 16),
            "c.empty": t("F16", &[0, 3], 80, 80),
            "d.odd": t("SOMENEWTYPE", &[3], 80, 83),
        });
        let f = file(&h, 83);
        let n = u64::from_le_bytes(f[..8].try_into().unwrap());
        let s = parse(&f).unwrap();
        let d = 8 + n;
        assert_eq!(s.layout.source, 0..d);
        assert_eq!(
            s.layout.extents,
            vec![d..d + 16, d + 16..d + 80, d + 80..d + 83]
        );
        let names: Vec<_> = s.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a.bias", "b.weight", "c.empty", "d.odd"]);
        assert_eq!(s.tensors[1].dtype, "F32");
        // through the generic probe path, from the first 8 bytes
        let fc = crate::trace::FormatClass::Safetensors;
        let range = super::super::layout_source(fc, &f[..8], f.len() as u64).unwrap();
        assert_eq!(range, 0..d);
        let l = super::super::parse_layout(fc, &f[..d as usize], f.len() as u64).unwrap();
        assert_eq!(l, s.layout);
    }

    #[test]
    fn bad_offsets_are_rejected() {
        let cases = [
            (
                json!({"a": t("U8", &[10], 0, 10), "b": t("U8", &[10], 5, 15)}),
                15,
                "overlap",
            ),
            (json!({"a": t("U8", &[10], 0, 10)}), 9, "past the"),
            (json!({"a": t("U8", &[10], 10, 0)}), 20, "reversed"),
            (json!({"a": t("F32", &[3], 0, 10)}), 20, "needs 12 bytes"),
            (
                json!({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0]}}),
                20,
                "[begin, end]",
            ),
            (
                json!({"a": {"dtype": "U8", "shape": [1], "data_offsets": [-1, 0]}}),
                20,
                "unsigned",
            ),
            (
                json!({"a": {"shape": [1], "data_offsets": [0, 1]}}),
                20,
                "dtype",
            ),
            (json!({"a": t("U8", &[u64::MAX, 2], 0, 1)}), 20, "overflows"),
            (json!({"a": 3}), 20, "not an object"),
            (json!([1, 2]), 20, "not a JSON object"),
        ];
        for (h, data, why) in cases {
            let err = parse(&file(&h, data)).unwrap_err().to_string();
            assert!(err.contains(why), "{h}: {err} lacks {why:?}");
        }
    }

    #[test]
    fn header_len_checks() {
        assert!(matches!(
            safetensors_header_len(&[1, 0, 0]),
            Err(FormatError::Short { .. })
        ));
        assert!(matches!(
            safetensors_header_len(&1u64.to_le_bytes()),
            Err(FormatError::Invalid(_))
        ));
        let big = (MAX_HEADER_LEN + 1).to_le_bytes();
        assert!(matches!(
            safetensors_header_len(&big),
            Err(FormatError::OutOfRange(_))
        ));
        assert_eq!(safetensors_header_len(&64u64.to_le_bytes()).unwrap(), 64);
        // a header longer than the file
        let fc = crate::trace::FormatClass::Safetensors;
        assert!(super::super::layout_source(fc, &64u64.to_le_bytes(), 70).is_err());
        assert!(safetensors_layout(b"{}", 9).is_err());
        assert!(safetensors_layout(b"{}", 10).unwrap().extents.is_empty());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let h = json!({"a": t("U8", &[10], 0, 10), "__metadata__": {"k": "v"}});
        let f = file(&h, 10);
        let n = u64::from_le_bytes(f[..8].try_into().unwrap()) as usize;
        let json_len = serde_json::to_vec(&h).unwrap().len();
        for k in 0..json_len {
            assert!(
                safetensors_layout(&f[8..8 + k], f.len() as u64).is_err(),
                "prefix {k}"
            );
        }
        assert!(safetensors_layout(&f[8..8 + n], f.len() as u64).is_ok());
    }

    proptest::proptest! {
        /// Flipped or dropped bytes of a valid header never panic, and what parses is in range.
        #[test]
        fn mutations(flips in proptest::collection::vec((0usize..400, 0u8..=255), 1..4), cut in 0usize..400) {
            let h = json!({"a": t("U8", &[10], 0, 10), "b": t("F32", &[2], 10, 18), "__metadata__": {"k": "v"}});
            let f = file(&h, 18);
            let mut json = f[8..f.len() - 18].to_vec();
            for (i, x) in flips {
                let i = i % json.len();
                json[i] ^= x;
            }
            json.truncate(json.len() - cut % json.len());
            if let Ok(l) = safetensors_layout(&json, f.len() as u64) {
                assert!(l.extents.iter().all(|e| e.start < e.end && e.end <= f.len() as u64));
            }
        }
    }

    /// Writes a file with the `safetensors` Python package and checks each tensor's range
    /// against its bytes. Needs `python3` (or `$CAIRN_PYTHON`) with safetensors and numpy.
    #[test]
    #[ignore]
    fn real_safetensors_file() {
        let py = std::env::var("CAIRN_PYTHON").unwrap_or_else(|_| "python3".into());
        let path =
            std::env::temp_dir().join(format!("cairn-st-{}.safetensors", std::process::id()));
        let script = r#"
import sys, numpy as np
from safetensors.numpy import save_file
save_file({
    "w1": np.full((3, 5), 1.0, np.float32),
    "b1": np.full((7,), 2, np.int16),
    "e": np.zeros((0,), np.float64),
    "w2": np.full((2, 2, 2), 3, np.uint8),
}, sys.argv[1], metadata={"k": "v"})
"#;
        let out = std::process::Command::new(&py)
            .args(["-c", script])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("{py}: {e} (set CAIRN_PYTHON)"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let f = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).ok();
        let s = parse(&f).unwrap();
        let by_name = |n: &str| {
            s.tensors
                .iter()
                .find(|t| t.name == n)
                .unwrap()
                .range
                .clone()
        };
        let bytes = |r: Range<u64>| f[r.start as usize..r.end as usize].to_vec();
        assert_eq!(bytes(by_name("w1")), [1.0f32.to_le_bytes(); 15].concat());
        assert_eq!(bytes(by_name("b1")), [2i16.to_le_bytes(); 7].concat());
        assert_eq!(bytes(by_name("w2")), vec![3u8; 8]);
        assert!(by_name("e").is_empty());
        assert_eq!(s.layout.extents.len(), 3);
        assert_eq!(s.layout.extents.last().unwrap().end, f.len() as u64);
    }
}
