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
        let (kind, perm, nlink) = match a.kind {
            NodeKind::Dir => (FileType::Directory, 0o755, 2),
            NodeKind::File => (FileType::RegularFile, a.perm.unwrap_or(0o644), 1),
        };
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: a.mtime,
            mtime: a.mtime,
            ctime: a.mtime,
            crtime: a.mtime,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: self.blksize,
            flags: 0,
        }
    }
}
