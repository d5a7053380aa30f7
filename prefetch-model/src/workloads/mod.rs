//! Workload generators: seeded, deterministic traces with realistic ML-storage access patterns.
