//! Prefetching on a real mount against a real S3 server (moto): sequential reads and Parquet
//! column-chunk reads are served from prefetched blocks (the metrics show used prefetches and
//! few demand misses), access traces are recorded with `--trace` and train a model with
//! `cairn prefetch train` that a later mount loads, and bad policy or model settings fail with
//! one clear error line.

mod common;

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{cairn_bin, metric, run_with_deadline, MountSpec, S3Server, TempDir};

const MIB: u64 = 1 << 20;

fn drop_page_cache() {
    let _ = fs::write("/proc/sys/vm/drop_caches", "3");
}

/// Waits (up to 10 s) until `series` reaches `at_least`, returns its last value.
fn wait_metric(mnt: &Path, series: &str, at_least: f64) -> f64 {
    let start = Instant::now();
    loop {
        let v = metric(mnt, series);
        if v >= at_least || start.elapsed() > Duration::from_secs(10) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sequential_reads_are_served_by_prefetched_blocks() {
    let server = S3Server::start();
    let data = common::pseudo_random_bytes(5, (40 * MIB + 777) as usize);
    server.put("seq/shard-000.bin", &data);
    let m = MountSpec::s3(&server)
        .args(&["--prefetch", "learned"])
        .start();
    drop_page_cache();
    let f = File::open(m.join("seq/shard-000.bin")).unwrap();
    let mut buf = vec![0u8; 256 << 10];
    let mut off = 0usize;
    while off < data.len() {
        let n = f.read_at(&mut buf, off as u64).unwrap();
        assert!(n > 0, "short read at {off}");
        assert_eq!(&buf[..n], &data[off..off + n], "bytes differ at {off}");
        off += n;
    }
    let issued = metric(m.path(), "cairn_prefetch_issued_blocks_total ");
    let used = wait_metric(m.path(), "cairn_prefetch_used_blocks_total ", issued);
    let misses = metric(m.path(), "cairn_read_block_misses_total ");
    let blocks = data.len() as f64 / MIB as f64;
    eprintln!("issued {issued} used {used} demand misses {misses} of {blocks:.0} blocks");
    assert!(used > 0.0, "no prefetched block was used");
    assert!(
        used >= 0.9 * issued,
        "precision below 90%: {used} of {issued} prefetched blocks used"
    );
    assert!(
        used / (used + misses) >= 0.8,
        "coverage below 80%: {used} prefetched blocks used, {misses} demand misses"
    );
    let stats = common::cairn_ok(&["stats"], m.path());
    assert!(stats.contains("prefetch"), "{stats}");
}

// ---------------------------------------------------------------------------------------------
// A Parquet file: column chunks of random bytes and a real Thrift-compact FileMetaData footer.
// ---------------------------------------------------------------------------------------------

/// A minimal Thrift compact-protocol writer (just what a FileMetaData needs).
#[derive(Default)]
struct Compact {
    out: Vec<u8>,
    last: Vec<i16>,
}

const T_I32: u8 = 5;
const T_I64: u8 = 6;
const T_BINARY: u8 = 8;
const T_LIST: u8 = 9;
const T_STRUCT: u8 = 12;

impl Compact {
    fn varint(&mut self, mut v: u64) {
        loop {
            if v < 0x80 {
                self.out.push(v as u8);
                return;
            }
            self.out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
    }
    fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }
    fn field(&mut self, id: i16, ty: u8) {
        let last = self.last.last_mut().expect("inside a struct");
        let delta = id - *last;
        *last = id;
        if (1..=15).contains(&delta) {
            self.out.push(((delta as u8) << 4) | ty);
        } else {
            self.out.push(ty);
            self.zigzag(id as i64);
        }
    }
    fn begin(&mut self) {
        self.last.push(0);
    }
    fn end(&mut self) {
        self.out.push(0);
        self.last.pop();
    }
    fn i32(&mut self, id: i16, v: i32) {
        self.field(id, T_I32);
        self.zigzag(v as i64);
    }
    fn i64(&mut self, id: i16, v: i64) {
        self.field(id, T_I64);
        self.zigzag(v);
    }
    fn list(&mut self, id: i16, elem: u8, n: usize) {
        self.field(id, T_LIST);
        if n < 15 {
            self.out.push(((n as u8) << 4) | elem);
        } else {
            self.out.push(0xf0 | elem);
            self.varint(n as u64);
        }
    }
}

/// Column chunk ranges `[row_group][column]` and the file bytes.
fn parquet_file(row_groups: usize, columns: usize, chunk: u64) -> (Vec<Vec<(u64, u64)>>, Vec<u8>) {
    let mut ranges = Vec::new();
    let mut off = 4u64; // "PAR1"
    for _ in 0..row_groups {
        let mut rg = Vec::new();
        for c in 0..columns {
            // Columns of different widths, like real tables.
            let len = chunk / 2 + (c as u64 * chunk) / columns as u64;
            rg.push((off, len));
            off += len;
        }
        ranges.push(rg);
    }
    let mut t = Compact::default();
    t.begin();
    t.i32(1, 1); // version
    t.list(2, T_STRUCT, 0); // schema (not needed for offsets)
    t.i64(3, 1000 * row_groups as i64); // num_rows
    t.list(4, T_STRUCT, row_groups);
    for rg in &ranges {
        t.begin();
        t.list(1, T_STRUCT, rg.len());
        for (c, &(start, len)) in rg.iter().enumerate() {
            t.begin(); // ColumnChunk
            t.i64(2, (start + len) as i64); // file_offset
            t.field(3, T_STRUCT); // meta_data
            t.begin();
            t.i32(1, 6); // type BYTE_ARRAY
            t.list(2, T_I32, 1);
            t.zigzag(0);
            t.list(3, T_BINARY, 1);
            let name = format!("col{c}");
            t.varint(name.len() as u64);
            t.out.extend_from_slice(name.as_bytes());
            t.i32(4, 0); // codec
            t.i64(5, 1000); // num_values
            t.i64(6, len as i64); // total_uncompressed_size
            t.i64(7, len as i64); // total_compressed_size
            t.i64(9, start as i64); // data_page_offset
            t.end();
            t.end();
        }
        t.i64(2, rg.iter().map(|r| r.1 as i64).sum()); // total_byte_size
        t.i64(3, 1000); // num_rows
        t.end();
    }
    t.end();
    let mut bytes = b"PAR1".to_vec();
    bytes.extend(common::pseudo_random_bytes(9, (off - 4) as usize));
    bytes.extend(&t.out);
    bytes.extend((t.out.len() as u32).to_le_bytes());
    bytes.extend(b"PAR1");
    (ranges, bytes)
}

/// Reads like a Parquet reader projecting `cols`: footer length, footer, then the projected
/// column chunks of each row group in 256 KiB preads, with a short compute pause per chunk.
/// Returns the demand block misses counted after the first row group (the warm-up).
fn scan(mnt: &Path, path: &Path, ranges: &[Vec<(u64, u64)>], cols: &[usize], data: &[u8]) -> f64 {
    let f = File::open(path).unwrap();
    let size = data.len() as u64;
    let mut tail = [0u8; 8];
    f.read_exact_at(&mut tail, size - 8).unwrap();
    let flen = u32::from_le_bytes(tail[..4].try_into().unwrap()) as u64;
    let mut footer = vec![0u8; flen as usize];
    f.read_exact_at(&mut footer, size - 8 - flen).unwrap();
    let mut misses_after_warmup = 0.0;
    for (g, rg) in ranges.iter().enumerate() {
        if g == 1 {
            misses_after_warmup = metric(mnt, "cairn_read_block_misses_total ");
        }
        for &c in cols {
            let (start, len) = rg[c];
            let mut off = start;
            while off < start + len {
                let n = (256 << 10).min(start + len - off) as usize;
                let mut buf = vec![0u8; n];
                f.read_exact_at(&mut buf, off).unwrap();
                assert_eq!(
                    buf,
                    data[off as usize..off as usize + n],
                    "bytes differ at {off}"
                );
                off += n as u64;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    metric(mnt, "cairn_read_block_misses_total ") - misses_after_warmup
}

#[test]
fn parquet_column_chunks_are_prefetched_from_the_footer() {
    let server = S3Server::start();
    let (ranges, data) = parquet_file(6, 8, 2 * MIB);
    server.put("tables/part-0.parquet", &data);
    let cols = [1usize, 4, 6];
    let demand: u64 = ranges
        .iter()
        .skip(1)
        .flat_map(|rg| cols.iter().map(|&c| rg[c].1))
        .sum();

    let learned = {
        let m = MountSpec::s3(&server)
            .args(&["--prefetch", "learned", "--block-size", "256KiB"])
            .start();
        drop_page_cache();
        let misses = scan(
            m.path(),
            &m.join("tables/part-0.parquet"),
            &ranges,
            &cols,
            &data,
        );
        let layouts = metric(m.path(), "cairn_prefetch_layouts_total ");
        let used = metric(m.path(), "cairn_prefetch_used_bytes_total ");
        let fetched = metric(m.path(), "cairn_store_get_bytes_total ");
        eprintln!(
            "learned: {misses} demand misses after warm-up, {used} prefetched bytes used, \
             {fetched} bytes fetched of {} in the file, {layouts} layouts",
            data.len()
        );
        let text = common::cairn_ok(&["stats", "--prometheus"], m.path());
        for l in text
            .lines()
            .filter(|l| l.starts_with("cairn_prefetch") || l.starts_with("cairn_read_block"))
        {
            eprintln!("  {l}");
        }
        assert!(layouts >= 1.0, "the Parquet footer was not parsed");
        assert!(used > 0.0, "no prefetched block was used");
        assert!(
            fetched <= data.len() as f64,
            "fetched {fetched} bytes of a {}-byte file: some bytes were fetched twice",
            data.len()
        );
        misses
    };
    let readahead = {
        let m = MountSpec::s3(&server)
            .args(&["--prefetch", "readahead", "--block-size", "256KiB"])
            .start();
        drop_page_cache();
        let misses = scan(
            m.path(),
            &m.join("tables/part-0.parquet"),
            &ranges,
            &cols,
            &data,
        );
        eprintln!("readahead only: {misses} demand misses after warm-up");
        misses
    };
    let demand_blocks = demand as f64 / MIB as f64;
    eprintln!("demanded after warm-up: {demand_blocks:.1} MiB");
    assert!(
        learned < readahead,
        "the learned prefetcher should miss less than readahead alone on column chunks \
         ({learned} vs {readahead} demand misses)"
    );
}

#[test]
fn traces_train_a_model_that_a_mount_loads() {
    let server = S3Server::start();
    for i in 0..6 {
        server.put(
            &format!("ds/sample-{i}.bin"),
            &common::pseudo_random_bytes(i, (3 * MIB) as usize),
        );
    }
    let dir = TempDir::new("prefetch-trace");
    let trace = dir.join("run.trace");
    {
        let m = MountSpec::s3(&server)
            .args(&["--trace", trace.to_str().unwrap()])
            .start();
        for _ in 0..2 {
            for i in 0..6 {
                let got = fs::read(m.join(format!("ds/sample-{i}.bin"))).unwrap();
                assert_eq!(got.len() as u64, 3 * MIB);
            }
            drop_page_cache();
        }
        m.unmount();
    }
    let size = fs::metadata(&trace).expect("trace file").len();
    assert!(size > 16 + 72 * 12, "trace too small: {size} bytes");

    let model = dir.join("model.bin");
    let out = run_with_deadline(
        Command::new(cairn_bin())
            .args(["prefetch", "train", trace.to_str().unwrap(), "-o"])
            .arg(&model),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "train failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(fs::metadata(&model).unwrap().len() > 0);

    let m = MountSpec::s3(&server)
        .args(&[
            "--prefetch",
            "learned",
            "--prefetch-model",
            model.to_str().unwrap(),
        ])
        .start();
    assert_eq!(
        fs::read(m.join("ds/sample-2.bin")).unwrap(),
        common::pseudo_random_bytes(2, (3 * MIB) as usize)
    );
}

#[test]
fn bad_prefetch_settings_fail_with_one_clear_line() {
    let server = S3Server::start();
    let dir = TempDir::new("prefetch-bad");
    let junk = dir.join("junk.model");
    fs::write(&junk, b"this is not a model").unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&["--prefetch", "psychic"], "unknown prefetch policy"),
        (
            &["--prefetch-model", junk.to_str().unwrap()],
            "prefetch model",
        ),
        (
            &[
                "--prefetch",
                "stride",
                "--prefetch-model",
                junk.to_str().unwrap(),
            ],
            "--prefetch-model needs --prefetch learned",
        ),
    ];
    for (args, want) in cases {
        let f = MountSpec::s3(&server)
            .args(args)
            .timeout(Duration::from_secs(20))
            .try_start()
            .err()
            .unwrap_or_else(|| panic!("mount with {args:?} should fail"));
        let lines: Vec<&str> = f.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: expected one line, got {lines:?}");
        assert!(lines[0].contains(want), "{args:?}: {}", lines[0]);
    }
}
