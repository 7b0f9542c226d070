//! How the ops of repair, scrub and background workers change the database.

use super::apply::{done, Cached};
use super::op::{Applied, OpReply, Refusal};
use super::sqlite::{read_attr, sql, MetaError};
use super::types::{ChunkLocation, ChunkRecord};
use crate::ids::{ChunkKey, DiskId, FileId, NodeId};
use rusqlite::{params, Connection, OptionalExtension};

type Res = Result<OpReply, MetaError>;

/// `ReplaceChunks`: the new records take the place of those with the same shard indices,
/// if the stripe still has `generation`; the copies they replace become garbage.
pub(crate) fn replace_chunks(
    c: &Connection,
    ino: FileId,
    stripe: u64,
    generation: u64,
    chunks: &[ChunkRecord],
) -> Res {
    let now: Option<i64> = c
        .query_row_cached(
            "SELECT generation FROM stripes WHERE ino = ?1 AND idx = ?2",
            params![ino.0 as i64, stripe as i64],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql("read stripe generation"))?;
    if now != Some(generation as i64) {
        return Ok(Err(Refusal::NotFound(format!(
            "stripe {stripe} of inode {ino} generation {generation}: the stripe was rewritten or removed"
        ))));
    }
    let Some(folder) = read_attr(c, ino)?.and_then(|a| a.layout).map(|l| l.folder) else {
        return Ok(Err(Refusal::Invalid(format!(
            "inode {ino} is not a regular file"
        ))));
    };
    let mut garbage = Vec::new();
    for ch in chunks {
        let clash: Option<i64> = c
            .query_row_cached(
                "SELECT chunk FROM chunks WHERE ino = ?1 AND stripe = ?2 AND disk = ?3 AND chunk != ?4",
                params![ino.0 as i64, stripe as i64, ch.disk.0, i64::from(ch.index)],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("check chunk disks"))?;
        if let Some(other) = clash {
            return Ok(Err(Refusal::Invalid(format!(
                "chunk {} of stripe {stripe} of inode {ino} cannot go to disk {}: chunk {other} of the stripe is there",
                ch.index, ch.disk
            ))));
        }
        let old: Option<(String, String)> = c
            .query_row_cached(
                "SELECT node, disk FROM chunks WHERE ino = ?1 AND stripe = ?2 AND chunk = ?3",
                params![ino.0 as i64, stripe as i64, i64::from(ch.index)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql("read replaced chunk"))?;
        if let Some((node, disk)) = old {
            if disk != ch.disk.0 {
                garbage.push(ChunkLocation {
                    node: NodeId(node),
                    disk: DiskId(disk),
                    folder: folder.clone(),
                    key: ChunkKey {
                        file: ino,
                        stripe,
                        generation,
                        index: ch.index,
                    },
                });
            }
        }
        c.exec(
            "INSERT OR REPLACE INTO chunks
                 (ino, stripe, chunk, generation, node, disk, size, crc, state, verified)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0)",
            params![
                ino.0 as i64,
                stripe as i64,
                i64::from(ch.index),
                generation as i64,
                ch.node.0,
                ch.disk.0,
                ch.size as i64,
                i64::from(ch.crc),
                ch.state.code()
            ],
        )
        .map_err(sql("record rebuilt chunk"))?;
    }
    Ok(Ok(Applied {
        attr: None,
        garbage,
    }))
}

/// `SetWorkerControl` / `SetWorkerStatus`: one JSON column of the worker's row.
pub(crate) fn set_worker<T: serde::Serialize>(
    c: &Connection,
    name: &str,
    column: &'static str,
    value: &T,
) -> Res {
    let json = serde_json::to_string(value)
        .map_err(|e| MetaError::Corrupt(format!("encode worker {column}: {e}")))?;
    let sql_text = match column {
        "control" => {
            "INSERT INTO workers (name, control) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET control = excluded.control"
        }
        _ => {
            "INSERT INTO workers (name, status) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET status = excluded.status"
        }
    };
    c.exec(sql_text, params![name, json])
        .map_err(sql("record worker"))?;
    done()
}
