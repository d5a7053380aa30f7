//! Sharded record formats read as streams: TFRecord shards (tf.data) and WebDataset tar shards.

use crate::rng::Rng;
use crate::{FileRef, Layout, Workload};

use super::builder::{jitter, ms, scale_bytes, scale_count, us, Builder, Stream, KIB, MIB};

/// Parameters of [`tfrecord_shards`].
#[derive(Clone, Debug)]
pub struct TfRecordParams {
    /// Shards (default 12).
    pub shards: usize,
    /// Smallest shard (default 100 MB).
    pub min_shard: u64,
    /// Largest shard (default 200 MB).
    pub max_shard: u64,
    /// Reader threads (`num_parallel_reads`, default 4).
    pub threads: usize,
    /// Bytes per `pread` (default 256 KiB, TFRecordDataset's `buffer_size`).
    pub pread_size: u64,
    /// Median parse time of one buffer's records (default 300 us).
    pub parse_ns: u64,
    /// Epochs (default 1); shard order is reshuffled each epoch.
    pub epochs: usize,
}

impl Default for TfRecordParams {
    fn default() -> Self {
        TfRecordParams {
            shards: 12,
            min_shard: 100_000_000,
            max_shard: 200_000_000,
            threads: 4,
            pread_size: 256 * KIB,
            parse_ns: us(300.0),
            epochs: 1,
        }
    }
}

impl TfRecordParams {
    /// The same workload with `scale` times the bytes (shard count and size each scaled by
    /// `sqrt(scale)`; at least 2 shards of 64 KiB).
    pub fn scaled(mut self, scale: f64) -> Self {
        let r = scale.sqrt();
        self.shards = scale_count(self.shards, r, 2);
        self.min_shard = scale_bytes(self.min_shard, r, 64 * KIB);
        self.max_shard = scale_bytes(self.max_shard, r, self.min_shard);
        self
    }
}

/// Picks the stream whose clock is earliest (the thread that becomes free first takes the next
/// shard).
fn earliest(streams: &[Stream]) -> usize {
    (0..streams.len())
        .min_by_key(|&i| (streams[i].t, i))
        .unwrap_or(0)
}

/// TensorFlow `tf.data.TFRecordDataset(files, num_parallel_reads=threads)` over a shuffled list
/// of 100-200 MB shards (ImageNet/BERT-style TFRecords). Each reader thread takes the next shard
/// when it finishes one and reads it front to back in `pread_size` positional reads (no kernel
/// split), parsing between reads. Threads of one process interleave their sequential streams in
/// time, so a per-file (not per-process) sequential detector is needed.
pub fn tfrecord_shards(p: &TfRecordParams, seed: u64) -> Workload {
    let mut rng = Rng::new(seed);
    let mut b = Builder::new("tfrecord-shards");
    let span = p.max_shard.saturating_sub(p.min_shard) + 1;
    let shards: Vec<FileRef> = (0..p.shards)
        .map(|i| {
            let size = p.min_shard + rng.below(span);
            b.add_file(
                &format!("tfrecords/train-{i:05}-of-{:05}.tfrecord", p.shards),
                size,
            )
        })
        .collect();
    let mut threads: Vec<Stream> = (0..p.threads.max(1))
        .map(|i| b.stream("python3", us(50.0) * i as u64))
        .collect();
    let mut t_epoch = 0;
    for _ in 0..p.epochs {
        for s in &mut threads {
            s.wait_until(t_epoch);
        }
        let mut order: Vec<usize> = (0..shards.len()).collect();
        rng.shuffle(&mut order);
        for &i in &order {
            let next = earliest(&threads);
            let s = &mut threads[next];
            let f = &shards[i];
            let h = b.open(s, f);
            let mut off = 0;
            while off < f.size {
                b.read(s, f, h, off, p.pread_size);
                off += p.pread_size;
                s.think(jitter(&mut rng, p.parse_ns));
            }
            b.close(s, f, h);
        }
        t_epoch = threads.iter().map(|s| s.t).max().unwrap_or(0) + ms(500.0);
    }
    b.finish()
}

/// Parameters of [`webdataset_tar`].
#[derive(Clone, Debug)]
pub struct WebDatasetParams {
    /// Tar shards (default 3).
    pub shards: usize,
    /// Smallest shard (default 256 MiB).
    pub min_shard: u64,
    /// Largest shard (default 1 GiB).
    pub max_shard: u64,
    /// Median image member size (default 100 KB); each sample is an image plus a tiny `.cls`.
    pub median_member: u64,
    /// DataLoader workers, each streaming its own shards (default 3).
    pub workers: usize,
    /// Kernel request size of the streaming read (default 512 KiB).
    pub read_size: u64,
    /// Median decode time per sample (default 2 ms).
    pub decode_ns: u64,
    /// Epochs (default 1); shard order is reshuffled each epoch.
    pub epochs: usize,
}

impl Default for WebDatasetParams {
    fn default() -> Self {
        WebDatasetParams {
            shards: 3,
            min_shard: 256 * MIB,
            max_shard: 1 << 30,
            median_member: 100_000,
            workers: 3,
            read_size: 512 * KIB,
            decode_ns: ms(2.0),
            epochs: 1,
        }
    }
}

impl WebDatasetParams {
    /// The same workload with `scale` times the bytes (shard count and size each scaled by
    /// `sqrt(scale)`; at least 2 shards of 256 KiB).
    pub fn scaled(mut self, scale: f64) -> Self {
        let r = scale.sqrt();
        self.shards = scale_count(self.shards, r, 2);
        self.min_shard = scale_bytes(self.min_shard, r, 256 * KIB);
        self.max_shard = scale_bytes(self.max_shard, r, self.min_shard);
        self
    }
}

const TAR_BLOCK: u64 = 512;
/// tar's default blocking: archives are padded to a multiple of 20 blocks.
const TAR_RECORD: u64 = 20 * TAR_BLOCK;

/// Lays out one shard: members (512-byte header + data rounded up to 512) until `target` bytes,
/// then the two zero end blocks and padding to tar's record size. Returns the member extents,
/// the end offset of each sample's image member (where its decode can start) and the size.
fn tar_shard(
    rng: &mut Rng,
    target: u64,
    median: u64,
) -> (Vec<std::ops::Range<u64>>, Vec<u64>, u64) {
    let mut extents = Vec::new();
    let mut sample_ends = Vec::new();
    let mut off = 0;
    while off < target.saturating_sub(2 * TAR_BLOCK) || extents.is_empty() {
        let image = (rng.lognormal(median as f64, 0.4) as u64).clamp(KIB, 8 * MIB);
        let label = 1 + rng.below(4);
        for data in [image, label] {
            let end = off + TAR_BLOCK + data.div_ceil(TAR_BLOCK) * TAR_BLOCK;
            extents.push(off..end);
            off = end;
        }
        sample_ends.push(off);
    }
    let size = (off + 2 * TAR_BLOCK).div_ceil(TAR_RECORD) * TAR_RECORD;
    (extents, sample_ends, size)
}

/// WebDataset training (`wds.WebDataset(urls)` in a PyTorch DataLoader): tar shards of 256 MiB
/// to 1 GiB holding ~100 KB image members with small label members. Shards are split across
/// workers (`split_by_worker`), each worker streams its shards front to back (kernel-sized
/// sequential requests) and decodes every sample as its bytes arrive. Layout: one extent per
/// member (header plus data rounded to 512 bytes); `source` is the first header, since tar has no
/// index and is understood as it streams.
pub fn webdataset_tar(p: &WebDatasetParams, seed: u64) -> Workload {
    let mut rng = Rng::new(seed);
    let mut b = Builder::new("webdataset-tar");
    let span = p.max_shard.saturating_sub(p.min_shard) + 1;
    let mut shards = Vec::with_capacity(p.shards);
    for i in 0..p.shards {
        let target = p.min_shard + rng.below(span);
        let (extents, sample_ends, size) = tar_shard(&mut rng, target, p.median_member);
        let f = b.add_file(&format!("wds/imagenet-train-{i:06}.tar"), size);
        b.set_layout(
            f.inode,
            Layout {
                source: 0..TAR_BLOCK,
                extents,
                group: 0,
            },
        );
        shards.push((f, sample_ends));
    }
    let n_workers = p.workers.max(1);
    let mut t_epoch = 0;
    for _ in 0..p.epochs {
        let mut order: Vec<usize> = (0..shards.len()).collect();
        rng.shuffle(&mut order);
        let mut end = t_epoch;
        for w in 0..n_workers {
            let mut s = b.stream("python3", t_epoch + ms(15.0) * w as u64);
            for &i in order.iter().skip(w).step_by(n_workers) {
                let (f, sample_ends) = &shards[i];
                let h = b.open(&mut s, f);
                let mut off = 0;
                let mut next_sample = 0;
                while off < f.size {
                    b.read(&mut s, f, h, off, p.read_size);
                    off = (off + p.read_size).min(f.size);
                    while next_sample < sample_ends.len() && sample_ends[next_sample] <= off {
                        s.think(jitter(&mut rng, p.decode_ns));
                        next_sample += 1;
                    }
                }
                b.close(&mut s, f, h);
            }
            end = end.max(s.t);
        }
        t_epoch = end + ms(500.0);
    }
    b.finish()
}
