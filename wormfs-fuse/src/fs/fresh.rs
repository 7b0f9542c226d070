//! A directory's attributes as the node returned them with a create made by this mount,
//! kept for the kernel's `getattr` that follows.
//!
//! After every create the kernel marks the parent's attributes stale, and with
//! `default_permissions` its next permission check in that directory asks for them again:
//! a call per created file. The node sends the parent's attributes with the create
//! (`AttrReply.parent`), and the mount answers that `getattr` with them, once, within the
//! attribute TTL, as if the kernel had cached them itself.
//!
//! They are kept only when they are the newest this mount can know: while the create was
//! on its way, no other call that may change a directory was (every call through
//! `WormFuse::rpc` counts, save those marked as changing none), and none has been sent
//! since. Other mounts' changes show within the TTL, as with the kernel's own cache.

use std::sync::Mutex;
use std::time::{Duration, Instant};
use wormfs::meta::Attr;

/// See the module documentation.
#[derive(Default)]
pub(super) struct FreshDirs(Mutex<State>);

#[derive(Default)]
struct State {
    /// Moves at the start and at the end of every call that may change a directory.
    generation: u64,
    /// Calls that may change a directory, on their way.
    in_flight: u32,
    /// One directory's attributes, the generation they are valid at, when they came.
    kept: Option<(u64, Attr, u64, Instant)>,
}

/// A call that may change a directory, on its way: ends when dropped.
pub(super) struct Change<'a> {
    dirs: &'a FreshDirs,
    started: u64,
    keep: Option<(u64, Attr)>,
}

impl FreshDirs {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A call that may change a directory starts.
    pub(super) fn begin(&self) -> Change<'_> {
        let mut s = self.state();
        s.generation += 1;
        s.in_flight += 1;
        Change {
            dirs: self,
            started: s.generation,
            keep: None,
        }
    }

    /// The attributes of directory `ino` a create just returned, when nothing may have
    /// changed them since and they are younger than `ttl`; each is given once.
    pub(super) fn take(&self, ino: u64, ttl: Duration) -> Option<Attr> {
        let mut s = self.state();
        match s.kept.take() {
            Some((dir, attr, generation, at))
                if dir == ino && generation == s.generation && at.elapsed() < ttl =>
            {
                Some(attr)
            }
            other => {
                s.kept = other.filter(|k| k.0 != ino);
                None
            }
        }
    }
}

impl Change<'_> {
    /// Keeps `attr` as directory `ino`'s when this call ends, if no other call that may
    /// change a directory overlapped it.
    pub(super) fn keep(&mut self, ino: u64, attr: Attr) {
        self.keep = Some((ino, attr));
    }
}

impl Drop for Change<'_> {
    fn drop(&mut self) {
        let mut s = self.dirs.state();
        let alone = s.generation == self.started && s.in_flight == 1;
        s.in_flight = s.in_flight.saturating_sub(1);
        s.generation += 1;
        if let Some((ino, attr)) = self.keep.take().filter(|_| alone) {
            let generation = s.generation;
            s.kept = Some((ino, attr, generation, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wormfs::ids::FileId;
    use wormfs::meta::{FileKind, Timestamp};

    fn dir(ino: u64, nlink: u32) -> Attr {
        Attr {
            ino: FileId(ino),
            kind: FileKind::Directory,
            perm: 0o755,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            size: 0,
            atime: Timestamp(0),
            mtime: Timestamp(0),
            ctime: Timestamp(0),
            crtime: Timestamp(0),
            layout: None,
        }
    }

    const TTL: Duration = Duration::from_secs(1);

    #[test]
    fn a_create_alone_leaves_its_directory_for_one_getattr() {
        let f = FreshDirs::default();
        let mut c = f.begin();
        c.keep(7, dir(7, 3));
        drop(c);
        assert_eq!(f.take(8, TTL), None, "another directory");
        assert_eq!(f.take(7, TTL).map(|a| a.nlink), Some(3));
        assert_eq!(f.take(7, TTL), None, "given once");
    }

    #[test]
    fn any_other_change_since_or_meanwhile_makes_them_stale() {
        let f = FreshDirs::default();
        // a change after the create
        let mut c = f.begin();
        c.keep(7, dir(7, 3));
        drop(c);
        drop(f.begin());
        assert_eq!(f.take(7, TTL), None, "changed since");
        // a change that started before the create and ended after it
        let other = f.begin();
        let mut c = f.begin();
        c.keep(7, dir(7, 3));
        drop(c);
        drop(other);
        assert_eq!(f.take(7, TTL), None, "overlapping, ended later");
        // one that started during the create and ended before it
        let mut c = f.begin();
        c.keep(7, dir(7, 3));
        drop(f.begin());
        drop(c);
        assert_eq!(f.take(7, TTL), None, "overlapping, inside");
        // and too old
        let mut c = f.begin();
        c.keep(7, dir(7, 3));
        drop(c);
        assert_eq!(f.take(7, Duration::ZERO), None, "older than the TTL");
    }
}
