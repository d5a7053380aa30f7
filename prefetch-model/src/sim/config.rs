//! Simulator parameters: the object store, the cache and the prefetch scheduler's budgets.

use cairn_cache::policy::PolicyKind;

/// The object store as the simulator sees it: latency to first byte, bandwidth, connections.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StoreModel {
    /// Median time to first byte of a GET, seconds (log-normal).
    pub first_byte: f64,
    /// Sigma of the log-normal first-byte latency (0 = constant).
    pub first_byte_sigma: f64,
    /// Bandwidth of one connection, bytes/s.
    pub conn_bw: f64,
    /// Aggregate bandwidth shared fairly by all transfers, bytes/s.
    pub aggregate_bw: f64,
    /// Concurrent GETs (connections).
    pub max_conns: usize,
    /// Largest GET: consecutive blocks are coalesced up to this many bytes.
    pub max_get_bytes: u64,
}

impl Default for StoreModel {
    fn default() -> Self {
        Self {
            first_byte: 0.020,
            first_byte_sigma: 0.3,
            conn_bw: 100e6,
            aggregate_bw: 1e9,
            max_conns: 64,
            max_get_bytes: 16 << 20,
        }
    }
}

/// Everything a replay depends on besides the workload and the prefetcher.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Cache block size in bytes.
    pub block_size: u64,
    /// Cache capacity in bytes.
    pub cache_bytes: u64,
    /// Eviction policy of the cache.
    pub policy: PolicyKind,
    /// The object store.
    pub store: StoreModel,
    /// Most prefetch requests waiting in the scheduler's queue (lowest score dropped beyond).
    pub prefetch_queue: usize,
    /// Most prefetch bytes in flight at once.
    pub prefetch_inflight: u64,
    /// Connections kept free of prefetches for demand reads.
    pub demand_reserved_conns: usize,
    /// Fraction of the cache that prefetched-but-unused blocks (cached or in flight) may hold.
    pub prefetch_cache_share: f64,
    /// Longest think time between two records of a stream, seconds.
    pub max_think: f64,
    /// Bandwidth of local writes (write-back into the cache), bytes/s.
    pub local_write_bw: f64,
    /// Seed of the latency draws.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            block_size: 1 << 20,
            cache_bytes: 1 << 30,
            policy: PolicyKind::default(),
            store: StoreModel::default(),
            prefetch_queue: 1024,
            prefetch_inflight: 64 << 20,
            demand_reserved_conns: 8,
            prefetch_cache_share: 0.5,
            max_think: 1.0,
            local_write_bw: 1e9,
            seed: 1,
        }
    }
}
