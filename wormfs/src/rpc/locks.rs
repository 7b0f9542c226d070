//! The `Lock` call: wire forms of [`crate::locks`] and, on a node, the handler that checks
//! the caller and passes the call to the [`LockService`](crate::locks::LockService).

use super::proto;
use crate::locks::{Held, LockKind};

/// The `op` values of a `LockRequest`.
pub mod op {
    /// Take a lock.
    pub const ACQUIRE: u32 = 1;
    /// Renew the session, listing every held lock.
    pub const KEEP: u32 = 2;
    /// Drop an open lock (without one: only the request's `closes`).
    pub const CLOSE: u32 = 3;
    /// Unlock a byte range.
    pub const UNLOCK: u32 = 4;
    /// Drop every range lock of an owner.
    pub const RELEASE_OWNER: u32 = 5;
    /// Which lock would refuse this one.
    pub const TEST: u32 = 6;
    /// End the session.
    pub const END: u32 = 7;
}

/// A lock kind's wire number.
pub fn kind_to_wire(k: LockKind) -> u32 {
    match k {
        LockKind::OpenRead => 1,
        LockKind::OpenWrite => 2,
        LockKind::RangeRead => 3,
        LockKind::RangeWrite => 4,
    }
}

/// A lock kind from its wire number.
pub fn kind_from_wire(k: u32) -> Option<LockKind> {
    Some(match k {
        1 => LockKind::OpenRead,
        2 => LockKind::OpenWrite,
        3 => LockKind::RangeRead,
        4 => LockKind::RangeWrite,
        _ => return None,
    })
}

/// A lock's wire form.
pub fn spec(h: &Held) -> proto::LockSpec {
    proto::LockSpec {
        ino: h.ino,
        kind: kind_to_wire(h.kind),
        owner: h.owner,
        start: h.start,
        end: h.end,
        pid: h.pid,
    }
}

/// A lock from its wire form.
pub fn held(s: &proto::LockSpec) -> Result<Held, String> {
    let kind = kind_from_wire(s.kind).ok_or_else(|| {
        format!(
            "lock kind {} is not 1 to 4 (read, write, shared, exclusive)",
            s.kind
        )
    })?;
    if s.start > s.end {
        return Err(format!(
            "lock range {}..={} ends before it starts",
            s.start, s.end
        ));
    }
    Ok(Held {
        ino: s.ino,
        kind,
        owner: s.owner,
        start: s.start,
        end: s.end,
        pid: s.pid,
    })
}

#[cfg(feature = "node")]
pub(super) use serve::lock;

#[cfg(feature = "node")]
mod serve {
    use super::{held, op, proto, spec};
    use crate::errno;
    use crate::ids::FileId;
    use crate::locks::Held;
    use crate::locks::{Denied, LockAnswer, LockCall, LockKind, LockOp, LockService};
    use crate::node::NodeFs;
    use crate::rpc::convert::attr_to_proto;
    use crate::rpc::session::Caller;
    use crate::rpc::status_with_errno;
    use tonic::Status;

    fn bad(what: String) -> Status {
        status_with_errno(errno::EINVAL, what)
    }

    /// Answers one `Lock` call for `caller`.
    pub(in crate::rpc) async fn lock(
        fs: &NodeFs,
        locks: &LockService,
        caller: &Caller,
        r: proto::LockRequest,
    ) -> Result<proto::LockReply, Status> {
        if r.session.is_empty() || r.session.len() > 64 {
            return Err(bad(
                "session: give the client's session id (1 to 64 bytes)".into()
            ));
        }
        let the_lock = || -> Result<crate::locks::Held, Status> {
            held(
                r.lock
                    .as_ref()
                    .ok_or_else(|| bad("lock: name the lock".into()))?,
            )
            .map_err(bad)
        };
        let mut open_ino = None;
        let mut open_read = false;
        let op = match r.op {
            op::ACQUIRE => {
                let h = the_lock()?;
                if matches!(h.kind, LockKind::OpenRead | LockKind::OpenWrite) {
                    open_ino = Some(FileId(h.ino));
                    open_read = h.kind == LockKind::OpenRead;
                }
                // A lock is a claim on the file: only for those who may use it that way.
                let write = matches!(h.kind, LockKind::OpenWrite | LockKind::RangeWrite);
                fs.check_data(caller, FileId(h.ino), write)
                    .map_err(|e| status_with_errno(e.errno(), format!("lock: {e}")))?;
                LockOp::Acquire(h)
            }
            op::KEEP => LockOp::Keep(
                r.held
                    .iter()
                    .map(held)
                    .collect::<Result<_, _>>()
                    .map_err(bad)?,
            ),
            op::CLOSE if r.lock.is_none() => LockOp::Closes,
            op::CLOSE => {
                let h = the_lock()?;
                LockOp::Close {
                    ino: h.ino,
                    kind: h.kind,
                }
            }
            op::UNLOCK => {
                let h = the_lock()?;
                LockOp::Unlock {
                    ino: h.ino,
                    owner: h.owner,
                    start: h.start,
                    end: h.end,
                }
            }
            op::RELEASE_OWNER => {
                let h = the_lock()?;
                LockOp::ReleaseOwner {
                    ino: h.ino,
                    owner: h.owner,
                }
            }
            op::TEST => LockOp::Test(the_lock()?),
            op::END => LockOp::End,
            other => return Err(bad(format!("op: {other} is not a lock operation (1 to 7)"))),
        };
        let closes = r
            .closes
            .iter()
            .map(|c| match held(c) {
                Ok(h) if matches!(h.kind, LockKind::OpenRead | LockKind::OpenWrite) => {
                    Ok((h.ino, h.kind))
                }
                Ok(_) => Err(bad(
                    "closes: only open locks (kinds 1 and 2) are closed".into()
                )),
                Err(e) => Err(bad(e)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let call = LockCall {
            // sessions are per user: nobody can renew or end another user's session
            session: format!("{}/{}", caller.user, r.session),
            client: r.client.chars().take(200).collect(),
            op,
            closes,
        };
        let mut reply = proto::LockReply::default();
        match locks.call(call).await {
            LockAnswer::Done => {
                reply.granted = true;
                // an open goes on with the attributes as they are once the lock is held
                if let Some(ino) = open_ino {
                    let attr = fs.getattr(ino).ok();
                    // a small file's bytes come along for a reader (checked above: it may
                    // read them), so its reads cost no call
                    if let Some(a) = attr.as_ref().filter(|_| open_read) {
                        reply.content = fs.inline_content(ino, a.size).ok().flatten();
                    }
                    reply.attr = attr.map(|a| attr_to_proto(&a));
                }
            }
            LockAnswer::Kept { lease_ms, lost } => {
                reply.granted = true;
                reply.lease_ms = lease_ms;
                reply.lost = lost.iter().map(spec).collect();
            }
            LockAnswer::Denied(Denied::Conflict { holder, range }) => {
                reply.holder = holder;
                reply.conflict =
                    range.map(|r| spec(&Held::range(0, r.owner, r.start, r.end, r.write, r.pid)));
            }
            LockAnswer::Denied(d @ (Denied::Grace { .. } | Denied::NoSession)) => {
                return Err(status_with_errno(errno::EAGAIN, d.to_string()))
            }
            LockAnswer::NotMaster => {
                return Err(status_with_errno(
                    errno::EAGAIN,
                    "no master answered the lock call",
                ))
            }
            LockAnswer::Unavailable(why) => return Err(status_with_errno(errno::EAGAIN, why)),
        }
        Ok(reply)
    }
}
