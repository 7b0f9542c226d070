//! Extended attributes: set, get, list and remove, answered to the kernel.

use super::convert::name_str;
use super::{WormFuse, CAPABILITY_XATTR};
use fuser::{Errno, INodeNo, ReplyEmpty, ReplyXattr, Request};
use std::ffi::OsStr;
use wormfs::errno;
use wormfs::ids::FileId;
use wormfs::meta::XattrMode;
use wormfs::rpc::client::ClientError;

impl WormFuse {
    pub(super) fn set_xattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        reply: ReplyEmpty,
    ) {
        let mode = if flags & libc::XATTR_CREATE != 0 {
            XattrMode::Create
        } else if flags & libc::XATTR_REPLACE != 0 {
            XattrMode::Replace
        } else {
            XattrMode::Any
        };
        let r = name_str(name).and_then(|n| {
            if n == CAPABILITY_XATTR {
                return Err(ClientError {
                    errno: errno::EOPNOTSUPP,
                    message: format!("{CAPABILITY_XATTR}: WormFS does not keep file capabilities"),
                });
            }
            self.rpc_as(req, |c, d| {
                d.block_on(c.setxattr(FileId(ino.0), n, value, mode))
            })
        });
        self.empty(reply, r, "setxattr")
    }

    pub(super) fn get_xattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        size: u32,
        reply: ReplyXattr,
    ) {
        if name == CAPABILITY_XATTR {
            // The kernel asks before every write(); no file here has one (setxattr refuses
            // it), so the answer needs no round trip to the node.
            reply.error(Errno::from_i32(errno::ENODATA));
            return;
        }
        let r = name_str(name)
            .and_then(|n| self.rpc_as_quiet(req, |c, d| d.block_on(c.getxattr(FileId(ino.0), n))));
        self.answer("getxattr", reply, r, |reply, v| sized(reply, size, &v))
    }

    pub(super) fn list_xattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let r = self.rpc_as_quiet(req, |c, d| d.block_on(c.listxattr(FileId(ino.0))));
        self.answer("listxattr", reply, r, |reply, names| {
            let mut buf = Vec::new();
            for n in names {
                buf.extend_from_slice(n.as_bytes());
                buf.push(0);
            }
            sized(reply, size, &buf)
        })
    }

    pub(super) fn remove_xattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        reply: ReplyEmpty,
    ) {
        let r = name_str(name)
            .and_then(|n| self.rpc_as(req, |c, d| d.block_on(c.removexattr(FileId(ino.0), n))));
        self.empty(reply, r, "removexattr")
    }
}

/// Answers a read of `bytes` into a buffer of `size`: its length when `size` is 0 (the
/// caller asks how much room it needs), `ERANGE` when it does not fit.
fn sized(reply: ReplyXattr, size: u32, bytes: &[u8]) {
    if size == 0 {
        reply.size(bytes.len() as u32)
    } else if bytes.len() > size as usize {
        reply.error(Errno::ERANGE)
    } else {
        reply.data(bytes)
    }
}
