//! Group commit for one file system: many writers, few `syncfs` calls.
//!
//! A chunk put creates a folder or two, a chunk file and an index line. Making each of
//! them durable on its own costs four or five `fsync`s, and on one file system a journal
//! serialises them: six chunk puts of one stripe on six folders of one disk took ~30
//! journal commits. Instead a writer does all its writes, then asks for one `syncfs` of
//! the file system, which covers every write made before it started: data, new entries,
//! renames. Writers that ask while a sync runs share the next one, so any number of
//! concurrent puts on one file system cost at most two syncs.
//!
//! A sync that fails fails every writer it was meant to cover, even if a later sync
//! succeeds: the kernel reports a write-back error once, so a later success does not mean
//! the earlier data reached the disk.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

/// The failures kept for writers still waiting; older ones are dropped (a writer reads its
/// outcome as soon as it wakes, long before a thousand more syncs have failed).
const KEPT_FAILURES: usize = 1000;

#[derive(Default)]
struct State {
    /// Tickets handed out: one per writer asking for durability.
    issued: u64,
    /// Every ticket up to this one is durable.
    synced: u64,
    /// A sync is running.
    running: bool,
    /// Ticket ranges `(from, to]` whose sync failed, with the error.
    failed: Vec<(u64, u64, io::ErrorKind, String)>,
}

/// Durability for writes on one file system, shared by every disk directory on it.
pub(crate) struct FsSync {
    /// Any directory on the file system; `syncfs` is called on it.
    dir: File,
    path: PathBuf,
    state: Mutex<State>,
    done: Condvar,
}

impl FsSync {
    /// Durability for the file system holding `dir`.
    pub(crate) fn open(dir: &Path) -> io::Result<FsSync> {
        Ok(FsSync {
            dir: File::open(dir)?,
            path: dir.to_owned(),
            state: Mutex::new(State::default()),
            done: Condvar::new(),
        })
    }

    /// The directory the file system was opened through.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Returns once every write this thread finished before the call is on stable storage,
    /// or the error of the sync that should have put it there.
    pub(crate) fn durable(&self) -> io::Result<()> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.issued += 1;
        let ticket = s.issued;
        loop {
            if let Some((_, _, kind, msg)) = s
                .failed
                .iter()
                .find(|(from, to, _, _)| *from < ticket && ticket <= *to)
            {
                return Err(io::Error::new(*kind, msg.clone()));
            }
            if s.synced >= ticket {
                return Ok(());
            }
            if s.running {
                s = self.done.wait(s).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // This thread syncs for every ticket issued so far.
            s.running = true;
            let (from, to) = (s.synced, s.issued);
            drop(s);
            let result = rustix::fs::syncfs(&self.dir).map_err(io::Error::from);
            s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.running = false;
            match result {
                Ok(()) => s.synced = s.synced.max(to),
                Err(e) => {
                    if s.failed.len() >= KEPT_FAILURES {
                        s.failed.remove(0);
                    }
                    s.failed.push((from, to, e.kind(), e.to_string()));
                    // Later tickets are not covered by this failure: let them sync again.
                    s.synced = s.synced.max(to);
                }
            }
            self.done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    #[test]
    fn concurrent_writers_share_syncs_and_all_return() {
        let tmp = tempfile::tempdir().unwrap();
        let sync = Arc::new(FsSync::open(tmp.path()).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let sync = sync.clone();
                let dir = tmp.path().to_owned();
                std::thread::spawn(move || {
                    for j in 0..20 {
                        let mut f = File::create(dir.join(format!("f{i}-{j}"))).unwrap();
                        f.write_all(b"chunk").unwrap();
                        sync.durable().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = sync.state.lock().unwrap();
        assert_eq!(s.issued, 160);
        assert_eq!(s.synced, 160, "every ticket is covered by a sync");
        assert!(!s.running);
    }

    #[test]
    fn a_failed_sync_fails_the_tickets_it_covered_and_only_those() {
        let tmp = tempfile::tempdir().unwrap();
        let sync = FsSync::open(tmp.path()).unwrap();
        sync.durable().unwrap();
        {
            let mut s = sync.state.lock().unwrap();
            // as if tickets 2..=3 were covered by a sync that failed
            s.failed
                .push((1, 3, io::ErrorKind::Other, "EIO on write-back".into()));
            s.issued = 1;
        }
        let e = sync.durable().unwrap_err();
        assert!(e.to_string().contains("EIO on write-back"), "{e}");
        let e = sync.durable().unwrap_err();
        assert!(e.to_string().contains("EIO on write-back"), "{e}");
        sync.durable()
            .expect("ticket 4 is past the failure: a fresh sync covers it");
    }
}
