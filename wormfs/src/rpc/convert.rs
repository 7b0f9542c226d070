//! Wire types ↔ domain types. Everything received is checked: a bad message gets
//! `invalid_argument` naming the field, never a panic.

use super::proto;
use super::status_with_errno;
use crate::errno;
use crate::ids::FileId;
use crate::meta::{Attr, FileKind, FileLayout, Timestamp};
use crate::store::ChunkFolder;
use tonic::Status;

/// An `invalid_argument` status (errno `EINVAL`) naming the offending field.
pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Status {
    status_with_errno(errno::EINVAL, format!("field `{field}`: {reason}"))
}

/// A required message field that is absent.
pub fn required<T>(field: &str, value: Option<T>) -> Result<T, Status> {
    value.ok_or_else(|| invalid(field, "is required"))
}

/// An inode number: not zero.
pub fn ino(field: &str, value: u64) -> Result<FileId, Status> {
    if value == 0 {
        return Err(invalid(
            field,
            "inode 0 does not exist; inode numbers start at 1",
        ));
    }
    Ok(FileId(value))
}

/// A directory entry name: 1–255 bytes, no `/`, no NUL, not `.` or `..`.
pub fn name<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.len() > 255 {
        return Err(status_with_errno(
            errno::ENAMETOOLONG,
            format!("field `{field}`: a name is at most 255 bytes"),
        ));
    }
    if value.is_empty()
        || value == "."
        || value == ".."
        || value.contains('/')
        || value.contains('\0')
    {
        return Err(invalid(field, format!("`{value}` is not a file name")));
    }
    Ok(value)
}

/// A file kind on the wire.
pub fn kind_to_proto(kind: FileKind) -> proto::FileKind {
    match kind {
        FileKind::File => proto::FileKind::File,
        FileKind::Directory => proto::FileKind::Directory,
        FileKind::Symlink => proto::FileKind::Symlink,
        FileKind::Fifo => proto::FileKind::Fifo,
        FileKind::Socket => proto::FileKind::Socket,
        FileKind::CharDevice => proto::FileKind::CharDevice,
        FileKind::BlockDevice => proto::FileKind::BlockDevice,
    }
}

/// A file kind from the wire.
pub fn kind_from_proto(field: &str, value: i32) -> Result<FileKind, Status> {
    Ok(match proto::FileKind::try_from(value) {
        Ok(proto::FileKind::File) => FileKind::File,
        Ok(proto::FileKind::Directory) => FileKind::Directory,
        Ok(proto::FileKind::Symlink) => FileKind::Symlink,
        Ok(proto::FileKind::Fifo) => FileKind::Fifo,
        Ok(proto::FileKind::Socket) => FileKind::Socket,
        Ok(proto::FileKind::CharDevice) => FileKind::CharDevice,
        Ok(proto::FileKind::BlockDevice) => FileKind::BlockDevice,
        Ok(proto::FileKind::Unspecified) | Err(_) => {
            return Err(invalid(field, format!("unknown file kind {value}")))
        }
    })
}

/// Attributes on the wire.
pub fn attr_to_proto(a: &Attr) -> proto::Attr {
    proto::Attr {
        ino: a.ino.0,
        kind: kind_to_proto(a.kind) as i32,
        perm: u32::from(a.perm),
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        size: a.size,
        rdev: a.rdev,
        atime: a.atime.0,
        mtime: a.mtime.0,
        ctime: a.ctime.0,
        crtime: a.crtime.0,
        layout: a.layout.as_ref().map(|l| proto::Layout {
            policy: l.policy.clone(),
            k: u32::from(l.k),
            m: u32::from(l.m),
            stripe_size: l.stripe_size,
            folder: l.folder.to_string(),
        }),
    }
}

/// Attributes from the wire, checked.
pub fn attr_from_proto(a: proto::Attr) -> Result<Attr, Status> {
    let layout = match a.layout {
        None => None,
        Some(l) => {
            let k = u16::try_from(l.k).map_err(|_| invalid("attr.layout.k", l.k))?;
            let m = u16::try_from(l.m).map_err(|_| invalid("attr.layout.m", l.m))?;
            if k == 0 || l.stripe_size == 0 {
                return Err(invalid("attr.layout", "k and stripe_size must not be zero"));
            }
            let folder =
                ChunkFolder::try_from(l.folder).map_err(|e| invalid("attr.layout.folder", e))?;
            Some(FileLayout {
                policy: l.policy,
                k,
                m,
                stripe_size: l.stripe_size,
                folder,
            })
        }
    };
    Ok(Attr {
        ino: ino("attr.ino", a.ino)?,
        kind: kind_from_proto("attr.kind", a.kind)?,
        perm: u16::try_from(a.perm & 0o7777).expect("masked"),
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        size: a.size,
        rdev: a.rdev,
        atime: Timestamp(a.atime),
        mtime: Timestamp(a.mtime),
        ctime: Timestamp(a.ctime),
        crtime: Timestamp(a.crtime),
        layout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_fields_are_named() {
        let e = name("name", "a/b").unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("field `name`"), "{}", e.message());
        assert_eq!(super::super::errno_of(&e), errno::EINVAL);
        assert_eq!(
            super::super::errno_of(&name("name", &"x".repeat(256)).unwrap_err()),
            errno::ENAMETOOLONG
        );
        assert!(ino("parent", 0)
            .unwrap_err()
            .message()
            .contains("field `parent`"));
        assert!(kind_from_proto("kind", 99).is_err());
        let mut attr = attr_to_proto(&Attr {
            ino: FileId(5),
            kind: FileKind::File,
            perm: 0o644,
            nlink: 1,
            uid: 1,
            gid: 2,
            size: 3,
            rdev: 0,
            atime: Timestamp(1),
            mtime: Timestamp(2),
            ctime: Timestamp(3),
            crtime: Timestamp(4),
            layout: Some(FileLayout {
                policy: "p".into(),
                k: 2,
                m: 1,
                stripe_size: 8192,
                folder: ChunkFolder::for_path("/a"),
            }),
        });
        assert_eq!(attr_from_proto(attr.clone()).unwrap().size, 3);
        attr.layout.as_mut().unwrap().folder = "../../etc".into();
        assert!(attr_from_proto(attr)
            .unwrap_err()
            .message()
            .contains("attr.layout.folder"));
    }
}
