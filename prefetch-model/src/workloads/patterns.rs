//! Access patterns without a file format behind them: strided records, interleaved sequential
//! streams on one handle, and Zipf-popular random blocks.

use crate::rng::Rng;
use crate::{FileRef, Workload};

use super::builder::{
    jitter, ms, scale_bytes, scale_count, us, Builder, Stream, Zipf, GIB, KIB, MIB,
};

/// Parameters of [`strided`].
#[derive(Clone, Debug)]
pub struct StridedParams {
    /// Files, one reader stream each (default 4).
    pub files: usize,
    /// File size (default 512 MiB).
    pub file_size: u64,
    /// Record read at each step (default 64 KiB).
    pub record: u64,
    /// Base stride (default 256 KiB); stream `i` uses `stride * (1 + i % 3)`.
    pub stride: u64,
    /// Median processing time per record (default 300 us).
    pub think_ns: u64,
}

impl Default for StridedParams {
    fn default() -> Self {
        StridedParams {
            files: 4,
            file_size: 512 * MIB,
            record: 64 * KIB,
            stride: 256 * KIB,
            think_ns: us(300.0),
        }
    }
}

impl StridedParams {
    /// The same workload with `scale` times the bytes (file size scaled; at least 16 strides).
    pub fn scaled(mut self, scale: f64) -> Self {
        self.file_size = scale_bytes(self.file_size, scale, 16 * 3 * self.stride);
        self
    }
}

/// Reading one field of fixed-width records, or one column of a row-major array (`np.memmap`
/// slicing `x[:, j]`, MPI-IO strided file views, a column of a contiguous HDF5 dataset): each
/// stream reads `record` bytes every `stride * (1 + i % 3)` bytes of its own file, starting at a
/// per-stream phase. Requests are app-sized `pread`s. Readahead wastes `1 - record/stride`;
/// a stride detector (Leap's majority delta) covers it exactly.
pub fn strided(p: &StridedParams, seed: u64) -> Workload {
    let mut rng = Rng::new(seed);
    let mut b = Builder::new("strided");
    let files: Vec<FileRef> = (0..p.files)
        .map(|i| b.add_file(&format!("sim/fields/rank{i:03}.dat"), p.file_size))
        .collect();
    for (i, f) in files.iter().enumerate() {
        let stride = p.stride * (1 + i as u64 % 3);
        let record = p.record.min(stride / 2).max(1);
        let phase = rng.below((stride - record) / 4096 + 1) * 4096;
        let mut s = b.stream("python3", us(100.0) * i as u64);
        let h = b.open(&mut s, f);
        let mut off = phase;
        while off + record <= f.size {
            b.read(&mut s, f, h, off, record);
            s.think(jitter(&mut rng, p.think_ns));
            off += stride;
        }
        b.close(&mut s, f, h);
    }
    b.finish()
}

/// Parameters of [`interleaved`].
#[derive(Clone, Debug)]
pub struct InterleavedParams {
    /// Files read one after another (default 2).
    pub files: usize,
    /// File size (default 1 GiB).
    pub file_size: u64,
    /// Threads sharing each file's handle, each reading its own contiguous region (default 8).
    pub threads: usize,
    /// Bytes per `pread` (default 1 MiB).
    pub read_size: u64,
    /// Median time a thread spends on each piece (copy, checksum; default 150 us).
    pub think_ns: u64,
}

impl Default for InterleavedParams {
    fn default() -> Self {
        InterleavedParams {
            files: 2,
            file_size: GIB,
            threads: 8,
            read_size: MIB,
            think_ns: us(150.0),
        }
    }
}

impl InterleavedParams {
    /// The same workload with `scale` times the bytes (file size scaled; at least 4 reads per
    /// thread).
    pub fn scaled(mut self, scale: f64) -> Self {
        self.file_size = scale_bytes(
            self.file_size,
            scale,
            4 * self.threads as u64 * self.read_size,
        );
        self
    }
}

/// A multi-threaded reader of one large file (a parallel ranged copy such as `hf_transfer` or
/// `s5cmd cp` from a mount, a threaded loader of a big blob): the main thread opens the file,
/// `threads` threads each `pread` their own contiguous region (`file_size / threads`) in
/// `read_size` pieces through the same handle, the main thread closes it when all are done.
/// Per thread the stream is sequential; per handle it looks random, since the regions' requests
/// interleave in time. A prefetcher must track several sequential streams on one handle.
pub fn interleaved(p: &InterleavedParams, seed: u64) -> Workload {
    let mut rng = Rng::new(seed);
    let mut b = Builder::new("interleaved");
    let n = p.threads.max(1) as u64;
    let mut main = b.stream("python3", 0);
    let mut threads: Vec<Stream> = (0..n).map(|_| b.stream("python3", 0)).collect();
    for i in 0..p.files {
        let f = b.add_file(&format!("blobs/weights-{i:03}.bin"), p.file_size);
        let h = b.open(&mut main, &f);
        let region = f.size.div_ceil(n);
        for (k, s) in threads.iter_mut().enumerate() {
            // Threads are woken one after another once the file is open.
            s.wait_until(main.t + us(30.0) * k as u64);
            let start = region * k as u64;
            let end = (start + region).min(f.size);
            let mut off = start;
            while off < end {
                b.read(s, &f, h, off, p.read_size.min(end - off));
                s.think(jitter(&mut rng, p.think_ns));
                off += p.read_size;
            }
        }
        main.wait_until(threads.iter().map(|s| s.t).max().unwrap_or(0));
        b.close(&mut main, &f, h);
        main.think(ms(5.0));
    }
    b.finish()
}

/// Parameters of [`zipf_blocks`].
#[derive(Clone, Debug)]
pub struct ZipfParams {
    /// Files (default 16).
    pub files: usize,
    /// File size (default 256 MiB).
    pub file_size: u64,
    /// Block size; reads cover most of one block (default 1 MiB).
    pub block: u64,
    /// Reads in total (default 4096).
    pub reads: usize,
    /// Zipf exponent of block popularity (default 1.0).
    pub s: f64,
    /// Reader streams, each with every file open (default 4).
    pub streams: usize,
    /// Median time between a stream's reads (default 500 us).
    pub think_ns: u64,
}

impl Default for ZipfParams {
    fn default() -> Self {
        ZipfParams {
            files: 16,
            file_size: 256 * MIB,
            block: MIB,
            reads: 4096,
            s: 1.0,
            streams: 4,
            think_ns: us(500.0),
        }
    }
}

impl ZipfParams {
    /// The same workload with `scale` times the bytes (file size and read count scaled; at
    /// least 4 blocks per file and 64 reads).
    pub fn scaled(mut self, scale: f64) -> Self {
        self.file_size = scale_bytes(self.file_size, scale, 4 * self.block);
        self.reads = scale_count(self.reads, scale, 64);
        self
    }
}

/// Random lookups with skewed popularity (a feature store or embedding shards served from
/// files, SSTable block reads of a key-value store, random-access datasets such as LMDB with hot
/// keys): `streams` readers keep every file open and read 75-100% of a block chosen by a Zipf(s)
/// law over all blocks of all files (the popular blocks scattered by a random permutation).
/// Nothing is sequential; the cache's hit rate comes from popularity, and any prefetch is
/// likely waste.
pub fn zipf_blocks(p: &ZipfParams, seed: u64) -> Workload {
    let mut rng = Rng::new(seed);
    let mut b = Builder::new("zipf-blocks");
    let files: Vec<FileRef> = (0..p.files.max(1))
        .map(|i| b.add_file(&format!("features/shard-{i:04}.bin"), p.file_size))
        .collect();
    let block = p.block.max(4 * KIB);
    let per_file = p.file_size.div_ceil(block) as usize;
    let total = per_file * files.len();
    let mut by_rank: Vec<usize> = (0..total).collect();
    rng.shuffle(&mut by_rank);
    let zipf = Zipf::new(total, p.s);
    let n = p.streams.max(1);
    let mut streams: Vec<(Stream, Vec<u64>)> = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = b.stream("python3", us(200.0) * i as u64);
        let handles = files.iter().map(|f| b.open(&mut s, f)).collect();
        streams.push((s, handles));
    }
    for k in 0..p.reads {
        let (s, handles) = &mut streams[k % n];
        let blk = by_rank[zipf.sample(&mut rng)];
        let (fi, bi) = (blk / per_file, (blk % per_file) as u64);
        let len = block - rng.below(block / 4 / 4096 + 1) * 4096;
        b.read(s, &files[fi], handles[fi], bi * block, len);
        s.think(jitter(&mut rng, p.think_ns));
    }
    for (s, handles) in &mut streams {
        for (f, &h) in files.iter().zip(handles.iter()) {
            b.close(s, f, h);
        }
    }
    b.finish()
}
