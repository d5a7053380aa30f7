//! The learned prefetcher: candidate generators scored by an online-trained model.
//!
//! - [`candidates`]: generators proposing ranges (sequential depths, stride, whole file,
//!   format extents, successor files, directory siblings).
//! - [`features`]: hashed features and crosses of a candidate.
//! - [`ftrl`]: online logistic regression (FTRL-Proximal).

pub mod candidates;
pub mod features;
pub mod ftrl;
pub mod bandit;
pub mod model;
mod pending;
mod prefetcher;

pub use model::{Model, ModelError, MAX_MODEL_BYTES};
pub use prefetcher::{LearnedConfig, LearnedPrefetcher, LearnedStats};
mod train;

pub use train::{default_model, evaluate, totals, train, train_from, TrainConfig, DEFAULT_TRAIN_SCALE, DEFAULT_TRAIN_SEED};
#[cfg(test)]
mod tests;
