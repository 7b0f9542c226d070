//! Reads for scrub, repair and the durability reports: every stripe of every file in
//! pages, and the background workers' records.

use super::sqlite::{sql, MetaError, MetaStore};
use super::types::{ChunkRecord, ChunkState, FileLayout, StripeRecord};
use crate::ids::{DiskId, FileId, NodeId};
use crate::store::ChunkFolder;
use crate::worker::{Cursor, WorkerControl, WorkerStatus};
use rusqlite::{params, OptionalExtension};

/// A page of [`MetaStore::stripes_after`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StripePage {
    /// The stripes stored as chunks, with their files' layouts.
    pub rows: Vec<StripeRow>,
    /// Stripes looked at (those kept in the metadata included).
    pub scanned: u64,
    /// Where the next page starts; `None` when this page reached the end.
    pub next: Option<Cursor>,
}

/// One stripe stored as chunks, with its file's layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StripeRow {
    /// The file.
    pub ino: FileId,
    /// The file's layout (chunk folder, policy).
    pub layout: FileLayout,
    /// The stripe and its chunks.
    pub stripe: StripeRecord,
}

impl MetaStore {
    /// Up to `limit` stripes after `after` in (file, stripe index) order, with their
    /// chunks; stripes kept in the metadata (no chunks) are passed over. Also returns the
    /// number of stripes looked at and the cursor for the next page (`None` at the end).
    pub fn stripes_after(
        &self,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<StripePage, MetaError> {
        let conn = self.conn();
        let (a_ino, a_idx) = match after {
            Some(c) => (c.ino.0 as i64, c.stripe as i64),
            None => (0, -1),
        };
        // Each stripe with its file's layout, in one pass over the stripes' key (a
        // lookup of the inode per stripe cost more than the rest of the sweep).
        let mut stripes: Vec<(FileId, StripeRecord, Option<FileLayout>)> = conn
            .prepare_cached(
                "SELECT s.ino, s.idx, s.generation, s.len, s.crc, s.k, s.m,
                        i.policy, i.k, i.m, i.stripe_size, i.folder
                 FROM stripes s JOIN inodes i ON i.ino = s.ino
                 WHERE (s.ino, s.idx) > (?1, ?2) ORDER BY s.ino, s.idx LIMIT ?3",
            )
            .and_then(|mut st| {
                st.query_map(params![a_ino, a_idx, limit as i64], |r| {
                    let folder: Option<String> = r.get(11)?;
                    let layout = match (r.get::<_, Option<String>>(7)?, folder) {
                        (Some(policy), Some(folder)) => {
                            ChunkFolder::try_from(folder).ok().map(|folder| FileLayout {
                                policy,
                                k: r.get::<_, i64>(8).unwrap_or(0) as u16,
                                m: r.get::<_, i64>(9).unwrap_or(0) as u16,
                                stripe_size: r.get::<_, i64>(10).unwrap_or(0) as u64,
                                folder,
                            })
                        }
                        _ => None,
                    };
                    Ok((
                        FileId(r.get::<_, i64>(0)? as u64),
                        StripeRecord {
                            index: r.get::<_, i64>(1)? as u64,
                            generation: r.get::<_, i64>(2)? as u64,
                            len: r.get::<_, i64>(3)? as u64,
                            crc: r.get::<_, i64>(4)? as u32,
                            k: r.get::<_, i64>(5)? as u16,
                            m: r.get::<_, i64>(6)? as u16,
                            chunks: Vec::new(),
                            inline: None,
                        },
                        layout,
                    ))
                })?
                .collect()
            })
            .map_err(sql("list stripes"))?;
        let scanned = stripes.len() as u64;
        let Some((last_ino, last)) = stripes.last().map(|(i, s, _)| (*i, s.index)) else {
            return Ok(StripePage::default());
        };
        let chunks: Vec<(FileId, u64, ChunkRecord)> = conn
            .prepare_cached(
                "SELECT ino, stripe, chunk, node, disk, size, crc, state FROM chunks
                 WHERE (ino, stripe) > (?1, ?2) AND (ino, stripe) <= (?3, ?4)
                 ORDER BY ino, stripe, chunk",
            )
            .and_then(|mut st| {
                st.query_map(params![a_ino, a_idx, last_ino.0 as i64, last as i64], |r| {
                    Ok((
                        FileId(r.get::<_, i64>(0)? as u64),
                        r.get::<_, i64>(1)? as u64,
                        ChunkRecord {
                            index: r.get::<_, i64>(2)? as u16,
                            node: NodeId(r.get(3)?),
                            disk: DiskId(r.get(4)?),
                            size: r.get::<_, i64>(5)? as u64,
                            crc: r.get::<_, i64>(6)? as u32,
                            state: ChunkState::from_code(r.get(7)?),
                        },
                    ))
                })?
                .collect()
            })
            .map_err(sql("list chunks"))?;
        let mut i = 0;
        for (ino, stripe, chunk) in chunks {
            while i < stripes.len() && (stripes[i].0, stripes[i].1.index) < (ino, stripe) {
                i += 1;
            }
            if let Some((si, s, _)) = stripes.get_mut(i) {
                if (*si, s.index) == (ino, stripe) {
                    s.chunks.push(chunk);
                }
            }
        }
        let out = stripes
            .into_iter()
            .filter(|(_, s, _)| !s.chunks.is_empty())
            .filter_map(|(ino, stripe, layout)| {
                Some(StripeRow {
                    ino,
                    layout: layout?,
                    stripe,
                })
            })
            .collect();
        Ok(StripePage {
            rows: out,
            scanned,
            next: Some(Cursor {
                ino: last_ino,
                stripe: last,
            }),
        })
    }

    /// How many stripes all files have (those kept in the metadata included).
    pub fn count_stripes(&self) -> Result<u64, MetaError> {
        self.conn()
            .query_row("SELECT COUNT(*) FROM stripes", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(sql("count stripes"))
    }

    /// Every directory entry whose name matches the SQL `LIKE` pattern `pattern`, as
    /// `(directory, name)`. Reads every entry: for rare cleanups, not for lookups.
    pub fn entries_like(&self, pattern: &str) -> Result<Vec<(FileId, String)>, MetaError> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT parent, name FROM dentries WHERE name LIKE ?1 ESCAPE '\\'")
            .map_err(sql("find entries"))?;
        let rows = st
            .query_map([pattern], |r| {
                Ok((FileId(r.get::<_, i64>(0)? as u64), r.get::<_, String>(1)?))
            })
            .map_err(sql("find entries"))?;
        rows.collect::<Result<_, _>>().map_err(sql("find entries"))
    }

    /// The disks being drained.
    pub fn draining_disks(&self) -> Result<Vec<DiskId>, MetaError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached("SELECT id FROM disks WHERE draining != 0 ORDER BY id")
            .map_err(sql("list draining disks"))?;
        let rows = st
            .query_map([], |r| Ok(DiskId(r.get(0)?)))
            .map_err(sql("list draining disks"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("list draining disks"))
    }

    /// How many chunks metadata places on `disk`.
    pub fn chunks_on(&self, disk: &DiskId) -> Result<u64, MetaError> {
        self.conn()
            .query_row(
                "SELECT COUNT(*) FROM chunks WHERE disk = ?1",
                [&disk.0],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(sql("count chunks on a disk"))
    }

    /// The lowest and highest inode numbers that have stripes, if any.
    pub fn stripe_ino_span(&self) -> Result<Option<(u64, u64)>, MetaError> {
        self.conn()
            .query_row("SELECT MIN(ino), MAX(ino) FROM stripes", [], |r| {
                Ok(
                    match (r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?) {
                        (Some(a), Some(b)) => Some((a as u64, b as u64)),
                        _ => None,
                    },
                )
            })
            .map_err(sql("read the inode span"))
    }

    /// The names of every worker with a record, in order.
    pub fn worker_names(&self) -> Result<Vec<String>, MetaError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached("SELECT name FROM workers ORDER BY name")
            .map_err(sql("list workers"))?;
        let rows = st
            .query_map([], |r| r.get(0))
            .map_err(sql("list workers"))?;
        rows.collect::<Result<_, _>>().map_err(sql("list workers"))
    }

    /// A worker's control and status (defaults when it never ran).
    pub fn worker(&self, name: &str) -> Result<(WorkerControl, WorkerStatus), MetaError> {
        let row: Option<(String, String)> = self
            .conn()
            .query_row(
                "SELECT control, status FROM workers WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql("read worker"))?;
        let Some((control, status)) = row else {
            return Ok(Default::default());
        };
        let bad = |what: &str, e: serde_json::Error| {
            MetaError::Corrupt(format!("worker {name}'s {what}: {e}"))
        };
        Ok((
            serde_json::from_str(&control).map_err(|e| bad("control", e))?,
            serde_json::from_str(&status).map_err(|e| bad("status", e))?,
        ))
    }

    /// `(stripe, shard index, verified)` of every chunk of a file: when a deep scrub last
    /// verified it (Unix nanoseconds; 0 for never).
    pub fn verified_times(&self, ino: FileId) -> Result<Vec<(u64, u16, i64)>, MetaError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "SELECT stripe, chunk, verified FROM chunks WHERE ino = ?1 ORDER BY stripe, chunk",
            )
            .map_err(sql("read verification times"))?;
        let rows = st
            .query_map([ino.0 as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u16,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(sql("read verification times"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("read verification times"))
    }

    /// The generation and disk metadata records for shard `index` of stripe `stripe` of
    /// `ino`, if any.
    pub fn chunk_place(
        &self,
        ino: FileId,
        stripe: u64,
        index: u16,
    ) -> Result<Option<(u64, DiskId)>, MetaError> {
        self.conn()
            .prepare_cached(
                "SELECT generation, disk FROM chunks WHERE ino = ?1 AND stripe = ?2 AND chunk = ?3",
            )
            .and_then(|mut st| {
                st.query_row(
                    params![ino.0 as i64, stripe as i64, i64::from(index)],
                    |r| Ok((r.get::<_, i64>(0)? as u64, DiskId(r.get(1)?))),
                )
                .optional()
            })
            .map_err(sql("read a chunk's place"))
    }

    /// The next inode number this replica would hand out: every file with a lower number
    /// exists or was deleted.
    pub fn next_ino(&self) -> Result<u64, MetaError> {
        super::sqlite::meta_value(&self.conn(), "next_ino")
    }

    /// When the chunks of a stripe were last verified by a deep scrub (the oldest of its
    /// good chunks; 0 for never).
    pub fn stripe_verified(&self, ino: FileId, stripe: u64) -> Result<i64, MetaError> {
        self.conn()
            .query_row(
                "SELECT COALESCE(MIN(verified), 0) FROM chunks WHERE ino = ?1 AND stripe = ?2",
                params![ino.0 as i64, stripe as i64],
                |r| r.get(0),
            )
            .map_err(sql("read verification time"))
    }
}

/// Names (of nodes or disks) seen in a sweep, numbered in order of first appearance, so a
/// sweep compares numbers instead of strings.
#[derive(Debug, Default)]
pub struct Interner {
    map: std::collections::HashMap<Box<[u8]>, u32>,
    names: Vec<String>,
}

impl Interner {
    fn intern(&mut self, bytes: &[u8]) -> u32 {
        // a cluster has few disks: comparing bytes beats hashing them
        if self.names.len() <= 32 {
            if let Some(i) = self.names.iter().position(|n| n.as_bytes() == bytes) {
                return i as u32;
            }
        } else if let Some(id) = self.map.get(bytes) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.names.push(String::from_utf8_lossy(bytes).into_owned());
        self.map.insert(bytes.into(), id);
        id
    }

    /// The name numbered `id`.
    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    /// How many names are numbered.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True before the first name.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// A chunk in a sweep (see [`MetaStore::sweep_chunks`]). Its node is its disk's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweptChunk {
    /// Shard index.
    pub index: u16,
    /// Its disk, numbered by the sweep's disk [`Interner`].
    pub disk: u32,
    /// Known health.
    pub state: ChunkState,
    /// Chunk file size.
    pub size: u64,
}

/// A stripe stored as chunks, in a sweep.
#[derive(Debug)]
pub struct SweptStripe<'a> {
    /// The file.
    pub ino: FileId,
    /// Stripe index.
    pub index: u64,
    /// Data shards.
    pub k: u16,
    /// Parity shards.
    pub m: u16,
    /// Its chunks.
    pub chunks: &'a [SweptChunk],
}

impl MetaStore {
    /// Calls `f` for every stripe stored as chunks, in (file, stripe) order, with disk
    /// names numbered by the interner it is given. One pass over the stripes and one over
    /// the chunks, merged, on a read-only connection of its own (writers go on): the fast
    /// path for reports over every stripe (`at-risk`, `what-if`).
    ///
    /// Only files whose inode number is in `inos` are swept, so that parts of the range can
    /// be swept at once on several threads.
    pub fn sweep_chunks(
        &self,
        inos: std::ops::Range<u64>,
        disks: &mut Interner,
        mut f: impl FnMut(&SweptStripe<'_>, &Interner),
    ) -> Result<(), MetaError> {
        let int = |i: u64| i64::try_from(i).unwrap_or(i64::MAX);
        let (lo, hi) = (int(inos.start), int(inos.end));
        self.with_reader(|c| {
            let mut st = c
                .prepare(
                    "SELECT ino, idx, k, m FROM stripes WHERE ino >= ?1 AND ino < ?2
                     ORDER BY ino, idx",
                )
                .map_err(sql("sweep stripes"))?;
            let mut ch = c
                .prepare(
                    "SELECT ino, stripe, chunk, disk, state, size FROM chunks
                     WHERE ino >= ?1 AND ino < ?2 ORDER BY ino, stripe, chunk",
                )
                .map_err(sql("sweep chunks"))?;
            let mut stripes = st.query([lo, hi]).map_err(sql("sweep stripes"))?;
            let mut chunks = ch.query([lo, hi]).map_err(sql("sweep chunks"))?;
            // the next chunk row, read ahead: ((ino, stripe), chunk)
            let mut next_chunk =
                |disks: &mut Interner| -> rusqlite::Result<Option<((i64, i64), SweptChunk)>> {
                    let Some(r) = chunks.next()? else {
                        return Ok(None);
                    };
                    let disk = r.get_ref(3)?.as_bytes().unwrap_or_default();
                    Ok(Some((
                        (r.get(0)?, r.get(1)?),
                        SweptChunk {
                            index: r.get::<_, i64>(2)? as u16,
                            disk: disks.intern(disk),
                            state: ChunkState::from_code(r.get(4)?),
                            size: r.get::<_, i64>(5)? as u64,
                        },
                    )))
                };
            let mut ahead = next_chunk(disks).map_err(sql("sweep chunks"))?;
            let mut group: Vec<SweptChunk> = Vec::with_capacity(16);
            while let Some(r) = stripes.next().map_err(sql("sweep stripes"))? {
                let key: (i64, i64) = (
                    r.get(0).map_err(sql("sweep stripes"))?,
                    r.get(1).map_err(sql("sweep stripes"))?,
                );
                group.clear();
                while let Some((ck, chunk)) = ahead {
                    if ck > key {
                        break;
                    }
                    if ck == key {
                        group.push(chunk);
                    }
                    ahead = next_chunk(disks).map_err(sql("sweep chunks"))?;
                }
                if group.is_empty() {
                    continue; // kept in the metadata
                }
                let s = SweptStripe {
                    ino: FileId(key.0 as u64),
                    index: key.1 as u64,
                    k: r.get::<_, i64>(2).map_err(sql("sweep stripes"))? as u16,
                    m: r.get::<_, i64>(3).map_err(sql("sweep stripes"))? as u16,
                    chunks: &group,
                };
                f(&s, disks);
            }
            Ok(())
        })
    }
}
