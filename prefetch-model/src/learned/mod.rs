//! The learned prefetcher: candidate generators scored by an online-trained model.
//!
//! - [`candidates`]: generators proposing ranges (sequential depths, stride, whole file,
//!   format extents, successor files, directory siblings).
//! - [`features`]: hashed features and crosses of a candidate.
//! - [`ftrl`]: online logistic regression (FTRL-Proximal).

pub mod candidates;
pub mod features;
pub mod ftrl;
