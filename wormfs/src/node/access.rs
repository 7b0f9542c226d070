//! POSIX permission checks, made by the node for the uid/gid set a request acts as (see
//! [`Caller`]). A mount's kernel (`default_permissions`) checks first; these checks hold for
//! every client, a direct gRPC caller included.
//!
//! Mode bits as POSIX says: owner, else group (primary or supplementary), else other; uid 0
//! reads and writes anything and executes what has an `x` bit. Removing or renaming in a
//! sticky directory needs owning the directory or the entry. Only the owner (or uid 0)
//! changes mode and times; only uid 0 gives a file away; the owner may change its group to
//! one of its own groups. Refusals: `EACCES` for mode bits, `EPERM` for ownership.
//!
//! POSIX ACLs are not supported: setting `system.posix_acl_*` is refused with
//! `EOPNOTSUPP` (never stored and ignored).

use super::{FsError, NodeFs, SetAttrArgs};
use crate::ids::FileId;
use crate::meta::{Attr, FileKind};

/// The user and uid/gid set a request acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The authenticated user.
    pub user: String,
    /// The uid the request acts as.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Its supplementary groups.
    pub groups: Vec<u32>,
    /// The user is an admin (membership, users, workers, disks).
    pub admin: bool,
}

/// Read permission.
pub const READ: u16 = 4;
/// Write permission.
pub const WRITE: u16 = 2;
/// Execute (search, for a directory) permission.
pub const EXEC: u16 = 1;

const S_ISUID: u16 = 0o4000;
const S_ISGID: u16 = 0o2000;
const S_ISVTX: u16 = 0o1000;

impl Caller {
    /// A caller acting as root with no user name (tests, internal work).
    pub fn root() -> Caller {
        Caller {
            user: String::new(),
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            admin: true,
        }
    }

    /// True when the caller is in group `gid`.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// True when the caller may `want` (a mask of [`READ`], [`WRITE`], [`EXEC`]) on `a`.
    pub fn may(&self, a: &Attr, want: u16) -> bool {
        if self.uid == 0 {
            return want & EXEC == 0 || a.kind == FileKind::Directory || a.perm & 0o111 != 0;
        }
        let bits = if self.uid == a.uid {
            a.perm >> 6
        } else if self.in_group(a.gid) {
            a.perm >> 3
        } else {
            a.perm
        } & 7;
        bits & want == want
    }

    fn owns(&self, a: &Attr) -> bool {
        self.uid == 0 || self.uid == a.uid
    }

    fn who(&self) -> String {
        if self.user.is_empty() {
            format!("uid {}", self.uid)
        } else {
            format!("user `{}` acting as uid {}", self.user, self.uid)
        }
    }
}

fn wants(want: u16) -> &'static str {
    match want {
        READ => "read",
        WRITE => "write",
        EXEC => "search",
        _ => "write and search",
    }
}

impl NodeFs {
    fn need(&self, who: &Caller, a: &Attr, want: u16) -> Result<(), FsError> {
        if who.may(a, want) {
            return Ok(());
        }
        Err(FsError::Denied(format!(
            "{} may not {} inode {} (mode {:04o}, owner {}:{})",
            who.who(),
            wants(want),
            a.ino,
            a.perm,
            a.uid,
            a.gid
        )))
    }

    fn need_attr(&self, who: &Caller, ino: FileId, want: u16) -> Result<Attr, FsError> {
        let a = self.getattr(ino)?;
        self.need(who, &a, want)?;
        Ok(a)
    }

    /// Looking up a name needs search permission on its directory.
    pub fn check_lookup(&self, who: &Caller, parent: FileId) -> Result<(), FsError> {
        if who.uid == 0 {
            return Ok(());
        }
        self.need_attr(who, parent, EXEC).map(drop)
    }

    /// Listing a directory needs read permission on it.
    pub fn check_readdir(&self, who: &Caller, dir: FileId) -> Result<(), FsError> {
        if who.uid == 0 {
            return Ok(());
        }
        self.need_attr(who, dir, READ).map(drop)
    }

    /// Reading (or, with `write`, writing) a file's data.
    pub fn check_data(&self, who: &Caller, ino: FileId, write: bool) -> Result<(), FsError> {
        if who.uid == 0 {
            return Ok(());
        }
        self.need_attr(who, ino, if write { WRITE } else { READ })
            .map(drop)
    }

    /// Creating in `parent` as `uid`/`gid` with `perm`: write and search permission on the
    /// directory; a caller other than uid 0 creates only as itself and in one of its groups
    /// (or the directory's, when it is set-group-ID). Returns `perm`, without the
    /// set-group-ID bit when the caller is not in the new file's group.
    pub fn check_create(
        &self,
        who: &Caller,
        parent: FileId,
        uid: u32,
        gid: u32,
        perm: u16,
        directory: bool,
    ) -> Result<u16, FsError> {
        if who.uid == 0 {
            return Ok(perm);
        }
        let dir = self.need_attr(who, parent, WRITE | EXEC)?;
        if uid != who.uid {
            return Err(FsError::NotPermitted(format!(
                "{} may create files only as itself, not as uid {uid}",
                who.who()
            )));
        }
        let inherited = dir.perm & S_ISGID != 0 && gid == dir.gid;
        if !who.in_group(gid) && !inherited {
            return Err(FsError::NotPermitted(format!(
                "{} is not in group {gid}",
                who.who()
            )));
        }
        if !directory && perm & S_ISGID != 0 && !who.in_group(gid) {
            return Ok(perm & !S_ISGID);
        }
        Ok(perm)
    }

    /// Linking into `new_parent` needs write and search permission on it.
    pub fn check_link(&self, who: &Caller, new_parent: FileId) -> Result<(), FsError> {
        if who.uid == 0 {
            return Ok(());
        }
        self.need_attr(who, new_parent, WRITE | EXEC).map(drop)
    }

    /// Removing `parent/name` (unlink, rmdir, the source of a rename): write and search
    /// permission on the directory, and in a sticky directory owning it or the entry.
    pub fn check_remove(&self, who: &Caller, parent: FileId, name: &str) -> Result<(), FsError> {
        if who.uid == 0 {
            return Ok(());
        }
        let dir = self.need_attr(who, parent, WRITE | EXEC)?;
        if dir.perm & S_ISVTX != 0 && who.uid != dir.uid {
            let victim = self.lookup(parent, name)?;
            if who.uid != victim.uid {
                return Err(FsError::NotPermitted(format!(
                    "{} may not remove `{name}` from sticky directory {parent}: it owns neither",
                    who.who()
                )));
            }
        }
        Ok(())
    }

    /// Renaming `parent/name` to `new_parent/new_name`.
    pub fn check_rename(
        &self,
        who: &Caller,
        parent: FileId,
        name: &str,
        new_parent: FileId,
        new_name: &str,
    ) -> Result<(), FsError> {
        if who.uid == 0 {
            return Ok(());
        }
        self.check_remove(who, parent, name)?;
        let moved = self.lookup(parent, name)?;
        if new_parent != parent {
            self.need_attr(who, new_parent, WRITE | EXEC)?;
            // a directory moved elsewhere gets a new `..`
            if moved.kind == FileKind::Directory {
                self.need(who, &moved, WRITE)?;
            }
        }
        match self.lookup(new_parent, new_name) {
            Ok(_) => self.check_remove(who, new_parent, new_name),
            Err(FsError::Refused(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Changing attributes. `args` may change: a mode change by a caller outside the file's
    /// group loses set-group-ID; a change of owner or group of a non-directory clears
    /// set-user-ID and set-group-ID (as Linux does) unless the request sets the mode itself.
    /// `times_now`: the times are set to "now" (allowed with write permission too).
    pub fn check_setattr(
        &self,
        who: &Caller,
        ino: FileId,
        args: &mut SetAttrArgs,
        times_now: bool,
    ) -> Result<(), FsError> {
        let a = self.getattr(ino)?;
        let owner_needed = |what: &str| -> Result<(), FsError> {
            if who.owns(&a) {
                Ok(())
            } else {
                Err(FsError::NotPermitted(format!(
                    "{} may not {what} inode {ino}: it belongs to uid {}",
                    who.who(),
                    a.uid
                )))
            }
        };
        if let Some(perm) = args.perm {
            owner_needed("change the mode of")?;
            let group = args.gid.unwrap_or(a.gid);
            if who.uid != 0 && a.kind != FileKind::Directory && !who.in_group(group) {
                args.perm = Some(perm & !S_ISGID);
            }
        }
        let new_uid = args.uid.filter(|u| *u != a.uid);
        let new_gid = args.gid.filter(|g| *g != a.gid);
        if new_uid.is_some() && who.uid != 0 {
            return Err(FsError::NotPermitted(format!(
                "{} may not give inode {ino} away: only uid 0 changes an owner",
                who.who()
            )));
        }
        if let Some(g) = new_gid {
            owner_needed("change the group of")?;
            if who.uid != 0 && !who.in_group(g) {
                return Err(FsError::NotPermitted(format!(
                    "{} is not in group {g}",
                    who.who()
                )));
            }
        }
        if (new_uid.is_some() || new_gid.is_some())
            && args.perm.is_none()
            && a.kind != FileKind::Directory
            && a.perm & (S_ISUID | S_ISGID) != 0
        {
            let mut p = a.perm & !S_ISUID;
            // set-group-ID without group execute is mandatory locking, not privilege
            if p & 0o010 != 0 {
                p &= !S_ISGID;
            }
            args.perm = Some(p);
        }
        if args.size.is_some() {
            self.need(who, &a, WRITE)?;
        }
        if args.atime.is_some() || args.mtime.is_some() {
            if times_now {
                if !who.owns(&a) {
                    self.need(who, &a, WRITE)?;
                }
            } else {
                owner_needed("set the times of")?;
            }
        }
        Ok(())
    }

    /// Extended attributes: `system.posix_acl_*` cannot be set (`EOPNOTSUPP`); `trusted.*`
    /// is uid 0's; `security.*` is set by uid 0; `user.*` needs read (or, with `write`,
    /// write) permission and is only on regular files and directories; a directory's
    /// storage policy ([`super::POLICY_XATTR`]) is changed as [`NodeFs::check_policy`] says.
    pub fn check_xattr(
        &self,
        who: &Caller,
        ino: FileId,
        name: &str,
        write: bool,
    ) -> Result<(), FsError> {
        self.check_xattr_name(who, ino, name, write)?;
        if write && name == super::POLICY_XATTR {
            self.check_policy(who, &self.getattr(ino)?)?;
        }
        Ok(())
    }

    /// [`NodeFs::check_xattr`] without the policy's own rule.
    fn check_xattr_name(
        &self,
        who: &Caller,
        ino: FileId,
        name: &str,
        write: bool,
    ) -> Result<(), FsError> {
        if write && name.starts_with("system.posix_acl_") {
            return Err(FsError::Unsupported(format!(
                "`{name}`: POSIX ACLs are not supported by WormFS; use mode bits and groups"
            )));
        }
        if who.uid == 0 {
            return Ok(());
        }
        if name.starts_with("trusted.") || (write && name.starts_with("security.")) {
            return Err(FsError::NotPermitted(format!(
                "{} may not {} `{name}`: only uid 0 may",
                who.who(),
                if write { "set" } else { "read" }
            )));
        }
        if name.starts_with("user.") {
            let a = self.getattr(ino)?;
            if write && !matches!(a.kind, FileKind::File | FileKind::Directory) {
                return Err(FsError::NotPermitted(format!(
                    "user attributes are only on files and directories, not inode {ino}"
                )));
            }
            self.need(who, &a, if write { WRITE } else { READ })?;
        }
        Ok(())
    }

    /// Listing extended attributes needs read permission.
    pub fn check_listxattr(&self, who: &Caller, ino: FileId) -> Result<(), FsError> {
        if who.uid == 0 {
            return Ok(());
        }
        self.need_attr(who, ino, READ).map(drop)
    }

    /// The storage policy of a directory: `/`'s is the admins'; another directory's is its
    /// owner's (or an admin's, or uid 0's).
    pub fn check_policy(&self, who: &Caller, dir: &Attr) -> Result<(), FsError> {
        if who.admin {
            return Ok(());
        }
        if dir.ino == FileId::ROOT {
            return Err(FsError::NotPermitted(format!(
                "{}: the policy of `/` needs an admin identity",
                who.who()
            )));
        }
        if !who.owns(dir) {
            return Err(FsError::NotPermitted(format!(
                "{} may not set the policy of directory {}: it belongs to uid {}",
                who.who(),
                dir.ino,
                dir.uid
            )));
        }
        Ok(())
    }

    /// After a write by a caller other than uid 0: the set-user-ID bit, and set-group-ID with
    /// group execute, are cleared (a changed program keeps no privilege).
    pub async fn clear_privileges_after_write(
        &self,
        who: &Caller,
        ino: FileId,
    ) -> Result<(), FsError> {
        if who.uid == 0 {
            return Ok(());
        }
        let a = self.getattr(ino)?;
        let mut p = a.perm & !S_ISUID;
        if p & 0o010 != 0 {
            p &= !S_ISGID;
        }
        if p != a.perm {
            self.setattr(
                ino,
                SetAttrArgs {
                    perm: Some(p),
                    uid: None,
                    gid: None,
                    size: None,
                    atime: None,
                    mtime: None,
                },
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Timestamp;

    fn attr(kind: FileKind, perm: u16, uid: u32, gid: u32) -> Attr {
        Attr {
            ino: FileId(5),
            kind,
            perm,
            nlink: 1,
            uid,
            gid,
            size: 0,
            rdev: 0,
            atime: Timestamp(0),
            mtime: Timestamp(0),
            ctime: Timestamp(0),
            crtime: Timestamp(0),
            layout: None,
        }
    }

    fn user(uid: u32, gid: u32, groups: &[u32]) -> Caller {
        Caller {
            user: "u".into(),
            uid,
            gid,
            groups: groups.to_vec(),
            admin: false,
        }
    }

    #[test]
    fn mode_bits_pick_owner_then_group_then_other() {
        let f = attr(FileKind::File, 0o640, 10, 20);
        assert!(user(10, 99, &[]).may(&f, READ | WRITE));
        assert!(!user(10, 99, &[]).may(&f, EXEC));
        assert!(user(11, 20, &[]).may(&f, READ));
        assert!(!user(11, 20, &[]).may(&f, WRITE));
        assert!(
            user(11, 1, &[20]).may(&f, READ),
            "a supplementary group counts"
        );
        assert!(!user(11, 1, &[]).may(&f, READ));
        // the owner class decides even when group or other would allow more
        let g = attr(FileKind::File, 0o077, 10, 20);
        assert!(!user(10, 20, &[]).may(&g, READ));
        // root reads and writes anything, executes only what has an x bit
        let root = Caller::root();
        assert!(root.may(&attr(FileKind::File, 0, 1, 1), READ | WRITE));
        assert!(!root.may(&attr(FileKind::File, 0o600, 1, 1), EXEC));
        assert!(root.may(&attr(FileKind::File, 0o010, 1, 1), EXEC));
        assert!(root.may(&attr(FileKind::Directory, 0, 1, 1), EXEC));
    }
}
