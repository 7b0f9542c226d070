//! The mount's lock operations: open locks at `open`/`create`/`release`, and `fcntl` /
//! `flock` locks through `setlk`, `getlk`, `flush` and `release`, all through the cluster's
//! lock service ([`crate::locks::Locks`]).

use super::{Result, WormFuse};
use crate::locks::{Got, Grant};
use fuser::{Errno, ReplyEmpty, ReplyLock};
use std::time::{Duration, Instant};
use wormfs::errno;
use wormfs::rpc::client::ClientError;
use wormfs::rpc::proto;

/// `fcntl` lock types (Linux).
const F_RDLCK: i32 = 0;
const F_WRLCK: i32 = 1;
const F_UNLCK: i32 = 2;

fn busy(message: String) -> ClientError {
    ClientError {
        errno: errno::EBUSY,
        message,
    }
}

impl WormFuse {
    /// Sends a lock request over this FUSE thread's own connection.
    fn lock_call(&self, req: proto::LockRequest) -> Result<proto::LockReply> {
        self.rpc_quiet(|c, d| d.block_on(c.lock_call(req)))
    }

    /// Takes the open lock of `ino` for this mount (write, or read), and returns it with
    /// what the node sent along (the file's attributes, a small file's bytes). A file
    /// another client holds is refused with `EBUSY`, and the mount logs who holds it.
    pub(super) fn take_open_lock(&self, ino: u64, write: bool) -> Result<(Option<bool>, Grant)> {
        let (got, grant) = self.locks.open(&|r| self.lock_call(r), ino, write)?;
        match got {
            Got::Granted => Ok((Some(write), grant)),
            Got::Refused { holder, .. } => {
                let what = if write { "write" } else { "read" };
                tracing::warn!(
                    ino,
                    holder = %holder,
                    "open for {what} refused with EBUSY: the file is locked by {holder}"
                );
                Err(busy(format!(
                    "inode {ino} is locked by {holder}; open for {what} refused"
                )))
            }
        }
    }

    /// Drops the open lock a handle took.
    pub(super) fn drop_open_lock(&self, ino: u64, lock: Option<bool>) {
        if let Some(write) = lock {
            self.locks.close(ino, write);
        }
    }

    /// A process closed a descriptor of `ino`: POSIX drops its record locks on the file.
    pub(super) fn release_lock_owner(&self, ino: u64, owner: u64) {
        self.locks.release_owner(&|r| self.lock_call(r), ino, owner);
    }

    /// `F_SETLK` / `F_SETLKW` (and `flock`, which the kernel sends the same way, with the
    /// open file as owner). A waiting request is answered from its own thread.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn set_lock(
        &self,
        ino: u64,
        owner: u64,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        caller_pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let write = match typ {
            F_UNLCK => {
                self.locks
                    .unlock_range(&|r| self.lock_call(r), ino, owner, start, end);
                return reply.ok();
            }
            F_RDLCK => false,
            F_WRLCK => true,
            _ => return reply.error(Errno::EINVAL),
        };
        let first =
            self.locks
                .lock_range(&|r| self.lock_call(r), ino, owner, start, end, write, pid);
        // a waiting retry runs on its own thread, through the mount's shared connection
        let locks = self.locks.clone();
        let attempt =
            move || locks.lock_range(&|r| locks.shared(r), ino, owner, start, end, write, pid);
        match first {
            Ok(Got::Granted) => reply.ok(),
            Ok(Got::Refused { .. }) if !sleep => reply.error(Errno::EAGAIN),
            Ok(Got::Refused { holder, .. }) => {
                tracing::debug!(ino, %holder, "waiting for a lock");
                let waiter = std::thread::Builder::new()
                    .name("wormfs-lock-wait".into())
                    .spawn(move || wait_for(attempt, caller_pid, reply));
                if let Err(e) = waiter {
                    tracing::error!("cannot wait for a lock: {e}");
                }
            }
            Err(e) => reply.error(Errno::from_i32(e.errno)),
        }
    }

    /// `F_GETLK`: the lock that would refuse this one, or `F_UNLCK`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn get_lock(
        &self,
        ino: u64,
        owner: u64,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        match self.locks.test_range(
            &|r| self.lock_call(r),
            ino,
            owner,
            start,
            end,
            typ == F_WRLCK,
            pid,
        ) {
            Ok(Got::Granted) => reply.locked(0, 0, F_UNLCK, 0),
            Ok(Got::Refused {
                range: Some((s, e, w, p)),
                ..
            }) => reply.locked(s, e, if w { F_WRLCK } else { F_RDLCK }, p),
            Ok(Got::Refused { range: None, .. }) => reply.locked(start, end, F_WRLCK, 0),
            Err(e) => reply.error(Errno::from_i32(e.errno)),
        }
    }
}

/// Retries a refused lock until it is granted, or until the waiting process is gone.
fn wait_for(attempt: impl Fn() -> Result<Got>, caller_pid: u32, reply: ReplyEmpty) {
    let mut pause = Duration::from_millis(50);
    let started = Instant::now();
    loop {
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(500));
        if caller_pid != 0 && !std::path::Path::new(&format!("/proc/{caller_pid}")).exists() {
            return reply.error(Errno::EINTR);
        }
        match attempt() {
            Ok(Got::Granted) => {
                tracing::debug!(waited = ?started.elapsed(), "lock granted after waiting");
                return reply.ok();
            }
            Ok(Got::Refused { .. }) => {}
            Err(e) => return reply.error(Errno::from_i32(e.errno)),
        }
    }
}
