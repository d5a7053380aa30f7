//! Offline training from traces, the default model, and the evaluation against baselines.
//!
//! Offline, the prefetcher runs in scoring-only mode over each workload's records (layouts
//! revealed as the simulator reveals them): every candidate is labeled positive when a later
//! demand read touches its range while it is among the last `horizon` candidates, negative when
//! it ages out untouched. Several passes over the workloads refine the same model.

use std::sync::OnceLock;

use super::ftrl::FtrlParams;
use super::model::Model;
use super::prefetcher::{LearnedConfig, LearnedPrefetcher};
use crate::baselines;
use crate::sim::{self, LayoutTracker, Report, SimCatalog, SimConfig};
use crate::trace::Op;
use crate::{Prefetcher, Workload};

/// Settings of offline training.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over all workloads.
    pub passes: usize,
    /// Candidates a label may wait for (the labeling horizon).
    pub horizon: usize,
    /// log2 of the feature table size.
    pub bits: u32,
    /// FTRL settings.
    pub params: FtrlParams,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            passes: 3,
            horizon: 4096,
            bits: 16,
            params: FtrlParams::default(),
        }
    }
}

/// Trains a model on the workloads' own traces (see the module docs for the labels).
pub fn train(workloads: &[Workload], cfg: &TrainConfig) -> Model {
    train_from(Model::new(cfg.bits, cfg.params), workloads, cfg)
}

/// Continues training `model` on the workloads.
pub fn train_from(mut model: Model, workloads: &[Workload], cfg: &TrainConfig) -> Model {
    let lcfg = LearnedConfig {
        emit: false,
        learn_online: true,
        max_pending: cfg.horizon.max(16),
        ..LearnedConfig::default()
    };
    let mut out = Vec::new();
    for _ in 0..cfg.passes {
        for w in workloads {
            let mut p = LearnedPrefetcher::new(model, lcfg);
            let mut layouts = LayoutTracker::default();
            for rec in &w.records {
                let cat = SimCatalog {
                    ns: &w.namespace,
                    layouts: &layouts,
                };
                out.clear();
                p.on_access(rec, &cat, &mut out);
                if rec.op == Op::Read {
                    layouts.on_read(
                        &w.namespace,
                        rec.inode,
                        rec.offset,
                        rec.offset + rec.len as u64,
                    );
                }
            }
            model = p.into_model();
        }
    }
    model
}

/// Seed and scale of the suite the default model is trained on.
pub const DEFAULT_TRAIN_SEED: u64 = 0x5eed_0001;
/// Suite scale of the default model's training set (small: trained at first use, in well under a second in release).
pub const DEFAULT_TRAIN_SCALE: f64 = 0.02;

/// The default model: trained once per process on the workload suite at a small scale (a
/// different seed than evaluations use).
pub fn default_model() -> Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| {
        let ws = crate::workloads::suite(DEFAULT_TRAIN_SEED, DEFAULT_TRAIN_SCALE);
        train(&ws, &TrainConfig::default())
    })
    .clone()
}

/// Replays every workload through each baseline and the learned prefetcher (a fresh one per
/// workload, starting from `model`); reports in workload order, then baselines, then `learned`.
pub fn evaluate(
    workloads: &[Workload],
    model: &Model,
    cfg: &LearnedConfig,
    sim_cfg: &SimConfig,
) -> Vec<Report> {
    let mut out = Vec::new();
    for w in workloads {
        for name in baselines::NAMES {
            if let Some(mut b) = baselines::by_name(name) {
                out.push(sim::replay(w, b.as_mut(), sim_cfg));
            }
        }
        let mut l = LearnedPrefetcher::new(model.clone(), *cfg);
        out.push(sim::replay(w, &mut l as &mut dyn Prefetcher, sim_cfg));
    }
    out
}

/// Suite totals per policy: (policy, demand misses, wasted bytes, prefetched bytes).
pub fn totals(reports: &[Report]) -> Vec<(String, u64, u64, u64)> {
    let mut t: Vec<(String, u64, u64, u64)> = Vec::new();
    for r in reports {
        let i = match t.iter().position(|x| x.0 == r.policy) {
            Some(i) => i,
            None => {
                t.push((r.policy.clone(), 0, 0, 0));
                t.len() - 1
            }
        };
        t[i].1 += r.misses;
        t[i].2 += r.wasted_bytes;
        t[i].3 += r.prefetched_bytes;
    }
    t
}
