//! Periodic checkpoint writes and the read-back on resume.

use crate::rng::Rng;
use crate::{FileRef, Workload};

use super::builder::{jitter, ms, scale_bytes, scale_count, Builder, Stream, KIB, MIB};

/// Parameters of [`checkpoint_write`].
#[derive(Clone, Debug)]
pub struct CheckpointParams {
    /// Checkpoints written (default 3).
    pub checkpoints: usize,
    /// Model weights per checkpoint (default 128 MiB, plus up to 1 MiB so the last write is
    /// partial).
    pub model_bytes: u64,
    /// Optimizer state per checkpoint (default 256 MiB, Adam's two moments).
    pub optim_bytes: u64,
    /// Bytes per write request (default 64 MiB).
    pub write_size: u64,
    /// Median serialisation time per write (default 20 ms).
    pub serialize_ns: u64,
    /// Median training time between checkpoints (default 5 s).
    pub train_ns: u64,
    /// Kernel request size of the resume read (default 1 MiB).
    pub read_size: u64,
}

impl Default for CheckpointParams {
    fn default() -> Self {
        CheckpointParams {
            checkpoints: 3,
            model_bytes: 128 * MIB,
            optim_bytes: 256 * MIB,
            write_size: 64 * MIB,
            serialize_ns: ms(20.0),
            train_ns: ms(5000.0),
            read_size: MIB,
        }
    }
}

impl CheckpointParams {
    /// The same workload with `scale` times the bytes (checkpoint count by `sqrt(scale)`, at
    /// least 2; sizes by `sqrt(scale)`, write size by `scale`).
    pub fn scaled(mut self, scale: f64) -> Self {
        let r = scale.sqrt();
        self.checkpoints = scale_count(self.checkpoints, r, 2);
        self.model_bytes = scale_bytes(self.model_bytes, r, 64 * KIB);
        self.optim_bytes = scale_bytes(self.optim_bytes, r, 64 * KIB);
        self.write_size = scale_bytes(self.write_size, scale, 16 * KIB);
        self
    }
}

/// Writes `f` front to back in `write_size` requests.
fn write_file(b: &mut Builder, s: &mut Stream, f: &FileRef, p: &CheckpointParams, rng: &mut Rng) {
    let h = b.open(s, f);
    let mut off = 0;
    while off < f.size {
        s.think(jitter(rng, p.serialize_ns));
        let n = p.write_size.max(1).min(f.size - off);
        b.write(s, f, h, off, n);
        off += n;
    }
    b.close(s, f, h);
}

/// Training with periodic checkpoints (`torch.save` of model and optimizer state every N steps
/// into `ckpt/step-NNNNNNN/`), then a restart that resumes from the latest one. The trainer
/// writes each new file sequentially in `write_size` requests (plus a small `meta.json`), trains,
/// and repeats; after the last checkpoint a new process reads `meta.json`, then each `.pt` file
/// whole (its last page first: `torch.load` finds the zip directory there). Nothing is re-read
/// except the newest checkpoint, so prefetching must not pull older ones.
pub fn checkpoint_write(p: &CheckpointParams, seed: u64) -> Workload {
    let mut rng = Rng::new(seed);
    let mut b = Builder::new("checkpoint-write");
    let mut trainer = b.stream("python3", 0);
    let mut latest: Vec<FileRef> = Vec::new();
    for c in 0..p.checkpoints {
        trainer.think(jitter(&mut rng, p.train_ns));
        let dir = format!("runs/llm-1b/ckpt/step-{:07}", (c + 1) * 1000);
        let meta = b.create_file(&format!("{dir}/meta.json"), KIB + rng.below(KIB));
        let model = b.create_file(&format!("{dir}/model.pt"), p.model_bytes + rng.below(MIB));
        let optim = b.create_file(&format!("{dir}/optim.pt"), p.optim_bytes + rng.below(MIB));
        for f in [model, optim, meta] {
            write_file(&mut b, &mut trainer, &f, p, &mut rng);
        }
        latest = vec![meta, model, optim];
    }
    // The job is rescheduled: a new process resumes from the newest checkpoint.
    let mut resume = b.stream("python3", trainer.t + ms(10_000.0));
    for f in &latest {
        let h = b.open(&mut resume, f);
        if f.size > 4 * KIB {
            let page = f.size.saturating_sub(22) & !4095;
            b.read(&mut resume, f, h, page, f.size - page);
        }
        b.read_span(&mut resume, f, h, 0, f.size, p.read_size);
        b.close(&mut resume, f, h);
        resume.think(jitter(&mut rng, ms(50.0)));
    }
    b.finish()
}
