//! cairn's FUSE adapter: translates `fuser` callbacks into gateway calls and gateway results into
//! kernel replies. It decides nothing about caching or fetching; every request is handed to the
//! tokio runtime so the FUSE worker threads never wait on the network.

mod attr;
mod session;

pub use session::{mount, MountOptions, MountedSession};

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use cairn_gateway::error::FsError;
use cairn_gateway::gateway::{BeginRead, Gateway};
use fuser::{
    Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, KernelConfig, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, Request,
};
use fuser::{RenameFlags, ReplyCreate, ReplyWrite, TimeOrNow, WriteFlags};

use attr::AttrMapper;

/// The `fuser::Filesystem` of a cairn mount.
pub struct CairnFs {
    gw: Arc<Gateway>,
    rt: tokio::runtime::Handle,
    attrs: AttrMapper,
}

impl CairnFs {
    /// An adapter over `gw`, running async work on `rt`; files are shown as owned by uid/gid.
    pub fn new(gw: Arc<Gateway>, rt: tokio::runtime::Handle, uid: u32, gid: u32) -> Self {
        let attrs = AttrMapper {
            uid,
            gid,
            blksize: gw.config().fetch.block_size as u32,
        };
        Self { gw, rt, attrs }
    }

    fn ttl(&self) -> Duration {
        self.gw.attr_ttl()
    }

    /// Replies once everything journaled so far is durable (fsync, fdatasync, fsyncdir, close).
    fn reply_after_sync(&self, reply: ReplyEmpty) {
        let gw = self.gw.clone();
        self.rt.spawn(async move {
            match gw.sync().await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    /// The caller as owner of a new node, when it is not the mount's owner (whose files need no
    /// recorded owner).
    fn owner(&self, req: &Request) -> Option<(u32, u32)> {
        let (uid, gid) = (req.uid(), req.gid());
        (uid != self.attrs.uid || gid != self.attrs.gid).then_some((uid, gid))
    }
}

fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

fn name_str(name: &OsStr) -> Option<String> {
    name.to_str().map(str::to_string)
}

impl Filesystem for CairnFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        use fuser::InitFlags;
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_MAX_PAGES;
        let supported = wanted & config.capabilities();
        let _ = config.add_capabilities(supported);
        // Let the kernel ask for big sequential reads; our own readahead works on top.
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name_str(name) else {
            // Keys are UTF-8, so a non-UTF-8 name cannot exist in the bucket.
            reply.error(Errno::ENOENT);
            return;
        };
        let gw = self.gw.clone();
        let attrs = self.attrs;
        let ttl = self.ttl();
        self.rt.spawn(async move {
            match gw.lookup(parent.0, &name).await {
                Ok(a) => reply.entry(&ttl, &attrs.to_fuse(&a), Generation(0)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let gw = self.gw.clone();
        let attrs = self.attrs;
        let ttl = self.ttl();
        self.rt.spawn(async move {
            match gw.getattr_handle(ino.0, fh.map(|f| f.0)).await {
                Ok(a) => reply.attr(&ttl, &attrs.to_fuse(&a)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.0 & libc::O_ACCMODE != libc::O_RDONLY;
        let truncate = write && flags.0 & libc::O_TRUNC != 0;
        if write && !self.gw.writable() {
            reply.error(Errno::EROFS);
            return;
        }
        let gw = self.gw.clone();
        let pid = req.pid();
        self.rt.spawn(async move {
            match gw.open_by(ino.0, write, truncate, pid).await {
                Ok(opened) => {
                    let f = if opened.keep_page_cache {
                        FopenFlags::FOPEN_KEEP_CACHE
                    } else {
                        FopenFlags::empty()
                    };
                    reply.opened(FileHandle(opened.fh), f)
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        // Planned here, on the FUSE thread: warm data is answered with no hop to the runtime;
        // anything else continues as a task whose fetches have already started.
        let _rt = self.rt.enter();
        match self.gw.begin_read(fh.0, offset, size, req.pid()) {
            BeginRead::Ready(Ok(data)) => reply.data(&data),
            BeginRead::Ready(Err(e)) => reply.error(errno(&e)),
            BeginRead::Pending(read) => {
                self.rt.spawn(async move {
                    match read.await {
                        Ok(data) => reply.data(&data),
                        Err(e) => reply.error(errno(&e)),
                    }
                });
            }
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.gw.release(fh.0);
        reply.ok();
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(): what was written is durable in the journal before close returns.
        self.reply_after_sync(reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.reply_after_sync(reply);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        // Local disk only: done here, without a copy or a hop to the runtime.
        if let Some(r) = self.gw.write_now(fh.0, offset, data) {
            match r {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(&e)),
            }
            return;
        }
        let gw = self.gw.clone();
        let data = data.to_vec();
        self.rt.spawn(async move {
            match gw.write(fh.0, offset, &data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let Some(name) = name_str(name) else {
            reply.error(Errno::EINVAL);
            return;
        };
        if !self.gw.writable() {
            reply.error(Errno::EROFS);
            return;
        }
        if mode & libc::S_IFMT != 0 && mode & libc::S_IFMT != libc::S_IFREG {
            reply.error(Errno::ENOTSUP);
            return;
        }
        let gw = self.gw.clone();
        let attrs = self.attrs;
        let ttl = self.ttl();
        let exclusive = flags & libc::O_EXCL != 0;
        let truncate = flags & libc::O_TRUNC != 0;
        let owner = self.owner(req);
        self.rt.spawn(async move {
            match gw
                .create(parent.0, &name, mode & !umask, exclusive, truncate, owner)
                .await
            {
                Ok((a, opened)) => reply.created(
                    &ttl,
                    &attrs.to_fuse(&a),
                    Generation(0),
                    FileHandle(opened.fh),
                    FopenFlags::empty(),
                ),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let Some(name) = name_str(name) else {
            reply.error(Errno::EINVAL);
            return;
        };
        use cairn_gateway::write::records::SpecialKind;
        let kind = match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => None,
            libc::S_IFIFO => Some(SpecialKind::Fifo),
            libc::S_IFSOCK => Some(SpecialKind::Socket),
            libc::S_IFCHR => Some(SpecialKind::CharDev),
            libc::S_IFBLK => Some(SpecialKind::BlockDev),
            _ => {
                reply.error(Errno::EINVAL);
                return;
            }
        };
        let gw = self.gw.clone();
        let attrs = self.attrs;
        let ttl = self.ttl();
        let owner = self.owner(req);
        self.rt.spawn(async move {
            let r = match kind {
                None => gw
                    .create(parent.0, &name, mode & !umask, true, false, owner)
                    .await
                    .map(|(a, opened)| {
                        gw.release(opened.fh);
                        a
                    }),
                Some(k) => {
                    gw.mknod(parent.0, &name, k, mode & !umask, rdev, "", owner)
                        .await
                }
            };
            match r {
                Ok(a) => reply.entry(&ttl, &attrs.to_fuse(&a), Generation(0)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let (Some(name), Some(target)) = (name_str(link_name), target.to_str()) else {
            reply.error(Errno::EINVAL);
            return;
        };
        let target = target.to_string();
        let gw = self.gw.clone();
        let attrs = self.attrs;
        let ttl = self.ttl();
        let owner = self.owner(req);
        self.rt.spawn(async move {
            use cairn_gateway::write::records::SpecialKind;
            match gw
                .mknod(
                    parent.0,
                    &name,
                    SpecialKind::Symlink,
                    0o777,
                    0,
                    &target,
                    owner,
                )
                .await
            {
                Ok(a) => reply.entry(&ttl, &attrs.to_fuse(&a), Generation(0)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let gw = self.gw.clone();
        self.rt.spawn(async move {
            match gw.readlink(ino.0).await {
                Ok(t) => reply.data(t.as_bytes()),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let gw = self.gw.clone();
        let attrs = self.attrs;
        let ttl = self.ttl();
        let when = |t: TimeOrNow| match t {
            TimeOrNow::SpecificTime(t) => t,
            TimeOrNow::Now => std::time::SystemTime::now(),
        };
        let (atime, mtime) = (atime.map(when), mtime.map(when));
        if !self.gw.writable() {
            reply.error(Errno::EROFS);
            return;
        }
        self.rt.spawn(async move {
            match gw
                .setattr(ino.0, fh.map(|f| f.0), size, mode, (uid, gid), atime, mtime)
                .await
            {
                Ok(a) => reply.attr(&ttl, &attrs.to_fuse(&a)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some(name) = name_str(name) else {
            reply.error(Errno::ENOENT);
            return;
        };
        let gw = self.gw.clone();
        self.rt.spawn(async move {
            match gw.unlink(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let Some(name) = name_str(name) else {
            reply.error(Errno::EINVAL);
            return;
        };
        let gw = self.gw.clone();
        let attrs = self.attrs;
        let ttl = self.ttl();
        let owner = self.owner(req);
        self.rt.spawn(async move {
            match gw.mkdir(parent.0, &name, mode & !umask, owner).await {
                Ok(a) => reply.entry(&ttl, &attrs.to_fuse(&a), Generation(0)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some(name) = name_str(name) else {
            reply.error(Errno::ENOENT);
            return;
        };
        let gw = self.gw.clone();
        self.rt.spawn(async move {
            match gw.rmdir(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (Some(name), Some(newname)) = (name_str(name), name_str(newname)) else {
            reply.error(Errno::EINVAL);
            return;
        };
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            reply.error(Errno::EINVAL);
            return;
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let gw = self.gw.clone();
        self.rt.spawn(async move {
            match gw
                .rename(parent.0, &name, newparent.0, &newname, no_replace)
                .await
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let gw = self.gw.clone();
        self.rt.spawn(async move {
            match gw.opendir(ino.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listing = match self.gw.dir_listing(fh.0) {
            Ok(l) => l,
            Err(e) => return reply.error(errno(&e)),
        };
        // Offsets: 0 is the start, 1 is after ".", 2 after "..", 2+i+1 after entry i.
        let mut off = offset;
        if off == 0 {
            if reply.add(ino, 1, fuser::FileType::Directory, ".") {
                return reply.ok();
            }
            off = 1;
        }
        if off == 1 {
            if reply.add(ino, 2, fuser::FileType::Directory, "..") {
                return reply.ok();
            }
            off = 2;
        }
        for (i, e) in listing.entries.iter().enumerate().skip((off - 2) as usize) {
            let kind = AttrMapper::kind(e.attr.kind);
            if reply.add(INodeNo(e.attr.ino), 3 + i as u64, kind, &e.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let listing = match self.gw.dir_listing(fh.0) {
            Ok(l) => l,
            Err(e) => return reply.error(errno(&e)),
        };
        let ttl = self.ttl();
        let mut off = offset;
        if off < 2 {
            // "." and ".." carry no attributes the kernel may cache (ino 0 entries are skipped
            // for lookup-count purposes, so give the directory's own for ".").
            let dot_attr = fuser::FileAttr {
                ino,
                ..self.attrs.dir_template()
            };
            if off == 0 {
                if reply.add(ino, 1, ".", &Duration::ZERO, &dot_attr, Generation(0)) {
                    return reply.ok();
                }
            }
            if reply.add(ino, 2, "..", &Duration::ZERO, &dot_attr, Generation(0)) {
                return reply.ok();
            }
            off = 2;
        }
        for (i, e) in listing.entries.iter().enumerate().skip((off - 2) as usize) {
            let attr = self.attrs.to_fuse(&e.attr);
            if reply.add(
                INodeNo(e.attr.ino),
                3 + i as u64,
                &e.name,
                &ttl,
                &attr,
                Generation(0),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.gw.releasedir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // An object store has no fixed capacity: report a large, mostly free volume.
        const BSIZE: u32 = 4096;
        let blocks = (1u64 << 50) / BSIZE as u64;
        reply.statfs(blocks, blocks, blocks, 1 << 32, 1 << 32, BSIZE, 255, BSIZE);
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
        // Files are not terminals or devices (isatty() asks on every Python open).
        reply.error(Errno::ENOTTY);
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.reply_after_sync(reply);
    }

    // Extended attributes are not kept. ENOSYS (not ENOTSUP) makes the kernel stop asking, so
    // writes do not pay a getxattr("security.capability") round trip each.
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: fuser::ReplyXattr,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}
