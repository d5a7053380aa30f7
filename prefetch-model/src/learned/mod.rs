//! The learned prefetcher: candidate generators scored by an online-trained model.
