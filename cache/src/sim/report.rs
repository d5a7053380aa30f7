//! The standard set of simulations and their Markdown report.

use std::fmt::Write as _;
use std::path::Path;

use super::{
    belady, dataset_switch, epochs_with_hot_set, load_block_trace, replay, scan_with_hot_set,
    shuffled_epochs, zipf, EpochSpec, Outcome, Trace,
};
use crate::policy::PolicyKind;

const MIB: u64 = 1 << 20;

/// A trace and the cache sizes to run it at.
pub struct Scenario {
    pub trace: Trace,
    /// `(label, budget in bytes)`.
    pub caches: Vec<(String, u64)>,
    /// What the cache-size labels are relative to, and what is counted.
    pub note: String,
}

/// The scenarios and anything that could not be run.
pub struct ScenarioSet {
    pub scenarios: Vec<Scenario>,
    pub skipped: Vec<String>,
}

/// One policy's (or Belady's) result.
pub struct Cell {
    pub policy: String,
    pub outcome: Outcome,
}

/// One workload at one cache size.
pub struct Row {
    pub workload: String,
    pub cache: String,
    pub budget: u64,
    pub cells: Vec<Cell>,
}

fn fractions(base: u64, pcts: &[u32], of: &str) -> Vec<(String, u64)> {
    pcts.iter()
        .map(|&p| (format!("{p}% {of}"), base * p as u64 / 100))
        .collect()
}

/// The simulations reported in `docs/BENCHMARKS.md`. `quick` shrinks the synthetic workloads
/// about 4x (for tests and smoke runs). The block trace is skipped (and listed in `skipped`) if
/// `trace` is `None` or cannot be read.
pub fn default_scenarios(quick: bool, seed: u64, trace: Option<&Path>) -> ScenarioSet {
    let scale = if quick { 4 } else { 1 };
    let mut scenarios = Vec::new();

    let spec = EpochSpec::training(8000 / scale);
    let t = shuffled_epochs(spec, seed);
    let fp = t.footprint();
    scenarios.push(Scenario {
        caches: fractions(fp, &[25, 50, 100, 110], "of dataset"),
        note: format!(
            "{} files of 64 KiB-4 MiB ({} blocks of <= 1 MiB, {:.1} GiB), {} epochs, each a fresh \
             random order of whole files; hits over epochs 2-{}",
            spec.files,
            t.distinct(),
            fp as f64 / (1u64 << 30) as f64,
            spec.epochs,
            spec.epochs
        ),
        trace: t,
    });

    let dataset_blocks = scenarios[0].trace.distinct() as u64;
    let hot = dataset_blocks / 50;
    let t = epochs_with_hot_set(spec, hot, 0.2, seed);
    let fp = t.footprint();
    scenarios.push(Scenario {
        caches: fractions(fp, &[25, 50, 110], "of dataset"),
        note: format!(
            "the same epochs, plus a hot set of {hot} 1 MiB blocks (2% of the dataset) taking 20% \
             of the reads; hits over epochs 2-{}",
            spec.epochs
        ),
        trace: t,
    });

    let t = dataset_switch(spec, seed);
    let fp = t.footprint() / 2;
    scenarios.push(Scenario {
        caches: fractions(fp, &[25, 50], "of one dataset"),
        note: format!(
            "{} epochs over one dataset, then {} over another of the same shape; hits over epochs \
             2-{} of the second",
            spec.epochs, spec.epochs, spec.epochs
        ),
        trace: t,
    });

    let blocks = 20_000 / scale as u64;
    let n = 200_000 / scale;
    for alpha in [0.8, 1.0] {
        let t = zipf(blocks, n, alpha, seed);
        let fp = t.footprint();
        scenarios.push(Scenario {
            caches: fractions(fp, &[5, 10, 25], "of blocks"),
            note: format!(
                "{n} reads of {blocks} 1 MiB blocks, Zipf alpha {alpha}; hits after the first 20%"
            ),
            trace: t,
        });
    }

    let hot = 2000 / scale as u64;
    let t = scan_with_hot_set(hot, 10, seed);
    scenarios.push(Scenario {
        caches: fractions(hot * MIB, &[50, 100, 150], "of hot set"),
        note: format!(
            "10 rounds of {} uniform reads of {hot} hot 1 MiB blocks, each followed by a scan of {} \
             blocks read once; hits after the first round",
            4 * hot,
            2 * hot
        ),
        trace: t,
    });

    let mut skipped = Vec::new();
    match trace {
        None => skipped.push("block trace: no path given".to_string()),
        Some(path) => {
            for (block, pcts) in [(64 << 10, &[5u32, 10, 25, 50][..]), (MIB, &[5, 10, 25][..])] {
                match load_block_trace(path, block) {
                    Ok(t) => {
                        let fp = t.footprint();
                        scenarios.push(Scenario {
                            caches: fractions(fp, pcts, "of footprint"),
                            note: format!(
                                "{}: {} block accesses (reads and writes) to {} distinct {} KiB \
                                 blocks ({:.2} GiB); all accesses counted, cold misses included",
                                path.display(),
                                t.accesses.len(),
                                t.distinct(),
                                block >> 10,
                                fp as f64 / (1u64 << 30) as f64
                            ),
                            trace: t,
                        });
                    }
                    Err(e) => {
                        skipped.push(format!("block trace {}: {e}", path.display()));
                        break;
                    }
                }
            }
        }
    }
    ScenarioSet { scenarios, skipped }
}

/// Runs every scenario at every cache size with every policy in `policies`, plus Belady when
/// `with_belady`.
pub fn run_scenarios(set: &ScenarioSet, policies: &[PolicyKind], with_belady: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    for s in &set.scenarios {
        for (label, budget) in &s.caches {
            let mut cells: Vec<Cell> = policies
                .iter()
                .map(|&k| Cell {
                    policy: k.to_string(),
                    outcome: replay(&s.trace, k, *budget),
                })
                .collect();
            if with_belady {
                cells.push(Cell {
                    policy: "belady (offline)".to_string(),
                    outcome: belady(&s.trace, *budget),
                });
            }
            rows.push(Row {
                workload: s.trace.name.clone(),
                cache: label.clone(),
                budget: *budget,
                cells,
            });
        }
    }
    rows
}

/// A Markdown table of hit ratios in percent: by object, or by byte when `bytes`. The best
/// online policy of each row is in bold.
pub fn markdown(rows: &[Row], bytes: bool) -> String {
    let mut out = String::new();
    let Some(first) = rows.first() else {
        return out;
    };
    let ratio = |o: &Outcome| {
        100.0
            * if bytes {
                o.byte_hit_ratio()
            } else {
                o.hit_ratio()
            }
    };
    let _ = write!(out, "| workload | cache |");
    for c in &first.cells {
        let _ = write!(out, " {} |", c.policy);
    }
    let _ = write!(out, "\n|---|---|");
    for _ in &first.cells {
        let _ = write!(out, "---:|");
    }
    out.push('\n');
    for r in rows {
        let best = r
            .cells
            .iter()
            .filter(|c| !c.policy.contains("offline"))
            .map(|c| (ratio(&c.outcome) * 10.0).round() as i64)
            .max()
            .unwrap_or(0);
        let _ = write!(out, "| {} | {} |", r.workload, r.cache);
        for c in &r.cells {
            let v = ratio(&c.outcome);
            if !c.policy.contains("offline") && (v * 10.0).round() as i64 == best {
                let _ = write!(out, " **{v:.1}** |");
            } else {
                let _ = write!(out, " {v:.1} |");
            }
        }
        out.push('\n');
    }
    out
}
