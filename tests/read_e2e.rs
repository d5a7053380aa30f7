//! End-to-end read path: objects are put into a private moto S3 server with an independent
//! client (boto3), then read through a real `cairn mount` and compared byte for byte.
//!
//! Needs `/dev/fuse`, `fusermount3` and the test venv: run `scripts/install-test-deps.sh` (or
//! `scripts/test.sh`, which does everything).

mod common;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;

const MINUTE: Duration = Duration::from_secs(60);

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn names(path: &Path) -> BTreeSet<String> {
    dir_names(path).into_iter().collect()
}

// ---------------------------------------------------------------------------------------------
// Harness self-test (no mount): the moto server and the admin client work.
// ---------------------------------------------------------------------------------------------

#[test]
fn harness_moto_and_admin_client_roundtrip() {
    let server = S3Server::start();
    assert!(server.endpoint().starts_with("http://127.0.0.1:"));
    assert!(!server.enforces_auth());

    server.put("a/b.txt", b"hello");
    server.put("empty", b"");
    server.admin(&["put-bytes", server.bucket(), "text", "some text"], None);
    let tmp = TempDir::new("selftest");
    let f = tmp.join("data.bin");
    let sha = write_pseudo_random_file(&f, 7, 3 * MIB as u64 + 5);
    assert_eq!(sha, sha256_bytes(&pseudo_random_bytes(7, 3 * MIB + 5)));
    server.put_file("big/data.bin", &f);
    server.put_many(&[("m/1", b"one"), ("m/2", &[0u8, 255, 10, 13])]);

    let listed: BTreeSet<(String, u64)> = server.list("").into_iter().collect();
    let want: BTreeSet<(String, u64)> = [
        ("a/b.txt", 5u64),
        ("big/data.bin", 3 * MIB as u64 + 5),
        ("empty", 0),
        ("m/1", 3),
        ("m/2", 4),
        ("text", 9),
    ]
    .iter()
    .map(|(k, s)| (k.to_string(), *s))
    .collect();
    assert_eq!(listed, want);
    assert_eq!(server.list("m/").len(), 2);

    assert_eq!(server.head("a/b.txt"), Some(5));
    assert_eq!(server.head("missing"), None);
    server.delete("a/b.txt");
    assert_eq!(server.head("a/b.txt"), None);

    // moto must store keys that are not valid path names literally; the invalid-key mount test
    // relies on it.
    let odd = [
        "inv/a//b",
        "inv/./x",
        "inv/x/../y",
        "inv/both",
        "inv/both/child",
    ];
    let objs: Vec<(&str, &[u8])> = odd.iter().map(|k| (*k, &b"z"[..])).collect();
    server.put_many(&objs);
    let got: BTreeSet<String> = server.list("inv/").into_iter().map(|(k, _)| k).collect();
    assert_eq!(got, set(&odd));
}

// ---------------------------------------------------------------------------------------------
// Byte-exact reads of objects at the interesting sizes.
// ---------------------------------------------------------------------------------------------

#[test]
fn read_objects_of_edge_sizes_byte_exact() {
    let bs = block_size();
    let server = S3Server::start();
    let tmp = TempDir::new("sizes");

    let sizes: Vec<usize> = vec![0, 1, 2, bs - 1, bs, bs + 1, 2 * bs + 3];
    let mut expected = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let key = format!("sizes/{size}.bin");
        let sha = if size <= 2 {
            // tiny ones go through stdin, the rest through files
            let data = pseudo_random_bytes(100 + i as u64, size);
            server.put(&key, &data);
            sha256_bytes(&data)
        } else {
            let path = tmp.join(format!("{size}.bin"));
            let sha = write_pseudo_random_file(&path, 100 + i as u64, size as u64);
            server.put_file(&key, &path);
            sha
        };
        expected.push((key, size as u64, sha));
    }

    let mut mount = Mount::start(&server, &[]);
    let root = mount.path().to_path_buf();
    let exp = expected.clone();
    with_deadline("read sizes", 5 * MINUTE, move || {
        for (key, size, sha) in &exp {
            let p = root.join(key);
            let md = fs::metadata(&p).unwrap_or_else(|e| panic!("stat {key}: {e}"));
            assert!(md.is_file(), "{key} should be a regular file");
            assert_eq!(md.len(), *size, "st_size of {key}");
            let (got, n) = sha256_file(&p).unwrap_or_else(|e| panic!("read {key}: {e}"));
            assert_eq!(n, *size, "bytes read from {key}");
            assert_eq!(&got, sha, "sha256 of {key} (1 MiB reads)");
            // odd-sized reads across block boundaries, from a fresh descriptor
            let (got, n) = sha256_reader(File::open(&p).unwrap(), 4097).unwrap();
            assert_eq!((n, &got), (*size, sha), "sha256 of {key} (4097-byte reads)");
        }
        // tiny files also compared as whole buffers
        assert_eq!(fs::read(root.join("sizes/0.bin")).unwrap(), b"");
        assert_eq!(
            fs::read(root.join("sizes/1.bin")).unwrap(),
            pseudo_random_bytes(101, 1)
        );
    });

    let mut want = BTreeSet::new();
    for (key, _, _) in &expected {
        want.insert(key.trim_start_matches("sizes/").to_string());
    }
    assert_eq!(names(&mount.join("sizes")), want);
    mount.assert_alive();
}

#[test]
fn read_large_object_byte_exact() {
    // 100 MiB + a bit: several blocks, a partial last block, multipart-uploaded.
    let size: u64 = 100 * MIB as u64 + 4321;
    let server = S3Server::start();
    let tmp = TempDir::new("large");
    let local = tmp.join("large.bin");
    let sha = write_pseudo_random_file(&local, 0xC0FFEE, size);
    server.put_file("data/large.bin", &local);
    assert_eq!(server.head("data/large.bin"), Some(size));

    let mut mount = Mount::start(&server, &[]);
    let p = mount.join("data/large.bin");
    let p2 = p.clone();
    let (got, n) = with_deadline("sha256 of 100 MiB", 10 * MINUTE, move || {
        sha256_file(&p2).expect("read large object")
    });
    assert_eq!(n, size, "bytes read");
    assert_eq!(got, sha, "sha256 of the 100 MiB+ object");
    assert_eq!(fs::metadata(&p).unwrap().len(), size);

    // random reads on the large object too (crossing block boundaries)
    let bs = block_size().to_string();
    let out = run_support_script(
        "pread_check.py",
        &[
            p.to_str().unwrap(),
            local.to_str().unwrap(),
            "--seed",
            "42",
            "--reads",
            "100",
            "--max-len",
            &(4 * MIB).to_string(),
            "--boundary",
            &bs,
        ],
        10 * MINUTE,
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
    mount.assert_alive();
}

// ---------------------------------------------------------------------------------------------
// Listings: common prefixes, `dir/` markers, empty marker dirs; find and stat.
// ---------------------------------------------------------------------------------------------

#[test]
fn nested_listings_find_and_stat() {
    let server = S3Server::start();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("top.txt", b"top level\n".to_vec()),
        ("empty.txt", Vec::new()),
        ("d1/f1", pseudo_random_bytes(1, 1000)),
        ("d1/d2/f2", pseudo_random_bytes(2, 20_000)),
        ("d1/d2/d3/f3", pseudo_random_bytes(3, 3)),
        ("m-full/inner.txt", b"inside a marker dir".to_vec()),
        ("mixed/deep/x.bin", pseudo_random_bytes(4, 70_000)),
        ("many/f00", b"0".to_vec()),
    ];
    // many entries in one directory (more than one listing page would be 1000; keep it fast)
    let many: Vec<(String, Vec<u8>)> = (1..150)
        .map(|i| (format!("many/f{i:02}"), format!("{i}").into_bytes()))
        .collect();
    let markers = ["m-empty/", "m-full/", "m-full/sub/", "mixed/"];

    let mut objs: Vec<(&str, &[u8])> = files.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    objs.extend(many.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
    objs.extend(markers.iter().map(|k| (*k, &b""[..])));
    server.put_many(&objs);

    let mut mount = Mount::start(&server, &[]);
    let root = mount.path().to_path_buf();

    // read_dir at several levels
    assert_eq!(
        names(&root),
        set(&[
            "d1",
            "empty.txt",
            "m-empty",
            "m-full",
            "many",
            "mixed",
            "top.txt"
        ]),
        "root listing"
    );
    assert_eq!(names(&root.join("d1")), set(&["d2", "f1"]));
    assert_eq!(names(&root.join("d1/d2")), set(&["d3", "f2"]));
    assert_eq!(names(&root.join("d1/d2/d3")), set(&["f3"]));
    assert_eq!(
        names(&root.join("m-empty")),
        set(&[]),
        "a `dir/` marker alone is an empty directory"
    );
    assert_eq!(names(&root.join("m-full")), set(&["inner.txt", "sub"]));
    assert_eq!(names(&root.join("m-full/sub")), set(&[]));
    assert_eq!(names(&root.join("mixed")), set(&["deep"]));
    assert_eq!(names(&root.join("mixed/deep")), set(&["x.bin"]));
    let many_names = names(&root.join("many"));
    assert_eq!(many_names.len(), 150, "many/ has 150 files");

    // the whole tree, as walked with read_dir + lstat, and as `find` prints it
    let mut want: BTreeSet<(String, String, u64)> = BTreeSet::new();
    let mut dirs = BTreeSet::new();
    let all_files: Vec<(String, u64)> = files
        .iter()
        .map(|(k, v)| (k.to_string(), v.len() as u64))
        .chain(many.iter().map(|(k, v)| (k.clone(), v.len() as u64)))
        .collect();
    for (k, len) in &all_files {
        want.insert(("f".into(), k.clone(), *len));
        let mut p = Path::new(k).parent();
        while let Some(d) = p {
            if !d.as_os_str().is_empty() {
                dirs.insert(d.to_string_lossy().into_owned());
            }
            p = d.parent();
        }
    }
    for m in markers {
        dirs.insert(m.trim_end_matches('/').to_string());
    }
    for d in &dirs {
        want.insert(("d".into(), d.clone(), 0));
    }
    assert_eq!(walk(&root), want, "tree walked with read_dir/lstat");

    let out = run_with_deadline(
        Command::new("find")
            .arg(&root)
            .args(["-mindepth", "1", "-printf", "%y %s %P\\n"]),
        2 * MINUTE,
    );
    assert!(out.status.success(), "find failed: {:?}", out);
    let found: BTreeSet<(String, String, u64)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut it = l.splitn(3, ' ');
            let t = it.next().unwrap().to_string();
            let s: u64 = it.next().unwrap().parse().unwrap();
            let p = it.next().unwrap().to_string();
            let s = if t == "f" { s } else { 0 };
            (t, p, s)
        })
        .collect();
    assert_eq!(found, want, "`find -printf '%y %s %P'` output");

    // stat(1) and metadata
    for (k, len) in &all_files {
        let p = root.join(k);
        let md = fs::metadata(&p).unwrap();
        assert!(md.is_file(), "{k} is a file");
        assert_eq!(md.len(), *len, "size of {k}");
        assert!(
            md.mode() & 0o444 != 0,
            "{k} is readable (mode {:o})",
            md.mode()
        );
        assert_eq!(md.nlink(), 1, "{k} nlink");
    }
    for d in &dirs {
        let md = fs::metadata(root.join(d)).unwrap();
        assert!(md.is_dir(), "{d} is a directory");
        assert!(
            md.mode() & 0o500 == 0o500,
            "{d} is readable and searchable (mode {:o})",
            md.mode()
        );
    }
    let out = run_with_deadline(
        Command::new("stat")
            .args(["-c", "%F|%s|%n"])
            .arg(root.join("top.txt"))
            .arg(root.join("empty.txt"))
            .arg(root.join("d1"))
            .arg(root.join("m-empty")),
        MINUTE,
    );
    assert!(out.status.success(), "stat failed: {out:?}");
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once('|').unwrap().0.to_string())
        .collect();
    assert_eq!(lines.len(), 4, "stat output: {lines:?}");
    assert_eq!(lines[0], "regular file|10", "stat top.txt");
    assert_eq!(lines[1], "regular empty file|0", "stat empty.txt");
    // a directory's size is the filesystem's choice
    assert!(lines[2].starts_with("directory|"), "stat d1: {}", lines[2]);
    assert!(
        lines[3].starts_with("directory|"),
        "stat m-empty: {}",
        lines[3]
    );

    // contents
    for (k, v) in &files {
        assert_eq!(&fs::read(root.join(k)).unwrap(), v, "contents of {k}");
    }
    assert_eq!(fs::read(root.join("many/f42")).unwrap(), b"42");

    // missing names
    for missing in ["nope", "d1/nope", "d1/f1x", "m-empty/x", "top.txt/x"] {
        let err = fs::metadata(root.join(missing)).expect_err(missing);
        assert!(
            err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(libc::ENOTDIR),
            "stat {missing}: {err}"
        );
    }
    mount.assert_alive();
}

// ---------------------------------------------------------------------------------------------
// Random offsets and EOF, from a separate Python process.
// ---------------------------------------------------------------------------------------------

#[test]
fn random_offset_reads_and_past_eof() {
    let bs = block_size();
    let server = S3Server::start();
    let tmp = TempDir::new("pread");
    let cases = [(3 * bs + 777) as u64, (bs + 1) as u64, 1, 0];
    let mut locals = Vec::new();
    for (i, size) in cases.iter().enumerate() {
        let local = tmp.join(format!("r{i}.bin"));
        write_pseudo_random_file(&local, 9000 + i as u64, *size);
        server.put_file(&format!("r/{i}.bin"), &local);
        locals.push(local);
    }
    let mut mount = Mount::start(&server, &[]);
    for (i, local) in locals.iter().enumerate() {
        let mounted = mount.join(format!("r/{i}.bin"));
        let out = run_support_script(
            "pread_check.py",
            &[
                mounted.to_str().unwrap(),
                local.to_str().unwrap(),
                "--seed",
                &(i + 1).to_string(),
                "--reads",
                "300",
                "--max-len",
                &(2 * MIB).to_string(),
                "--boundary",
                &bs.to_string(),
            ],
            10 * MINUTE,
        );
        eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
    }

    // the same from Rust: seek past EOF and read returns 0
    let mut f = File::open(mount.join("r/1.bin")).unwrap();
    f.seek(SeekFrom::Start((bs + 1) as u64 + 10)).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        f.read(&mut buf).unwrap(),
        0,
        "read past EOF returns 0 bytes"
    );
    assert_eq!(
        f.read_at(&mut buf, bs as u64).unwrap(),
        1,
        "read_at the last byte"
    );
    mount.assert_alive();
}

// ---------------------------------------------------------------------------------------------
// Eight concurrent readers on one file.
// ---------------------------------------------------------------------------------------------

#[test]
fn concurrent_readers_on_one_file() {
    let bs = block_size();
    let size = 2 * bs + 12345;
    let server = S3Server::start();
    let tmp = TempDir::new("concurrent");
    let local = tmp.join("c.bin");
    let sha = write_pseudo_random_file(&local, 77, size as u64);
    server.put_file("c.bin", &local);
    let mut mount = Mount::start(&server, &[]);
    let path = Arc::new(mount.join("c.bin"));
    let sha = Arc::new(sha);

    with_deadline("8 concurrent readers", 10 * MINUTE, move || {
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let chunks = [
            4096usize,
            16384,
            65536,
            131072,
            MIB,
            4 * MIB,
            100_000,
            1_000_003,
        ];
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let path = Arc::clone(&path);
                let sha = Arc::clone(&sha);
                let barrier = Arc::clone(&barrier);
                let chunk = chunks[t];
                thread::spawn(move || {
                    barrier.wait();
                    let f = File::open(&*path).unwrap();
                    let got = if t % 2 == 0 {
                        // sequential reads
                        sha256_reader(&f, chunk).unwrap()
                    } else {
                        // positional reads in a shuffled order, assembled then hashed
                        let mut buf = vec![0u8; size];
                        let mut offs: Vec<usize> = (0..size).step_by(chunk).collect();
                        let mut rng = SplitMix64::new(t as u64);
                        for i in (1..offs.len()).rev() {
                            offs.swap(i, rng.below(i as u64 + 1) as usize);
                        }
                        for off in offs {
                            let end = (off + chunk).min(size);
                            f.read_exact_at(&mut buf[off..end], off as u64)
                                .unwrap_or_else(|e| panic!("thread {t}: read_at {off}: {e}"));
                        }
                        (sha256_bytes(&buf), size as u64)
                    };
                    assert_eq!(got.1, size as u64, "thread {t} read length");
                    assert_eq!(got.0, *sha, "thread {t} (chunk {chunk}) sha256");
                })
            })
            .collect();
        let mut failures = Vec::new();
        for (t, h) in handles.into_iter().enumerate() {
            if let Err(e) = h.join() {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("thread {t}: {msg}"));
            }
        }
        assert!(
            failures.is_empty(),
            "reader failures:\n{}",
            failures.join("\n")
        );
    });
    mount.assert_alive();
}

// ---------------------------------------------------------------------------------------------
// Prefix mounts show only their subtree.
// ---------------------------------------------------------------------------------------------

#[test]
fn prefix_mount_shows_only_that_subtree() {
    let server = S3Server::start();
    server.put_many(&[
        ("root.txt", b"root"),
        ("some/prefix/a.txt", b"A"),
        ("some/prefix/sub/b.txt", b"BB"),
        ("some/prefix/sub/deeper/c.txt", b"CCC"),
        ("some/prefixed-sibling.txt", b"not mine"),
        ("some/prefix-dir/x.txt", b"not mine either"),
        ("some/other/d.txt", b"D"),
    ]);
    let want: BTreeSet<(String, String, u64)> = [
        ("f", "a.txt", 1u64),
        ("d", "sub", 0),
        ("f", "sub/b.txt", 2),
        ("d", "sub/deeper", 0),
        ("f", "sub/deeper/c.txt", 3),
    ]
    .iter()
    .map(|(t, p, s)| (t.to_string(), p.to_string(), *s))
    .collect();

    for prefix in ["some/prefix", "some/prefix/"] {
        let mut mount = MountSpec::s3_prefix(&server, prefix).start();
        assert_eq!(walk(mount.path()), want, "tree of s3://bucket/{prefix}");
        assert_eq!(fs::read(mount.join("a.txt")).unwrap(), b"A");
        assert_eq!(fs::read(mount.join("sub/deeper/c.txt")).unwrap(), b"CCC");
        for outside in [
            "root.txt",
            "prefix",
            "some",
            "prefixed-sibling.txt",
            "other",
        ] {
            assert!(
                fs::symlink_metadata(mount.join(outside)).is_err(),
                "{outside} must not be visible in a mount of {prefix}"
            );
        }
        mount.assert_alive();
    }
}

#[test]
fn endpoint_and_region_given_as_flags() {
    // Same as the env-based mounts, but the endpoint and region come from the CLI flags.
    let server = S3Server::start();
    server.put("flag.txt", b"via flags");
    let mut mount = MountSpec::s3(&server)
        .without_env("AWS_ENDPOINT_URL")
        .without_env("AWS_REGION")
        .args(&[
            "--endpoint-url",
            &server.endpoint(),
            "--region",
            server.region(),
        ])
        .start();
    assert_eq!(fs::read(mount.join("flag.txt")).unwrap(), b"via flags");
    mount.assert_alive();
}

// ---------------------------------------------------------------------------------------------
// Keys that cannot be file names.
// ---------------------------------------------------------------------------------------------

/// S3 keys are arbitrary strings; POSIX names are not. The keys below cannot be represented
/// faithfully. Expected behaviour (what this test asserts):
///
/// 1. Listing the directory that holds them succeeds and cairn keeps running.
/// 2. No entry is ever shown whose name is empty, `.`/`..` (beyond the usual one each), contains
///    `/`, or is longer than 255 bytes: `inv/a//b` (empty segment), `inv/./x` (`.` segment),
///    `inv/x/../y` (`..` segment) and the 300-byte name are never shown as those names.
/// 3. `a` and `x` are real common prefixes (`inv/a/`, `inv/x/`); cairn may show them as
///    directories or hide them, but if shown they are directories whose listing contains none of
///    the invalid names (i.e. they list as empty).
/// 4. `inv/both` is both an object and the prefix of `inv/both/child`: `both` is shown once, as a
///    directory holding `child`, and `both/child` reads its own bytes (never those of `inv/both`).
/// 5. Every valid object in the same directory (`good.txt`, `sub/good2.txt`, a 255-byte name)
///    lists, stats and reads byte-exact.
#[test]
fn invalid_keys_do_not_break_the_directory() {
    let server = S3Server::start();
    let long300 = format!("inv/{}", "L".repeat(300));
    let name255 = "n".repeat(255);
    let long255 = format!("inv/{name255}");
    let objs: Vec<(&str, &[u8])> = vec![
        ("inv/good.txt", b"good bytes"),
        ("inv/sub/good2.txt", b"good two"),
        (&long255, b"255 is fine"),
        ("inv/a//b", b"EMPTY SEGMENT"),
        ("inv/./x", b"DOT SEGMENT"),
        ("inv/x/../y", b"DOTDOT SEGMENT"),
        (&long300, b"TOO LONG"),
        ("inv/both", b"FILE BOTH"),
        ("inv/both/child", b"child bytes"),
        ("outside.txt", b"outside"),
    ];
    server.put_many(&objs);
    // precondition: moto stored every key literally
    let stored: BTreeSet<String> = server.list("").into_iter().map(|(k, _)| k).collect();
    let want_keys: BTreeSet<String> = objs.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(stored, want_keys, "moto should store the keys as given");

    let mut mount = Mount::start(&server, &[]);
    let root = mount.path().to_path_buf();
    let inv = root.join("inv");

    // (1) + (2): raw listing
    let raw = raw_readdir(&inv).unwrap_or_else(|e| {
        panic!(
            "(1) listing inv/ must succeed: {e}; cairn stderr:\n{}",
            mount.log()
        )
    });
    let dots = raw.iter().filter(|n| n.as_slice() == b".").count();
    let dotdots = raw.iter().filter(|n| n.as_slice() == b"..").count();
    assert!(
        dots <= 1 && dotdots <= 1,
        "(2) extra . or .. entries in inv/: {}",
        show_names(&raw)
    );
    for n in &raw {
        let all = show_names(&raw);
        assert!(!n.is_empty(), "(2) empty name in listing of inv/: {all}");
        assert!(
            !n.contains(&b'/'),
            "(2) name with '/' in listing of inv/: {all}"
        );
        assert!(
            n.len() <= 255,
            "(2) name longer than 255 bytes in listing of inv/: {all}"
        );
    }
    let listed = names(&inv);
    let required = set(&["good.txt", "sub", "both", &name255]);
    let optional = set(&["a", "x"]);
    assert!(
        required.is_subset(&listed),
        "(5) valid entries missing from inv/: listed {listed:?}"
    );
    let extra: BTreeSet<_> = listed.difference(&required).cloned().collect();
    assert!(
        extra.is_subset(&optional),
        "(2) unexpected entries in inv/: {extra:?}"
    );
    assert_eq!(
        dir_names(&inv).iter().filter(|n| *n == "both").count(),
        1,
        "(4) `both` is listed exactly once"
    );

    // (3) a and x, if shown, are directories without the invalid names
    for d in ["a", "x"] {
        if listed.contains(d) {
            let p = inv.join(d);
            assert!(
                fs::metadata(&p).unwrap().is_dir(),
                "(3) inv/{d} shown but not a directory"
            );
            let raw = raw_readdir(&p).unwrap_or_else(|e| panic!("(3) listing inv/{d}: {e}"));
            let real: Vec<_> = raw
                .iter()
                .filter(|n| n.as_slice() != b"." && n.as_slice() != b"..")
                .collect();
            assert!(
                real.is_empty(),
                "(3) inv/{d} should list as empty, got {}",
                show_names(&raw)
            );
            let dots = raw.iter().filter(|n| n.as_slice() == b".").count();
            let dotdots = raw.iter().filter(|n| n.as_slice() == b"..").count();
            assert!(
                dots <= 1 && dotdots <= 1,
                "(2) extra . or .. in inv/{d}: {}",
                show_names(&raw)
            );
        }
    }

    // (4) both is a directory holding child
    let both = inv.join("both");
    let md = fs::metadata(&both).unwrap();
    assert!(
        md.is_dir(),
        "(4) inv/both must be a directory (it is a prefix of inv/both/child)"
    );
    assert_eq!(names(&both), set(&["child"]), "(4) inv/both holds child");
    assert_eq!(
        fs::read(both.join("child")).unwrap(),
        b"child bytes",
        "(4) both/child bytes"
    );

    // (5) valid objects read byte-exact
    assert_eq!(fs::read(inv.join("good.txt")).unwrap(), b"good bytes");
    assert_eq!(fs::read(inv.join("sub/good2.txt")).unwrap(), b"good two");
    assert_eq!(fs::read(inv.join(&name255)).unwrap(), b"255 is fine");
    assert_eq!(fs::metadata(inv.join("good.txt")).unwrap().len(), 10);

    // lookups of the invalid names never return the wrong object
    for (p, what) in [
        (inv.join("a").join("b"), "inv/a/b"),
        (inv.join("y"), "inv/y (x/../y resolves here in the kernel)"),
        (inv.join("x").join("y"), "inv/x/y"),
    ] {
        match fs::read(&p) {
            Err(_) => {}
            Ok(data) => panic!(
                "{what} must not exist, but read {:?}",
                String::from_utf8_lossy(&data)
            ),
        }
    }
    assert!(
        fs::metadata(inv.join("L".repeat(300))).is_err(),
        "300-byte name"
    );

    // the rest of the mount still works
    assert_eq!(names(&root), set(&["inv", "outside.txt"]));
    assert_eq!(fs::read(root.join("outside.txt")).unwrap(), b"outside");
    mount.assert_alive();
}
