//! How each [`MetadataOp`] changes the database. Every function checks before it writes, so
//! a refusal normally leaves nothing to undo (the caller also rolls back a savepoint).

use super::op::{Applied, MetadataOp, NewKind, OpReply, Refusal, XattrMode};
use super::sqlite::{
    chunk_locations, lookup_ino, meta_value, read_attr, read_stripes, set_meta_value, sql,
    MetaError, ALL_STRIPES,
};
use super::types::{Attr, ChunkLocation, FileKind, StripeRecord, Timestamp};
use crate::ids::FileId;
use rusqlite::{params, Connection, OptionalExtension, Params, Row};

/// Statements run through SQLite's statement cache: an op runs the same few statements
/// again and again, and parsing them each time cost more than running them.
pub(crate) trait Cached {
    /// [`Connection::execute`] with a cached statement.
    fn exec<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    /// [`Connection::query_row`] with a cached statement.
    fn query_row_cached<T, P: Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn exec<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn query_row_cached<T, P: Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

type Res = Result<OpReply, MetaError>;

macro_rules! refuse {
    ($variant:ident, $($fmt:tt)*) => {
        return Ok(Err(Refusal::$variant(format!($($fmt)*))))
    };
}

pub(crate) fn apply_op(c: &Connection, op: &MetadataOp) -> Res {
    match op {
        MetadataOp::Create {
            parent,
            name,
            kind,
            perm,
            uid,
            gid,
            time,
        } => create(c, *parent, name, kind, *perm, *uid, *gid, *time),
        MetadataOp::Link {
            ino,
            new_parent,
            new_name,
            time,
        } => link(c, *ino, *new_parent, new_name, *time),
        MetadataOp::Unlink { parent, name, time } => remove(c, *parent, name, false, *time),
        MetadataOp::Rmdir { parent, name, time } => remove(c, *parent, name, true, *time),
        MetadataOp::Rename {
            parent,
            name,
            new_parent,
            new_name,
            no_replace,
            time,
        } => rename(c, *parent, name, *new_parent, new_name, *no_replace, *time),
        MetadataOp::SetAttr {
            ino,
            perm,
            uid,
            gid,
            atime,
            mtime,
            time,
        } => {
            let Some(_) = read_attr(c, *ino)? else {
                refuse!(NotFound, "inode {ino}")
            };
            c.exec(
                "UPDATE inodes SET perm = COALESCE(?2, perm), uid = COALESCE(?3, uid), gid = COALESCE(?4, gid),
                 atime = COALESCE(?5, atime), mtime = COALESCE(?6, mtime), ctime = ?7 WHERE ino = ?1",
                params![
                    ino.0 as i64,
                    perm.map(i64::from),
                    uid.map(i64::from),
                    gid.map(i64::from),
                    atime.map(|t| t.0),
                    mtime.map(|t| t.0),
                    time.0
                ],
            )
            .map_err(sql("set attributes"))?;
            with_attr(c, *ino, Vec::new())
        }
        MetadataOp::Truncate {
            ino,
            size,
            tail,
            time,
        } => truncate(c, *ino, *size, tail.as_ref(), *time),
        MetadataOp::CommitStripe {
            ino,
            stripe,
            size,
            time,
        } => commit_stripe(c, *ino, stripe, *size, *time),
        MetadataOp::SetXattr {
            ino,
            name,
            value,
            mode,
            time,
        } => {
            let Some(_) = read_attr(c, *ino)? else {
                refuse!(NotFound, "inode {ino}")
            };
            let exists = c
                .query_row_cached(
                    "SELECT 1 FROM xattrs WHERE ino = ?1 AND name = ?2",
                    params![ino.0 as i64, name],
                    |_| Ok(()),
                )
                .is_ok();
            match (mode, exists) {
                (XattrMode::Create, true) => refuse!(Exists, "attribute {name} of inode {ino}"),
                (XattrMode::Replace, false) => refuse!(NoAttr, "attribute {name} of inode {ino}"),
                _ => {}
            }
            c.exec(
                "INSERT OR REPLACE INTO xattrs VALUES (?1, ?2, ?3)",
                params![ino.0 as i64, name, value],
            )
            .map_err(sql("set xattr"))?;
            touch(c, *ino, None, *time)?;
            with_attr(c, *ino, Vec::new())
        }
        MetadataOp::RemoveXattr { ino, name, time } => {
            let n = c
                .exec(
                    "DELETE FROM xattrs WHERE ino = ?1 AND name = ?2",
                    params![ino.0 as i64, name],
                )
                .map_err(sql("remove xattr"))?;
            if n == 0 {
                refuse!(NoAttr, "attribute {name} of inode {ino}");
            }
            touch(c, *ino, None, *time)?;
            done()
        }
        MetadataOp::SetDirPolicy { ino, policy } => {
            match read_attr(c, *ino)? {
                None => refuse!(NotFound, "inode {ino}"),
                Some(a) if a.kind != FileKind::Directory => refuse!(NotDir, "inode {ino}"),
                Some(_) => {}
            }
            match policy {
                Some(p) => c.exec(
                    "INSERT OR REPLACE INTO dir_policies VALUES (?1, ?2)",
                    params![ino.0 as i64, p],
                ),
                None => c.exec("DELETE FROM dir_policies WHERE ino = ?1", [ino.0 as i64]),
            }
            .map_err(sql("set directory policy"))?;
            done()
        }
        MetadataOp::SetChunkState {
            ino,
            stripe,
            generation,
            chunk,
            state,
        } => {
            c.exec(
                "UPDATE chunks SET state = ?5 WHERE ino = ?1 AND stripe = ?2 AND generation = ?3 AND chunk = ?4",
                params![ino.0 as i64, *stripe as i64, *generation as i64, i64::from(*chunk), state.code()],
            )
            .map_err(sql("set chunk state"))?;
            done()
        }
        MetadataOp::ReplaceChunks {
            ino,
            stripe,
            generation,
            chunks,
        } => super::apply_heal::replace_chunks(c, *ino, *stripe, *generation, chunks),
        MetadataOp::MarkVerified { stripes, time } => {
            for (ino, stripe, generation) in stripes {
                c.exec(
                    "UPDATE chunks SET verified = ?4
                     WHERE ino = ?1 AND stripe = ?2 AND generation = ?3 AND state = 0",
                    params![ino.0 as i64, *stripe as i64, *generation as i64, time.0],
                )
                .map_err(sql("mark chunks verified"))?;
            }
            done()
        }
        MetadataOp::SetWorkerControl { name, control } => {
            super::apply_heal::set_worker(c, name, "control", control)
        }
        MetadataOp::SetWorkerStatus { name, status } => {
            super::apply_heal::set_worker(c, name, "status", status)
        }
        MetadataOp::UpsertNode(n) => {
            c.exec(
                "INSERT OR REPLACE INTO nodes VALUES (?1, ?2)",
                params![n.id.0, n.address],
            )
            .map_err(sql("record node"))?;
            done()
        }
        MetadataOp::RemoveNode(id) => {
            c.exec("DELETE FROM nodes WHERE id = ?1", [&id.0])
                .map_err(sql("remove node"))?;
            c.exec("DELETE FROM disks WHERE node = ?1", [&id.0])
                .map_err(sql("remove node's disks"))?;
            c.exec(
                "DELETE FROM workers WHERE name = ?1",
                [format!("{}@{}", crate::worker::names::GARBAGE, id.0)],
            )
            .map_err(sql("remove node's worker"))?;
            done()
        }
        MetadataOp::UpsertDisk(d) => {
            c.exec(
                // a disk being drained stays so when its node records it again
                "INSERT INTO disks (id, node, path, total, free) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET node = excluded.node, path = excluded.path,
                     total = excluded.total, free = excluded.free",
                params![d.id.0, d.node.0, d.path, d.total as i64, d.free as i64],
            )
            .map_err(sql("record disk"))?;
            done()
        }
        MetadataOp::SetDiskDraining { disk, draining } => {
            let n = c
                .exec(
                    "UPDATE disks SET draining = ?2 WHERE id = ?1",
                    params![disk.0, i64::from(*draining)],
                )
                .map_err(sql("set disk draining"))?;
            if n == 0 {
                refuse!(NotFound, "no disk `{disk}` is recorded");
            }
            done()
        }
        MetadataOp::PutUser { user, replace } => super::users::put_user(c, user, *replace),
        MetadataOp::RemoveUser(name) => super::users::remove_user(c, name),
        MetadataOp::PutToken {
            name,
            hash,
            created,
        } => super::tokens::put_token(c, name, hash, *created),
        MetadataOp::RemoveToken(name) => super::tokens::remove_token(c, name),
        MetadataOp::OpenLockSession { id, client, opened } => {
            super::users::open_lock_session(c, id, client, *opened)
        }
        MetadataOp::CloseLockSessions(ids) => super::users::close_lock_sessions(c, ids),
        MetadataOp::Once { request, time, op } => once(c, request, *time, op),
        MetadataOp::RemoveDisk(id) => {
            c.exec("DELETE FROM disks WHERE id = ?1", [&id.0])
                .map_err(sql("remove disk"))?;
            done()
        }
    }
}

pub(super) fn done() -> Res {
    Ok(Ok(Applied::default()))
}

fn with_attr(c: &Connection, ino: FileId, garbage: Vec<ChunkLocation>) -> Res {
    Ok(Ok(Applied {
        attr: read_attr(c, ino)?,
        garbage,
    }))
}

fn check_name(name: &str) -> Result<(), Refusal> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Refusal::Invalid(format!(
            "`{name}` is not a valid file name"
        )));
    }
    if name.len() > 255 {
        return Err(Refusal::Invalid(format!(
            "a file name is at most 255 bytes; this one has {}",
            name.len()
        )));
    }
    Ok(())
}

/// The directory `ino`, or the refusal to give when it is missing or not a directory.
fn dir(c: &Connection, ino: FileId) -> Result<Result<Attr, Refusal>, MetaError> {
    Ok(match read_attr(c, ino)? {
        None => Err(Refusal::NotFound(format!("directory {ino}"))),
        Some(a) if a.kind != FileKind::Directory => Err(Refusal::NotDir(format!("inode {ino}"))),
        Some(a) => Ok(a),
    })
}

/// Sets ctime (and mtime when given) of an inode.
fn touch(
    c: &Connection,
    ino: FileId,
    mtime: Option<Timestamp>,
    ctime: Timestamp,
) -> Result<(), MetaError> {
    c.exec(
        "UPDATE inodes SET mtime = COALESCE(?2, mtime), ctime = ?3 WHERE ino = ?1",
        params![ino.0 as i64, mtime.map(|t| t.0), ctime.0],
    )
    .map(drop)
    .map_err(sql("touch inode"))
}

fn add_nlink(c: &Connection, ino: FileId, delta: i64) -> Result<(), MetaError> {
    c.exec(
        "UPDATE inodes SET nlink = nlink + ?2 WHERE ino = ?1",
        params![ino.0 as i64, delta],
    )
    .map(drop)
    .map_err(sql("count links"))
}

#[allow(clippy::too_many_arguments)]
fn create(
    c: &Connection,
    parent: FileId,
    name: &str,
    kind: &NewKind,
    perm: u16,
    uid: u32,
    gid: u32,
    time: Timestamp,
) -> Res {
    if let Err(r) = check_name(name) {
        return Ok(Err(r));
    }
    if let Err(r) = dir(c, parent)? {
        return Ok(Err(r));
    }
    if lookup_ino(c, parent, name)?.is_some() {
        refuse!(Exists, "`{name}` in directory {parent}");
    }
    let ino = FileId(meta_value(c, "next_ino")?);
    set_meta_value(c, "next_ino", ino.0 + 1)?;
    let (code, rdev, target, layout, nlink, size) = match kind {
        NewKind::File(l) => (FileKind::File, 0, None, Some(l), 1, 0),
        NewKind::Directory => (FileKind::Directory, 0, None, None, 2, 0),
        NewKind::Symlink(t) => (
            FileKind::Symlink,
            0,
            Some(t.as_str()),
            None,
            1,
            t.len() as u64,
        ),
        NewKind::Fifo => (FileKind::Fifo, 0, None, None, 1, 0),
        NewKind::Socket => (FileKind::Socket, 0, None, None, 1, 0),
        NewKind::CharDevice(d) => (FileKind::CharDevice, *d, None, None, 1, 0),
        NewKind::BlockDevice(d) => (FileKind::BlockDevice, *d, None, None, 1, 0),
    };
    c.exec(
        "INSERT INTO inodes (ino, kind, perm, nlink, uid, gid, size, rdev, atime, mtime, ctime, crtime, target,
                             policy, k, m, stripe_size, folder)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?9, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            ino.0 as i64,
            code.code(),
            i64::from(perm & 0o7777),
            nlink,
            i64::from(uid),
            i64::from(gid),
            size as i64,
            i64::from(rdev),
            time.0,
            target,
            layout.map(|l| l.policy.as_str()),
            layout.map(|l| i64::from(l.k)),
            layout.map(|l| i64::from(l.m)),
            layout.map(|l| l.stripe_size as i64),
            layout.map(|l| l.folder.as_str()),
        ],
    )
    .map_err(sql("create inode"))?;
    c.exec(
        "INSERT INTO dentries VALUES (?1, ?2, ?3)",
        params![parent.0 as i64, name, ino.0 as i64],
    )
    .map_err(sql("create entry"))?;
    if code == FileKind::Directory {
        add_nlink(c, parent, 1)?;
    }
    touch(c, parent, Some(time), time)?;
    with_attr(c, ino, Vec::new())
}

fn link(c: &Connection, ino: FileId, new_parent: FileId, new_name: &str, time: Timestamp) -> Res {
    if let Err(r) = check_name(new_name) {
        return Ok(Err(r));
    }
    match read_attr(c, ino)? {
        None => refuse!(NotFound, "inode {ino}"),
        Some(a) if a.kind == FileKind::Directory => {
            refuse!(IsDir, "cannot hard-link directory {ino}")
        }
        Some(_) => {}
    }
    if let Err(r) = dir(c, new_parent)? {
        return Ok(Err(r));
    }
    if lookup_ino(c, new_parent, new_name)?.is_some() {
        refuse!(Exists, "`{new_name}` in directory {new_parent}");
    }
    c.exec(
        "INSERT INTO dentries VALUES (?1, ?2, ?3)",
        params![new_parent.0 as i64, new_name, ino.0 as i64],
    )
    .map_err(sql("create entry"))?;
    add_nlink(c, ino, 1)?;
    touch(c, ino, None, time)?;
    touch(c, new_parent, Some(time), time)?;
    with_attr(c, ino, Vec::new())
}

/// Drops one link of `ino` (whose entry is already gone); deletes the inode with its last
/// link and returns its chunks as garbage.
fn drop_link(
    c: &Connection,
    ino: FileId,
    kind: FileKind,
    time: Timestamp,
) -> Result<Vec<ChunkLocation>, MetaError> {
    let remaining: i64 = c
        .query_row_cached(
            "SELECT COUNT(*) FROM dentries WHERE ino = ?1",
            [ino.0 as i64],
            |r| r.get(0),
        )
        .map_err(sql("count links"))?;
    if remaining > 0 && kind != FileKind::Directory {
        add_nlink(c, ino, -1)?;
        touch(c, ino, None, time)?;
        return Ok(Vec::new());
    }
    let garbage = chunk_locations(c, ino, ALL_STRIPES)?;
    for table in [
        "chunks",
        "stripes",
        "stripe_data",
        "xattrs",
        "dir_policies",
        "inodes",
    ] {
        c.exec(
            &format!("DELETE FROM {table} WHERE ino = ?1"),
            [ino.0 as i64],
        )
        .map_err(sql("delete inode"))?;
    }
    Ok(garbage)
}

fn is_empty_dir(c: &Connection, ino: FileId) -> Result<bool, MetaError> {
    c.query_row_cached(
        "SELECT NOT EXISTS (SELECT 1 FROM dentries WHERE parent = ?1)",
        [ino.0 as i64],
        |r| r.get(0),
    )
    .map_err(sql("check directory is empty"))
}

fn remove(c: &Connection, parent: FileId, name: &str, want_dir: bool, time: Timestamp) -> Res {
    if let Err(r) = dir(c, parent)? {
        return Ok(Err(r));
    }
    let Some(ino) = lookup_ino(c, parent, name)? else {
        refuse!(NotFound, "`{name}` in directory {parent}")
    };
    let attr = read_attr(c, ino)?
        .ok_or_else(|| MetaError::Corrupt(format!("entry `{name}` names missing inode {ino}")))?;
    let is_dir = attr.kind == FileKind::Directory;
    match (want_dir, is_dir) {
        (true, false) => refuse!(NotDir, "`{name}`"),
        (false, true) => refuse!(IsDir, "`{name}`"),
        (true, true) if !is_empty_dir(c, ino)? => refuse!(NotEmpty, "`{name}`"),
        _ => {}
    }
    c.exec(
        "DELETE FROM dentries WHERE parent = ?1 AND name = ?2",
        params![parent.0 as i64, name],
    )
    .map_err(sql("remove entry"))?;
    let garbage = drop_link(c, ino, attr.kind, time)?;
    if is_dir {
        add_nlink(c, parent, -1)?;
    }
    touch(c, parent, Some(time), time)?;
    Ok(Ok(Applied {
        attr: None,
        garbage,
    }))
}

fn rename(
    c: &Connection,
    parent: FileId,
    name: &str,
    new_parent: FileId,
    new_name: &str,
    no_replace: bool,
    time: Timestamp,
) -> Res {
    if let Err(r) = check_name(new_name) {
        return Ok(Err(r));
    }
    for p in [parent, new_parent] {
        if let Err(r) = dir(c, p)? {
            return Ok(Err(r));
        }
    }
    let Some(ino) = lookup_ino(c, parent, name)? else {
        refuse!(NotFound, "`{name}` in directory {parent}")
    };
    let src = read_attr(c, ino)?
        .ok_or_else(|| MetaError::Corrupt(format!("entry `{name}` names missing inode {ino}")))?;
    let src_dir = src.kind == FileKind::Directory;
    if src_dir {
        // The destination directory must not be the source or inside it.
        let mut cur = new_parent;
        loop {
            if cur == ino {
                refuse!(Invalid, "cannot move directory `{name}` into itself");
            }
            if cur == FileId::ROOT {
                break;
            }
            let up: i64 = c
                .query_row_cached(
                    "SELECT parent FROM dentries WHERE ino = ?1",
                    [cur.0 as i64],
                    |r| r.get(0),
                )
                .map_err(sql("walk up directories"))?;
            cur = FileId(up as u64);
        }
    }
    let mut garbage = Vec::new();
    if let Some(dest) = lookup_ino(c, new_parent, new_name)? {
        if no_replace {
            refuse!(Exists, "`{new_name}` in directory {new_parent}");
        }
        if dest == ino {
            return Ok(Ok(Applied::default())); // two links of one inode: nothing to do
        }
        let dest_attr = read_attr(c, dest)?.ok_or_else(|| {
            MetaError::Corrupt(format!("entry `{new_name}` names missing inode {dest}"))
        })?;
        let dest_dir = dest_attr.kind == FileKind::Directory;
        match (src_dir, dest_dir) {
            (true, false) => refuse!(NotDir, "`{new_name}`"),
            (false, true) => refuse!(IsDir, "`{new_name}`"),
            (true, true) if !is_empty_dir(c, dest)? => refuse!(NotEmpty, "`{new_name}`"),
            _ => {}
        }
        c.exec(
            "DELETE FROM dentries WHERE parent = ?1 AND name = ?2",
            params![new_parent.0 as i64, new_name],
        )
        .map_err(sql("remove replaced entry"))?;
        garbage = drop_link(c, dest, dest_attr.kind, time)?;
        if dest_dir {
            add_nlink(c, new_parent, -1)?;
        }
    }
    c.exec(
        "UPDATE dentries SET parent = ?3, name = ?4 WHERE parent = ?1 AND name = ?2",
        params![parent.0 as i64, name, new_parent.0 as i64, new_name],
    )
    .map_err(sql("move entry"))?;
    if src_dir && parent != new_parent {
        add_nlink(c, parent, -1)?;
        add_nlink(c, new_parent, 1)?;
    }
    touch(c, ino, None, time)?;
    touch(c, parent, Some(time), time)?;
    touch(c, new_parent, Some(time), time)?;
    Ok(Ok(Applied {
        attr: read_attr(c, ino)?,
        garbage,
    }))
}

/// A file's layout, or the refusal for a missing inode or a non-file.
fn file(c: &Connection, ino: FileId) -> Result<Result<Attr, Refusal>, MetaError> {
    Ok(match read_attr(c, ino)? {
        None => Err(Refusal::NotFound(format!("inode {ino}"))),
        Some(a) if a.kind == FileKind::Directory => Err(Refusal::IsDir(format!("inode {ino}"))),
        Some(a) if a.layout.is_none() => Err(Refusal::Invalid(format!(
            "inode {ino} is not a regular file"
        ))),
        Some(a) => Ok(a),
    })
}

fn put_stripe(c: &Connection, ino: FileId, s: &StripeRecord) -> Result<(), MetaError> {
    c.exec(
        "INSERT OR REPLACE INTO stripes (ino, idx, generation, len, crc, k, m)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            ino.0 as i64,
            s.index as i64,
            s.generation as i64,
            s.len as i64,
            i64::from(s.crc),
            i64::from(s.k),
            i64::from(s.m),
        ],
    )
    .map_err(sql("record stripe"))?;
    match &s.inline {
        Some(data) => c.exec(
            "INSERT OR REPLACE INTO stripe_data (ino, idx, data) VALUES (?1, ?2, ?3)",
            params![ino.0 as i64, s.index as i64, data],
        ),
        None => c.exec(
            "DELETE FROM stripe_data WHERE ino = ?1 AND idx = ?2",
            params![ino.0 as i64, s.index as i64],
        ),
    }
    .map_err(sql("record stripe"))?;
    c.exec(
        "DELETE FROM chunks WHERE ino = ?1 AND stripe = ?2",
        params![ino.0 as i64, s.index as i64],
    )
    .map_err(sql("replace chunks"))?;
    for ch in &s.chunks {
        c.exec(
            "INSERT INTO chunks (ino, stripe, chunk, generation, node, disk, size, crc, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                ino.0 as i64,
                s.index as i64,
                i64::from(ch.index),
                s.generation as i64,
                ch.node.0,
                ch.disk.0,
                ch.size as i64,
                i64::from(ch.crc),
                ch.state.code()
            ],
        )
        .map_err(sql("record chunk"))?;
    }
    Ok(())
}

/// Checks a stripe record against its file's layout.
fn check_stripe(attr: &Attr, s: &StripeRecord) -> Result<(), Refusal> {
    let l = attr.layout.as_ref().expect("checked by file()");
    let invalid = |why: String| {
        Err(Refusal::Invalid(format!(
            "stripe {} of inode {}: {why}",
            s.index, attr.ino
        )))
    };
    if (s.k, s.m) != (l.k, l.m) {
        return invalid(format!(
            "coded {}+{} but the file is {}+{}",
            s.k, s.m, l.k, l.m
        ));
    }
    if s.len == 0 || s.len > l.stripe_size {
        return invalid(format!(
            "{} bytes does not fit stripes of {}",
            s.len, l.stripe_size
        ));
    }
    if let Some(data) = &s.inline {
        if data.len() as u64 != s.len || !s.chunks.is_empty() {
            return invalid(format!(
                "an inline stripe holds its {} bytes and no chunks (got {} bytes, {} chunks)",
                s.len,
                data.len(),
                s.chunks.len()
            ));
        }
        if crate::checksum::crc32(data) != s.crc {
            return invalid("inline bytes do not match the stripe checksum".into());
        }
        return Ok(());
    }
    let width = usize::from(l.k + l.m);
    let mut seen = vec![false; width];
    for ch in &s.chunks {
        let i = usize::from(ch.index);
        if i >= width || std::mem::replace(&mut seen[i], true) {
            return invalid(format!("chunk index {i} is out of range or repeated"));
        }
    }
    if s.chunks.len() != width {
        return invalid(format!(
            "{} chunks where {width} are needed",
            s.chunks.len()
        ));
    }
    Ok(())
}

/// The chunks of `ino`'s stripe `index` that `new` no longer refers to.
fn replaced(
    c: &Connection,
    ino: FileId,
    index: u64,
    new: Option<&StripeRecord>,
) -> Result<Vec<ChunkLocation>, MetaError> {
    let old = chunk_locations(c, ino, index..index.saturating_add(1))?;
    Ok(old
        .into_iter()
        .filter(|o| {
            !new.is_some_and(|n| {
                n.generation == o.key.generation
                    && n.chunks
                        .iter()
                        .any(|ch| ch.index == o.key.index && ch.node == o.node && ch.disk == o.disk)
            })
        })
        .collect())
}

fn commit_stripe(c: &Connection, ino: FileId, s: &StripeRecord, size: u64, time: Timestamp) -> Res {
    let attr = match file(c, ino)? {
        Ok(a) => a,
        Err(r) => return Ok(Err(r)),
    };
    if let Err(r) = check_stripe(&attr, s) {
        return Ok(Err(r));
    }
    let stripe_size = attr.layout.as_ref().expect("checked").stripe_size;
    let end = s.index * stripe_size + s.len;
    if size < end {
        refuse!(
            Invalid,
            "stripe {} ends at byte {end}, past the stated file size {size}",
            s.index
        );
    }
    let garbage = replaced(c, ino, s.index, Some(s))?;
    put_stripe(c, ino, s)?;
    c.exec(
        "UPDATE inodes SET size = MAX(size, ?2) WHERE ino = ?1",
        params![ino.0 as i64, size as i64],
    )
    .map_err(sql("grow file"))?;
    touch(c, ino, Some(time), time)?;
    with_attr(c, ino, garbage)
}

fn truncate(
    c: &Connection,
    ino: FileId,
    size: u64,
    tail: Option<&StripeRecord>,
    time: Timestamp,
) -> Res {
    let attr = match file(c, ino)? {
        Ok(a) => a,
        Err(r) => return Ok(Err(r)),
    };
    let stripe_size = attr.layout.as_ref().expect("checked").stripe_size;
    let stripes = read_stripes(c, ino, ALL_STRIPES)?;
    let straddling = stripes.iter().find(|s| {
        let start = s.index * stripe_size;
        start < size && size < start + s.len
    });
    match (straddling, tail) {
        (Some(s), None) => {
            refuse!(
                Invalid,
                "stripe {} straddles the new size {size}: send it rewritten as the tail",
                s.index
            )
        }
        (None, Some(t)) => refuse!(
            Invalid,
            "no stripe straddles the new size {size}, but tail stripe {} was sent",
            t.index
        ),
        (Some(s), Some(t)) => {
            if t.index != s.index || t.index * stripe_size + t.len != size {
                refuse!(
                    Invalid,
                    "tail stripe {} of {} bytes does not end at the new size {size}",
                    t.index,
                    t.len
                );
            }
            if let Err(r) = check_stripe(&attr, t) {
                return Ok(Err(r));
            }
        }
        (None, None) => {}
    }
    let mut garbage = Vec::new();
    for s in stripes.iter().filter(|s| s.index * stripe_size >= size) {
        garbage.extend(replaced(c, ino, s.index, None)?);
        c.exec(
            "DELETE FROM chunks WHERE ino = ?1 AND stripe = ?2",
            params![ino.0 as i64, s.index as i64],
        )
        .map_err(sql("drop chunks"))?;
        for sql_text in [
            "DELETE FROM stripes WHERE ino = ?1 AND idx = ?2",
            "DELETE FROM stripe_data WHERE ino = ?1 AND idx = ?2",
        ] {
            c.exec(sql_text, params![ino.0 as i64, s.index as i64])
                .map_err(sql("drop stripe"))?;
        }
    }
    if let Some(t) = tail {
        garbage.extend(replaced(c, ino, t.index, Some(t))?);
        put_stripe(c, ino, t)?;
    }
    c.exec(
        "UPDATE inodes SET size = ?2 WHERE ino = ?1",
        params![ino.0 as i64, size as i64],
    )
    .map_err(sql("set size"))?;
    touch(c, ino, Some(time), time)?;
    with_attr(c, ino, garbage)
}

/// [`MetadataOp::Once`]: the stored reply when `request` was applied already, else `op`
/// applied and its reply stored (without its garbage: those chunks are deleted once, by the
/// first caller or by the garbage worker). Refusals are not stored: they changed nothing,
/// and a repeat is refused again or applied.
fn once(c: &Connection, request: &str, time: Timestamp, op: &MetadataOp) -> Res {
    let stored: Option<String> = c
        .query_row_cached("SELECT reply FROM requests WHERE id = ?1", [request], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql("read a request id"))?;
    if let Some(stored) = stored {
        let applied: Applied = serde_json::from_str(&stored).map_err(|e| {
            MetaError::Corrupt(format!("the stored reply to request {request}: {e}"))
        })?;
        return Ok(Ok(applied));
    }
    let reply = apply_op(c, op)?;
    if let Ok(applied) = &reply {
        let kept = Applied {
            attr: applied.attr.clone(),
            garbage: Vec::new(),
        };
        let kept = serde_json::to_string(&kept)
            .map_err(|e| MetaError::Corrupt(format!("encode the reply to {request}: {e}")))?;
        c.exec(
            "INSERT INTO requests (id, reply, time) VALUES (?1, ?2, ?3)",
            params![request, kept, time.0],
        )
        .map_err(sql("record a request id"))?;
        c.exec(
            "DELETE FROM requests WHERE time < ?1",
            [time.0.saturating_sub(super::op::REQUEST_IDS_KEPT_NS)],
        )
        .map_err(sql("forget old request ids"))?;
    }
    Ok(reply)
}
