//! `cairn-nullfs`: the FUSE ceiling for warm reads, used by `bench/run.sh` (system `nullfs`).
//!
//! It serves one read-only file of a given size whose content is a fixed 1 MiB pattern repeated.
//! Every read is answered straight from one buffer allocated at start-up, so what a reader
//! measures on it is the cost of FUSE itself: the kernel round trips, the copies, and fuser's
//! request loop.
//!
//! By default the buffer is the pattern plus 8 MiB (about 9 MiB), which stays in the CPU caches:
//! the kernel's copy of each reply reads from cache, which no file system serving gigabytes can
//! do. With `--resident` the buffer holds the whole file (SIZE bytes, the same content), so a
//! sequential reader makes the kernel copy from DRAM, as it does for any RAM cache: that is the
//! ceiling of an in-memory file system of that size. It is mounted with the same kernel settings as a cairn mount (see
//! `fuse/src/session.rs` and `CairnFs::init` in `fuse/src/lib.rs`): 2 worker threads with cloned
//! FUSE fds, the same init capabilities, `max_readahead` 1 MiB, and the mount's backing-device
//! readahead raised to 1 MiB through sysfs.
//!
//! ```text
//! cairn-nullfs MOUNTPOINT SIZE [--name data.bin] [--threads 2] [--resident]
//! ```
//!
//! SIZE is a byte count, optionally with a K/M/G/KiB/MiB/GiB suffix (binary). The process serves
//! until the mount is unmounted (`fusermount3 -u`) or it gets SIGINT/SIGTERM/SIGHUP, which
//! unmount it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, Request, Session, SessionACL,
};

/// Length of the repeated content pattern.
const PATTERN: usize = 1 << 20;
/// Largest read answered from the buffer without copying; the kernel asks for at most
/// max_pages (256) pages = 1 MiB, so this is generous.
const MAX_REPLY: usize = 8 << 20;
/// Same as a cairn mount (`fuse/src/session.rs`, KERNEL_READAHEAD_KB).
const KERNEL_READAHEAD_KB: u32 = 1024;
/// The file never changes: let the kernel keep attributes and entries for long.
const TTL: Duration = Duration::from_secs(3600);
const FILE_INO: INodeNo = INodeNo(2);

struct NullFs {
    name: String,
    size: u64,
    /// The pattern repeated to `PATTERN + MAX_REPLY` bytes (any read of up to MAX_REPLY bytes at
    /// any offset is one contiguous slice at `offset % PATTERN`), or, when resident, to the whole
    /// file (a read at `offset` is the slice at `offset`).
    buf: Box<[u8]>,
    /// The buffer holds the whole file.
    resident: bool,
    uid: u32,
    gid: u32,
}

impl NullFs {
    fn new(name: String, size: u64, resident: bool) -> Self {
        let mut pattern = vec![0u8; PATTERN];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15; // xorshift64, fixed seed: incompressible, fixed
        for chunk in pattern.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let want = if resident {
            size as usize
        } else {
            PATTERN + MAX_REPLY
        };
        let mut buf = Vec::with_capacity(want);
        while buf.len() < want {
            let n = (want - buf.len()).min(PATTERN);
            buf.extend_from_slice(&pattern[..n]);
        }
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Self {
            name,
            size,
            buf: buf.into_boxed_slice(),
            resident,
            uid,
            gid,
        }
    }

    fn attr(&self, ino: INodeNo) -> FileAttr {
        let dir = ino == INodeNo::ROOT;
        FileAttr {
            ino,
            size: if dir { 0 } else { self.size },
            blocks: if dir { 0 } else { self.size.div_ceil(512) },
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            crtime: SystemTime::UNIX_EPOCH,
            kind: if dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: if dir { 0o555 } else { 0o444 },
            nlink: if dir { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            // cairn reports its block size (1 MiB by default).
            blksize: 1 << 20,
            flags: 0,
        }
    }
}

impl Filesystem for NullFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // The same requests as CairnFs::init.
        use fuser::InitFlags;
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_MAX_PAGES;
        let supported = wanted & config.capabilities();
        let _ = config.add_capabilities(supported);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == INodeNo::ROOT && name.to_str() == Some(self.name.as_str()) {
            reply.entry(&TTL, &self.attr(FILE_INO), Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == INodeNo::ROOT || ino == FILE_INO {
            reply.attr(&TTL, &self.attr(ino));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if ino != FILE_INO {
            reply.error(Errno::EISDIR);
        } else if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            reply.error(Errno::EROFS);
        } else {
            // What cairn answers for an object that did not change since it was last opened.
            reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        if offset >= self.size {
            reply.data(&[]);
            return;
        }
        let len = (size as u64).min(self.size - offset) as usize;
        if self.resident {
            let start = offset as usize;
            reply.data(&self.buf[start..start + len]);
            return;
        }
        let start = (offset % PATTERN as u64) as usize;
        if len <= MAX_REPLY {
            reply.data(&self.buf[start..start + len]);
        } else {
            // Never asked by Linux (reads are at most 1 MiB); correct, if slow.
            let v: Vec<u8> = (0..len).map(|i| self.buf[(start + i) % PATTERN]).collect();
            reply.data(&v);
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            reply.error(Errno::ENOTDIR);
            return;
        }
        let entries = [
            (INodeNo::ROOT, FileType::Directory, "."),
            (INodeNo::ROOT, FileType::Directory, ".."),
            (FILE_INO, FileType::RegularFile, self.name.as_str()),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: fuser::ReplyDirectoryPlus,
    ) {
        if ino != INodeNo::ROOT {
            reply.error(Errno::ENOTDIR);
            return;
        }
        let (dir, file) = (self.attr(INodeNo::ROOT), self.attr(FILE_INO));
        let entries = [
            (INodeNo::ROOT, ".", &dir, Duration::ZERO),
            (INodeNo::ROOT, "..", &dir, Duration::ZERO),
            (FILE_INO, self.name.as_str(), &file, TTL),
        ];
        for (i, (ino, name, attr, ttl)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, i as u64 + 1, name, ttl, attr, Generation(0)) {
                break;
            }
        }
        reply.ok();
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        // As cairn: files are not terminals (isatty() asks on every Python open).
        reply.error(Errno::ENOTTY);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..digits].parse().ok()?;
    let mult: u64 = match s[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// `MAJOR:MINOR` of the newest mount at `mountpoint` (as in fuse/src/session.rs).
fn mount_device(mountpoint: &Path) -> Option<String> {
    let want = mountpoint.to_str()?.replace(' ', "\\040");
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 4 && f[4] == want).then(|| f[2].to_string())
        })
        .last()
}

/// Same as cairn: the kernel keeps a FUSE mount's readahead at 128 KiB whatever init says.
fn raise_kernel_readahead(mountpoint: &Path) {
    let Some(dev) = mount_device(mountpoint) else {
        eprintln!(
            "cairn-nullfs: mount of {} not found in mountinfo",
            mountpoint.display()
        );
        return;
    };
    let path = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    if let Err(e) = std::fs::write(&path, KERNEL_READAHEAD_KB.to_string()) {
        eprintln!("cairn-nullfs: cannot raise kernel readahead ({path}): {e}");
    }
}

fn usage() -> ! {
    eprintln!("usage: cairn-nullfs MOUNTPOINT SIZE [--name data.bin] [--threads 2] [--resident]");
    std::process::exit(2);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut name = "data.bin".to_string();
    let mut threads = 2usize;
    let mut resident = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--resident" => resident = true,
            "--name" => name = args.next().unwrap_or_else(|| usage()),
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|t| t.parse().ok())
                    .filter(|t| (1..=64).contains(t))
                    .unwrap_or_else(|| usage())
            }
            "-h" | "--help" => usage(),
            _ => positional.push(a),
        }
    }
    let [mountpoint, size] = positional.as_slice() else {
        usage()
    };
    let Some(size) = parse_size(size) else {
        usage()
    };
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        usage();
    }
    let mountpoint = PathBuf::from(mountpoint);

    // Block the stop signals in every thread (the session's threads inherit this mask); the main
    // thread takes them with sigwait and unmounts.
    // SAFETY: plain libc signal-set manipulation on local storage.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };

    if resident && usize::try_from(size).is_err() {
        usage();
    }
    let fs = NullFs::new(name.clone(), size, resident);
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::FSName("cairn-nullfs".into()),
        MountOption::Subtype("nullfs".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
        MountOption::DefaultPermissions,
        MountOption::AutoUnmount,
        MountOption::RO,
    ];
    cfg.acl = SessionACL::RootAndOwner;
    cfg.n_threads = Some(threads);
    cfg.clone_fd = true;
    let resolved = mountpoint.canonicalize();
    let mut session = match Session::new(fs, &mountpoint, &cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cairn-nullfs: cannot mount {}: {e}", mountpoint.display());
            std::process::exit(1);
        }
    };
    if let Ok(resolved) = &resolved {
        raise_kernel_readahead(resolved);
    }
    let resolved_for_unmount = resolved.ok();
    eprintln!(
        "cairn-nullfs: serving {}/{name} ({size} bytes{}) on {threads} FUSE threads",
        mountpoint.display(),
        if resident { ", resident in RAM" } else { "" }
    );
    let mut unmounter = session.unmount_callable();
    // Unmounted from outside: the session ends and so do we.
    std::thread::Builder::new()
        .name("nullfs-session".into())
        .spawn(move || {
            let code = match session.run() {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("cairn-nullfs: session ended: {e}");
                    1
                }
            };
            std::process::exit(code);
        })
        .expect("spawn session thread");
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is initialised above, `sig` is a valid out pointer.
    unsafe { libc::sigwait(&set, &mut sig) };
    eprintln!("cairn-nullfs: signal {sig}, unmounting");
    if let Err(e) = unmounter.unmount() {
        eprintln!("cairn-nullfs: unmount through the session: {e}");
    }
    // With auto_unmount the session only closes its watcher socket; unmount explicitly (as cairn
    // does) so the mount is gone when we exit. The session thread then exits the process.
    let target = resolved_for_unmount.unwrap_or(mountpoint);
    for _ in 0..50 {
        if mount_device(&target).is_none() {
            break;
        }
        let ok = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg(&target)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(5));
    eprintln!("cairn-nullfs: session did not end after unmount; exiting");
    std::process::exit(1);
}
