//! Copies of the metadata database on the data disks, so that a node that loses its
//! database (and everything kept only there: owners, modes, times, directories, symlinks,
//! policies, stripes small enough to be kept in the metadata) gets it back with
//! `wormfs recover`, which then adds from the chunk files what was written after the copy.

use crate::meta::{MetaError, MetaStore};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The copy's file name at the root of a disk directory.
pub const BACKUP_FILE_NAME: &str = ".wormfs-meta-backup.sqlite";

/// How many disks get a copy (the first ones, in config order).
pub const BACKUP_COPIES: usize = 2;

/// A copy found on a disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backup {
    /// Its file.
    pub path: PathBuf,
    /// The last op applied to it.
    pub last_applied: u64,
    /// When it was written (the file's modification time), Unix seconds.
    pub written: u64,
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> MetaError + 'a {
    move |e| MetaError::Schema(format!("{action} `{}`: {e}", path.display()))
}

/// Writes a consistent copy of `meta` to the first [`BACKUP_COPIES`] of `disks`: to a
/// temporary file, synced, then renamed over the previous copy, and the directory synced,
/// so a crash leaves the old copy or the new one. Returns the copies written.
pub fn back_up(meta: &MetaStore, disks: &[PathBuf]) -> Result<Vec<PathBuf>, MetaError> {
    let mut written = Vec::new();
    for disk in disks.iter().take(BACKUP_COPIES) {
        let tmp = disk.join(format!("{BACKUP_FILE_NAME}.tmp"));
        let dest = disk.join(BACKUP_FILE_NAME);
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove stale copy", &tmp)(e)),
        }
        meta.copy_into(&tmp)?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io("sync metadata copy", &tmp))?;
        std::fs::rename(&tmp, &dest).map_err(io("install metadata copy", &dest))?;
        File::open(disk)
            .and_then(|d| d.sync_all())
            .map_err(io("sync disk directory", disk))?;
        written.push(dest);
    }
    Ok(written)
}

/// The newest copy on `disks` (the one with the most ops applied), if any can be read.
pub fn newest_backup(disks: &[PathBuf]) -> Option<Backup> {
    disks
        .iter()
        .map(|d| d.join(BACKUP_FILE_NAME))
        .filter(|p| p.exists())
        .filter_map(|path| {
            let last_applied = MetaStore::last_applied_of_copy(&path).ok()?;
            let written = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_secs();
            Some(Backup {
                path,
                last_applied,
                written,
            })
        })
        .max_by_key(|b| b.last_applied)
}
