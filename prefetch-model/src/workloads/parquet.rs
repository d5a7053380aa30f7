//! Column-projected scans of Parquet files.

use std::ops::Range;

use crate::rng::Rng;
use crate::{FileRef, Layout, Workload};

use super::builder::{jitter, ms, scale_bytes, scale_count, Builder, Stream, KIB, MIB};

/// Parameters of [`parquet_scan`].
#[derive(Clone, Debug)]
pub struct ParquetParams {
    /// Files (default 8).
    pub files: usize,
    /// Row groups per file (default 6).
    pub row_groups: usize,
    /// Columns (default 10); their widths differ (log-normal), fixed for the dataset.
    pub columns: usize,
    /// Median bytes of one row group, all columns (default 32 MiB).
    pub row_group_bytes: u64,
    /// Columns each query reads (default 3).
    pub projected: usize,
    /// Queries, each with its own projection, each scanning every file (default 2).
    pub queries: usize,
    /// Scan threads; each takes the next file when done (default 4).
    pub threads: usize,
    /// Largest request the kernel passes for one column-chunk `pread` (default 1 MiB).
    pub max_req: u64,
    /// Median decode time per MiB of column chunk (default 1.5 ms).
    pub decode_ns_per_mib: u64,
    /// Bytes the kernel's page-cache readahead reads past the end of each column-chunk read
    /// (default 0: none). A FUSE mount sees them as requests continuing the read into the next
    /// chunk, projected or not; a later read of bytes already read ahead is a page-cache hit
    /// the gateway never sees. cairn raises a mount's kernel readahead to 1 MiB.
    pub kernel_readahead: u64,
}

impl Default for ParquetParams {
    fn default() -> Self {
        ParquetParams {
            files: 8,
            row_groups: 6,
            columns: 10,
            row_group_bytes: 32 * MIB,
            projected: 3,
            queries: 2,
            threads: 4,
            max_req: MIB,
            decode_ns_per_mib: ms(1.5),
            kernel_readahead: 0,
        }
    }
}

impl ParquetParams {
    /// The same workload with `scale` times the bytes (files and row-group size each scaled by
    /// `sqrt(scale)`; at least 2 files, row groups of at least 64 KiB).
    pub fn scaled(mut self, scale: f64) -> Self {
        let r = scale.sqrt();
        self.files = scale_count(self.files, r, 2);
        self.row_group_bytes = scale_bytes(self.row_group_bytes, r, 64 * KIB);
        self
    }
}

/// One file's physical layout: `chunks[rg][col]` and the footer.
struct ParquetFile {
    f: FileRef,
    chunks: Vec<Vec<Range<u64>>>,
    footer: Range<u64>,
}

/// Lays out a file: magic `PAR1`, row groups of column chunks in column order, the footer
/// (thrift metadata, growing with row groups x columns), its 4-byte length and `PAR1`.
fn lay_out(
    rng: &mut Rng,
    p: &ParquetParams,
    widths: &[f64],
) -> (Vec<Vec<Range<u64>>>, Range<u64>, u64) {
    let total: f64 = widths.iter().sum();
    let mut off = 4;
    let mut chunks = Vec::with_capacity(p.row_groups);
    for _ in 0..p.row_groups {
        let rg = rng.lognormal(p.row_group_bytes as f64, 0.1);
        let row: Vec<Range<u64>> = widths
            .iter()
            .map(|w| {
                let len = ((rg * w / total * rng.lognormal(1.0, 0.1)) as u64).max(KIB);
                let r = off..off + len;
                off += len;
                r
            })
            .collect();
        chunks.push(row);
    }
    let footer_len = 512 + (p.row_groups * widths.len()) as u64 * 96 + widths.len() as u64 * 48;
    let footer = off..off + footer_len;
    (chunks, footer, off + footer_len + 8)
}

/// An analytics scan (pyarrow / DuckDB / Spark reading a Parquet dataset with a column
/// projection, e.g. `SELECT a, b, c FROM t`). For each file: read the last 8 bytes (footer length
/// and magic), then the footer, then for each row group the projected column chunks in column
/// order, each as one `pread` split by the kernel into `max_req` requests, decoding between them.
/// Projected chunks are not contiguous, so plain readahead fetches unread columns, and a
/// prefetcher that fetches every extent of the layout wastes `1 - projected/columns` of it.
/// Layout: `source` = footer through end of file, `extents` = every column chunk in file order.
pub fn parquet_scan(p: &ParquetParams, seed: u64) -> Workload {
    let mut rng = Rng::new(seed);
    let mut b = Builder::new("parquet-scan");
    let columns = p.columns.max(1);
    let widths: Vec<f64> = (0..columns).map(|_| rng.lognormal(1.0, 0.7)).collect();
    let mut files = Vec::with_capacity(p.files);
    for i in 0..p.files {
        let (chunks, footer, size) = lay_out(&mut rng, p, &widths);
        let f = b.add_file(
            &format!("warehouse/events/date=2024-05-01/part-{i:05}.parquet"),
            size,
        );
        let extents = chunks.iter().flatten().cloned().collect();
        b.set_layout(
            f.inode,
            Layout {
                source: footer.start..size,
                extents,
                // every row group holds one chunk per column, as the footer says
                group: columns,
            },
        );
        files.push(ParquetFile { f, chunks, footer });
    }
    let mut threads: Vec<Stream> = (0..p.threads.max(1))
        .map(|i| b.stream("python3", ms(0.1) * i as u64))
        .collect();
    let mut t_query = 0;
    for _ in 0..p.queries {
        let mut cols: Vec<usize> = (0..columns).collect();
        rng.shuffle(&mut cols);
        cols.truncate(p.projected.clamp(1, columns));
        cols.sort_unstable();
        for s in &mut threads {
            s.wait_until(t_query);
        }
        for pf in &files {
            let i = (0..threads.len())
                .min_by_key(|&i| (threads[i].t, i))
                .unwrap_or(0);
            let s = &mut threads[i];
            let f = &pf.f;
            let h = b.open(s, f);
            b.read(s, f, h, f.size - 8, 8);
            b.read(s, f, h, pf.footer.start, pf.footer.end - pf.footer.start);
            s.think(jitter(&mut rng, ms(0.2)));
            // Bytes of the data region the kernel has read for this scan, as one run.
            let mut cached = 0..0u64;
            for row in &pf.chunks {
                for &c in &cols {
                    let r = &row[c];
                    let from = if cached.contains(&r.start) {
                        cached.end
                    } else {
                        r.start
                    };
                    let to = (r.end + p.kernel_readahead).min(pf.footer.start);
                    if to > from {
                        b.read_span(s, f, h, from, to - from, p.max_req);
                    }
                    cached = if cached.contains(&r.start) || cached.end == r.start {
                        cached.start..cached.end.max(to)
                    } else {
                        r.start..to
                    };
                    let mib = (r.end - r.start) as f64 / MIB as f64;
                    s.think(jitter(
                        &mut rng,
                        (p.decode_ns_per_mib as f64 * mib) as u64 + 1_000,
                    ));
                }
            }
            b.close(s, f, h);
        }
        t_query = threads.iter().map(|s| s.t).max().unwrap_or(0) + ms(200.0);
    }
    b.finish()
}
