//! Synthetic workloads. Every generator is deterministic in its seed.

use super::{Access, Rng, Trace};

const MIB: u64 = 1 << 20;

/// A training dataset read in shuffled epochs.
#[derive(Clone, Copy, Debug)]
pub struct EpochSpec {
    /// Sample files in the dataset.
    pub files: usize,
    /// File sizes are uniform in `[min_file, max_file]` bytes.
    pub min_file: u64,
    pub max_file: u64,
    /// Cache block size; a file's last block holds the remainder.
    pub block: u64,
    /// Passes over the dataset.
    pub epochs: usize,
}

impl EpochSpec {
    /// `files` files of 64 KiB..4 MiB (mean ~2 MiB, ~2.5 blocks), 1 MiB blocks, 5 epochs.
    pub fn training(files: usize) -> Self {
        Self {
            files,
            min_file: 64 << 10,
            max_file: 4 * MIB,
            block: MIB,
            epochs: 5,
        }
    }
}

/// The blocks of each file of the dataset: `(key, size)`; keys are `file << 24 | block`.
fn dataset(spec: &EpochSpec, rng: &mut Rng) -> Vec<Vec<Access>> {
    (0..spec.files as u64)
        .map(|f| {
            let size = spec.min_file + rng.below(spec.max_file - spec.min_file + 1);
            let n = size.div_ceil(spec.block);
            (0..n)
                .map(|b| Access {
                    key: (f << 24) | b,
                    size: (size - b * spec.block).min(spec.block) as u32,
                })
                .collect()
        })
        .collect()
}

/// Shuffled epochs: every epoch reads every file of the dataset once, whole, in a fresh random
/// order (what a data loader with `shuffle=True` does). Hits count from epoch 2 on.
pub fn shuffled_epochs(spec: EpochSpec, seed: u64) -> Trace {
    epochs_with_hot_set(spec, 0, 0.0, seed)
}

/// Shuffled epochs as in [`shuffled_epochs`], plus a hot set of `hot_blocks` 1 MiB blocks (an
/// index, labels, a small validation set) read uniformly at random by a `hot_share` fraction of
/// all accesses. Hits count from the end of the first epoch.
pub fn epochs_with_hot_set(spec: EpochSpec, hot_blocks: u64, hot_share: f64, seed: u64) -> Trace {
    let mut rng = Rng::new(seed);
    let files = dataset(&spec, &mut rng);
    let mut order: Vec<usize> = (0..files.len()).collect();
    let mut accesses = Vec::new();
    let mut warmup = 0;
    for epoch in 0..spec.epochs {
        rng.shuffle(&mut order);
        for &f in &order {
            for &a in &files[f] {
                while hot_blocks > 0 && rng.f64() < hot_share {
                    accesses.push(Access {
                        key: (1 << 62) | rng.below(hot_blocks),
                        size: MIB as u32,
                    });
                }
                accesses.push(a);
            }
        }
        if epoch == 0 {
            warmup = accesses.len();
        }
    }
    let name = if hot_blocks == 0 {
        "shuffled epochs".to_string()
    } else {
        format!(
            "shuffled epochs + hot set ({:.0}% of reads)",
            hot_share * 100.0
        )
    };
    Trace {
        name,
        accesses,
        warmup,
    }
}

/// A node that trains on one dataset and then on another: [`shuffled_epochs`] over dataset A,
/// then over a dataset B of the same shape (other keys, other file sizes). Hits count over B's
/// epochs 2.. only: how fast a policy lets go of A and settles on B.
pub fn dataset_switch(spec: EpochSpec, seed: u64) -> Trace {
    let a = shuffled_epochs(spec, seed);
    let b = shuffled_epochs(spec, seed.wrapping_add(1));
    let mut accesses = a.accesses;
    let warmup = accesses.len() + b.warmup;
    accesses.extend(b.accesses.iter().map(|x| Access {
        key: x.key | (1 << 61),
        size: x.size,
    }));
    Trace {
        name: "dataset switch".to_string(),
        accesses,
        warmup,
    }
}

/// `accesses` reads of `blocks` 1 MiB blocks with Zipf(`alpha`) popularity (rank r has weight
/// r^-alpha; ranks are scattered over the key space). Hits count after the first 20%.
pub fn zipf(blocks: u64, accesses: usize, alpha: f64, seed: u64) -> Trace {
    let mut rng = Rng::new(seed);
    let mut cdf = Vec::with_capacity(blocks as usize);
    let mut sum = 0.0;
    for r in 1..=blocks {
        sum += (r as f64).powf(-alpha);
        cdf.push(sum);
    }
    let trace = (0..accesses)
        .map(|_| {
            let u = rng.f64() * sum;
            let rank = cdf.partition_point(|&c| c < u).min(blocks as usize - 1) as u64;
            Access {
                // An odd multiplier is a bijection on u64: popular keys are not adjacent.
                key: rank.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                size: MIB as u32,
            }
        })
        .collect();
    Trace {
        name: format!("zipf {alpha}"),
        accesses: trace,
        warmup: accesses / 5,
    }
}

/// Scan resistance: `rounds` rounds of `4 * hot` uniform reads of a hot set of `hot` 1 MiB
/// blocks, each followed by a sequential scan of `2 * hot` blocks never read again (a backup,
/// a `grep -r`, a one-off evaluation). Hits count after the first round.
pub fn scan_with_hot_set(hot: u64, rounds: usize, seed: u64) -> Trace {
    let mut rng = Rng::new(seed);
    let mut accesses = Vec::new();
    let mut next_cold = 1u64 << 40;
    let mut warmup = 0;
    for round in 0..rounds {
        for _ in 0..4 * hot {
            accesses.push(Access {
                key: rng.below(hot),
                size: MIB as u32,
            });
        }
        for _ in 0..2 * hot {
            accesses.push(Access {
                key: next_cold,
                size: MIB as u32,
            });
            next_cold += 1;
        }
        if round == 0 {
            warmup = accesses.len();
        }
    }
    Trace {
        name: "hot set + one-time scans".to_string(),
        accesses,
        warmup,
    }
}
