//! Prometheus metrics of the gateway, registered once per mount.

use prometheus::{IntCounter, IntGauge, Registry};

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
        Self {
            registry,
            invalid_keys,
            lookup_from_listing,
            negative_hits,
            listings,
            get_requests,
            get_bytes,
            get_resumes,
            block_hits,
            block_misses,
            stale_reads,
            inflight_bytes,
            open_files,
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
