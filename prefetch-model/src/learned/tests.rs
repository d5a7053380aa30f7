//! Tests of the assembled learned prefetcher: offline training, fallback, bounded memory.

use super::ftrl::{Ftrl, FtrlParams};
use super::*;
use crate::prefetcher::{EmptyCatalog, Feedback, FileRef, PrefetchRequest, Prefetcher};
use crate::rng::Rng;
use crate::trace::{FormatClass, Op, TraceRecord};
use crate::{Namespace, Workload};

const MIB: u64 = 1 << 20;

fn rec(op: Op, handle: u64, inode: u64, offset: u64, len: u32, size: u64) -> TraceRecord {
    TraceRecord {
        time_ns: 0,
        stream: handle as u32,
        program_hash: 0,
        handle,
        inode,
        path_hash: inode.wrapping_mul(31),
        dir_hash: 5,
        offset,
        len,
        format: FormatClass::TfRecord,
        op,
        file_size: size,
    }
}

/// Sequential whole reads of `files` large files, and random 4 KiB reads of as many others.
fn mixed(files: u64, seed: u64) -> Workload {
    let mut rng = Rng::new(seed);
    let mut records = Vec::new();
    let mut ns = Namespace::default();
    let size = 64 * MIB;
    for f in 0..files {
        let (seq_ino, rnd_ino) = (100 + f, 500 + f);
        for ino in [seq_ino, rnd_ino] {
            ns.add_file(FileRef {
                inode: ino,
                size,
                format: FormatClass::TfRecord,
                path_hash: ino * 31,
                dir_hash: 5,
            });
        }
        records.push(rec(Op::Open, seq_ino, seq_ino, 0, 0, size));
        records.push(rec(Op::Open, rnd_ino, rnd_ino, 0, 0, size));
        for k in 0..(size / (256 << 10)) {
            records.push(rec(
                Op::Read,
                seq_ino,
                seq_ino,
                k * (256 << 10),
                256 << 10,
                size,
            ));
            let off = rng.below(size / 4096) * 4096;
            records.push(rec(Op::Read, rnd_ino, rnd_ino, off, 4096, size));
        }
        records.push(rec(Op::Close, seq_ino, seq_ino, 0, 0, size));
        records.push(rec(Op::Close, rnd_ino, rnd_ino, 0, 0, size));
    }
    Workload {
        name: "mixed-test".into(),
        records,
        namespace: ns,
    }
}

fn emitted_bytes(p: &mut LearnedPrefetcher, recs: &[TraceRecord], filter: u64) -> u64 {
    let mut out: Vec<PrefetchRequest> = Vec::new();
    for r in recs {
        p.on_access(r, &EmptyCatalog, &mut out);
    }
    out.iter()
        .filter(|q| q.inode == filter)
        .map(|q| q.len)
        .sum()
}

#[test]
fn offline_training_separates_sequential_from_random_handles() {
    let train_set = [mixed(3, 1)];
    let model = train(
        &train_set,
        &TrainConfig {
            passes: 2,
            bits: 18,
            ..TrainConfig::default()
        },
    );
    let test = mixed(1, 2);
    let mut p = LearnedPrefetcher::new(
        model.clone(),
        LearnedConfig {
            learn_online: false,
            ..Default::default()
        },
    );
    let seq = emitted_bytes(&mut p, &test.records, 100);
    let seq_stats = p.stats();
    let mut p = LearnedPrefetcher::new(
        model,
        LearnedConfig {
            learn_online: false,
            ..Default::default()
        },
    );
    let rnd = emitted_bytes(&mut p, &test.records, 500);
    // the sequential file is prefetched nearly whole, the random one hardly at all
    assert!(seq >= 48 * MIB, "sequential prefetched {seq} {seq_stats:?}");
    assert!(rnd <= 4 * MIB, "random prefetched {rnd}");
}

#[test]
fn untrained_model_learns_online_from_feedback() {
    // Start from zero (p = 0.5: the middle arm emits). Feedback says sequential depth is used.
    let mut p = LearnedPrefetcher::new(
        Model::new(16, FtrlParams::default()),
        LearnedConfig::default(),
    );
    let mut out = Vec::new();
    let size = 512 * MIB;
    for k in 0..(size / MIB) {
        out.clear();
        p.on_access(
            &rec(Op::Read, 1, 1, k * MIB, MIB as u32, size),
            &EmptyCatalog,
            &mut out,
        );
        for q in &out {
            let mut off = q.offset;
            while off < q.offset + q.len {
                p.on_feedback(&Feedback {
                    inode: 1,
                    offset: off,
                    len: MIB,
                    used: true,
                });
                off += MIB;
            }
        }
    }
    assert!(p.stats().updates > 100);
    assert!(p.stats().emitted > 0);
    // a model that saw every prefetch used now scores the near sequential candidate high
    let r = rec(Op::Read, 9, 9, 0, MIB as u32, size);
    let mut q = LearnedPrefetcher::new(
        p.model().clone(),
        LearnedConfig {
            learn_online: false,
            ..Default::default()
        },
    );
    out.clear();
    q.on_access(&r, &EmptyCatalog, &mut out);
    assert!(
        out.iter().any(|x| x.offset == MIB && x.score > 0.7),
        "{out:?}"
    );
}

/// A model whose every weight is strongly negative: it never predicts a use.
fn pessimist() -> Model {
    Model {
        ftrl: Ftrl::from_parts(FtrlParams::default(), vec![[1000.0, 0.0]; 1 << 10]),
    }
}

#[test]
fn falls_back_to_the_heuristic_when_the_model_loses() {
    let mut p = LearnedPrefetcher::new(
        pessimist(),
        LearnedConfig {
            learn_online: false,
            ..Default::default()
        },
    );
    let size = 1 << 30;
    let mut out = Vec::new();
    p.on_access(&rec(Op::Open, 1, 1, 0, 0, size), &EmptyCatalog, &mut out);
    let mut uncovered_late = 0;
    for k in 0..2048u64 {
        let (off, len) = (k * (256 << 10), 256 << 10);
        // once the class fell back, every read lies in a range requested before it
        let covered = out
            .iter()
            .any(|q| q.offset <= off && off + len <= q.offset + q.len);
        if k > 1200 && !covered {
            uncovered_late += 1;
        }
        p.on_access(
            &rec(Op::Read, 1, 1, off, len as u32, size),
            &EmptyCatalog,
            &mut out,
        );
    }
    assert_eq!(uncovered_late, 0, "{:?}", &out[..out.len().min(40)]);
    assert_eq!(p.stats().emitted, 0);
    let (m, h) = p.class_scores(FormatClass::TfRecord as u8, candidates::Shape::Sequential);
    assert!(m.unwrap() < h.unwrap(), "model {m:?} heuristic {h:?}");
    assert!(p.in_fallback(FormatClass::TfRecord as u8, candidates::Shape::Sequential));
    assert!(p.stats().fallback_emitted > 0);
    // the heuristic's requests run ahead of the reader
    let last = out.last().unwrap();
    assert!(last.offset + last.len > 2048 * (256 << 10));
    // a class the model never lost in is not in fallback
    assert!(!p.in_fallback(FormatClass::Parquet as u8, candidates::Shape::Sequential));
}

#[test]
fn maps_stay_bounded() {
    let cfg = LearnedConfig {
        max_pending: 256,
        max_handles: 32,
        max_dirs: 4,
        ..Default::default()
    };
    let mut p = LearnedPrefetcher::new(Model::new(12, FtrlParams::default()), cfg);
    let mut rng = Rng::new(3);
    let mut out = Vec::new();
    for i in 0..20_000u64 {
        let h = rng.below(1000);
        let op = if i % 7 == 0 { Op::Open } else { Op::Read };
        let mut r = rec(op, h, h, rng.below(1 << 30), 65536, 1 << 30);
        r.dir_hash = rng.below(100);
        out.clear();
        p.on_access(&r, &EmptyCatalog, &mut out);
        p.on_feedback(&Feedback {
            inode: h,
            offset: r.offset + 65536,
            len: MIB,
            used: i % 2 == 0,
        });
        assert!(out.len() <= cfg.max_candidates);
    }
    let (pending, handles, dirs) = p.footprint();
    assert!(pending <= 256, "{pending}");
    assert!(handles <= 32, "{handles}");
    assert!(dirs <= 4, "{dirs}");
}

/// A Parquet scan as a FUSE mount sees it: the kernel's 1 MiB page-cache readahead reads on
/// past every projected column chunk into the next, unprojected one. Those reads must not
/// turn the projection into "every column" nor let the sequential generator run through the
/// row groups (on the mount this fetched the whole files).
#[test]
fn parquet_scan_with_kernel_readahead_does_not_fetch_whole_files() {
    let p = crate::workloads::ParquetParams {
        files: 4,
        row_groups: 8,
        columns: 10,
        row_group_bytes: 32 * MIB,
        projected: 3,
        queries: 1,
        threads: 1,
        kernel_readahead: MIB,
        ..Default::default()
    };
    let w = crate::workloads::parquet_scan(&p, 11);
    let total: u64 = w.namespace.files.values().map(|f| f.size).sum();
    let mut l = LearnedPrefetcher::new(default_model(), LearnedConfig::default());
    let r = crate::sim::replay(&w, &mut l, &crate::sim::SimConfig::default());
    let frac = r.get_bytes as f64 / total as f64;
    let demand = r.demand_bytes as f64 / total as f64;
    eprintln!(
        "fetched {:.0} MiB of {:.0} MiB ({frac:.2}), demand {demand:.2}, precision {:.2}, \
         demanded bytes prefetched {:.2}, misses {}",
        r.get_bytes as f64 / MIB as f64,
        total as f64 / MIB as f64,
        r.precision,
        r.demand_bytes_prefetched_frac,
        r.misses
    );
    assert!(
        frac < demand + 0.15,
        "fetched {frac:.2} of the files for {demand:.2} demanded"
    );
    assert!(r.precision > 0.7, "precision {:.2}", r.precision);
}

/// Prints learned vs every baseline on the mixed suite (release: `cargo test --release -p
/// cairn-prefetch-model learned::tests::evaluate_suite -- --ignored --nocapture`).
#[test]
#[ignore]
fn evaluate_suite() {
    let scale: f64 = std::env::var("PM_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.05);
    let ws = crate::workloads::suite(7, scale);
    let t = std::time::Instant::now();
    let model = default_model();
    eprintln!(
        "default model trained in {:?}, {} non-zero weights",
        t.elapsed(),
        model.ftrl.nonzero()
    );
    let reports = evaluate(
        &ws,
        &model,
        &LearnedConfig::default(),
        &crate::sim::SimConfig::default(),
    );
    println!("{}", crate::sim::markdown(&reports));
    for (name, misses, wasted, fetched) in totals(&reports) {
        println!(
            "TOTAL {name:10} misses {misses:8} wasted {:10.1} MiB prefetched {:10.1} MiB",
            wasted as f64 / MIB as f64,
            fetched as f64 / MIB as f64
        );
    }
    for r in reports.iter().filter(|r| r.policy == "learned") {
        println!(
            "decision {} p50 {} ns p99 {} ns",
            r.workload, r.decision.p50_ns, r.decision.p99_ns
        );
    }
}

/// Diagnostics of the learned prefetcher on one workload (`PM_WL`, `PM_SCALE`, `PM_SEED`).
#[test]
#[ignore]
fn diagnose_workload() {
    let scale: f64 = std::env::var("PM_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.3);
    let name = std::env::var("PM_WL").unwrap_or_else(|_| "webdataset-tar".into());
    let seed: u64 = std::env::var("PM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let w = crate::workloads::generate(&name, seed, scale).expect("workload");
    let model = default_model();
    for online in [true, false] {
        let mut p = LearnedPrefetcher::new(
            model.clone(),
            LearnedConfig {
                learn_online: online,
                ..Default::default()
            },
        );
        let r = crate::sim::replay(&w, &mut p, &crate::sim::SimConfig::default());
        for f in FormatClass::ALL {
            for sh in [
                candidates::Shape::Fresh,
                candidates::Shape::Sequential,
                candidates::Shape::Strided,
                candidates::Shape::Extents,
                candidates::Shape::Random,
            ] {
                let (m, h) = p.class_scores(f as u8, sh);
                if m.is_some() {
                    println!(
                        "  {f:?} {sh:?}: model {m:.2?} heuristic {h:.2?} fallback {} arm {}",
                        p.in_fallback(f as u8, sh),
                        p.arm_index(f as u8, sh)
                    );
                }
            }
        }
        println!(
            "online={online} misses {} late {} wasted {} stats {:?} fallback classes {}",
            r.misses,
            r.late,
            r.wasted_bytes >> 20,
            p.stats(),
            p.fallback_classes()
        );
        assert_eq!(r.used_prefetched + r.wasted_prefetched, r.prefetched_blocks);
    }
}

#[test]
fn default_model_is_trained_and_fits_the_file_limit() {
    let m = default_model();
    assert!(m.ftrl.nonzero() > 100, "{}", m.ftrl.nonzero());
    let bytes = m.to_bytes();
    assert!(bytes.len() as u64 <= MAX_MODEL_BYTES);
    assert_eq!(Model::from_bytes(&bytes).unwrap(), m);
    // deterministic: a second training gives the same bytes
    let again = train(
        &crate::workloads::suite(DEFAULT_TRAIN_SEED, DEFAULT_TRAIN_SCALE),
        &TrainConfig::default(),
    );
    assert_eq!(again.to_bytes(), bytes);
}
