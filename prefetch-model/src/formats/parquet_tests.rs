//! Parquet footer tests: a Thrift compact encoder builds `FileMetaData` byte by byte.

use super::*;

/// Compact-protocol type codes as written on the wire.
mod ty {
    pub const TRUE: u8 = 1;
    pub const FALSE: u8 = 2;
    pub const BYTE: u8 = 3;
    pub const I16: u8 = 4;
    pub const I32: u8 = 5;
    pub const I64: u8 = 6;
    pub const DOUBLE: u8 = 7;
    pub const BINARY: u8 = 8;
    pub const LIST: u8 = 9;
    pub const SET: u8 = 10;
    pub const MAP: u8 = 11;
    pub const STRUCT: u8 = 12;
}

/// A Thrift compact-protocol encoder (the test's own, independent of the reader).
pub(super) struct Enc {
    pub buf: Vec<u8>,
    last: Vec<i16>,
}

impl Enc {
    pub fn new() -> Self {
        Enc {
            buf: Vec::new(),
            last: vec![0],
        }
    }
    pub fn varint(&mut self, mut v: u64) {
        loop {
            if v < 0x80 {
                self.buf.push(v as u8);
                return;
            }
            self.buf.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
    }
    pub fn zz(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }
    /// A field header: short form when the id delta is 1..=15, else long form.
    pub fn field(&mut self, id: i16, t: u8) {
        let last = self.last.last_mut().unwrap();
        let delta = id as i32 - *last as i32;
        *last = id;
        if (1..=15).contains(&delta) {
            self.buf.push(((delta as u8) << 4) | t);
        } else {
            self.buf.push(t);
            self.zz(id as i64);
        }
    }
    pub fn begin(&mut self) {
        self.last.push(0);
    }
    pub fn end(&mut self) {
        self.buf.push(0);
        self.last.pop();
    }
    pub fn list(&mut self, n: usize, elem: u8) {
        if n < 15 {
            self.buf.push(((n as u8) << 4) | elem);
        } else {
            self.buf.push(0xf0 | elem);
            self.varint(n as u64);
        }
    }
    pub fn binary(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }
    pub fn i64_field(&mut self, id: i16, v: i64) {
        self.field(id, ty::I64);
        self.zz(v);
    }
    pub fn i32_field(&mut self, id: i16, v: i32) {
        self.field(id, ty::I32);
        self.zz(v as i64);
    }
    pub fn bin_field(&mut self, id: i16, b: &[u8]) {
        self.field(id, ty::BINARY);
        self.binary(b);
    }

    /// Fields of every type under ids the parser does not know, starting at `base`.
    pub fn unknown_fields(&mut self, base: i16) {
        self.field(base, ty::TRUE);
        self.field(base + 1, ty::FALSE);
        self.field(base + 2, ty::BYTE);
        self.buf.push(0xfe);
        self.field(base + 3, ty::I16);
        self.zz(-300);
        self.i32_field(base + 4, i32::MIN);
        self.i64_field(base + 5, i64::MAX);
        self.field(base + 6, ty::DOUBLE);
        self.buf.extend_from_slice(&1.5f64.to_le_bytes());
        self.bin_field(base + 7, b"unknown string \x00\x01");
        // list<bool>: one byte per element
        self.field(base + 8, ty::LIST);
        self.list(3, ty::TRUE);
        self.buf.extend_from_slice(&[1, 2, 1]);
        // set<i64> with a long-form size
        self.field(base + 9, ty::SET);
        self.list(20, ty::I64);
        for i in 0..20 {
            self.zz(i * 1_000_003);
        }
        // map<binary, struct{1: list<list<i32>>}>
        self.field(base + 10, ty::MAP);
        self.varint(2);
        self.buf.push((ty::BINARY << 4) | ty::STRUCT);
        for k in [b"k1", b"k2"] {
            self.binary(k);
            self.begin();
            self.field(1, ty::LIST);
            self.list(2, ty::LIST);
            for _ in 0..2 {
                self.list(2, ty::I32);
                self.zz(7);
                self.zz(-7);
            }
            self.end();
        }
        // empty map: size only
        self.field(base + 11, ty::MAP);
        self.varint(0);
        // a nested struct holding a double and a list of structs
        self.field(base + 12, ty::STRUCT);
        self.begin();
        self.field(3, ty::DOUBLE);
        self.buf.extend_from_slice(&(-0.25f64).to_le_bytes());
        self.field(40, ty::LIST);
        self.list(1, ty::STRUCT);
        self.begin();
        self.bin_field(1, b"x");
        self.end();
        self.end();
    }
}

/// One column chunk to encode.
#[derive(Clone)]
struct Col {
    dict: Option<i64>,
    data: i64,
    size: i64,
    file_path: Option<&'static str>,
}

fn col(dict: Option<i64>, data: i64, size: i64) -> Col {
    Col {
        dict,
        data,
        size,
        file_path: None,
    }
}

/// Encodes a FileMetaData with the given row groups; `noise` adds unknown fields of every type
/// to every struct, plus the real but unused fields of parquet.thrift.
fn file_metadata(row_groups: &[Vec<Col>], noise: bool) -> Vec<u8> {
    let mut e = Enc::new();
    e.i32_field(1, 2); // version
                       // schema: list<SchemaElement> with a root and a leaf
    e.field(2, ty::LIST);
    e.list(2, ty::STRUCT);
    for name in [&b"schema"[..], b"a"] {
        e.begin();
        e.i32_field(1, 1);
        e.bin_field(4, name);
        e.end();
    }
    e.i64_field(3, 1000); // num_rows
    if noise {
        // unknown fields before row_groups: ids jump up (long form), then back down to 4
        e.unknown_fields(30);
    }
    e.field(4, ty::LIST);
    e.list(row_groups.len(), ty::STRUCT);
    for cols in row_groups {
        e.begin();
        if noise {
            e.unknown_fields(20);
        }
        e.field(1, ty::LIST);
        e.list(cols.len(), ty::STRUCT);
        for c in cols {
            e.begin();
            if let Some(p) = c.file_path {
                e.bin_field(1, p.as_bytes());
            }
            e.i64_field(2, c.data + c.size); // file_offset
            e.field(3, ty::STRUCT);
            e.begin();
            e.i32_field(1, 1); // type
            e.field(2, ty::LIST); // encodings
            e.list(2, ty::I32);
            e.zz(0);
            e.zz(8);
            e.field(3, ty::LIST); // path_in_schema
            e.list(1, ty::BINARY);
            e.binary(b"a");
            e.i32_field(4, 1); // codec
            e.i64_field(5, 500); // num_values
            e.i64_field(6, c.size * 2); // total_uncompressed_size
            e.i64_field(7, c.size);
            if noise {
                e.field(8, ty::LIST); // key_value_metadata
                e.list(1, ty::STRUCT);
                e.begin();
                e.bin_field(1, b"k");
                e.bin_field(2, b"v");
                e.end();
            }
            e.i64_field(9, c.data);
            if let Some(d) = c.dict {
                e.i64_field(11, d);
            }
            if noise {
                e.field(12, ty::STRUCT); // statistics
                e.begin();
                e.bin_field(5, b"max");
                e.bin_field(6, b"min");
                e.end();
                e.unknown_fields(100);
            }
            e.end();
            if noise {
                e.unknown_fields(50);
            }
            e.end();
        }
        e.i64_field(2, 12345); // total_byte_size
        e.i64_field(3, 500); // num_rows
        if noise {
            e.unknown_fields(300);
        }
        e.end();
    }
    e.bin_field(6, b"cairn test writer");
    if noise {
        e.unknown_fields(200);
    }
    e.end();
    assert_eq!(e.last.len(), 0, "unbalanced encoder");
    e.buf
}

/// A whole file: magic, chunk bytes up to `data_end`, footer, tail.
fn file(meta: &[u8], data_end: u64) -> Vec<u8> {
    let mut f = b"PAR1".to_vec();
    f.resize(data_end as usize, 0xaa);
    f.extend_from_slice(meta);
    f.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    f.extend_from_slice(b"PAR1");
    f
}

/// 2 row groups x 3 columns, some with dictionary pages.
fn two_by_three() -> Vec<Vec<Col>> {
    vec![
        vec![
            col(Some(4), 104, 300),
            col(None, 304, 200),
            col(Some(504), 600, 150),
        ],
        vec![
            col(Some(654), 700, 100),
            col(None, 754, 46),
            col(Some(800), 900, 1000),
        ],
    ]
}

fn parse_file(f: &[u8]) -> ParquetLayout {
    let size = f.len() as u64;
    let len = parquet_footer_len(&f[f.len() - 8..]).unwrap();
    let meta = &f[(size - 8 - len) as usize..(size - 8) as usize];
    parquet_layout_detailed(meta, size).unwrap()
}

#[test]
fn encoder_matches_the_compact_spec() {
    // field 1 i32 = 1 -> 0x15 0x02; field 17 i64 = -1 (long form) -> 0x06 0x22 0x01; stop
    let mut e = Enc::new();
    e.i32_field(1, 1);
    e.i64_field(17, -1);
    e.field(18, ty::TRUE);
    e.end();
    assert_eq!(e.buf, [0x15, 0x02, 0x06, 0x22, 0x01, 0x11, 0x00]);
}

#[test]
fn two_row_groups_three_columns() {
    for noise in [false, true] {
        let meta = file_metadata(&two_by_three(), noise);
        let f = file(&meta, 1900);
        let p = parse_file(&f);
        let want: Vec<(u32, u32, Range<u64>)> = vec![
            (0, 0, 4..304),
            (0, 1, 304..504),
            (0, 2, 504..654),
            (1, 0, 654..754),
            (1, 1, 754..800),
            (1, 2, 800..1800),
        ];
        let got: Vec<_> = p
            .chunks
            .iter()
            .map(|c| (c.row_group, c.column, c.range.clone()))
            .collect();
        assert_eq!(got, want, "noise={noise}");
        assert_eq!(
            p.layout.extents,
            want.iter().map(|w| w.2.clone()).collect::<Vec<_>>()
        );
        let size = f.len() as u64;
        assert_eq!(p.layout.source, size - 8 - meta.len() as u64..size);
        // two row groups of the same three columns in the same order
        assert_eq!(p.layout.group, 3, "noise={noise}");
    }
}

#[test]
fn footer_with_tail_parses_the_same() {
    let meta = file_metadata(&two_by_three(), true);
    let f = file(&meta, 1900);
    let size = f.len() as u64;
    let src = &f[(size - 8 - meta.len() as u64) as usize..];
    assert_eq!(parquet_layout(src, size).unwrap(), parse_file(&f).layout);
    // and through the generic probe path
    let first = &f[f.len() - 8..];
    let range =
        super::super::layout_source(crate::trace::FormatClass::Parquet, first, size).unwrap();
    let l = super::super::parse_layout(
        crate::trace::FormatClass::Parquet,
        &f[range.start as usize..],
        size,
    )
    .unwrap();
    assert_eq!(l, parse_file(&f).layout);
}

#[test]
fn extents_sorted_clipped_and_odd_chunks_dropped() {
    let rgs = vec![vec![
        col(None, 1000, 100),    // listed first, lies last
        col(Some(0), 10, 90),    // dictionary_page_offset 0 means none
        col(Some(500), 400, 50), // dictionary after data: ignored
        Col {
            file_path: Some("other.parquet"),
            ..col(None, 200, 10)
        },
        col(None, 1050, 10_000), // runs into the footer: clipped
        col(None, 5000, 10),     // starts past the data region: dropped
    ]];
    let meta = file_metadata(&rgs, false);
    let f = file(&meta, 1100);
    let p = parse_file(&f);
    let got: Vec<_> = p
        .chunks
        .iter()
        .map(|c| (c.column, c.range.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 1000..1100),
            (1, 10..100),
            (2, 400..450),
            (4, 1050..1100)
        ]
    );
    assert_eq!(
        p.layout.extents,
        vec![10..100, 400..450, 1000..1100, 1050..1100]
    );
    // one row group: its chunks are the group
    assert_eq!(p.layout.group, 4);
}

#[test]
fn row_groups_of_different_shape_have_no_group() {
    // row group 0 has 3 columns, row group 1 only 2 (one chunk dropped): no regular groups
    let rgs = vec![
        vec![col(None, 4, 100), col(None, 104, 100), col(None, 204, 100)],
        vec![col(None, 304, 100), col(None, 404, 100)],
    ];
    let f = file(&file_metadata(&rgs, false), 600);
    assert_eq!(parse_file(&f).layout.group, 0);
    // same counts, but row group 1 stores its columns in another order
    let rgs = vec![
        vec![col(None, 4, 100), col(None, 104, 100)],
        vec![col(None, 304, 100), col(None, 204, 100)],
    ];
    let f = file(&file_metadata(&rgs, false), 600);
    assert_eq!(parse_file(&f).layout.group, 0);
}

#[test]
fn tail_errors() {
    assert!(matches!(
        parquet_footer_len(b"\x10\0\0\0PAR"),
        Err(FormatError::Short { .. })
    ));
    assert!(matches!(
        parquet_footer_len(b"\x10\0\0\0PAR2"),
        Err(FormatError::BadMagic(_))
    ));
    assert!(matches!(
        parquet_footer_len(b"\x10\0\0\0PARE"),
        Err(FormatError::Unsupported(_))
    ));
    assert!(matches!(
        parquet_footer_len(b"\0\0\0\0PAR1"),
        Err(FormatError::Invalid(_))
    ));
    assert!(matches!(
        parquet_footer_len(b"\xff\xff\xff\xffPAR1"),
        Err(FormatError::OutOfRange(_))
    ));
    assert_eq!(parquet_footer_len(b"\x10\x01\0\0PAR1").unwrap(), 0x110);
}

#[test]
fn footer_larger_than_file_is_rejected() {
    let meta = file_metadata(&two_by_three(), false);
    let size = meta.len() as u64 + 8 + 3; // no room for the leading magic
    assert!(matches!(
        parquet_layout(&meta, size),
        Err(FormatError::OutOfRange(_))
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let meta = file_metadata(&two_by_three(), true);
    for n in 0..meta.len() {
        let r = parquet_layout(&meta[..n], 1 << 30);
        assert!(r.is_err(), "prefix of {n} of {} bytes parsed", meta.len());
    }
}

#[test]
fn malformed_metadata_is_an_error() {
    // no row_groups
    let mut e = Enc::new();
    e.i32_field(1, 2);
    e.end();
    assert!(matches!(
        parquet_layout(&e.buf, 1 << 20),
        Err(FormatError::Invalid(_))
    ));
    // row_groups with the wrong type
    let mut e = Enc::new();
    e.i64_field(4, 2);
    e.end();
    assert!(matches!(
        parquet_layout(&e.buf, 1 << 20),
        Err(FormatError::Invalid(_))
    ));
    // negative size
    let meta = file_metadata(&[vec![col(None, 100, -5)]], false);
    assert!(matches!(
        parquet_layout(&meta, 1 << 20),
        Err(FormatError::Invalid(_))
    ));
    // a list claiming more elements than bytes
    let mut e = Enc::new();
    e.field(4, ty::LIST);
    e.buf
        .extend_from_slice(&[0xfc, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(matches!(
        parquet_layout(&e.buf, 1 << 20),
        Err(FormatError::Thrift(_))
    ));
    // deep nesting of unknown structs does not overflow the stack
    let mut deep = Vec::new();
    for _ in 0..10_000 {
        deep.push(0x1c); // field +1, struct
    }
    assert!(matches!(
        parquet_layout(&deep, 1 << 20),
        Err(FormatError::Thrift(_))
    ));
    // unknown type code
    assert!(matches!(
        parquet_layout(&[0x1e, 0x00], 1 << 20),
        Err(FormatError::Thrift(_))
    ));
}

proptest::proptest! {
    /// Flipped, inserted or dropped bytes of a valid footer never panic, and what still parses
    /// stays within the data region.
    #[test]
    fn mutations(flips in proptest::collection::vec((0usize..100_000, 0u8..=255), 1..6), insert in proptest::option::of((0usize..100_000, 0u8..=255)), cut in 0usize..64) {
        let meta = file_metadata(&two_by_three(), true);
        let mut m = meta.clone();
        for (i, x) in flips {
            let i = i % m.len();
            m[i] ^= x;
        }
        if let Some((i, b)) = insert {
            m.insert(i % m.len(), b);
        }
        m.truncate(m.len().saturating_sub(cut));
        let size = 4000 + m.len() as u64;
        if let Ok(p) = parquet_layout_detailed(&m, size) {
            let footer_start = size - 8 - m.len() as u64;
            assert!(p.chunks.iter().all(|c| c.range.start >= 4 && c.range.end <= footer_start && c.range.start < c.range.end));
            assert_eq!(p.chunks.len(), p.layout.extents.len());
        }
    }
}

/// Writes a real file with pyarrow and checks the chunk ranges against pyarrow's own metadata.
/// Needs `python3` (or `$CAIRN_PYTHON`) with pyarrow, hence ignored; run with `--ignored`.
#[test]
#[ignore]
fn real_pyarrow_file() {
    let py = std::env::var("CAIRN_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = std::env::temp_dir().join(format!("cairn-pq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.parquet");
    let script = r#"
import sys, json, pyarrow as pa, pyarrow.parquet as pq
n = 20000
t = pa.table({
    "id": pa.array(range(n), pa.int64()),
    "cat": pa.array([["red", "green", "blue"][i % 3] for i in range(n)]),
    "x": pa.array([i * 0.5 for i in range(n)], pa.float64()),
})
pq.write_table(t, sys.argv[1], row_group_size=7000, use_dictionary=["cat"], compression="snappy")
md = pq.ParquetFile(sys.argv[1]).metadata
out = []
for rg in range(md.num_row_groups):
    for c in range(md.num_columns):
        cc = md.row_group(rg).column(c)
        start = cc.data_page_offset
        if cc.has_dictionary_page and cc.dictionary_page_offset and cc.dictionary_page_offset < start:
            start = cc.dictionary_page_offset
        out.append([rg, c, start, start + cc.total_compressed_size])
print(json.dumps(out))
"#;
    let out = std::process::Command::new(&py)
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{py}: {e} (set CAIRN_PYTHON to a python with pyarrow)"));
    assert!(
        out.status.success(),
        "pyarrow script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Vec<(u32, u32, u64, u64)> = serde_json::from_slice(&out.stdout).unwrap();
    let f = std::fs::read(&path).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let p = parse_file(&f);
    let got: Vec<_> = p
        .chunks
        .iter()
        .map(|c| (c.row_group, c.column, c.range.start, c.range.end))
        .collect();
    assert_eq!(got, want);
    assert_eq!(got.len(), 9);
}

/// Parse cost of a large footer (1000 row groups x 100 columns); run with `--release --ignored`.
#[test]
#[ignore]
fn large_footer_timing() {
    let mut rgs = Vec::new();
    let mut off = 4;
    for _ in 0..1000 {
        let mut cols = Vec::new();
        for c in 0..100 {
            let dict = (c % 2 == 0).then_some(off);
            cols.push(col(dict, off + 64, 4096));
            off += 4096;
        }
        rgs.push(cols);
    }
    let meta = file_metadata(&rgs, false);
    let size = off as u64 + meta.len() as u64 + 8;
    let t = std::time::Instant::now();
    let p = parquet_layout_detailed(&meta, size).unwrap();
    let dt = t.elapsed();
    assert_eq!(p.chunks.len(), 100_000);
    eprintln!(
        "footer {} bytes, {} chunks parsed in {:?} ({:.1} ns/chunk)",
        meta.len(),
        p.chunks.len(),
        dt,
        dt.as_nanos() as f64 / 1e5
    );
}
