//! Prometheus metrics of the gateway, registered once per mount.

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Counters and gauges the gateway updates on its paths.
pub struct Metrics {
    /// Registry that holds all of them (served on `--metrics-addr`).
    pub registry: Registry,
    /// Keys skipped because they cannot be file names or clash with a directory.
    pub invalid_keys: IntCounter,
    /// Lookups answered from a cached directory listing.
    pub lookup_from_listing: IntCounter,
    /// Lookups answered from the negative cache.
    pub negative_hits: IntCounter,
    /// Store answers dropped because this mount changed the object while they were in flight.
    pub stale_answers: IntCounter,
    /// Full directory listings fetched from the store.
    pub listings: IntCounter,
    /// Ranged GET requests sent for file data.
    pub get_requests: IntCounter,
    /// Bytes received from ranged GETs.
    pub get_bytes: IntCounter,
    /// GET bodies that broke mid-stream and were resumed.
    pub get_resumes: IntCounter,
    /// Block reads served from the RAM cache.
    pub block_hits: IntCounter,
    /// Block reads that had to wait for the store.
    pub block_misses: IntCounter,
    /// Reads failed because the object changed while open.
    pub stale_reads: IntCounter,
    /// Bytes of GETs in flight.
    pub inflight_bytes: IntGauge,
    /// Open file handles.
    pub open_files: IntGauge,
    /// Bytes the prefetch scheduler asked the store (or the disk tier) for.
    pub prefetch_issued_bytes: IntCounter,
    /// Blocks the prefetch scheduler fetched.
    pub prefetch_issued_blocks: IntCounter,
    /// Prefetched bytes a demand read then used.
    pub prefetch_used_bytes: IntCounter,
    /// Prefetched blocks a demand read then used.
    pub prefetch_used_blocks: IntCounter,
    /// Blocks fetched by the per-handle sequential readahead window (part of the issued ones).
    pub prefetch_readahead_blocks: IntCounter,
    /// Used prefetched blocks that were still in flight when demanded.
    pub prefetch_late_blocks: IntCounter,
    /// Prefetched bytes that left the cache (or aged out) unused.
    pub prefetch_wasted_bytes: IntCounter,
    /// Prefetched blocks that left the cache (or aged out) unused.
    pub prefetch_wasted_blocks: IntCounter,
    /// Prefetch requests dropped (queue full, cache share reached, file unknown).
    pub prefetch_dropped: IntCounter,
    /// File layouts (Parquet footers, safetensors headers) parsed for the policy.
    pub prefetch_layouts: IntCounter,
    /// Prefetched bytes waiting to be used.
    pub prefetch_unused_bytes: IntGauge,
    /// Used / (used + wasted) prefetched blocks so far.
    pub prefetch_precision: Gauge,
    /// Demand block reads served by a prefetch / (those + demand misses) so far.
    pub prefetch_coverage: Gauge,
    /// Time the policy takes per access.
    pub prefetch_decision_seconds: Histogram,
    /// The active prefetch policy (label `policy`, value 1).
    pub prefetch_policy: IntGaugeVec,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("cairn".into()), None).expect("registry");
        let c = |name: &str, help: &str| {
            let m = IntCounter::new(name, help).expect("metric");
            registry.register(Box::new(m.clone())).expect("register");
            m
        };
        let invalid_keys = c(
            "namespace_invalid_keys_total",
            "Object keys not shown because they cannot be file names",
        );
        let lookup_from_listing = c(
            "namespace_lookup_listing_hits_total",
            "Lookups answered from a cached listing",
        );
        let negative_hits = c(
            "namespace_negative_hits_total",
            "Lookups answered from the negative cache",
        );
        let stale_answers = c(
            "namespace_stale_answers_total",
            "Metadata answers dropped because this mount changed the object while they were in flight",
        );
        let listings = c("namespace_listings_total", "Directory listings fetched");
        let get_requests = c("store_get_requests_total", "Ranged GETs for file data");
        let get_bytes = c("store_get_bytes_total", "Bytes received from ranged GETs");
        let get_resumes = c(
            "store_get_resumes_total",
            "GET bodies resumed after a break",
        );
        let block_hits = c("read_block_hits_total", "Block reads served from RAM");
        let block_misses = c(
            "read_block_misses_total",
            "Block reads fetched from the store",
        );
        let stale_reads = c(
            "read_stale_total",
            "Reads failed because the object changed while open",
        );
        let g = |name: &str, help: &str| {
            let m = IntGauge::new(name, help).expect("metric");
            registry.register(Box::new(m.clone())).expect("register");
            m
        };
        let inflight_bytes = g("read_inflight_bytes", "Bytes of GETs in flight");
        let open_files = g("open_files", "Open file handles");
        let prefetch_issued_bytes = c("prefetch_issued_bytes_total", "Bytes prefetched");
        let prefetch_issued_blocks = c("prefetch_issued_blocks_total", "Blocks prefetched");
        let prefetch_used_bytes = c(
            "prefetch_used_bytes_total",
            "Prefetched bytes a demand read used",
        );
        let prefetch_used_blocks = c(
            "prefetch_used_blocks_total",
            "Prefetched blocks a demand read used",
        );
        let prefetch_readahead_blocks = c(
            "prefetch_readahead_blocks_total",
            "Blocks fetched by the sequential readahead window",
        );
        let prefetch_late_blocks = c(
            "prefetch_late_blocks_total",
            "Used prefetched blocks still in flight when demanded",
        );
        let prefetch_wasted_bytes = c(
            "prefetch_wasted_bytes_total",
            "Prefetched bytes evicted or aged out unused",
        );
        let prefetch_wasted_blocks = c(
            "prefetch_wasted_blocks_total",
            "Prefetched blocks evicted or aged out unused",
        );
        let prefetch_dropped = c(
            "prefetch_dropped_total",
            "Prefetch requests dropped (queue full, cache share reached, file unknown)",
        );
        let prefetch_layouts = c(
            "prefetch_layouts_total",
            "Footers and headers parsed into layouts",
        );
        let prefetch_unused_bytes = g(
            "prefetch_unused_bytes",
            "Prefetched bytes waiting to be used",
        );
        let fg = |name: &str, help: &str| {
            let m = Gauge::new(name, help).expect("metric");
            registry.register(Box::new(m.clone())).expect("register");
            m
        };
        let prefetch_precision = fg(
            "prefetch_precision",
            "Used / (used + wasted) prefetched blocks",
        );
        let prefetch_coverage = fg(
            "prefetch_coverage",
            "Demand block reads served by a prefetch / (those + demand misses)",
        );
        let prefetch_decision_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "prefetch_decision_seconds",
                "Time the prefetch policy takes per access",
            )
            .buckets(vec![
                1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 1e-4, 1e-3,
            ]),
        )
        .expect("metric");
        registry
            .register(Box::new(prefetch_decision_seconds.clone()))
            .expect("register");
        let prefetch_policy = IntGaugeVec::new(
            Opts::new("prefetch_policy", "The active prefetch policy"),
            &["policy"],
        )
        .expect("metric");
        registry
            .register(Box::new(prefetch_policy.clone()))
            .expect("register");
        Self {
            registry,
            invalid_keys,
            lookup_from_listing,
            negative_hits,
            stale_answers,
            listings,
            get_requests,
            get_bytes,
            get_resumes,
            block_hits,
            block_misses,
            stale_reads,
            inflight_bytes,
            open_files,
            prefetch_issued_bytes,
            prefetch_issued_blocks,
            prefetch_used_bytes,
            prefetch_used_blocks,
            prefetch_readahead_blocks,
            prefetch_late_blocks,
            prefetch_wasted_bytes,
            prefetch_wasted_blocks,
            prefetch_dropped,
            prefetch_layouts,
            prefetch_unused_bytes,
            prefetch_precision,
            prefetch_coverage,
            prefetch_decision_seconds,
            prefetch_policy,
        }
    }

    /// Marks `name` as the active prefetch policy.
    pub fn prefetch_policy_info(&self, name: &str) {
        self.prefetch_policy.with_label_values(&[name]).set(1);
    }

    /// Recomputes the prefetch precision and coverage gauges from the counters.
    pub fn update_prefetch_ratios(&self) {
        let used = self.prefetch_used_blocks.get() as f64;
        let wasted = self.prefetch_wasted_blocks.get() as f64;
        if used + wasted > 0.0 {
            self.prefetch_precision.set(used / (used + wasted));
        }
        let misses = self.block_misses.get() as f64;
        if used + misses > 0.0 {
            self.prefetch_coverage.set(used / (used + misses));
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        let enc = prometheus::TextEncoder::new();
        let _ = enc.encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
