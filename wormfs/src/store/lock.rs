//! One owner per directory: an exclusive `flock` on a lock file inside a data directory or
//! a disk directory, held for as long as the owner runs.

use super::StoreError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside a locked directory.
pub const LOCK_FILE_NAME: &str = ".wormfs.lock";

/// An exclusive lock on a directory, released when dropped (or when the process dies: the
/// kernel drops `flock` locks with the last descriptor, so a crash never leaves a stale
/// lock behind).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Locks `dir` for this process. `what` names the directory in the error, e.g. "data
    /// directory" or "disk `d1`". A directory another process (or another store in this
    /// process) holds is refused with the holder's pid.
    pub fn acquire(dir: &Path, what: &str) -> Result<DirLock, StoreError> {
        let path = dir.join(LOCK_FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| StoreError::Io {
                action: "open lock file",
                path: path.clone(),
                source,
            })?;
        if let Err(e) =
            rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let by = if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
            };
            return Err(StoreError::DiskSetup(format!(
                "{what} `{}` is in use by another WormFS process{by}: {e}; \
                 stop that process first, or give this one a directory of its own",
                dir.display()
            )));
        }
        // Who holds it, for the message a second process gets.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(DirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), "data directory").unwrap();
        let err = DirLock::acquire(dir.path(), "data directory").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("in use by another WormFS process"), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        DirLock::acquire(dir.path(), "data directory").unwrap();
    }
}
