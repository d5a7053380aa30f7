//! Hand-written prefetch policies the learned model is measured against.
