//! Directory listings: `opendir` takes the whole listing, with each entry's attributes,
//! and `readdir` / `readdirplus` hand it to the kernel page by page.
//!
//! Offsets: 1 = ".", 2 = "..", 3.. = the entries; each entry carries the next offset. The
//! root's orphan directory (files unlinked while open) is never listed.

use super::{file_type, fuse_attr, lock, Handle, WormFuse, ORPHAN_DIR, TTL};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, ReplyDirectory,
    ReplyDirectoryPlus, ReplyOpen, Request,
};
use std::time::{Duration, UNIX_EPOCH};
use wormfs::ids::FileId;
use wormfs::meta::{Attr, DirEntry};

/// More lines than one reply holds: a reply is at most 128 KiB, a `readdir` line at least
/// 32 bytes and a `readdirplus` line at least 152. A reply with fewer is still right: the
/// kernel asks again from the next offset.
const PAGE_LINES: usize = 4096;
const PAGE_LINES_PLUS: usize = 1024;

/// One line of a listing: inode, kind, name, and the attributes when known.
type Line = (u64, FileType, String, Option<Attr>);

impl WormFuse {
    /// Looks `name` up in `dir` as the caller of `req`: from a listed page when one holds
    /// it, else at the node; the second file found at the node in one directory within
    /// the TTL has the next page of the directory listed (see [`super::listed`]).
    pub(super) fn look_up(&self, req: &Request, dir: u64, name: &str) -> super::Result<Attr> {
        if let Some(a) = self.listed.find(dir, name, TTL) {
            return Ok(a);
        }
        let a = self.rpc_as_quiet(req, |c, d| d.block_on(c.lookup(FileId(dir), name)))?;
        if let Some(asked) = self.listed.found(dir, TTL) {
            let page = self.rpc_as_quiet(req, |c, d| {
                d.block_on(c.readdir_plus_page(FileId(dir), name, super::listed::PAGE))
            });
            match page {
                Ok(entries) => self.listed.keep(asked, entries),
                // a caller who may not list the directory keeps plain lookups
                Err(_) => self.listed.refused(asked),
            }
        }
        Ok(a)
    }

    pub(super) fn open_dir(&self, req: &Request, ino: INodeNo, reply: ReplyOpen) {
        let r = self.rpc_as_quiet(req, |c, d| d.block_on(c.readdir_plus(FileId(ino.0))));
        self.answer("opendir", reply, r, |reply, entries| {
            let fh = self.new_handle(Handle::Dir(entries));
            reply.opened(FileHandle(fh), FopenFlags::empty())
        })
    }

    /// At most `max` lines of open directory `fh` from `offset` on, or `None` for no such
    /// handle. Only those lines are copied out of the listing: the kernel takes a page at a
    /// time, and a large directory must not be copied whole for each page.
    fn lines(&self, ino: INodeNo, fh: FileHandle, offset: u64, max: usize) -> Option<Vec<Line>> {
        let handles = lock(&self.handles);
        let Some(Handle::Dir(entries)) = handles.get(&fh.0) else {
            return None;
        };
        let hide = ino == INodeNo::ROOT;
        let dots = [".", ".."].map(|n| (ino.0, FileType::Directory, n, None));
        let listed = entries
            .iter()
            .filter(|(e, _): &&(DirEntry, Option<Attr>)| !(hide && e.name == ORPHAN_DIR))
            .map(|(e, a)| (e.ino.0, file_type(e.kind), e.name.as_str(), a.as_ref()));
        Some(
            dots.into_iter()
                .chain(listed)
                .skip(offset as usize)
                .take(max)
                .map(|(ino, kind, name, attr)| (ino, kind, name.to_owned(), attr.cloned()))
                .collect(),
        )
    }

    pub(super) fn list_dir(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(lines) = self.lines(ino, fh, offset, PAGE_LINES) else {
            return reply.error(Errno::EBADF);
        };
        for (i, (ino, kind, name, _)) in lines.into_iter().enumerate() {
            if reply.add(INodeNo(ino), offset + i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok()
    }

    /// A page of the listing with each entry's attributes, cached by the kernel as a
    /// lookup's are. An entry the node sent none for (a node of a release before it, or
    /// one removed since) is asked for; one that is gone by then is left out.
    pub(super) fn list_dir_plus(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let Some(lines) = self.lines(ino, fh, offset, PAGE_LINES_PLUS) else {
            return reply.error(Errno::EBADF);
        };
        for (i, (ino, kind, name, attr)) in lines.into_iter().enumerate() {
            let next = offset + i as u64 + 1;
            let full = if name == "." || name == ".." {
                // the kernel takes no attributes from these two
                reply.add(
                    INodeNo(ino),
                    next,
                    &name,
                    &Duration::ZERO,
                    &bare(ino, kind),
                    Generation(0),
                )
            } else {
                let attr = match attr {
                    Some(a) => Ok(a),
                    None => self.rpc_quiet(|c, d| d.block_on(c.getattr(FileId(ino)))),
                };
                match attr {
                    Ok(a) => reply.add(
                        INodeNo(ino),
                        next,
                        &name,
                        &TTL,
                        &fuse_attr(&self.with_local_size(a)),
                        Generation(0),
                    ),
                    Err(e) if e.errno == wormfs::errno::ENOENT => false,
                    Err(e) => {
                        self.log_err("readdirplus", &e);
                        return reply.error(Errno::from_i32(e.errno));
                    }
                }
            };
            if full {
                break;
            }
        }
        reply.ok()
    }
}

/// Attributes that only name an inode and its kind.
fn bare(ino: u64, kind: FileType) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind,
        perm: 0,
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}
