//! `prefetch-sim`: replays the workload suite (and optionally the CloudPhysics trace) through
//! the baseline prefetchers and prints one table per workload.
//!
//! ```text
//! prefetch-sim [--scale F] [--seed N] [--trace-csv PATH] [--policies a,b,c] [--markdown]
//!              [--cache-mib N] [--first-byte-ms X] [--workloads a,b]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use cairn_prefetch_model::baselines;
use cairn_prefetch_model::learned;
use cairn_prefetch_model::sim::{markdown, replay, Report, SimConfig};
use cairn_prefetch_model::trace::{stable_hash, FormatClass, Op, TraceRecord};
use cairn_prefetch_model::workloads;
use cairn_prefetch_model::{FileRef, Namespace, Workload};

/// A bad command line.
#[derive(Debug, thiserror::Error)]
enum ArgError {
    #[error("{0} needs a value")]
    Missing(String),
    #[error("bad value {1:?} for {0}")]
    Bad(String, String),
    #[error("unknown option {0:?}")]
    Unknown(String),
    #[error("unknown policy {0:?} (known: {1})")]
    Policy(String, String),
}

/// What the command line asked for.
struct Args {
    scale: f64,
    seed: u64,
    trace_csv: Option<PathBuf>,
    policies: Vec<String>,
    workloads: Option<Vec<String>>,
    markdown: bool,
    cfg: SimConfig,
}

/// A fresh policy by name: a baseline, or `learned` (the default model, trained on the suite
/// at a different seed and a small scale).
fn policy(name: &str) -> Option<Box<dyn cairn_prefetch_model::Prefetcher>> {
    if name == "learned" {
        return Some(Box::new(learned::LearnedPrefetcher::new(
            learned::default_model(),
            learned::LearnedConfig::default(),
        )));
    }
    baselines::by_name(name)
}

fn parse() -> Result<Args, ArgError> {
    let mut a = Args {
        scale: 1.0,
        seed: 1,
        trace_csv: None,
        policies: baselines::NAMES
            .iter()
            .map(|s| s.to_string())
            .chain(std::iter::once("learned".to_string()))
            .collect(),
        workloads: None,
        markdown: false,
        cfg: SimConfig::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--markdown" {
            a.markdown = true;
            continue;
        }
        let val = it.next().ok_or_else(|| ArgError::Missing(flag.clone()))?;
        let bad = || ArgError::Bad(flag.clone(), val.clone());
        match flag.as_str() {
            "--scale" => {
                a.scale = val
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0)
                    .ok_or_else(bad)?
            }
            "--seed" => a.seed = val.parse().map_err(|_| bad())?,
            "--trace-csv" => a.trace_csv = Some(PathBuf::from(&val)),
            "--policies" => {
                a.policies = val
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                for p in &a.policies {
                    if policy(p).is_none() {
                        return Err(ArgError::Policy(
                            p.clone(),
                            format!("{},learned", baselines::NAMES.join(",")),
                        ));
                    }
                }
            }
            "--workloads" => {
                a.workloads = Some(val.split(',').map(|s| s.trim().to_string()).collect())
            }
            "--cache-mib" => a.cfg.cache_bytes = val.parse::<u64>().map_err(|_| bad())? << 20,
            "--first-byte-ms" => {
                a.cfg.store.first_byte = val
                    .parse::<f64>()
                    .ok()
                    .filter(|x| *x >= 0.0)
                    .ok_or_else(bad)?
                    / 1e3
            }
            _ => return Err(ArgError::Unknown(flag)),
        }
    }
    a.cfg.seed = a.seed;
    Ok(a)
}

/// The "1 GiB first read" target: one stream reading a cold file of `bytes` (1 GiB at scale 1)
/// front to back in 1 MiB reads with no think time, between an open and a close.
fn sequential_first_read(bytes: u64) -> Workload {
    const PATH: &str = "seq/first-read.bin";
    let f = FileRef {
        inode: 1,
        size: bytes,
        format: FormatClass::from_name(PATH),
        path_hash: stable_hash(PATH.as_bytes()),
        dir_hash: stable_hash(b"seq"),
    };
    let rec = |op: Op, offset: u64, len: u64| TraceRecord {
        time_ns: 0,
        stream: 1,
        program_hash: 0,
        handle: 1,
        inode: f.inode,
        path_hash: f.path_hash,
        dir_hash: f.dir_hash,
        offset,
        len: len as u32,
        format: f.format,
        op,
        file_size: bytes,
    };
    let mut records = vec![rec(Op::Open, 0, 0)];
    let mut off = 0;
    while off < bytes {
        let len = (1u64 << 20).min(bytes - off);
        records.push(rec(Op::Read, off, len));
        off += len;
    }
    records.push(rec(Op::Close, 0, 0));
    let mut namespace = Namespace::default();
    namespace.add_file(f);
    Workload {
        name: "seq-first-read".to_string(),
        records,
        namespace,
    }
}

fn plain(r: &Report) -> String {
    format!(
        "{:<22} {:<10} hit {:>5.1}% miss {:>7} late {:>6} prec {:>5.1}% cov {:>5.1}% timely {:>5.1}% pf-bytes {:>5.1}% waste {:>8.1} MiB GETs {:>7} fetched {:>7.2} GiB replay {:>8.2} s read p99 {:>7.1} ms decide p50/p99 {}/{} ns",
        r.workload,
        r.policy,
        r.hit_rate * 100.0,
        r.misses,
        r.late,
        r.precision * 100.0,
        r.coverage * 100.0,
        r.timeliness * 100.0,
        r.demand_bytes_prefetched_frac * 100.0,
        r.wasted_bytes as f64 / (1u64 << 20) as f64,
        r.get_requests,
        r.get_bytes as f64 / (1u64 << 30) as f64,
        r.replay_time,
        r.read_p99 * 1e3,
        r.decision.p50_ns,
        r.decision.p99_ns,
    )
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("prefetch-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let mut ws: Vec<Workload> = vec![sequential_first_read(
        (((1u64 << 30) as f64 * args.scale) as u64).max(16 << 20),
    )];
    ws.extend(workloads::suite(args.seed, args.scale));
    if let Some(only) = &args.workloads {
        ws.retain(|w| only.contains(&w.name));
    }
    if let Some(path) = &args.trace_csv {
        match workloads::cloudphysics(path) {
            Ok(w) => ws.push(w),
            Err(e) => {
                eprintln!("prefetch-sim: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut reports = Vec::new();
    for w in &ws {
        for name in &args.policies {
            let Some(mut p) = policy(name) else { continue };
            let t = Instant::now();
            let r = replay(w, p.as_mut(), &args.cfg);
            eprintln!(
                "{} / {}: {} records in {:.1} s",
                w.name,
                name,
                w.records.len(),
                t.elapsed().as_secs_f64()
            );
            if !args.markdown {
                println!("{}", plain(&r));
            }
            reports.push(r);
        }
    }
    if args.markdown {
        print!("{}", markdown(&reports));
    }
    ExitCode::SUCCESS
}
