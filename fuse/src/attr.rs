use std::time::SystemTime;

use cairn_gateway::namespace::{NodeAttr, NodeKind};
use fuser::{FileAttr, FileType, INodeNo};

/// Turns gateway attributes into kernel attributes (ownership and modes are per mount).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttrMapper {
    pub uid: u32,
    pub gid: u32,
    pub blksize: u32,
}

impl AttrMapper {
    pub fn kind(k: NodeKind) -> FileType {
        match k {
            NodeKind::Dir => FileType::Directory,
            NodeKind::File => FileType::RegularFile,
            NodeKind::Symlink => FileType::Symlink,
            NodeKind::Fifo => FileType::NamedPipe,
            NodeKind::Socket => FileType::Socket,
            NodeKind::CharDev => FileType::CharDevice,
            NodeKind::BlockDev => FileType::BlockDevice,
        }
    }

    pub fn dir_template(&self) -> FileAttr {
        FileAttr {
            ino: INodeNo(1),
            size: 0,
            blocks: 0,
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            crtime: SystemTime::UNIX_EPOCH,
            kind: FileType::Directory,
            perm: 0o755,
            nlink: 2,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: self.blksize,
            flags: 0,
        }
    }

    pub fn to_fuse(&self, a: &NodeAttr) -> FileAttr {
        let kind = Self::kind(a.kind);
        let (default_perm, nlink) = match a.kind {
            NodeKind::Dir => (0o755, 2),
            NodeKind::Symlink => (0o777, 1),
            _ if a.unlinked => (0o644, 0),
            _ => (0o644, 1),
        };
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: a.atime.unwrap_or(a.mtime),
            mtime: a.mtime,
            ctime: a.ctime.unwrap_or(a.mtime),
            crtime: a.mtime,
            kind,
            perm: a.perm.unwrap_or(default_perm),
            nlink,
            uid: a.uid.unwrap_or(self.uid),
            gid: a.gid.unwrap_or(self.gid),
            rdev: a.rdev,
            blksize: self.blksize,
            flags: 0,
        }
    }
}
