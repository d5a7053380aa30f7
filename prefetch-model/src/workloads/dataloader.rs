//! Map-style datasets read through a PyTorch `DataLoader`: many worker processes, each reading
//! whole files (samples) of a per-epoch shuffle, gated by the training loop's consumption.

use crate::rng::Rng;
use crate::{FileRef, Workload};

use super::builder::{batches, jitter, ms, scale_bytes, scale_count, Builder, Stream, KIB, MIB};

/// How a PyTorch `DataLoader` runs the epoch: batches of a fresh shuffle go round-robin to
/// `workers` processes; a worker may run at most `prefetch_factor` batches ahead of the training
/// loop, which spends `step_ns` per batch.
#[derive(Clone, Debug)]
pub struct LoaderParams {
    /// Worker processes (`num_workers`).
    pub workers: usize,
    /// Samples per batch (`batch_size`).
    pub batch_size: usize,
    /// Batches each worker may have in flight (`prefetch_factor`).
    pub prefetch_factor: usize,
    /// Median per-sample work on the worker after reading it (decode, augment), ns.
    pub decode_ns: u64,
    /// Median training step per batch on the main process (forward/backward), ns.
    pub step_ns: u64,
    /// Pause between epochs (evaluation, worker restart), ns.
    pub epoch_gap_ns: u64,
    /// Whether workers survive across epochs (`persistent_workers`); when false (PyTorch's
    /// default) every epoch's workers are new processes, i.e. new streams.
    pub persistent_workers: bool,
}

/// Runs `epochs` shuffled epochs over `files`; `read_file` emits one sample's I/O (open,
/// reads, close) on a worker's stream.
fn run_loader<F>(
    b: &mut Builder,
    files: &[FileRef],
    lp: &LoaderParams,
    epochs: usize,
    rng: &mut Rng,
    mut read_file: F,
) where
    F: FnMut(&mut Builder, &mut Stream, &FileRef, &mut Rng),
{
    let n_workers = lp.workers.max(1);
    let lag = lp.prefetch_factor.max(1) * n_workers;
    let mut t_epoch = 0;
    let mut workers: Vec<Stream> = Vec::new();
    for epoch in 0..epochs {
        if epoch == 0 || !lp.persistent_workers {
            // Worker processes start one after another (fork + dataset pickling).
            workers = (0..n_workers)
                .map(|i| b.stream("python3", t_epoch + ms(15.0) * i as u64))
                .collect();
        } else {
            for w in &mut workers {
                w.wait_until(t_epoch);
            }
        }
        let mut order: Vec<usize> = (0..files.len()).collect();
        rng.shuffle(&mut order);
        let mut consumed: Vec<u64> = Vec::new();
        let mut last = t_epoch;
        for (k, batch) in batches(&order, lp.batch_size).iter().enumerate() {
            let w = &mut workers[k % n_workers];
            if k >= lag {
                w.wait_until(consumed[k - lag]);
            }
            for &i in batch {
                read_file(b, w, &files[i], rng);
                w.think(jitter(rng, lp.decode_ns));
            }
            last = last.max(w.t) + jitter(rng, lp.step_ns);
            consumed.push(last);
        }
        t_epoch = last + lp.epoch_gap_ns;
    }
}

/// Parameters of [`shuffled_small_files`].
#[derive(Clone, Debug)]
pub struct SmallFilesParams {
    /// Files in the dataset (default 16384, ~1.9 GB: larger than a 1 GiB cache, as real
    /// datasets are larger than RAM, so later epochs miss too).
    pub files: usize,
    /// Class directories they are spread over (default 16).
    pub dirs: usize,
    /// Median file size (default 110 KiB, the ImageNet JPEG average).
    pub median_size: u64,
    /// Log-normal sigma of the file size (default 0.35).
    pub size_sigma: f64,
    /// Epochs (default 2).
    pub epochs: usize,
    /// Largest request the kernel sends for a whole-file read (default 128 KiB, FUSE's default
    /// `max_read`).
    pub read_size: u64,
    /// The DataLoader (default 8 workers, batch 32, prefetch 2, 2 ms decode per image, 13 ms
    /// step per batch: ResNet-50 on one A100, workers not persistent).
    pub loader: LoaderParams,
}

impl Default for SmallFilesParams {
    fn default() -> Self {
        SmallFilesParams {
            files: 16384,
            dirs: 16,
            median_size: 110 * KIB,
            size_sigma: 0.35,
            epochs: 2,
            read_size: 128 * KIB,
            loader: LoaderParams {
                workers: 8,
                batch_size: 32,
                prefetch_factor: 2,
                decode_ns: ms(2.0),
                step_ns: ms(13.0),
                epoch_gap_ns: ms(500.0),
                persistent_workers: false,
            },
        }
    }
}

impl SmallFilesParams {
    /// The same workload with `scale` times the files (at least 16).
    pub fn scaled(mut self, scale: f64) -> Self {
        self.files = scale_count(self.files, scale, 16);
        self.dirs = self.dirs.min(self.files).max(1);
        self
    }
}

/// Image classification training over a directory tree of small files (ImageNet-style JPEGs,
/// ~110 KiB each) through a PyTorch `DataLoader` (DLIO's `resnet50` workload). Every epoch is a
/// fresh shuffle split into batches handed round-robin to `workers` processes; each sample is
/// opened, read whole in kernel-sized requests, closed, then decoded. Every file is read exactly
/// once per epoch; there is no order to learn within an epoch beyond "the rest of this
/// directory set", so whole-file-on-open and sibling prefetch are what can help.
pub fn shuffled_small_files(p: &SmallFilesParams, seed: u64) -> Workload {
    let mut rng = Rng::new(seed);
    let mut b = Builder::new("shuffled-small-files");
    let dirs = p.dirs.max(1);
    let per_dir = p.files.div_ceil(dirs);
    let mut files = Vec::with_capacity(p.files);
    for i in 0..p.files {
        let (d, j) = (i / per_dir, i % per_dir);
        let size =
            (rng.lognormal(p.median_size as f64, p.size_sigma) as u64).clamp(4 * KIB, 4 * MIB);
        let path = format!(
            "imagenet/train/n{:08}/img_{:06}.JPEG",
            1_440_764 + d * 7919,
            j
        );
        files.push(b.add_file(&path, size));
    }
    let read_size = p.read_size;
    run_loader(
        &mut b,
        &files,
        &p.loader,
        p.epochs,
        &mut rng,
        |b, w, f, _| {
            let h = b.open(w, f);
            b.read_span(w, f, h, 0, f.size, read_size);
            b.close(w, f, h);
        },
    );
    b.finish()
}

/// Parameters of [`npz_whole_file`].
#[derive(Clone, Debug)]
pub struct NpzParams {
    /// Files (default 16).
    pub files: usize,
    /// Median file size (default 140 MB, KiTS19 cases as DLIO's `unet3d` stores them).
    pub median_size: u64,
    /// Log-normal sigma of the file size (default 0.1).
    pub size_sigma: f64,
    /// Epochs (default 2).
    pub epochs: usize,
    /// Kernel request size of the sequential read (default 1 MiB).
    pub read_size: u64,
    /// Whether each load first reads the file's last page (`zipfile` looks for the end of
    /// central directory record there before reading the members from the start; default true).
    pub tail_probe: bool,
    /// The DataLoader (default 4 workers, batch 4, prefetch 2, 40 ms per sample, 340 ms step:
    /// DLIO `unet3d`'s 0.59 s per batch of 7 on an A100).
    pub loader: LoaderParams,
}

impl Default for NpzParams {
    fn default() -> Self {
        NpzParams {
            files: 16,
            median_size: 140_000_000,
            size_sigma: 0.1,
            epochs: 2,
            read_size: MIB,
            tail_probe: true,
            loader: LoaderParams {
                workers: 4,
                batch_size: 4,
                prefetch_factor: 2,
                decode_ns: ms(40.0),
                step_ns: ms(340.0),
                epoch_gap_ns: ms(1000.0),
                persistent_workers: false,
            },
        }
    }
}

impl NpzParams {
    /// The same workload with `scale` times the bytes (files and file size each scaled by
    /// `sqrt(scale)`; at least 2 files of 64 KiB).
    pub fn scaled(mut self, scale: f64) -> Self {
        let r = scale.sqrt();
        self.files = scale_count(self.files, r, 2);
        self.median_size = scale_bytes(self.median_size, r, 64 * KIB);
        self
    }
}

/// 3D segmentation training on large NumPy archives (DLIO / MLPerf Storage `unet3d`: ~140 MB
/// `.npz` per sample). Four DataLoader workers each `np.load` whole files of a per-epoch
/// shuffle: the last page first (the zip directory), then the whole file sequentially in
/// `read_size` requests. Long sequential runs with a backwards jump at the start of each file:
/// readahead must recover after the tail probe.
pub fn npz_whole_file(p: &NpzParams, seed: u64) -> Workload {
    let mut rng = Rng::new(seed);
    let mut b = Builder::new("npz-whole-file");
    let files: Vec<FileRef> = (0..p.files)
        .map(|i| {
            let size = (rng.lognormal(p.median_size as f64, p.size_sigma) as u64).max(4 * KIB);
            b.add_file(&format!("kits19/train/case_{i:05}.npz"), size)
        })
        .collect();
    let (read_size, tail_probe) = (p.read_size, p.tail_probe);
    run_loader(
        &mut b,
        &files,
        &p.loader,
        p.epochs,
        &mut rng,
        |b, w, f, _| {
            let h = b.open(w, f);
            if tail_probe {
                // The end-of-central-directory record is in the last 22+ bytes: the kernel reads
                // the page holding them.
                let page = f.size.saturating_sub(22) & !4095;
                b.read(w, f, h, page, f.size - page);
            }
            b.read_span(w, f, h, 0, f.size, read_size);
            b.close(w, f, h);
        },
    );
    b.finish()
}
