//! How the mount answers the kernel: the value, or the error's errno, logged with its
//! cause.

use super::*;

/// The reply types, answered the same way on failure.
pub(super) trait Fail {
    fn fail(self, e: Errno);
}

macro_rules! fail_by_error {
    ($($t:ty),*) => { $(impl Fail for $t { fn fail(self, e: Errno) { self.error(e) } })* };
}
fail_by_error!(
    ReplyAttr,
    ReplyCreate,
    ReplyData,
    ReplyEmpty,
    ReplyEntry,
    ReplyOpen,
    ReplyStatfs,
    ReplyWrite,
    ReplyXattr
);

impl WormFuse {
    pub(super) fn log_err(&self, op: &str, e: &ClientError) {
        if e.errno == errno::EIO || e.errno == errno::ENOSPC {
            tracing::error!(op, errno = e.errno, "{}", e.message);
        } else {
            tracing::debug!(op, errno = e.errno, "{}", e.message);
        }
    }

    /// Answers a request: `ok` with the value, or the error's errno, logged with its cause.
    pub(super) fn answer<R: Fail, T>(
        &self,
        op: &str,
        reply: R,
        r: Result<T>,
        ok: impl FnOnce(R, T),
    ) {
        match r {
            Ok(v) => ok(reply, v),
            Err(e) => {
                self.log_err(op, &e);
                reply.fail(errno_of(&e))
            }
        }
    }

    pub(super) fn entry(&self, reply: ReplyEntry, r: Result<Attr>, op: &str) {
        self.answer(op, reply, r, |reply, a| {
            reply.entry(&TTL, &fuse_attr(&self.with_local_size(a)), Generation(0))
        })
    }

    pub(super) fn empty(&self, reply: ReplyEmpty, r: Result<()>, op: &str) {
        self.answer(op, reply, r, |reply, ()| reply.ok())
    }
}
