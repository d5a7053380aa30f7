//! Invariants every generated workload must satisfy, and per-generator behaviour.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use super::*;
use crate::trace::{FormatClass, Op, TraceRecord};
use crate::Workload;

/// Tiny instances: every generator at this scale runs in milliseconds in debug builds.
const TINY: f64 = 0.002;

fn overlaps(r: &TraceRecord, x: &Range<u64>) -> bool {
    r.offset < x.end && x.start < r.offset + r.len as u64
}

/// Checks the invariants of a replayable workload; `generated` adds the ones only synthetic
/// traces promise (program hash set, kernel-sized requests).
fn check(w: &Workload, generated: bool) {
    let ns = &w.namespace;
    assert!(!w.records.is_empty(), "{}: no records", w.name);
    // Sorted by time; per stream non-decreasing follows, but check it independently.
    assert!(
        w.records.windows(2).all(|p| p[0].time_ns <= p[1].time_ns),
        "{}: not sorted",
        w.name
    );
    let mut stream_t: HashMap<u32, u64> = HashMap::new();
    let mut opens: HashMap<u64, (usize, u64)> = HashMap::new();
    let mut closes: HashMap<u64, usize> = HashMap::new();
    for (i, r) in w.records.iter().enumerate() {
        let t = stream_t.entry(r.stream).or_insert(0);
        assert!(
            *t <= r.time_ns,
            "{}: stream {} goes back in time",
            w.name,
            r.stream
        );
        *t = r.time_ns;
        let f = ns
            .files
            .get(&r.inode)
            .unwrap_or_else(|| panic!("{}: unknown inode {}", w.name, r.inode));
        assert_eq!(
            (r.path_hash, r.dir_hash, r.format),
            (f.path_hash, f.dir_hash, f.format),
            "{}",
            w.name
        );
        assert!(
            r.offset + r.len as u64 <= r.file_size,
            "{}: {:?} past file end",
            w.name,
            r
        );
        match r.op {
            Op::Open | Op::Close => {
                assert_eq!((r.offset, r.len), (0, 0), "{}", w.name);
                let seen = if r.op == Op::Open {
                    opens.insert(r.handle, (i, r.inode)).is_some()
                } else {
                    closes.insert(r.handle, i).is_some()
                };
                assert!(!seen, "{}: handle {} reused", w.name, r.handle);
            }
            Op::Read => {
                assert!(r.len > 0);
                assert_eq!(r.file_size, f.size, "{}: read sees another size", w.name);
            }
            Op::Write => {
                assert!(r.len > 0);
                assert!(r.file_size <= f.size, "{}", w.name);
            }
        }
        if generated {
            assert_ne!(r.program_hash, 0, "{}", w.name);
            assert!(
                r.len as u64 <= 64 << 20 && (r.op == Op::Write || r.len as u64 <= 1 << 20),
                "{}: {:?}",
                w.name,
                r
            );
        }
    }
    // Every read or write happens on an open handle of its file, before the handle's close.
    assert_eq!(opens.len(), closes.len(), "{}: unclosed handles", w.name);
    for (i, r) in w.records.iter().enumerate() {
        let (o, inode) = opens[&r.handle];
        assert_eq!(inode, r.inode, "{}: handle of another file", w.name);
        let c = closes[&r.handle];
        match r.op {
            Op::Read | Op::Write => assert!(o < i && i < c, "{}: I/O outside open..close", w.name),
            Op::Close => assert!(o < i, "{}", w.name),
            Op::Open => {}
        }
    }
    // The namespace: each file listed once, in its directory.
    let listed: usize = ns.dirs.values().map(Vec::len).sum();
    assert_eq!(listed, ns.files.len(), "{}", w.name);
    for f in ns.files.values() {
        assert!(ns.dirs[&f.dir_hash].contains(&f.inode), "{}", w.name);
        assert_eq!(f.format, ns.files[&f.inode].format);
    }
    // Layouts: extents sorted, disjoint, inside the file; each reader reads the source first.
    for (&inode, l) in &ns.layouts {
        let size = ns.files[&inode].size;
        assert!(
            l.source.start < l.source.end && l.source.end <= size,
            "{}: source",
            w.name
        );
        assert!(!l.extents.is_empty(), "{}", w.name);
        for e in &l.extents {
            assert!(
                e.start < e.end && e.end <= size,
                "{}: extent {:?} of {}",
                w.name,
                e,
                size
            );
        }
        assert!(
            l.extents.windows(2).all(|p| p[0].end <= p[1].start),
            "{}: extents overlap",
            w.name
        );
        let mut first_source: HashMap<u64, usize> = HashMap::new();
        for (i, r) in w
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.inode == inode && r.op == Op::Read)
        {
            if overlaps(r, &l.source) {
                first_source.entry(r.handle).or_insert(i);
            }
            if l.extents.iter().any(|e| overlaps(r, e)) {
                let s = first_source.get(&r.handle).copied();
                assert!(
                    s.is_some_and(|s| s <= i),
                    "{}: extent read before the layout source",
                    w.name
                );
            }
        }
    }
}

fn reads_of(w: &Workload) -> impl Iterator<Item = &TraceRecord> {
    w.records.iter().filter(|r| r.op == Op::Read)
}

/// Bytes each handle read, as sorted merged ranges.
fn coverage(w: &Workload, handle: u64) -> Vec<Range<u64>> {
    let mut rs: Vec<Range<u64>> = reads_of(w)
        .filter(|r| r.handle == handle)
        .map(|r| r.offset..r.offset + r.len as u64)
        .collect();
    rs.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in rs {
        match out.last_mut() {
            Some(l) if r.start <= l.end => l.end = l.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

#[test]
fn every_suite_workload_is_valid_deterministic_and_seeded() {
    for name in SUITE {
        let a = generate(name, 7, TINY).unwrap();
        assert_eq!(a.name, name);
        check(&a, true);
        let b = generate(name, 7, TINY).unwrap();
        assert_eq!(a.records, b.records, "{name}: not deterministic");
        assert_eq!(a.namespace.layouts, b.namespace.layouts, "{name}");
        let c = generate(name, 8, TINY).unwrap();
        assert_ne!(a.records, c.records, "{name}: seed ignored");
    }
    assert!(generate("nope", 1, 1.0).is_none());
    assert_eq!(suite(1, TINY).len(), SUITE.len());
}

#[test]
fn shuffled_small_files_reads_every_file_once_per_epoch() {
    let p = SmallFilesParams::default().scaled(0.05);
    let w = shuffled_small_files(&p, 3);
    check(&w, true);
    let n = w.namespace.files.len();
    assert_eq!(n, p.files);
    let opens: Vec<&TraceRecord> = w.records.iter().filter(|r| r.op == Op::Open).collect();
    assert_eq!(opens.len(), n * p.epochs);
    let mut orders = Vec::new();
    for epoch in opens.chunks(n) {
        let set: HashSet<u64> = epoch.iter().map(|r| r.inode).collect();
        assert_eq!(set.len(), n, "an epoch must read every file once");
        orders.push(epoch.iter().map(|r| r.inode).collect::<Vec<_>>());
        // Whole-file reads, in 128 KiB requests.
        for r in epoch {
            assert_eq!(
                coverage(&w, r.handle),
                vec![0..w.namespace.files[&r.inode].size]
            );
        }
    }
    assert_ne!(orders[0], orders[1], "each epoch is a fresh shuffle");
    let streams: HashSet<u32> = w.records.iter().map(|r| r.stream).collect();
    assert_eq!(
        streams.len(),
        p.loader.workers * p.epochs,
        "non-persistent workers per epoch"
    );
    let mean = w.namespace.total_bytes() as f64 / n as f64;
    assert!((90_000.0..150_000.0).contains(&mean), "mean size {mean}");
}

#[test]
fn npz_probes_the_tail_then_reads_whole_files() {
    let w = npz_whole_file(&NpzParams::default().scaled(0.01), 5);
    check(&w, true);
    for o in w.records.iter().filter(|r| r.op == Op::Open) {
        let size = w.namespace.files[&o.inode].size;
        let rs: Vec<&TraceRecord> = reads_of(&w).filter(|r| r.handle == o.handle).collect();
        assert_eq!(rs[0].offset + rs[0].len as u64, size, "tail page first");
        assert_eq!(rs[1].offset, 0);
        assert!(rs[1..]
            .windows(2)
            .all(|p| p[1].offset == p[0].offset + p[0].len as u64));
        assert_eq!(coverage(&w, o.handle), vec![0..size]);
    }
}

#[test]
fn tfrecord_threads_interleave_sequential_preads() {
    let p = TfRecordParams {
        shards: 8,
        min_shard: 1 << 20,
        max_shard: 2 << 20,
        ..TfRecordParams::default()
    };
    let w = tfrecord_shards(&p, 2);
    check(&w, true);
    let streams: HashSet<u32> = w.records.iter().map(|r| r.stream).collect();
    assert_eq!(streams.len(), p.threads);
    let mut last_off: HashMap<u64, u64> = HashMap::new();
    let mut switches = 0;
    let mut prev = None;
    for r in reads_of(&w) {
        assert!(r.len as u64 <= 256 * 1024);
        let next = last_off.entry(r.handle).or_insert(0);
        assert_eq!(r.offset, *next, "sequential within a shard");
        *next = r.offset + r.len as u64;
        if prev.is_some_and(|p| p != r.stream) {
            switches += 1;
        }
        prev = Some(r.stream);
    }
    assert!(
        switches > 10,
        "threads interleave in time ({switches} switches)"
    );
}

#[test]
fn webdataset_streams_whole_shards_with_member_layout() {
    let w = webdataset_tar(&WebDatasetParams::default().scaled(0.001), 4);
    check(&w, true);
    for (inode, l) in &w.namespace.layouts {
        let size = w.namespace.files[inode].size;
        assert_eq!(l.extents[0].start, 0);
        assert!(
            l.extents.windows(2).all(|p| p[0].end == p[1].start),
            "members are contiguous"
        );
        assert!(l
            .extents
            .iter()
            .all(|e| e.start % 512 == 0 && e.end % 512 == 0));
        assert!(size % 10240 == 0 && l.extents.last().unwrap().end + 1024 <= size);
    }
    for o in w.records.iter().filter(|r| r.op == Op::Open) {
        assert_eq!(
            coverage(&w, o.handle),
            vec![0..w.namespace.files[&o.inode].size]
        );
    }
}

#[test]
fn parquet_reads_footer_then_only_projected_chunks() {
    let p = ParquetParams::default().scaled(0.01);
    let w = parquet_scan(&p, 9);
    check(&w, true);
    let mut read_extents = 0usize;
    let mut all_extents = 0usize;
    for o in w.records.iter().filter(|r| r.op == Op::Open) {
        let size = w.namespace.files[&o.inode].size;
        let l = &w.namespace.layouts[&o.inode];
        let rs: Vec<&TraceRecord> = reads_of(&w).filter(|r| r.handle == o.handle).collect();
        assert_eq!(
            (rs[0].offset, rs[0].len),
            (size - 8, 8),
            "footer length first"
        );
        assert_eq!(rs[1].offset, l.source.start, "then the footer");
        assert_eq!(rs[1].offset + rs[1].len as u64, size - 8);
        let cov = coverage(&w, o.handle);
        let touched: Vec<&Range<u64>> = l
            .extents
            .iter()
            .filter(|e| cov.iter().any(|c| c.start < e.end && e.start < c.end))
            .collect();
        // Every touched chunk is read whole.
        for e in &touched {
            assert!(cov.iter().any(|c| c.start <= e.start && e.end <= c.end));
        }
        read_extents += touched.len();
        all_extents += l.extents.len();
        assert_eq!(
            touched.len(),
            p.row_groups * p.projected,
            "projected chunks only"
        );
    }
    assert!(
        read_extents * p.columns == all_extents * p.projected,
        "{read_extents} of {all_extents}"
    );
}

#[test]
fn parquet_kernel_readahead_reads_on_past_each_chunk_once() {
    let ra = 256 * (1u64 << 10);
    let p = ParquetParams {
        kernel_readahead: ra,
        queries: 1,
        ..ParquetParams::default().scaled(0.01)
    };
    let w = parquet_scan(&p, 9);
    check(&w, true);
    for o in w.records.iter().filter(|r| r.op == Op::Open) {
        let l = &w.namespace.layouts[&o.inode];
        let data_end = l.source.start;
        let reads: Vec<&TraceRecord> = reads_of(&w)
            .filter(|r| r.handle == o.handle && r.offset < data_end)
            .collect();
        let cov = coverage(&w, o.handle);
        // no byte is read twice (the page cache has what the kernel read ahead)
        let read: u64 = reads.iter().map(|r| r.len as u64).sum();
        let covered: u64 = cov
            .iter()
            .filter(|c| c.start < data_end)
            .map(|c| c.end.min(data_end) - c.start)
            .sum();
        assert_eq!(read, covered);
        // every run of reads ends `ra` past a chunk's end (or at the footer)
        for c in cov.iter().filter(|c| c.start < data_end) {
            assert!(
                c.end >= data_end || l.extents.iter().any(|e| e.end + ra == c.end),
                "{c:?}"
            );
        }
    }
}

#[test]
fn hdf5_readers_cover_every_chunk_once_in_strided_runs() {
    let p = Hdf5Params::default().scaled(0.01);
    let w = hdf5_chunks(&p, 1);
    check(&w, true);
    let l = w.namespace.layouts.values().next().unwrap();
    assert_eq!(l.extents.len(), p.rows * p.cols);
    let mut count = vec![0u32; l.extents.len()];
    for r in reads_of(&w) {
        if let Some(i) = l.extents.iter().position(|e| e.start == r.offset) {
            count[i] += 1;
        }
    }
    assert!(
        count.iter().all(|&c| c == 1),
        "each chunk read by exactly one reader"
    );
    // A reader's chunk sequence jumps: runs of `band` chunks, then a gap of a grid row.
    let s0 = w.records[0].stream;
    let idx: Vec<usize> = reads_of(&w)
        .filter(|r| r.stream == s0)
        .filter_map(|r| l.extents.iter().position(|e| e.start == r.offset))
        .collect();
    assert_eq!(idx[1] - idx[0], 1);
    assert_eq!(idx[p.band] - idx[0], p.cols);
}

#[test]
fn safetensors_reads_length_header_then_every_tensor_in_order() {
    let w = safetensors_load(&SafetensorsParams::default().scaled(0.001), 6);
    check(&w, true);
    assert!(w.namespace.files.len() >= 2, "sharded");
    for o in w.records.iter().filter(|r| r.op == Op::Open) {
        let l = &w.namespace.layouts[&o.inode];
        let rs: Vec<&TraceRecord> = reads_of(&w).filter(|r| r.handle == o.handle).collect();
        assert_eq!((rs[0].offset, rs[0].len), (0, 8));
        assert_eq!(rs[1].offset + rs[1].len as u64, l.source.end);
        assert!(
            rs.windows(2)
                .all(|p| p[1].offset == p[0].offset + p[0].len as u64),
            "file order"
        );
        assert_eq!(
            rs.last().map(|r| r.offset + r.len as u64),
            l.extents.last().map(|e| e.end)
        );
        assert_eq!(l.extents[0].start, l.source.end);
    }
}

#[test]
fn checkpoint_writes_new_files_then_reads_back_the_latest() {
    let p = CheckpointParams::default().scaled(0.01);
    let w = checkpoint_write(&p, 2);
    check(&w, true);
    let files = &w.namespace.files;
    assert_eq!(files.len(), 3 * p.checkpoints);
    let mut written: HashMap<u64, u64> = HashMap::new();
    for r in w.records.iter().filter(|r| r.op == Op::Write) {
        let end = written.entry(r.inode).or_insert(0);
        assert_eq!(r.offset, *end, "appending writes");
        *end += r.len as u64;
        assert_eq!(r.file_size, *end, "size grows with the writes");
    }
    assert!(files.values().all(|f| written[&f.inode] == f.size));
    let first_read = w.records.iter().position(|r| r.op == Op::Read).unwrap();
    assert!(
        w.records[first_read..].iter().all(|r| r.op != Op::Write),
        "reads only at resume"
    );
    let read: HashSet<u64> = reads_of(&w).map(|r| r.inode).collect();
    let newest = *files.keys().max().unwrap();
    assert_eq!(read.len(), 3);
    assert!(
        read.iter().all(|i| newest - i < 3),
        "only the latest checkpoint is read"
    );
}

#[test]
fn strided_streams_keep_their_stride() {
    let p = StridedParams::default().scaled(0.01);
    let w = strided(&p, 3);
    check(&w, true);
    let mut per_stream: HashMap<u32, Vec<u64>> = HashMap::new();
    for r in reads_of(&w) {
        assert_eq!(r.len as u64, p.record);
        per_stream.entry(r.stream).or_default().push(r.offset);
    }
    assert_eq!(per_stream.len(), p.files);
    let strides: HashSet<u64> = per_stream
        .values()
        .map(|offs| {
            let d = offs[1] - offs[0];
            assert!(d > p.record && offs.windows(2).all(|x| x[1] - x[0] == d));
            d
        })
        .collect();
    assert!(strides.len() >= 2, "streams differ in stride");
}

#[test]
fn interleaved_threads_share_a_handle_and_stay_sequential() {
    let p = InterleavedParams::default().scaled(0.01);
    let w = interleaved(&p, 3);
    check(&w, true);
    let mut by_handle: HashMap<u64, HashSet<u32>> = HashMap::new();
    let mut next: HashMap<(u64, u32), u64> = HashMap::new();
    let mut seq_per_handle = 0;
    let mut last: HashMap<u64, u64> = HashMap::new();
    for r in reads_of(&w) {
        by_handle.entry(r.handle).or_default().insert(r.stream);
        if let Some(n) = next.get(&(r.handle, r.stream)) {
            assert_eq!(*n, r.offset, "each thread is sequential");
        }
        next.insert((r.handle, r.stream), r.offset + r.len as u64);
        if last.get(&r.handle) == Some(&r.offset) {
            seq_per_handle += 1;
        }
        last.insert(r.handle, r.offset + r.len as u64);
    }
    assert_eq!(by_handle.len(), p.files);
    assert!(by_handle.values().all(|s| s.len() == p.threads));
    let reads = reads_of(&w).count();
    assert!(
        seq_per_handle * 4 < reads,
        "per handle the requests look non-sequential"
    );
    for h in by_handle.keys() {
        let inode = w.records.iter().find(|r| r.handle == *h).unwrap().inode;
        assert_eq!(coverage(&w, *h), vec![0..w.namespace.files[&inode].size]);
    }
}

#[test]
fn zipf_blocks_concentrate_on_popular_blocks() {
    let p = ZipfParams {
        reads: 4000,
        ..ZipfParams::default()
    };
    let w = zipf_blocks(&p, 11);
    check(&w, true);
    let mut counts: HashMap<(u64, u64), usize> = HashMap::new();
    for r in reads_of(&w) {
        assert_eq!(r.offset % p.block, 0);
        assert!(r.len as u64 > p.block / 2);
        *counts.entry((r.inode, r.offset)).or_default() += 1;
    }
    let mut c: Vec<usize> = counts.values().copied().collect();
    c.sort_unstable_by(|a, b| b.cmp(a));
    let blocks = (p.files as u64 * p.file_size / p.block) as usize;
    let top: usize = c.iter().take(blocks / 10).sum();
    // Zipf(1) over 4096 blocks: the top 10% draw ~74% of the reads.
    assert!(
        top * 100 > 60 * p.reads && top * 100 < 85 * p.reads,
        "top 10%: {top}"
    );
    let files: HashSet<u64> = counts.keys().map(|k| k.0).collect();
    assert!(
        files.len() > p.files / 2,
        "hot blocks are scattered over files"
    );
}

#[test]
fn build_chain_repeats_file_successions() {
    let p = BuildParams::default().scaled(0.2);
    let w = build_chain(&p, 4);
    check(&w, true);
    assert!(w.records.iter().all(|r| r.format == FormatClass::Text));
    // Successor of each file within its compiler process, counted over all builds: the share
    // of successions that follow the file's majority successor.
    let mut per_stream: HashMap<u32, Vec<u64>> = HashMap::new();
    let mut succ: HashMap<u64, HashMap<u64, usize>> = HashMap::new();
    for r in w.records.iter().filter(|r| r.op == Op::Open) {
        let h = per_stream.entry(r.stream).or_default();
        if let Some(&a) = h.last() {
            *succ.entry(a).or_default().entry(r.inode).or_default() += 1;
        }
        h.push(r.inode);
    }
    let (mut top, mut all) = (0, 0);
    for m in succ.values() {
        top += m.values().max().unwrap();
        all += m.values().sum::<usize>();
    }
    let one = top as f64 / all as f64;
    // Shared headers have several successors (which unit includes them decides), so the
    // share is well below 1 but most successions are predictable from the file alone.
    assert!(one > 0.5 && one < 0.95, "one-file successor share {one}");
    // Per translation unit (keyed by its source) the file sequence repeats across builds,
    // except where noise edited it.
    let mut runs: HashMap<u64, Vec<Vec<u64>>> = HashMap::new();
    let mut streams: Vec<(&u32, &Vec<u64>)> = per_stream.iter().collect();
    streams.sort();
    for (_, files) in streams {
        runs.entry(files[0]).or_default().push(files.clone());
    }
    let (mut same, mut total) = (0, 0);
    for r in runs.values() {
        assert_eq!(r.len(), p.builds);
        same += r[1..].iter().filter(|x| **x == r[0]).count();
        total += r.len() - 1;
    }
    let repeat = same as f64 / total as f64;
    assert!(
        repeat > 0.8 && repeat < 1.0,
        "unit sequences repeated: {repeat}"
    );
    let streams: HashSet<u32> = w.records.iter().map(|r| r.stream).collect();
    assert_eq!(
        streams.len(),
        p.builds * p.modules * p.sources_per_module,
        "a cc1 per unit"
    );
}

#[test]
fn cloudphysics_matches_the_csv() {
    let path = std::path::Path::new("/work/shared/data/traces/cloudPhysicsIO.csv");
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("skipped: {} not present", path.display());
        return;
    };
    let (mut reads, mut writes) = (0, 0);
    for line in text.lines().skip(1) {
        match line.split(',').nth(2) {
            Some("28") => reads += 1,
            Some("2a") => writes += 1,
            _ => {}
        }
    }
    assert!(text.lines().count() > 100_000);
    let w = cloudphysics(path).unwrap();
    check(&w, false);
    assert_eq!(w.records.iter().filter(|r| r.op == Op::Read).count(), reads);
    assert_eq!(
        w.records.iter().filter(|r| r.op == Op::Write).count(),
        writes
    );
    assert_eq!(w.records.len(), reads + writes + 2);
    let span = w.records.last().unwrap().time_ns - w.records[0].time_ns;
    // 7,200 ticks of one second: two hours of the VM's pacing.
    assert!((7_100e9..7_300e9).contains(&(span as f64)), "span {span}");
    let fast = cloudphysics_with_tick(path, 1_000_000).unwrap();
    assert_eq!(fast.records.len(), w.records.len());
    assert!(fast.records.last().unwrap().time_ns * 900 < span);
    assert!(cloudphysics(std::path::Path::new("/nonexistent.csv")).is_err());
}

/// Sizes of the suite at full scale (run with `--ignored --nocapture` in release).
#[test]
#[ignore]
fn suite_sizes_at_full_scale() {
    let t = std::time::Instant::now();
    let (mut recs, mut bytes) = (0, 0u64);
    for w in suite(1, 1.0) {
        let io: u64 = w
            .records
            .iter()
            .filter(|r| r.op != Op::Open && r.op != Op::Close)
            .map(|r| r.len as u64)
            .sum();
        let span = w.records.last().map(|r| r.time_ns).unwrap_or(0) as f64 / 1e9;
        println!(
            "{:22} records {:>8} streams {:>5} files {:>6} data {:>7.0} MB I/O {:>7.0} MB span {:>7.1} s",
            w.name,
            w.records.len(),
            w.records.iter().map(|r| r.stream).collect::<HashSet<_>>().len(),
            w.namespace.files.len(),
            w.namespace.total_bytes() as f64 / 1e6,
            io as f64 / 1e6,
            span
        );
        check(&w, true);
        recs += w.records.len();
        bytes += io;
    }
    println!(
        "total records {recs}, I/O {:.1} GB, generated and checked in {:?}",
        bytes as f64 / 1e9,
        t.elapsed()
    );
}
