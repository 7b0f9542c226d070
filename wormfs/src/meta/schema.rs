//! The SQLite schema and its migrations. `PRAGMA user_version` is the schema version;
//! each migration is a frozen script, applied in order in one transaction each. Never edit
//! a released migration: add the next one.

use rusqlite::Connection;

/// The migrations; the schema version is their count.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO meta VALUES ('last_applied', 0), ('next_ino', 2), ('next_generation', 1);

    CREATE TABLE inodes (
        ino INTEGER PRIMARY KEY,
        kind INTEGER NOT NULL,
        perm INTEGER NOT NULL,
        nlink INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        gid INTEGER NOT NULL,
        size INTEGER NOT NULL DEFAULT 0,
        rdev INTEGER NOT NULL DEFAULT 0,
        atime INTEGER NOT NULL,
        mtime INTEGER NOT NULL,
        ctime INTEGER NOT NULL,
        crtime INTEGER NOT NULL,
        target TEXT,
        policy TEXT,
        k INTEGER,
        m INTEGER,
        stripe_size INTEGER,
        folder TEXT
    );
    INSERT INTO inodes (ino, kind, perm, nlink, uid, gid, atime, mtime, ctime, crtime)
        VALUES (1, 2, 493, 2, 0, 0, 0, 0, 0, 0);

    CREATE TABLE dentries (
        parent INTEGER NOT NULL,
        name TEXT NOT NULL,
        ino INTEGER NOT NULL,
        PRIMARY KEY (parent, name)
    ) WITHOUT ROWID;
    CREATE INDEX dentries_by_ino ON dentries (ino);

    CREATE TABLE xattrs (
        ino INTEGER NOT NULL,
        name TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (ino, name)
    ) WITHOUT ROWID;

    CREATE TABLE dir_policies (ino INTEGER PRIMARY KEY, policy TEXT NOT NULL);

    CREATE TABLE stripes (
        ino INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        generation INTEGER NOT NULL,
        len INTEGER NOT NULL,
        crc INTEGER NOT NULL,
        k INTEGER NOT NULL,
        m INTEGER NOT NULL,
        PRIMARY KEY (ino, idx)
    ) WITHOUT ROWID;

    CREATE TABLE chunks (
        ino INTEGER NOT NULL,
        stripe INTEGER NOT NULL,
        chunk INTEGER NOT NULL,
        generation INTEGER NOT NULL,
        node TEXT NOT NULL,
        disk TEXT NOT NULL,
        size INTEGER NOT NULL,
        crc INTEGER NOT NULL,
        state INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (ino, stripe, chunk)
    ) WITHOUT ROWID;
    CREATE INDEX chunks_by_disk ON chunks (disk, ino, stripe);

    CREATE TABLE nodes (id TEXT PRIMARY KEY, address TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE disks (
        id TEXT PRIMARY KEY,
        node TEXT NOT NULL,
        path TEXT NOT NULL,
        total INTEGER NOT NULL,
        free INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX disks_by_node ON disks (node);

    CREATE TABLE policies (
        name TEXT PRIMARY KEY,
        k INTEGER NOT NULL,
        m INTEGER NOT NULL,
        stripe_size INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE locks (
        ino INTEGER NOT NULL,
        owner TEXT NOT NULL,
        kind INTEGER NOT NULL,
        expires INTEGER NOT NULL,
        PRIMARY KEY (ino, owner)
    ) WITHOUT ROWID;
    ",
    // 2: the replicated log's bookkeeping (last applied log id, last membership), written in
    // the same transaction as the ops it describes.
    "
    CREATE TABLE raft_state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    ",
    // 3: small stripes kept in the metadata itself (NULL for stripes stored as chunks).
    "
    ALTER TABLE stripes ADD COLUMN data BLOB;
    ",
    // 4: the bytes of small stripes move to a table of their own. In `stripes`, a WITHOUT
    // ROWID table, a 4 KiB value spills onto an overflow page, and every lookup that passes
    // such a row on its way down the tree reads the spilled part to compare keys: about
    // seven extra reads per lookup once there are a few thousand small files. Here the
    // rows sit in a rowid table, found through an index that holds only the keys.
    "
    CREATE TABLE stripe_data (
        ino INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (ino, idx)
    );
    INSERT INTO stripe_data (ino, idx, data)
        SELECT ino, idx, data FROM stripes WHERE data IS NOT NULL;
    ALTER TABLE stripes DROP COLUMN data;
    ",
    // 5: the inode count and the bytes in regular files, for statfs, kept by triggers in
    // `meta`. Counting them on each statfs read every inode (185 ms a call with a million
    // files), holding the metadata lock all the while.
    "
    INSERT INTO meta (key, value) SELECT 'inodes', COUNT(*) FROM inodes;
    INSERT INTO meta (key, value)
        SELECT 'file_bytes', COALESCE(SUM(CASE WHEN kind = 1 THEN size ELSE 0 END), 0)
        FROM inodes;
    CREATE TRIGGER inode_counted AFTER INSERT ON inodes BEGIN
        UPDATE meta SET value = value + 1 WHERE key = 'inodes';
        UPDATE meta SET value = value + NEW.size WHERE key = 'file_bytes' AND NEW.kind = 1;
    END;
    CREATE TRIGGER inode_uncounted AFTER DELETE ON inodes BEGIN
        UPDATE meta SET value = value - 1 WHERE key = 'inodes';
        UPDATE meta SET value = value - OLD.size WHERE key = 'file_bytes' AND OLD.kind = 1;
    END;
    CREATE TRIGGER inode_size_counted AFTER UPDATE OF size, kind ON inodes
        WHEN OLD.size != NEW.size OR OLD.kind != NEW.kind
    BEGIN
        UPDATE meta SET value = value
            - CASE WHEN OLD.kind = 1 THEN OLD.size ELSE 0 END
            + CASE WHEN NEW.kind = 1 THEN NEW.size ELSE 0 END
            WHERE key = 'file_bytes';
    END;
    ",
    // 6: background workers' control and status (JSON), and when each chunk was last
    // verified by a deep scrub (Unix nanoseconds; 0 for never).
    "
    CREATE TABLE workers (
        name TEXT PRIMARY KEY,
        control TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT '{}'
    ) WITHOUT ROWID;
    ALTER TABLE chunks ADD COLUMN verified INTEGER NOT NULL DEFAULT 0;
    ",
    // 7: disks being drained (no new chunks; repair moves theirs away).
    "
    ALTER TABLE disks ADD COLUMN draining INTEGER NOT NULL DEFAULT 0;
    ",
    // 8: the users client identities name (their keys: the database file is the node's
    // secret, like its libp2p key).
    "
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        key BLOB NOT NULL,
        uid INTEGER NOT NULL,
        gid INTEGER NOT NULL,
        groups TEXT NOT NULL,
        admin INTEGER NOT NULL,
        host INTEGER NOT NULL,
        created INTEGER NOT NULL
    ) WITHOUT ROWID;
    ",
    // 9: the lock sessions a master may have granted locks to (the locks themselves live in
    // the master's memory; a new master waits for these sessions to reclaim theirs). The
    // `locks` table of version 1 was never filled.
    "
    DROP TABLE locks;
    CREATE TABLE lock_sessions (
        id TEXT PRIMARY KEY,
        client TEXT NOT NULL,
        opened INTEGER NOT NULL
    ) WITHOUT ROWID;
    ",
    // 10: the bytes in regular files as two counters, the high and the low 32 bits of each
    // size summed apart. One 64-bit sum overflowed with a single file of 2^63-1 bytes
    // (`truncate -s 9223372036854775807`): SQLite then turned it into a REAL and every
    // statfs failed. Each half stays exact up to 2^31 files of the largest size.
    "
    DROP TRIGGER inode_counted;
    DROP TRIGGER inode_uncounted;
    DROP TRIGGER inode_size_counted;
    DELETE FROM meta WHERE key = 'file_bytes';
    INSERT INTO meta (key, value)
        SELECT 'file_bytes_hi', COALESCE(SUM(CASE WHEN kind = 1 THEN size >> 32 ELSE 0 END), 0)
        FROM inodes;
    INSERT INTO meta (key, value)
        SELECT 'file_bytes_lo',
            COALESCE(SUM(CASE WHEN kind = 1 THEN size & 4294967295 ELSE 0 END), 0)
        FROM inodes;
    CREATE TRIGGER inode_counted AFTER INSERT ON inodes BEGIN
        UPDATE meta SET value = value + 1 WHERE key = 'inodes';
        UPDATE meta SET value = value + (NEW.size >> 32)
            WHERE key = 'file_bytes_hi' AND NEW.kind = 1;
        UPDATE meta SET value = value + (NEW.size & 4294967295)
            WHERE key = 'file_bytes_lo' AND NEW.kind = 1;
    END;
    CREATE TRIGGER inode_uncounted AFTER DELETE ON inodes BEGIN
        UPDATE meta SET value = value - 1 WHERE key = 'inodes';
        UPDATE meta SET value = value - (OLD.size >> 32)
            WHERE key = 'file_bytes_hi' AND OLD.kind = 1;
        UPDATE meta SET value = value - (OLD.size & 4294967295)
            WHERE key = 'file_bytes_lo' AND OLD.kind = 1;
    END;
    CREATE TRIGGER inode_size_counted AFTER UPDATE OF size, kind ON inodes
        WHEN OLD.size != NEW.size OR OLD.kind != NEW.kind
    BEGIN
        UPDATE meta SET value = value
            - CASE WHEN OLD.kind = 1 THEN OLD.size >> 32 ELSE 0 END
            + CASE WHEN NEW.kind = 1 THEN NEW.size >> 32 ELSE 0 END
            WHERE key = 'file_bytes_hi';
        UPDATE meta SET value = value
            - CASE WHEN OLD.kind = 1 THEN OLD.size & 4294967295 ELSE 0 END
            + CASE WHEN NEW.kind = 1 THEN NEW.size & 4294967295 ELSE 0 END
            WHERE key = 'file_bytes_lo';
    END;
    ",
    // 11: client request ids applied once (`MetadataOp::Once`), with the first reply
    "
    CREATE TABLE requests (
        id TEXT PRIMARY KEY,
        reply TEXT NOT NULL,
        time INTEGER NOT NULL
    );
    CREATE INDEX requests_by_time ON requests (time);
    ",
    // 12: the admin API's bearer tokens, by name; only a token's SHA-256 is kept
    "
    CREATE TABLE admin_tokens (
        name TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        created INTEGER NOT NULL
    ) WITHOUT ROWID;
    ",
];

/// The first schema version with the `raft_state` table (a database copy older than this
/// cannot be a Raft snapshot).
pub const RAFT_STATE_VERSION: u32 = 2;

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database to [`SCHEMA_VERSION`]. A database from a newer build is refused.
pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| format!("read schema version: {e}"))?;
    if version > SCHEMA_VERSION {
        return Err(format!(
            "the metadata database has schema version {version}, newer than this build's {SCHEMA_VERSION}; \
             run a newer wormfs"
        ));
    }
    for (i, script) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let to = i + 1;
        let tx = conn
            .transaction()
            .map_err(|e| format!("begin migration {to}: {e}"))?;
        tx.execute_batch(script)
            .map_err(|e| format!("migration {to}: {e}"))?;
        tx.pragma_update(None, "user_version", to)
            .map_err(|e| format!("record schema version {to}: {e}"))?;
        tx.commit()
            .map_err(|e| format!("commit migration {to}: {e}"))?;
    }
    Ok(())
}
