//! The peer book: the addresses this node talks to and the peer ID pinned for each, kept in
//! a small SQLite file of its own (`peers.db` in the data directory; it is node-local and
//! never part of the replicated metadata).
//!
//! A peer configured with an ID is pinned to it. A peer configured as `auto` is pinned to
//! the first ID it presents (trust on first use); from then on another ID at that address
//! is refused.

use super::P2pError;
use libp2p::PeerId;
use rusqlite::{params, Connection, OptionalExtension};
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

/// The peer book's file name inside the data directory.
pub const PEER_BOOK_FILE_NAME: &str = "peers.db";

/// One address in the book.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookEntry {
    /// The peer's libp2p address.
    pub addr: SocketAddr,
    /// The pinned peer ID, `None` while an `auto` peer has not been seen yet.
    pub peer_id: Option<PeerId>,
}

/// Durable peer pins.
pub struct PeerBook {
    conn: Mutex<Connection>,
}

fn db(action: &'static str) -> impl FnOnce(rusqlite::Error) -> P2pError {
    move |e| P2pError::PeerBook(format!("{action}: {e}"))
}

impl PeerBook {
    /// Opens (creating) the book at `path`.
    pub fn open(path: &Path) -> Result<PeerBook, P2pError> {
        let conn = Connection::open(path).map_err(db("open peers.db"))?;
        Self::setup(conn)
    }

    /// A book in memory, for tests of logic above it.
    pub fn open_in_memory() -> Result<PeerBook, P2pError> {
        Self::setup(Connection::open_in_memory().map_err(db("open peer book"))?)
    }

    fn setup(conn: Connection) -> Result<PeerBook, P2pError> {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db("enable WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db("set synchronous"))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS peers (
                 addr TEXT PRIMARY KEY,
                 peer_id TEXT
             );",
        )
        .map_err(db("create peers table"))?;
        Ok(PeerBook {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `addr`. A given `peer_id` pins it (replacing an earlier pin: the operator's word
    /// wins); `None` (`auto`) keeps any ID pinned before.
    pub fn add(&self, addr: SocketAddr, peer_id: Option<PeerId>) -> Result<(), P2pError> {
        let conn = self.conn();
        match peer_id {
            Some(id) => conn
                .execute(
                    "INSERT INTO peers (addr, peer_id) VALUES (?1, ?2)
                     ON CONFLICT(addr) DO UPDATE SET peer_id = excluded.peer_id",
                    params![addr.to_string(), id.to_string()],
                )
                .map_err(db("add peer"))?,
            None => conn
                .execute(
                    "INSERT OR IGNORE INTO peers (addr, peer_id) VALUES (?1, NULL)",
                    params![addr.to_string()],
                )
                .map_err(db("add peer"))?,
        };
        Ok(())
    }

    /// Removes `addr` (and its pin).
    pub fn remove(&self, addr: SocketAddr) -> Result<bool, P2pError> {
        let n = self
            .conn()
            .execute(
                "DELETE FROM peers WHERE addr = ?1",
                params![addr.to_string()],
            )
            .map_err(db("remove peer"))?;
        Ok(n > 0)
    }

    /// The entry for `addr`, if the book has it.
    pub fn get(&self, addr: SocketAddr) -> Result<Option<BookEntry>, P2pError> {
        let row: Option<Option<String>> = self
            .conn()
            .query_row(
                "SELECT peer_id FROM peers WHERE addr = ?1",
                params![addr.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("read peer"))?;
        row.map(|id| {
            Ok(BookEntry {
                addr,
                peer_id: id.map(|s| parse_peer(&s)).transpose()?,
            })
        })
        .transpose()
    }

    /// Pins `peer_id` at `addr` if nothing is pinned there yet; returns the ID pinned after
    /// the call.
    pub fn pin_first_seen(&self, addr: SocketAddr, peer_id: PeerId) -> Result<PeerId, P2pError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE peers SET peer_id = ?2 WHERE addr = ?1 AND peer_id IS NULL",
            params![addr.to_string(), peer_id.to_string()],
        )
        .map_err(db("pin peer"))?;
        let now: Option<String> = conn
            .query_row(
                "SELECT peer_id FROM peers WHERE addr = ?1",
                params![addr.to_string()],
                |r| r.get(0),
            )
            .map_err(db("read pin"))?;
        match now {
            Some(s) => parse_peer(&s),
            None => Err(P2pError::PeerBook(format!("pin of {addr} did not stick"))),
        }
    }

    /// True when `peer_id` is pinned at some address: connections from it are accepted.
    pub fn knows(&self, peer_id: &PeerId) -> Result<bool, P2pError> {
        let n: i64 = self
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM peers WHERE peer_id = ?1",
                params![peer_id.to_string()],
                |r| r.get(0),
            )
            .map_err(db("look up peer"))?;
        Ok(n > 0)
    }

    /// Every entry.
    pub fn entries(&self) -> Result<Vec<BookEntry>, P2pError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT addr, peer_id FROM peers ORDER BY addr")
            .map_err(db("list peers"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .map_err(db("list peers"))?;
        let mut out = Vec::new();
        for row in rows {
            let (addr, id) = row.map_err(db("list peers"))?;
            out.push(BookEntry {
                addr: addr
                    .parse()
                    .map_err(|e| P2pError::PeerBook(format!("bad address `{addr}`: {e}")))?,
                peer_id: id.map(|s| parse_peer(&s)).transpose()?,
            });
        }
        Ok(out)
    }
}

fn parse_peer(s: &str) -> Result<PeerId, P2pError> {
    PeerId::from_str(s).map_err(|e| P2pError::PeerBook(format!("bad peer id `{s}`: {e}")))
}

debug_by_name!(PeerBook);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_peers_pin_the_first_id_and_keep_it_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PEER_BOOK_FILE_NAME);
        let addr: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let (first, second) = (PeerId::random(), PeerId::random());
        {
            let book = PeerBook::open(&path).unwrap();
            book.add(addr, None).unwrap();
            assert_eq!(book.get(addr).unwrap().unwrap().peer_id, None);
            assert!(!book.knows(&first).unwrap());
            assert_eq!(book.pin_first_seen(addr, first).unwrap(), first);
            assert_eq!(book.pin_first_seen(addr, second).unwrap(), first);
        }
        let book = PeerBook::open(&path).unwrap();
        book.add(addr, None).unwrap();
        assert_eq!(book.get(addr).unwrap().unwrap().peer_id, Some(first));
        assert!(book.knows(&first).unwrap());
        assert!(!book.knows(&second).unwrap());
        book.add(addr, Some(second)).unwrap();
        assert_eq!(book.entries().unwrap()[0].peer_id, Some(second));
        assert!(book.remove(addr).unwrap());
        assert!(book.entries().unwrap().is_empty());
    }
}
