//! Loading a sharded safetensors checkpoint.

use std::ops::Range;

use crate::rng::Rng;
use crate::{Layout, Workload};

use super::builder::{jitter, ms, scale_bytes, us, Builder, KIB, MIB};

/// Parameters of [`safetensors_load`]: a Llama-style decoder's weights.
#[derive(Clone, Debug)]
pub struct SafetensorsParams {
    /// Hidden size (default 2048).
    pub hidden: u64,
    /// Decoder layers (default 16).
    pub layers: usize,
    /// Vocabulary (default 32000).
    pub vocab: u64,
    /// MLP width as a multiple of `hidden` (default 2.75).
    pub ffn_mult: f64,
    /// Bytes per element (default 2, bf16).
    pub dtype_bytes: u64,
    /// Largest shard (`max_shard_size`, default 512 MiB): ~1.9 GB of weights in 4 shards.
    pub max_shard: u64,
    /// Processes that each load the whole checkpoint (default 2, data-parallel ranks).
    pub ranks: usize,
    /// Largest request the kernel passes for one tensor read (default 1 MiB).
    pub max_req: u64,
    /// Median host-to-device copy time per MiB of tensor (default 100 us).
    pub copy_ns_per_mib: u64,
}

impl Default for SafetensorsParams {
    fn default() -> Self {
        SafetensorsParams {
            hidden: 2048,
            layers: 16,
            vocab: 32000,
            ffn_mult: 2.75,
            dtype_bytes: 2,
            max_shard: 512 * MIB,
            ranks: 2,
            max_req: MIB,
            copy_ns_per_mib: us(100.0),
        }
    }
}

impl SafetensorsParams {
    /// The same workload with `scale` times the bytes (hidden size and vocabulary scaled by
    /// `sqrt(scale)`, the shard limit by `scale`; layers unchanged so the tensor count is).
    pub fn scaled(mut self, scale: f64) -> Self {
        let r = scale.sqrt();
        self.hidden = (scale_bytes(self.hidden, r, 64) / 64).max(1) * 64;
        self.vocab = scale_bytes(self.vocab, r, 256);
        self.max_shard = scale_bytes(self.max_shard, scale, 64 * KIB);
        self
    }
}

/// The model's tensors in `state_dict` order: (name, bytes).
fn state_dict(p: &SafetensorsParams) -> Vec<(String, u64)> {
    let (h, e) = (p.hidden, p.dtype_bytes);
    let ffn = ((h as f64 * p.ffn_mult) as u64).max(1);
    let mut t = vec![("model.embed_tokens.weight".to_string(), p.vocab * h * e)];
    for l in 0..p.layers {
        let pre = format!("model.layers.{l}");
        t.push((format!("{pre}.input_layernorm.weight"), h * e));
        for m in ["q_proj", "k_proj", "v_proj", "o_proj"] {
            t.push((format!("{pre}.self_attn.{m}.weight"), h * h * e));
        }
        t.push((format!("{pre}.post_attention_layernorm.weight"), h * e));
        for m in ["gate_proj", "up_proj", "down_proj"] {
            t.push((format!("{pre}.mlp.{m}.weight"), h * ffn * e));
        }
    }
    t.push(("model.norm.weight".to_string(), h * e));
    t.push(("lm_head.weight".to_string(), p.vocab * h * e));
    t
}

/// Splits the state dict into shards of at most `max_shard` bytes (a tensor larger than the
/// limit gets a shard of its own), like `save_pretrained(max_shard_size=...)`.
fn shard(tensors: Vec<(String, u64)>, max_shard: u64) -> Vec<Vec<(String, u64)>> {
    let mut shards: Vec<Vec<(String, u64)>> = vec![Vec::new()];
    let mut bytes = 0;
    for t in tensors {
        let last = shards.len() - 1;
        if !shards[last].is_empty() && bytes + t.1 > max_shard {
            shards.push(Vec::new());
            bytes = 0;
        }
        bytes += t.1;
        let last = shards.len() - 1;
        shards[last].push(t);
    }
    shards
}

/// Lays out one file: 8-byte header length, JSON header (about 110 bytes per tensor, padded to
/// 8), then the tensors sorted by name (what `safetensors` serialisation does for one dtype).
/// Returns (header length, tensor ranges in file order, file size).
fn lay_out(mut tensors: Vec<(String, u64)>) -> (u64, Vec<Range<u64>>, u64) {
    tensors.sort();
    let json: u64 = 2
        + tensors
            .iter()
            .map(|(n, _)| n.len() as u64 + 90)
            .sum::<u64>()
        + 40;
    let header = json.div_ceil(8) * 8;
    let mut off = 8 + header;
    let ranges = tensors
        .iter()
        .map(|(_, len)| {
            let r = off..off + len;
            off += len;
            r
        })
        .collect();
    (header, ranges, off)
}

/// Loading a Hugging Face checkpoint sharded into `model-0000k-of-0000n.safetensors`
/// (`from_pretrained`, vLLM/TGI start-up), by every data-parallel rank. For each shard a loader
/// reads the 8-byte header length, the JSON header, then every tensor in file order as one large
/// read each (split by the kernel into `max_req` requests), copying each to the GPU. Fully
/// sequential per file, but with tensor-sized reads that a format-aware prefetcher can issue
/// whole once the header is known. Layout: `source` = length + header, `extents` = tensors.
pub fn safetensors_load(p: &SafetensorsParams, seed: u64) -> Workload {
    let mut rng = Rng::new(seed);
    let mut b = Builder::new("safetensors-load");
    let shards = shard(state_dict(p), p.max_shard);
    let n = shards.len();
    let mut files = Vec::with_capacity(n);
    for (i, tensors) in shards.into_iter().enumerate() {
        let (header, ranges, size) = lay_out(tensors);
        let f = b.add_file(
            &format!("models/llama-1b/model-{:05}-of-{n:05}.safetensors", i + 1),
            size,
        );
        b.set_layout(
            f.inode,
            Layout {
                source: 0..8 + header,
                extents: ranges.clone(),
                group: 0,
            },
        );
        files.push((f, header, ranges));
    }
    for r in 0..p.ranks.max(1) {
        // Ranks start within a few hundred ms of each other (process launch skew).
        let start = ms(rng.unit() * 300.0) + ms(1.0) * r as u64;
        let mut s = b.stream("python3", start);
        for (f, header, ranges) in &files {
            let h = b.open(&mut s, f);
            b.read(&mut s, f, h, 0, 8);
            b.read(&mut s, f, h, 8, *header);
            s.think(jitter(&mut rng, us(200.0)));
            for t in ranges {
                b.read_span(&mut s, f, h, t.start, t.end - t.start, p.max_req);
                let mib = (t.end - t.start) as f64 / MIB as f64;
                s.think(jitter(
                    &mut rng,
                    (p.copy_ns_per_mib as f64 * mib) as u64 + 1_000,
                ));
            }
            b.close(&mut s, f, h);
        }
    }
    b.finish()
}
