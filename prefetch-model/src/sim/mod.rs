//! The closed-loop replay simulator: object-store model, cache tiers, prefetch scheduler.
