//! The mount's side of the cluster's file locks: one session per mount, renewed by one call
//! for all its locks every third of the lease; open locks taken at `open` and dropped at the
//! last `release`; `fcntl` and `flock` locks through `setlk`/`getlk`.
//!
//! The mount keeps a mirror of what it holds (a [`LockTable`] with itself as the only
//! session), which it lists at each renewal so that a new master can take the locks back.
//!
//! A released open lock is not a call of its own: it rides on the mount's next lock call,
//! or goes alone after [`RELEASE_DELAY`] when no call follows. A file read or written after
//! another costs one lock call, not two; a reopen of a file whose release has not left yet
//! costs none. (The kernel sends a release after `close` has returned anyway, so another
//! client could always find a just-closed file still locked for a moment.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use wormfs::errno;
use wormfs::locks::{Held, LockKind, LockTable};
use wormfs::rpc::client::{Client, ClientError};
use wormfs::rpc::locks::{held, kind_from_wire, op, spec};
use wormfs::rpc::proto;

/// The mirror's own session name.
const ME: &str = "me";
/// The lease assumed until the master says otherwise.
const DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// How long a released open lock waits for a call to ride on before it goes alone.
const RELEASE_DELAY: Duration = Duration::from_millis(20);

/// Open locks released here and not yet at the master.
#[derive(Default)]
struct Releases {
    /// Waiting for a call to ride on.
    pending: Vec<(u64, LockKind)>,
    /// On their way in a call: an open of the same lock waits for that call's answer, so
    /// that its acquire cannot overtake the release.
    sending: Vec<(u64, LockKind)>,
}

/// What an open or a lock request got.
pub(crate) enum Got {
    /// Granted.
    Granted,
    /// Another client holds a conflicting lock.
    Refused {
        /// Its name.
        holder: String,
        /// The conflicting range lock (range requests): (start, end, exclusive, pid).
        range: Option<(u64, u64, bool, u32)>,
    },
}

struct Mirror {
    table: LockTable,
    /// Open handles per (file, kind): the open lock is dropped with the last.
    opens: HashMap<(u64, LockKind), u32>,
}

struct Inner {
    client: Client,
    rt: tokio::runtime::Handle,
    session: String,
    name: String,
    mirror: Mutex<Mirror>,
    lease: Mutex<Duration>,
    /// When the master last confirmed the session.
    renewed: Mutex<Option<Instant>>,
    /// No lock service on the node (an older node): locks are local only.
    absent: AtomicBool,
    stop: (Mutex<bool>, Condvar),
    /// Released open locks not yet sent, and the ones being sent.
    releases: (Mutex<Releases>, Condvar),
    /// Lock calls about one file go one at a time, by inode modulo this many: FUSE threads
    /// send over connections of their own, so a release and the next open of a file from
    /// two threads could otherwise reach the master in the opposite order, and the master
    /// would drop the lock the mount believes it holds.
    order: Vec<Mutex<()>>,
}

/// How many [`Inner::order`] locks there are.
const ORDER_SLOTS: u64 = 64;

/// How a lock request reaches the node: a FUSE thread passes its own connection (a hop to
/// the shared runtime and back costs more than the call), other threads
/// [`Locks::shared`].
pub(crate) type Via<'a> = &'a dyn Fn(proto::LockRequest) -> Result<proto::LockReply, ClientError>;

/// The mount's lock session.
#[derive(Clone)]
pub(crate) struct Locks(Arc<Inner>);

fn request(s: &Inner, which: u32, lock: Option<&Held>, held_list: &[Held]) -> proto::LockRequest {
    proto::LockRequest {
        session: s.session.clone(),
        client: s.name.clone(),
        op: which,
        lock: lock.map(spec),
        held: held_list.iter().map(spec).collect(),
        closes: Vec::new(),
    }
}

fn releases(s: &Inner) -> std::sync::MutexGuard<'_, Releases> {
    s.releases.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends `req` through `via` with the pending releases riding on it. Releases a call did
/// not deliver go back to wait for the next one.
fn with_releases(
    s: &Inner,
    via: Via,
    mut req: proto::LockRequest,
) -> Result<proto::LockReply, ClientError> {
    let riding = take_riding(s, &mut req);
    let answer = via(req);
    done_riding(s, riding, answer.is_ok());
    answer
}

/// Moves the pending releases into `req.closes` and marks them as being sent.
fn take_riding(s: &Inner, req: &mut proto::LockRequest) -> Riding {
    let riding = {
        let mut r = releases(s);
        let riding = std::mem::take(&mut r.pending);
        r.sending.extend_from_slice(&riding);
        riding
    };
    req.closes = riding
        .iter()
        .map(|&(ino, kind)| spec(&Held::open(ino, kind)))
        .collect();
    Riding(riding)
}

/// The call carrying `riding` is answered (`delivered`) or failed (they wait again).
fn done_riding(s: &Inner, riding: Riding, delivered: bool) {
    let riding = riding.0;
    if riding.is_empty() {
        return;
    }
    let mut r = releases(s);
    r.sending.retain(|x| !riding.contains(x));
    if !delivered {
        r.pending.extend_from_slice(&riding);
    }
    drop(r);
    s.releases.1.notify_all();
}

/// Releases riding on a call; hand them back with [`Locks::rode`].
#[must_use]
pub(crate) struct Riding(Vec<(u64, LockKind)>);

/// What the node sends with a granted open lock: the file's attributes as they are once
/// the lock is held, and a small file's bytes for a reader (both absent from older nodes,
/// and when this mount held the lock already).
#[derive(Default)]
pub(crate) struct Grant {
    pub(crate) attr: Option<proto::Attr>,
    pub(crate) content: Option<Vec<u8>>,
}

/// The open lock of this kind.
fn open_kind(write: bool) -> LockKind {
    if write {
        LockKind::OpenWrite
    } else {
        LockKind::OpenRead
    }
}

/// The mirror holds one more open of `h`, an open lock the master has for this mount.
fn count_open(m: &mut Mirror, h: &Held) {
    if let Err(e) = m.table.acquire(Instant::now(), ME, h) {
        tracing::debug!("lock mirror: {e}");
    }
    *m.opens.entry((h.ino, h.kind)).or_default() += 1;
}

fn mirror(s: &Inner) -> std::sync::MutexGuard<'_, Mirror> {
    let mut m = s.mirror.lock().unwrap_or_else(|e| e.into_inner());
    // the mirror's session never expires while the mount runs
    m.table.keep(Instant::now(), ME, "this mount", &[]);
    m
}

impl Locks {
    /// Starts the session of a mount talking through `client`, and its renewals.
    pub(crate) fn start(client: Client, rt: tokio::runtime::Handle) -> Locks {
        let user = std::env::var("USER").unwrap_or_else(|_| format!("uid {}", rustix_uid()));
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        let session = wormfs::rpc::identity::new_key()
            .map(|k| wormfs::rpc::identity::to_hex(&k)[..32].to_owned())
            .unwrap_or_else(|_| format!("{}-{}", std::process::id(), now_nanos()));
        let now = Instant::now();
        let inner = Arc::new(Inner {
            client,
            rt,
            session,
            name: format!("{user}@{host} pid {}", std::process::id()),
            mirror: Mutex::new(Mirror {
                table: LockTable::new(now, Duration::from_secs(86_400), true, []),
                opens: HashMap::new(),
            }),
            lease: Mutex::new(DEFAULT_LEASE),
            renewed: Mutex::new(None),
            absent: AtomicBool::new(false),
            stop: (Mutex::new(false), Condvar::new()),
            releases: (Mutex::new(Releases::default()), Condvar::new()),
            order: (0..ORDER_SLOTS).map(|_| Mutex::new(())).collect(),
        });
        let keeper = inner.clone();
        std::thread::Builder::new()
            .name("wormfs-locks".into())
            .spawn(move || keep_alive(&keeper))
            .map_err(|e| tracing::error!("cannot start the lock renewals: {e}"))
            .ok();
        let sender = inner.clone();
        std::thread::Builder::new()
            .name("wormfs-releases".into())
            .spawn(move || send_releases(&sender))
            .map_err(|e| tracing::error!("cannot start the lock releases: {e}"))
            .ok();
        Locks(inner)
    }

    /// A call through the mount's shared connection and runtime.
    pub(crate) fn shared(&self, req: proto::LockRequest) -> Result<proto::LockReply, ClientError> {
        let s = &self.0;
        s.rt.block_on(s.client.lock_call(req))
    }

    /// A lock request to put in a create of a regular file (`CreateRequest.open_lock`),
    /// carrying the pending releases; give the outcome to [`Locks::rode`].
    pub(crate) fn for_create(&self) -> (proto::LockRequest, Riding) {
        let mut req = request(&self.0, op::ACQUIRE, None, &[]);
        let riding = take_riding(&self.0, &mut req);
        (req, riding)
    }

    /// The call that carried `riding` was answered (`delivered`), or failed.
    pub(crate) fn rode(&self, riding: Riding, delivered: bool) {
        done_riding(&self.0, riding, delivered);
    }

    /// The create of `ino` took this mount's open write lock on it.
    pub(crate) fn took_at_create(&self, ino: u64) {
        let _order = self.in_order(ino);
        count_open(&mut mirror(&self.0), &Held::open(ino, LockKind::OpenWrite));
    }

    /// Holds the calls about `ino` in order (see [`Inner::order`]).
    fn in_order(&self, ino: u64) -> std::sync::MutexGuard<'_, ()> {
        self.0.order[(ino % ORDER_SLOTS) as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Sends one renewal now; true when the master answered.
    fn keep_now(&self) -> bool {
        renew(&self.0)
    }

    /// Takes `h` (retrying while a new master takes back old locks, up to a lease and a
    /// bit); an error is the errno to give the caller.
    /// With a granted open lock, the file's attributes as the node read them after the grant
    /// (`None` from an older node, or with no lock service).
    fn acquire(&self, via: Via, h: &Held) -> Result<(Got, Grant), ClientError> {
        let deadline = Instant::now() + *self.0.lease.lock().unwrap_or_else(|e| e.into_inner()) * 2;
        loop {
            match with_releases(&self.0, via, request(&self.0, op::ACQUIRE, Some(h), &[])) {
                Ok(r) if r.granted => {
                    let mut m = mirror(&self.0);
                    if let Err(e) = m.table.acquire(Instant::now(), ME, h) {
                        tracing::debug!("lock mirror: {e}");
                    }
                    let grant = Grant {
                        attr: r.attr,
                        content: r.content,
                    };
                    return Ok((Got::Granted, grant));
                }
                Ok(r) => return Ok((refused(r), Grant::default())),
                Err(e) if e.errno == errno::ENOSYS => {
                    if !self.0.absent.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "the node runs no lock service: locks taken on this mount hold only here"
                        );
                    }
                    return Ok((Got::Granted, Grant::default()));
                }
                Err(e) if e.errno == errno::EAGAIN && Instant::now() < deadline => {
                    // a new master waits for old locks: make sure ours are back, then retry
                    self.keep_now();
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Opens `ino` for write (or read): takes the open lock unless this mount holds it.
    /// With a lock taken from the node, what the node sent with the grant.
    pub(crate) fn open(
        &self,
        via: Via,
        ino: u64,
        write: bool,
    ) -> Result<(Got, Grant), ClientError> {
        let kind = open_kind(write);
        let _order = self.in_order(ino);
        {
            let mut m = mirror(&self.0);
            if let Some(n) = m.opens.get_mut(&(ino, kind)) {
                *n += 1;
                return Ok((Got::Granted, Grant::default()));
            }
        }
        let h = Held::open(ino, kind);
        {
            let mut r = releases(&self.0);
            if let Some(i) = r.pending.iter().position(|x| *x == (ino, kind)) {
                // released here a moment ago and not sent: the master still has it for us
                r.pending.swap_remove(i);
                drop(r);
                count_open(&mut mirror(&self.0), &h);
                return Ok((Got::Granted, Grant::default()));
            }
            // its release is on the way: the acquire goes after it
            let _sent = self
                .0
                .releases
                .1
                .wait_while(r, |r| r.sending.contains(&(ino, kind)))
                .unwrap_or_else(|e| e.into_inner());
        }
        let (got, grant) = self.acquire(via, &h)?;
        if matches!(got, Got::Granted) {
            *mirror(&self.0).opens.entry((ino, kind)).or_default() += 1;
        }
        Ok((got, grant))
    }

    /// Closes one open of `ino`; the last of its kind drops the open lock (with the next
    /// lock call, or alone after [`RELEASE_DELAY`]).
    pub(crate) fn close(&self, ino: u64, write: bool) {
        let kind = open_kind(write);
        let _order = self.in_order(ino);
        {
            let mut m = mirror(&self.0);
            match m.opens.get_mut(&(ino, kind)) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    return;
                }
                Some(_) => {
                    m.opens.remove(&(ino, kind));
                    m.table.close(ME, ino, kind);
                }
                None => return,
            }
        }
        if self.0.absent.load(Ordering::Relaxed) {
            return;
        }
        releases(&self.0).pending.push((ino, kind));
        self.0.releases.1.notify_all();
    }

    /// Sends a release; a failure only leaves the lock to expire with the session.
    fn release(&self, via: Via, req: proto::LockRequest) {
        if self.0.absent.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = via(req) {
            tracing::warn!(error = %e, "could not release a lock; it ends with this mount's lease");
        }
    }

    /// Takes a byte-range lock of `owner` (`typ` 0 shared, 1 exclusive).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn lock_range(
        &self,
        via: Via,
        ino: u64,
        owner: u64,
        start: u64,
        end: u64,
        write: bool,
        pid: u32,
    ) -> Result<Got, ClientError> {
        let _order = self.in_order(ino);
        Ok(self
            .acquire(via, &Held::range(ino, owner, start, end, write, pid))?
            .0)
    }

    /// Unlocks a byte range of `owner`.
    pub(crate) fn unlock_range(&self, via: Via, ino: u64, owner: u64, start: u64, end: u64) {
        let _order = self.in_order(ino);
        {
            let mut m = mirror(&self.0);
            if !m.table.has_ranges(ME, ino, owner) {
                return;
            }
            m.table.unlock(ME, ino, owner, start, end);
        }
        self.release(
            via,
            request(
                &self.0,
                op::UNLOCK,
                Some(&Held::range(ino, owner, start, end, true, 0)),
                &[],
            ),
        );
    }

    /// Drops every range lock of `owner` on `ino` (the owner closed the file); free when it
    /// holds none.
    pub(crate) fn release_owner(&self, via: Via, ino: u64, owner: u64) {
        self.unlock_range(via, ino, owner, 0, u64::MAX);
    }

    /// The lock that would refuse this one, if any.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn test_range(
        &self,
        via: Via,
        ino: u64,
        owner: u64,
        start: u64,
        end: u64,
        write: bool,
        pid: u32,
    ) -> Result<Got, ClientError> {
        let h = Held::range(ino, owner, start, end, write, pid);
        match via(request(&self.0, op::TEST, Some(&h), &[])) {
            Ok(r) if r.granted => Ok(Got::Granted),
            Ok(r) => Ok(refused(r)),
            Err(e) if e.errno == errno::ENOSYS => Ok(Got::Granted),
            Err(e) => Err(e),
        }
    }

    /// Ends the session (the mount stops): every lock is free at once.
    pub(crate) fn end(&self) {
        let (stop, cv) = &self.0.stop;
        *stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        self.0.releases.1.notify_all();
        if self.0.absent.load(Ordering::Relaxed) {
            return;
        }
        let req = request(&self.0, op::END, None, &[]);
        let client = self.0.client.clone();
        let done = self.0.rt.block_on(async move {
            tokio::time::timeout(Duration::from_secs(3), client.lock_call(req)).await
        });
        if !matches!(done, Ok(Ok(_))) {
            tracing::info!("could not end the lock session; its locks end with its lease");
        }
    }
}

/// A refusal as the master gave it.
fn refused(r: proto::LockReply) -> Got {
    Got::Refused {
        holder: r.holder,
        range: r.conflict.map(|c| {
            let write = kind_from_wire(c.kind) == Some(LockKind::RangeWrite);
            (c.start, c.end, write, c.pid)
        }),
    }
}

/// One renewal listing every held lock; drops from the mirror what the master says is lost.
fn renew(s: &Inner) -> bool {
    let list = mirror(s).table.held(ME);
    let req = request(s, op::KEEP, None, &list);
    match s.rt.block_on(s.client.lock_call(req)) {
        Ok(r) => {
            *s.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            if r.lease_ms > 0 {
                *s.lease.lock().unwrap_or_else(|e| e.into_inner()) =
                    Duration::from_millis(r.lease_ms);
            }
            if !r.lost.is_empty() {
                let mut m = mirror(s);
                for l in r.lost.iter().filter_map(|l| held(l).ok()) {
                    tracing::error!(
                        ino = l.ino,
                        kind = ?l.kind,
                        "a lock of this mount was lost (the mount could not renew it in time); \
                         another client may hold the file now"
                    );
                    m.table.forget(ME, &l);
                    if matches!(l.kind, LockKind::OpenRead | LockKind::OpenWrite) {
                        m.opens.remove(&(l.ino, l.kind));
                    }
                }
            }
            true
        }
        Err(e) if e.errno == errno::ENOSYS => {
            s.absent.store(true, Ordering::Relaxed);
            true
        }
        Err(e) => {
            let since = s
                .renewed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .map(|t| t.elapsed());
            let lease = *s.lease.lock().unwrap_or_else(|e| e.into_inner());
            if since.is_some_and(|t| t > lease) && !mirror(s).table.held(ME).is_empty() {
                tracing::error!(error = %e, "the locks of this mount could not be renewed within the lease; they may be lost");
            } else {
                tracing::debug!(error = %e, "lock renewal failed; retrying");
            }
            false
        }
    }
}

/// Sends released open locks that found no call to ride on within [`RELEASE_DELAY`], until
/// the mount ends (its session's end drops them all).
fn send_releases(s: &Inner) {
    let stopped = || *s.stop.0.lock().unwrap_or_else(|e| e.into_inner());
    let via = |req| s.rt.block_on(s.client.lock_call(req));
    loop {
        drop(
            s.releases
                .1
                .wait_while(releases(s), |r| r.pending.is_empty() && !stopped())
                .unwrap_or_else(|e| e.into_inner()),
        );
        if stopped() {
            return;
        }
        std::thread::sleep(RELEASE_DELAY);
        if releases(s).pending.is_empty() {
            continue; // they rode on a call, or were taken back by a reopen
        }
        if let Err(e) = with_releases(s, &via, request(s, op::CLOSE, None, &[])) {
            tracing::warn!(error = %e, "could not send lock releases; retrying");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Renews the session every third of the lease until the mount ends.
fn keep_alive(s: &Inner) {
    loop {
        if !s.absent.load(Ordering::Relaxed) {
            renew(s);
        }
        let every = *s.lease.lock().unwrap_or_else(|e| e.into_inner()) / 3;
        let (stop, cv) = &s.stop;
        let stopped = stop.lock().unwrap_or_else(|e| e.into_inner());
        let (stopped, _) = cv
            .wait_timeout_while(stopped, every, |s| !*s)
            .unwrap_or_else(|e| e.into_inner());
        if *stopped {
            return;
        }
    }
}

fn rustix_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().and_then(|u| u.parse().ok()))
        })
        .unwrap_or(0)
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
