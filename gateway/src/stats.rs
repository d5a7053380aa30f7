//! A point-in-time view of the mount's counters, rendered for Prometheus and for `cairn stats`.

use std::sync::atomic::Ordering;

use crate::gateway::Gateway;

/// Counters and sizes of one cache tier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TierStats {
    /// Reads served by the tier.
    pub hits: u64,
    /// Lookups that missed.
    pub misses: u64,
    /// Bytes served by hits.
    pub bytes_served: u64,
    /// Bytes admitted.
    pub bytes_admitted: u64,
    /// Blocks evicted.
    pub evictions: u64,
    /// Bytes held now.
    pub used: u64,
    /// Byte budget now.
    pub budget: u64,
    /// Damaged blocks detected (disk tier only).
    pub checksum_failures: u64,
    /// Blocks not admitted (disk tier degraded or its queue full).
    pub admissions_skipped: u64,
}

/// Everything `cairn stats` shows.
#[derive(Clone, Debug, Default)]
pub struct StatsSnapshot {
    /// RAM tier.
    pub l1: TierStats,
    /// Disk tier, when configured.
    pub l2: Option<TierStats>,
    /// Disk tier suspended after a write error.
    pub l2_degraded: bool,
    /// Ranged GETs sent for data.
    pub get_requests: u64,
    /// Bytes received by those GETs.
    pub get_bytes: u64,
    /// Open file handles.
    pub open_files: i64,
    /// Inodes handed out.
    pub inodes: u64,
    /// Keys not shown because they cannot be file names.
    pub invalid_keys: u64,
    /// Write-back state, when the mount takes writes.
    pub write: Option<WriteStatsSnapshot>,
    /// Prefetching.
    pub prefetch: PrefetchStatsSnapshot,
}

/// What the prefetcher fetched ahead and how much of it was used.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PrefetchStatsSnapshot {
    /// The configured policy.
    pub policy: String,
    /// Bytes fetched ahead of demand (scheduler and readahead window).
    pub issued_bytes: u64,
    /// Of those, bytes a demand read used.
    pub used_bytes: u64,
    /// Of those, bytes that left the cache or aged out unused.
    pub wasted_bytes: u64,
    /// Used blocks that were still in flight when demanded.
    pub late_blocks: u64,
    /// Used / (used + wasted) blocks.
    pub precision: f64,
    /// Demand block reads served by a prefetch / (those + demand misses).
    pub coverage: f64,
    /// Requests dropped (queue full, cache share reached).
    pub dropped: u64,
}

/// What the write-back path holds and has done.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteStatsSnapshot {
    /// Bytes written and not yet in the bucket.
    pub dirty_bytes: u64,
    /// Files, deletes, directory markers and renames waiting for the bucket.
    pub pending: u64,
    /// Seconds since the oldest change not yet in the bucket was made (0 when none).
    pub oldest_pending_secs: f64,
    /// Bytes accepted from writers.
    pub bytes_written: u64,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
    /// Objects uploaded.
    pub uploads: u64,
    /// Failed attempts (retried).
    pub upload_failures: u64,
    /// Uploads that met a changed object (kept under a conflict name).
    pub conflicts: u64,
    /// fsync/fdatasync/close calls.
    pub syncs: u64,
    /// Writers that waited for the flusher.
    pub throttled_writes: u64,
    /// Upload rate over the last minute, bytes per second.
    pub upload_rate: f64,
    /// Journal size on disk.
    pub journal_bytes: u64,
}

impl Gateway {
    /// Reads every counter now.
    pub fn stats(&self) -> StatsSnapshot {
        let l1 = self.l1();
        let s = l1.stats();
        let m = self.metrics();
        StatsSnapshot {
            l1: TierStats {
                hits: s.hits.load(Ordering::Relaxed),
                misses: s.misses.load(Ordering::Relaxed),
                bytes_served: s.bytes_served.load(Ordering::Relaxed),
                bytes_admitted: s.bytes_admitted.load(Ordering::Relaxed),
                evictions: s.evictions.load(Ordering::Relaxed),
                used: l1.used(),
                budget: l1.budget(),
                checksum_failures: 0,
                admissions_skipped: 0,
            },
            l2: self.l2().map(|l2| {
                let s = l2.stats();
                TierStats {
                    hits: s.hits.load(Ordering::Relaxed),
                    misses: s.misses.load(Ordering::Relaxed),
                    bytes_served: s.bytes_served.load(Ordering::Relaxed),
                    bytes_admitted: s.bytes_admitted.load(Ordering::Relaxed),
                    evictions: s.evictions.load(Ordering::Relaxed),
                    used: l2.used(),
                    budget: l2.budget(),
                    checksum_failures: s.checksum_failures.load(Ordering::Relaxed),
                    admissions_skipped: s.admissions_skipped.load(Ordering::Relaxed),
                }
            }),
            l2_degraded: self.l2().is_some_and(|l2| l2.is_degraded()),
            get_requests: m.get_requests.get(),
            get_bytes: m.get_bytes.get(),
            open_files: m.open_files.get(),
            inodes: self.namespace().inode_count() as u64,
            invalid_keys: m.invalid_keys.get(),
            prefetch: {
                m.update_prefetch_ratios();
                PrefetchStatsSnapshot {
                    policy: self.config().prefetch.policy.clone(),
                    issued_bytes: m.prefetch_issued_bytes.get(),
                    used_bytes: m.prefetch_used_bytes.get(),
                    wasted_bytes: m.prefetch_wasted_bytes.get(),
                    late_blocks: m.prefetch_late_blocks.get(),
                    precision: m.prefetch_precision.get(),
                    coverage: m.prefetch_coverage.get(),
                    dropped: m.prefetch_dropped.get(),
                }
            },
            write: self.write_back().map(|wb| {
                let st = wb.stats();
                let (pending, dirty_bytes) = wb.pending();
                WriteStatsSnapshot {
                    dirty_bytes,
                    pending: pending as u64,
                    oldest_pending_secs: self
                        .flusher
                        .as_ref()
                        .map(|f| f.oldest_pending().as_secs_f64())
                        .unwrap_or(0.0),
                    bytes_written: st.bytes_written.load(Ordering::Relaxed),
                    bytes_uploaded: st.bytes_uploaded.load(Ordering::Relaxed),
                    uploads: st.uploads.load(Ordering::Relaxed),
                    upload_failures: st.upload_failures.load(Ordering::Relaxed),
                    conflicts: st.conflicts.load(Ordering::Relaxed),
                    syncs: st.syncs.load(Ordering::Relaxed),
                    throttled_writes: st.throttled_writes.load(Ordering::Relaxed),
                    upload_rate: self
                        .flusher
                        .as_ref()
                        .map(|f| f.upload_rate())
                        .unwrap_or(0.0),
                    journal_bytes: wb.journal_bytes(),
                }
            }),
        }
    }

    /// Prometheus text exposition: the registry plus per-tier cache series.
    pub fn render_metrics(&self) -> String {
        let mut out = self.metrics().render();
        let s = self.stats();
        let mut tiers = vec![("l1", &s.l1)];
        if let Some(l2) = &s.l2 {
            tiers.push(("l2", l2));
        }
        let series: [(&str, &str, &str, fn(&TierStats) -> u64); 9] = [
            (
                "cairn_cache_hits_total",
                "counter",
                "Block reads served by the tier",
                |t| t.hits,
            ),
            (
                "cairn_cache_misses_total",
                "counter",
                "Block lookups that missed the tier",
                |t| t.misses,
            ),
            (
                "cairn_cache_served_bytes_total",
                "counter",
                "Bytes served by the tier",
                |t| t.bytes_served,
            ),
            (
                "cairn_cache_admitted_bytes_total",
                "counter",
                "Bytes admitted to the tier",
                |t| t.bytes_admitted,
            ),
            (
                "cairn_cache_evictions_total",
                "counter",
                "Blocks evicted from the tier",
                |t| t.evictions,
            ),
            (
                "cairn_cache_checksum_failures_total",
                "counter",
                "Damaged blocks detected and dropped",
                |t| t.checksum_failures,
            ),
            (
                "cairn_cache_admissions_skipped_total",
                "counter",
                "Blocks not admitted (tier degraded or busy)",
                |t| t.admissions_skipped,
            ),
            (
                "cairn_cache_size_bytes",
                "gauge",
                "Bytes held by the tier",
                |t| t.used,
            ),
            (
                "cairn_cache_budget_bytes",
                "gauge",
                "Byte budget of the tier",
                |t| t.budget,
            ),
        ];
        for (name, kind, help, get) in series {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (tier, t) in &tiers {
                out.push_str(&format!("{name}{{tier=\"{tier}\"}} {}\n", get(t)));
            }
        }
        out.push_str(&format!(
            "# HELP cairn_cache_l2_degraded Disk tier suspended after a write error (1) or healthy (0)\n\
             # TYPE cairn_cache_l2_degraded gauge\ncairn_cache_l2_degraded {}\n",
            s.l2_degraded as u8
        ));
        if let Some(w) = &s.write {
            let series: [(&str, &str, &str, f64); 12] = [
                (
                    "cairn_write_dirty_bytes",
                    "gauge",
                    "Bytes written and not yet in the bucket",
                    w.dirty_bytes as f64,
                ),
                (
                    "cairn_write_pending_items",
                    "gauge",
                    "Files, deletes, markers and renames waiting for the bucket",
                    w.pending as f64,
                ),
                (
                    "cairn_write_oldest_pending_seconds",
                    "gauge",
                    "Age of the oldest change not yet in the bucket",
                    w.oldest_pending_secs,
                ),
                (
                    "cairn_write_bytes_total",
                    "counter",
                    "Bytes accepted from writers",
                    w.bytes_written as f64,
                ),
                (
                    "cairn_write_uploaded_bytes_total",
                    "counter",
                    "Bytes uploaded to the bucket",
                    w.bytes_uploaded as f64,
                ),
                (
                    "cairn_write_uploads_total",
                    "counter",
                    "Objects uploaded",
                    w.uploads as f64,
                ),
                (
                    "cairn_write_upload_failures_total",
                    "counter",
                    "Failed bucket writes (retried)",
                    w.upload_failures as f64,
                ),
                (
                    "cairn_write_conflicts_total",
                    "counter",
                    "Uploads that met a changed object and went to a conflict name",
                    w.conflicts as f64,
                ),
                (
                    "cairn_write_syncs_total",
                    "counter",
                    "fsync, fdatasync and close calls made durable",
                    w.syncs as f64,
                ),
                (
                    "cairn_write_throttled_total",
                    "counter",
                    "Writers that waited for the flusher (dirty bound)",
                    w.throttled_writes as f64,
                ),
                (
                    "cairn_write_upload_rate_bytes",
                    "gauge",
                    "Upload rate over the last minute, bytes per second",
                    w.upload_rate,
                ),
                (
                    "cairn_write_journal_bytes",
                    "gauge",
                    "Journal size on disk",
                    w.journal_bytes as f64,
                ),
            ];
            for (name, kind, help, v) in series {
                out.push_str(&format!(
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
                ));
            }
        }
        out
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn ratio(hits: u64, misses: u64) -> String {
    if hits + misses == 0 {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * hits as f64 / (hits + misses) as f64)
    }
}

impl StatsSnapshot {
    /// A readable table for `cairn stats`.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10} {:>9}\n",
            "tier", "used", "budget", "hits", "misses", "hit rate", "served", "evictions", "bad"
        ));
        let mut row = |name: &str, t: &TierStats| {
            out.push_str(&format!(
                "{:<5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10} {:>9}\n",
                name,
                human(t.used),
                human(t.budget),
                t.hits,
                t.misses,
                ratio(t.hits, t.misses),
                human(t.bytes_served),
                t.evictions,
                t.checksum_failures
            ));
        };
        row("L1", &self.l1);
        match &self.l2 {
            Some(l2) => row("L2", l2),
            None => out.push_str("L2    (off: no --cache-dir)\n"),
        }
        if self.l2_degraded {
            out.push_str(
                "L2 is DEGRADED: a write failed (disk full or read-only); serving from RAM\n",
            );
        }
        out.push_str(&format!(
            "\nbucket GETs {}  ({} received)   open files {}   inodes {}   hidden keys {}\n",
            self.get_requests,
            human(self.get_bytes),
            self.open_files,
            self.inodes,
            self.invalid_keys
        ));
        let p = &self.prefetch;
        out.push_str(&format!(
            "prefetch ({}): {} fetched ahead, {} used, {} wasted, precision {:.1}%, coverage {:.1}%, {} late blocks, {} dropped requests\n",
            p.policy,
            human(p.issued_bytes),
            human(p.used_bytes),
            human(p.wasted_bytes),
            100.0 * p.precision,
            100.0 * p.coverage,
            p.late_blocks,
            p.dropped
        ));
        match &self.write {
            Some(w) => out.push_str(&format!(
                "writes: {} dirty, {} pending, oldest pending {:.1} s, journal {}\n\
                 uploaded {} in {} objects ({}/s over the last minute), {} failed attempts, {} conflicts, {} syncs, {} throttled writes\n",
                human(w.dirty_bytes),
                w.pending,
                w.oldest_pending_secs,
                human(w.journal_bytes),
                human(w.bytes_uploaded),
                w.uploads,
                human(w.upload_rate as u64),
                w.upload_failures,
                w.conflicts,
                w.syncs,
                w.throttled_writes
            )),
            None => out.push_str("writes: off (read-only mount)\n"),
        }
        out
    }
}
