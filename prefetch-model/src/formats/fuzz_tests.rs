//! Property tests: arbitrary bytes never panic any parser, and what parses is within bounds.

use proptest::prelude::*;

use super::*;

/// Checks the invariants every successful layout must hold.
fn check(l: &Layout, file_size: u64) {
    assert!(
        l.source.start <= l.source.end && l.source.end <= file_size,
        "{l:?}"
    );
    for e in &l.extents {
        assert!(
            e.start < e.end && e.end <= file_size,
            "{e:?} of {file_size}"
        );
    }
    assert!(
        l.extents.windows(2).all(|w| w[0].start <= w[1].start),
        "unsorted {l:?}"
    );
}

proptest! {
    #[test]
    fn parquet_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), size in 0u64..1 << 40) {
        let _ = parquet_footer_len(&bytes[..bytes.len().min(8)]);
        if let Ok(l) = parquet_layout(&bytes, size) {
            check(&l, size);
        }
    }

    /// Bytes that look like Thrift structs (field headers with small deltas) reach deeper code.
    #[test]
    fn parquet_structured_noise(parts in proptest::collection::vec((1u8..16, 0u8..14, any::<u8>()), 0..300)) {
        let mut bytes = Vec::new();
        for (delta, ty, v) in parts {
            bytes.push((delta << 4) | ty);
            bytes.push(v & 0x7f);
        }
        bytes.push(0);
        if let Ok(l) = parquet_layout(&bytes, 1 << 20) {
            check(&l, 1 << 20);
        }
    }

    #[test]
    fn safetensors_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024), size in 0u64..1 << 40) {
        let _ = safetensors_header_len(&bytes);
        if let Ok(l) = safetensors_layout(&bytes, size) {
            check(&l, size);
        }
    }

    #[test]
    fn safetensors_json_noise(entries in proptest::collection::vec((0u64..200, 0u64..200, 0u64..20, 0usize..4), 0..8), size in 0u64..400) {
        // syntactically valid headers with arbitrary offsets and shapes
        let dtypes = ["U8", "F32", "BF16", "XX"];
        let mut m = serde_json::Map::new();
        for (i, (b, e, n, d)) in entries.into_iter().enumerate() {
            m.insert(format!("t{i}"), serde_json::json!({"dtype": dtypes[d], "shape": [n], "data_offsets": [b, e]}));
        }
        let json = serde_json::to_vec(&m).unwrap();
        if let Ok(s) = safetensors_layout_detailed(&json, size) {
            check(&s.layout, size);
            assert!(s.tensors.windows(2).all(|w| w[0].range.end <= w[1].range.start));
        }
    }

    #[test]
    fn tar_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), base in 0u64..4, size in 0u64..1 << 40) {
        let base = base * 512;
        if let Ok(l) = tar_layout(&bytes, base, size) {
            check(&l, size);
        }
        let _ = next_tar_header(&bytes, base, size);
        let _ = pax_size(&bytes);
    }

    #[test]
    fn generic_entry_points_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), size in 0u64..1 << 20, code in 0u8..10) {
        let f = FormatClass::from_code(code);
        if let Some(p) = layout_hint(f) {
            let r = p.first_range(size);
            assert!(r.start <= r.end && r.end <= size);
        }
        if let Ok(r) = layout_source(f, &bytes, size) {
            assert!(r.start <= r.end && r.end <= size);
        }
        if let Ok(l) = parse_layout(f, &bytes, size) {
            check(&l, size);
        }
    }
}

#[test]
fn hints_per_format() {
    assert_eq!(
        layout_hint(FormatClass::Parquet),
        Some(Probe::Footer { tail: 8 })
    );
    assert_eq!(
        layout_hint(FormatClass::Safetensors),
        Some(Probe::Header { head: 8 })
    );
    assert_eq!(
        layout_hint(FormatClass::Tar),
        Some(Probe::Headers { block: 512 })
    );
    assert_eq!(layout_hint(FormatClass::TfRecord), None);
    assert_eq!(Probe::Footer { tail: 8 }.first_range(100), 92..100);
    assert_eq!(Probe::Footer { tail: 8 }.first_range(5), 0..5);
    assert_eq!(Probe::Header { head: 8 }.first_range(5), 0..5);
    assert!(layout_source(FormatClass::Tar, &[0; 512], 1024).is_err());
}
