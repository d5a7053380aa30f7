//! Hyperslab reads of a chunked HDF5 dataset.

use crate::rng::Rng;
use crate::{Layout, Workload};

use super::builder::{jitter, ms, scale_bytes, scale_count, Builder, KIB, MIB};

/// Parameters of [`hdf5_chunks`].
#[derive(Clone, Debug)]
pub struct Hdf5Params {
    /// Chunk-grid rows (default 64).
    pub rows: usize,
    /// Chunk-grid columns (default 32); chunks are stored row-major.
    pub cols: usize,
    /// Median stored (compressed) chunk size (default 1 MiB, log-normal sigma 0.2).
    pub chunk_bytes: u64,
    /// Metadata at the start of the file: superblock, object headers, chunk B-tree (default
    /// 256 KiB).
    pub meta_bytes: u64,
    /// Reader processes (default 4).
    pub readers: usize,
    /// Columns per hyperslab band (default 4); reader `r` reads bands `r, r + readers, ...`.
    pub band: usize,
    /// Largest request the kernel passes for one chunk read (default 1 MiB).
    pub max_req: u64,
    /// Median decompress-and-compute time per chunk (default 3 ms).
    pub chunk_ns: u64,
}

impl Default for Hdf5Params {
    fn default() -> Self {
        Hdf5Params {
            rows: 64,
            cols: 32,
            chunk_bytes: MIB,
            meta_bytes: 256 * KIB,
            readers: 4,
            band: 4,
            max_req: MIB,
            chunk_ns: ms(3.0),
        }
    }
}

impl Hdf5Params {
    /// The same workload with `scale` times the bytes (rows and chunk size each scaled by
    /// `sqrt(scale)`; at least 2 rows of 4 KiB chunks).
    pub fn scaled(mut self, scale: f64) -> Self {
        let r = scale.sqrt();
        self.rows = scale_count(self.rows, r, 2);
        self.chunk_bytes = scale_bytes(self.chunk_bytes, r, 4 * KIB);
        self
    }
}

/// Parallel analysis of one large chunked HDF5 dataset (h5py / MPI ranks reading a climate or
/// simulation field, `dset[:, c0:c1]` per rank). The file holds metadata (superblock, object
/// header, chunk B-tree) in its first `meta_bytes`, then a `rows x cols` grid of compressed
/// chunks stored row-major. Each reader opens the file, reads the superblock page and then the
/// B-tree region in 64 KiB pieces, then its column bands row by row: `band` contiguous chunks,
/// a jump of one grid row, `band` chunks, ... (a strided pattern of runs). Layout: `source` =
/// the metadata region, `extents` = chunk ranges in file order.
pub fn hdf5_chunks(p: &Hdf5Params, seed: u64) -> Workload {
    let mut rng = Rng::new(seed);
    let mut b = Builder::new("hdf5-chunks");
    let cols = p.cols.max(1);
    let meta = p.meta_bytes.max(4 * KIB);
    let mut off = meta;
    let mut chunks = Vec::with_capacity(p.rows * cols);
    for _ in 0..p.rows * cols {
        let len = (rng.lognormal(p.chunk_bytes as f64, 0.2) as u64).max(512);
        chunks.push(off..off + len);
        off += len;
    }
    let f = b.add_file("climate/era5/t2m_1979-2023.h5", off);
    b.set_layout(
        f.inode,
        Layout {
            source: 0..meta,
            extents: chunks.clone(),
            group: 0,
        },
    );
    let band = p.band.clamp(1, cols);
    let bands = cols.div_ceil(band);
    let readers = p.readers.max(1);
    for r in 0..readers {
        let mut s = b.stream("python3", ms(5.0) * r as u64);
        let h = b.open(&mut s, &f);
        b.read(&mut s, &f, h, 0, 4 * KIB);
        b.read_span(&mut s, &f, h, 4 * KIB, meta - 4 * KIB, 64 * KIB);
        for k in (r..bands).step_by(readers) {
            let c0 = k * band;
            let c1 = (c0 + band).min(cols);
            for row in 0..p.rows {
                for c in c0..c1 {
                    let ch = &chunks[row * cols + c];
                    b.read_span(&mut s, &f, h, ch.start, ch.end - ch.start, p.max_req);
                    s.think(jitter(&mut rng, p.chunk_ns));
                }
            }
        }
        b.close(&mut s, &f, h);
    }
    b.finish()
}
