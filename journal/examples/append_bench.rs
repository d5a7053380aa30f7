//! Journal-only write benchmark: appends 1 MiB records (a 16-byte prefix and 1 MiB of data, as
//! the FUSE write path does) from one thread, then syncs; prints MB/s and CPU seconds per GiB
//! for buffered and direct-I/O appends, and the slowest append (a segment roll).
//!
//! `cargo run --release -p cairn-journal --example append_bench -- DIR [MiB]`

use std::time::{Duration, Instant};

use cairn_journal::{Journal, JournalConfig};

/// User + system CPU time of this process.
fn cpu() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid rusage.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: append_bench DIR [MiB]"));
    let mib: u64 = args.next().map_or(1024, |s| s.parse().expect("MiB"));
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i ^ (i >> 9)) as u8).collect();
    for (name, direct) in [("buffered", None), ("direct", Some(256 << 10))] {
        let jdir = dir.join(name);
        let _ = std::fs::remove_dir_all(&jdir);
        let cfg = JournalConfig {
            direct_io_min_bytes: direct,
            ..JournalConfig::new(&jdir)
        };
        let (j, _) = Journal::open(cfg).expect("open");
        let (t0, c0) = (Instant::now(), cpu());
        let mut slowest = Duration::ZERO;
        for i in 0..mib {
            let prefix = [i.to_le_bytes(), (i << 20).to_le_bytes()].concat();
            let t = Instant::now();
            j.append(1, &[&prefix, &data]).expect("append");
            slowest = slowest.max(t.elapsed());
        }
        j.sync(j.last_lsn()).expect("sync");
        let (secs, cpu_s) = (t0.elapsed().as_secs_f64(), (cpu() - c0).as_secs_f64());
        let gib = mib as f64 / 1024.0;
        println!(
            "{name:8} {:6.0} MB/s  cpu {:.2} s/GiB  slowest append {:.1} ms  (direct_io={})",
            mib as f64 * 1.048576 / secs,
            cpu_s / gib,
            slowest.as_secs_f64() * 1e3,
            j.direct_io()
        );
        drop(j);
        std::fs::remove_dir_all(&jdir).expect("cleanup");
    }
}
