//! Restoring a regular file under its original inode number, for `wormfs recover`: chunk
//! keys carry the inode number, so a file rebuilt from its chunks must keep it.

use super::apply::Cached;
use super::sqlite::{meta_value, set_meta_value, sql, MetaError, MetaStore};
use super::types::{FileLayout, Timestamp};
use crate::ids::FileId;
use rusqlite::params;

impl MetaStore {
    /// Makes sure inode numbers handed out from now on start above `ino`.
    pub fn reserve_inodes_through(&self, ino: FileId) -> Result<(), MetaError> {
        let conn = self.conn();
        if meta_value(&conn, "next_ino")? <= ino.0 {
            set_meta_value(&conn, "next_ino", ino.0 + 1)?;
        }
        Ok(())
    }

    /// Creates regular file `ino` (empty, owned by root, mode 0644) as `name` in directory
    /// `parent`, with `layout`. Its stripes are committed afterwards with `CommitStripe`.
    /// Refused (an error) when the inode number or the name is taken.
    pub fn restore_file(
        &self,
        ino: FileId,
        parent: FileId,
        name: &str,
        layout: &FileLayout,
        time: Timestamp,
    ) -> Result<(), MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql("begin"))?;
        tx.exec(
            "INSERT INTO inodes (ino, kind, perm, nlink, uid, gid, size, rdev, atime, mtime, ctime,
                                 crtime, policy, k, m, stripe_size, folder)
             VALUES (?1, 1, 420, 1, 0, 0, 0, 0, ?2, ?2, ?2, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                ino.0 as i64,
                time.0,
                layout.policy,
                i64::from(layout.k),
                i64::from(layout.m),
                layout.stripe_size as i64,
                layout.folder.as_str(),
            ],
        )
        .map_err(sql("restore inode"))?;
        tx.exec(
            "INSERT INTO dentries VALUES (?1, ?2, ?3)",
            params![parent.0 as i64, name, ino.0 as i64],
        )
        .map_err(sql("restore entry"))?;
        tx.commit().map_err(sql("commit"))?;
        Ok(())
    }
}
