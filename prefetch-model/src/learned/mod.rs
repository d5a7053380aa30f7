//! The learned prefetcher: candidate generators scored by an online-trained model.
//!
//! On every access, generators propose byte ranges ([`candidates`]: sequential depth buckets,
//! stride continuation, whole small file on open, next format extents and the reader's extent
//! pattern, the columns a reader projects in a grouped layout ([`projection`]), successor
//! files, unread directory siblings). Each candidate's features
//! ([`features`], hashed with crosses) are scored by logistic regression trained with
//! FTRL-Proximal ([`ftrl`]); the probability that the range is used before eviction is the
//! request's confidence. A per-class bandit picks the threshold and depth cap, and a class falls
//! back to the doubling/whole-file heuristic while the model scores worse than it
//! ([`bandit`]). Labels come online from [`crate::Feedback`] (emitted ranges) and from demand
//! reads (ranges scored but not emitted), and offline from traces ([`train`]). The model file
//! format is in [`model`].

pub mod bandit;
pub mod candidates;
pub mod features;
pub mod ftrl;
pub mod model;
mod pending;
mod prefetcher;
pub mod projection;
mod train;

pub use model::{Model, ModelError, MAX_MODEL_BYTES};
pub use prefetcher::{LearnedConfig, LearnedPrefetcher, LearnedStats};
pub use train::{
    default_model, evaluate, totals, train, train_from, TrainConfig, DEFAULT_TRAIN_SCALE,
    DEFAULT_TRAIN_SEED,
};

#[cfg(test)]
mod tests;
