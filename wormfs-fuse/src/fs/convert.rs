//! Conversions between the node's types and the kernel's: attributes, times, names, errors.

use super::Result;
use fuser::{Errno, FileAttr, FileType, INodeNo, TimeOrNow};
use std::ffi::OsStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wormfs::errno;
use wormfs::meta::{Attr, FileKind, Timestamp};
use wormfs::rpc::client::ClientError;

pub(super) fn errno_of(e: &ClientError) -> Errno {
    Errno::from_i32(e.errno)
}

pub(super) fn invalid(what: &str) -> ClientError {
    ClientError {
        errno: errno::EINVAL,
        message: what.to_owned(),
    }
}

pub(super) fn name_str(name: &OsStr) -> Result<&str> {
    name.to_str()
        .ok_or_else(|| invalid("file names must be UTF-8"))
}

pub(super) fn time(t: Timestamp) -> SystemTime {
    if t.0 >= 0 {
        UNIX_EPOCH + Duration::from_nanos(t.0 as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(t.0.unsigned_abs())
    }
}

pub(super) fn stamp(t: TimeOrNow) -> Timestamp {
    match t {
        TimeOrNow::Now => Timestamp::now(),
        TimeOrNow::SpecificTime(st) => match st.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX)),
        },
    }
}

pub(super) fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
    }
}

pub(super) fn fuse_attr(a: &Attr) -> FileAttr {
    let blksize = a
        .layout
        .as_ref()
        .map_or(4096, |l| l.stripe_size.min(1 << 20) as u32);
    FileAttr {
        ino: INodeNo(a.ino.0),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: time(a.atime),
        mtime: time(a.mtime),
        ctime: time(a.ctime),
        crtime: time(a.crtime),
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize,
        flags: 0,
    }
}
