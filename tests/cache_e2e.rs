//! The tiered cache on a real mount against a real S3 server (moto): warm re-reads make no GETs,
//! the disk tier survives a restart, damaged block files heal, budgets shrink at run time (SIGHUP
//! and `cairn cache resize`) while a reader runs, a cache dir is never shared, and the counters are
//! visible through `cairn stats` and the Prometheus endpoint.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{sha256_bytes, MountSpec, S3Server, TempDir};

const MIB: usize = 1 << 20;

fn drop_page_cache() {
    // Root only; makes the next read reach the daemon instead of the kernel's page cache.
    let _ = fs::write("/proc/sys/vm/drop_caches", "3");
}

fn cairn(args: &[&str], mnt: &Path) -> String {
    common::cairn_ok(args, mnt)
}

/// One Prometheus sample, e.g. `metric(m, "cairn_cache_hits_total{tier=\"l2\"}")`.
fn metric(mnt: &Path, series: &str) -> u64 {
    common::metric(mnt, series) as u64
}

fn gets(mnt: &Path) -> u64 {
    metric(mnt, "cairn_store_get_requests_total ")
}

fn dir_bytes(p: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            // Files are evicted while we walk: a vanished one holds no bytes.
            let Ok(m) = e.metadata() else { continue };
            n += if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            };
        }
    }
    n
}

fn block_files(p: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            if e.metadata().unwrap().is_dir() {
                v.extend(block_files(&e.path()));
            } else if e.path().extension().is_some_and(|x| x == "blk") {
                v.push(e.path());
            }
        }
    }
    v
}

fn read_all(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

#[test]
fn warm_reads_make_zero_gets_and_l2_survives_restart_without_gets() {
    let server = S3Server::start();
    let data = common::pseudo_random_bytes(21, 20 * MIB + 12345);
    server.put("warm/data.bin", &data);
    let cache = TempDir::new("cache-warm");
    let cache_arg = cache.path().to_str().unwrap().to_string();
    {
        let m = MountSpec::s3(&server)
            .args(&["--cache-dir", &cache_arg])
            .start();
        assert_eq!(
            sha256_bytes(&read_all(&m.join("warm/data.bin"))),
            sha256_bytes(&data)
        );
        let cold = gets(m.path());
        assert!(cold > 0);
        drop_page_cache();
        assert_eq!(read_all(&m.join("warm/data.bin")), data);
        assert_eq!(
            gets(m.path()),
            cold,
            "a warm re-read must not GET from the bucket"
        );
        // Let the disk writer finish before unmounting.
        let start = Instant::now();
        while metric(m.path(), "cairn_cache_size_bytes{tier=\"l2\"}") < data.len() as u64
            && start.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let stats = cairn(&["stats"], m.path());
        assert!(stats.contains("L1") && stats.contains("L2"), "{stats}");
    }
    // Remount over the warm disk cache: served without a single data GET.
    let m = MountSpec::s3(&server)
        .args(&["--cache-dir", &cache_arg])
        .start();
    drop_page_cache();
    assert_eq!(read_all(&m.join("warm/data.bin")), data);
    assert_eq!(gets(m.path()), 0, "remount over a warm L2 must not GET");
    assert!(metric(m.path(), "cairn_cache_hits_total{tier=\"l2\"}") >= 20);
}

#[test]
fn damaged_block_files_are_detected_dropped_and_refetched() {
    let server = S3Server::start();
    let data = common::pseudo_random_bytes(22, 8 * MIB);
    server.put("heal.bin", &data);
    let cache = TempDir::new("cache-heal");
    let cache_arg = cache.path().to_str().unwrap().to_string();
    {
        let m = MountSpec::s3(&server)
            .args(&["--cache-dir", &cache_arg])
            .start();
        assert_eq!(read_all(&m.join("heal.bin")), data);
        let start = Instant::now();
        while block_files(&cache.join("l2/blocks")).len() < 8
            && start.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let files = block_files(&cache.join("l2/blocks"));
    assert_eq!(files.len(), 8, "one file per 1 MiB block");
    // Flip a byte in one, truncate another, delete a third.
    let mut raw = fs::read(&files[0]).unwrap();
    let n = raw.len();
    raw[n / 2] ^= 0x5a;
    fs::write(&files[0], raw).unwrap();
    let raw = fs::read(&files[1]).unwrap();
    fs::write(&files[1], &raw[..raw.len() - 100]).unwrap();
    fs::remove_file(&files[2]).unwrap();
    let m = MountSpec::s3(&server)
        .args(&["--cache-dir", &cache_arg])
        .start();
    drop_page_cache();
    assert_eq!(
        sha256_bytes(&read_all(&m.join("heal.bin"))),
        sha256_bytes(&data)
    );
    let bad = metric(m.path(), "cairn_cache_checksum_failures_total{tier=\"l2\"}");
    // The missing and truncated files are caught at start (size check), the flipped byte on read.
    assert!(bad >= 1, "damage must be counted");
    let g = gets(m.path());
    assert!(
        (1..=3).contains(&g),
        "only the damaged blocks are fetched again, got {g} GETs"
    );
}

#[test]
fn shrink_by_sighup_and_by_cli_while_a_reader_runs() {
    let server = S3Server::start();
    let data = Arc::new(common::pseudo_random_bytes(23, 48 * MIB));
    server.put("big.bin", &data);
    let cache = TempDir::new("cache-shrink");
    let cfg = cache.join("cairn.toml");
    fs::write(&cfg, "l2_cache_size = \"64MiB\"\nl2_min_free = \"0\"\n").unwrap();
    let m = MountSpec::s3(&server)
        .args(&[
            "--cache-dir",
            cache.path().to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--l1-cache-size",
            "16MiB",
        ])
        .start();
    let blocks = cache.join("l2/blocks");
    assert_eq!(read_all(&m.join("big.bin")), *data);
    let start = Instant::now();
    while dir_bytes(&blocks) < 40 * MIB as u64 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        dir_bytes(&blocks) >= 40 * MIB as u64,
        "disk cache did not fill"
    );

    // A reader keeps reading (and verifying) while the budget shrinks under it.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (path, stop, data) = (m.join("big.bin"), stop.clone(), data.clone());
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed) {
                let mut f = fs::File::open(&path).unwrap();
                let mut buf = Vec::new();
                f.read_to_end(&mut buf).unwrap();
                assert!(buf == *data, "reader saw wrong bytes during a shrink");
                rounds += 1;
            }
            rounds
        })
    };
    fs::write(&cfg, "l2_cache_size = \"8MiB\"\nl2_min_free = \"0\"\n").unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(m.pid().unwrap() as i32, libc::SIGHUP) };
    let start = Instant::now();
    while dir_bytes(&blocks) > 8 * MIB as u64 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        dir_bytes(&blocks) <= 8 * MIB as u64,
        "SIGHUP shrink: {} bytes on disk",
        dir_bytes(&blocks)
    );

    let out = cairn(
        &["cache", "resize", "--l2", "3MiB", "--l1", "4MiB"],
        m.path(),
    );
    assert!(out.contains("L2 budget 3145728"), "{out}");
    assert!(
        dir_bytes(&blocks) <= 3 * MIB as u64,
        "CLI shrink: {} bytes on disk",
        dir_bytes(&blocks)
    );
    assert!(metric(m.path(), "cairn_cache_size_bytes{tier=\"l1\"}") <= 4 * MIB as u64);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let rounds = reader.join().expect("reader failed");
    assert!(rounds >= 1);
}

#[test]
fn a_cache_dir_is_never_shared_between_mounts() {
    let bucket = TempDir::new("shared-cache-bucket");
    fs::write(bucket.join("f"), b"x").unwrap();
    let cache = TempDir::new("shared-cache");
    let url = format!("file://{}", bucket.path().display());
    let cache_arg = cache.path().to_str().unwrap().to_string();
    let _a = MountSpec::new(url.clone())
        .args(&["--cache-dir", &cache_arg])
        .start();
    let err = match MountSpec::new(url)
        .args(&["--cache-dir", &cache_arg])
        .try_start()
    {
        Ok(_) => panic!("a second mount on the same cache dir must fail"),
        Err(f) => f.stderr,
    };
    assert!(err.contains("in use by another cairn"), "{err}");
}

#[test]
fn prometheus_endpoint_serves_cache_metrics() {
    let bucket = TempDir::new("metrics-bucket");
    fs::write(bucket.join("f"), vec![1u8; 3 * MIB]).unwrap();
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let m = MountSpec::new(format!("file://{}", bucket.path().display()))
        .args(&["--metrics-addr", &addr])
        .start();
    assert_eq!(read_all(&m.join("f")).len(), 3 * MIB);
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains("cairn_cache_hits_total{tier=\"l1\"}"),
        "{body}"
    );
    let gets: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("cairn_store_get_requests_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(gets >= 1, "{body}");
}
