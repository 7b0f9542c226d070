//! The data half of [`NodeFs`]: stripe reads and writes, truncation, file layouts.

use super::fs::NodeFs;
use super::FsError;
use crate::engine::{self, EngineError, StripeWrite};
use crate::ids::FileId;
use crate::meta::{Attr, FileLayout, MetadataOp, Refusal, StripeRecord, Timestamp};

/// The extended attribute that reads a file's or directory's policy and sets a directory's.
pub const POLICY_XATTR: &str = "user.wormfs.policy";

/// How often a read retries when the stripe was rewritten under it.
const READ_RETRIES: usize = 3;

impl NodeFs {
    fn file_layout_of(&self, ino: FileId) -> Result<(Attr, FileLayout), FsError> {
        let attr = self.getattr(ino)?;
        match attr.layout.clone() {
            Some(l) => Ok((attr, l)),
            None if attr.kind == crate::meta::FileKind::Directory => {
                Err(Refusal::IsDir(format!("inode {ino}")).into())
            }
            None => Err(Refusal::Invalid(format!("inode {ino} is not a regular file")).into()),
        }
    }

    /// The whole content of a file kept as one inline stripe in the metadata (a small file),
    /// read with no chunk file; `None` for any other file, or one of `size` bytes no more.
    pub fn inline_content(&self, ino: FileId, size: u64) -> Result<Option<Vec<u8>>, FsError> {
        if size == 0 || size > self.policies.inline_max() {
            return Ok(None);
        }
        Ok(self
            .meta
            .stripe(ino, 0)?
            .and_then(|s| s.inline)
            .filter(|bytes| bytes.len() as u64 == size))
    }

    /// Reads stripe `index` of a file: `None` when it is a hole (never written, or past the
    /// end). Chunks found damaged are recorded for repair.
    pub async fn read_stripe(&self, ino: FileId, index: u64) -> Result<Option<Vec<u8>>, FsError> {
        let (_, layout) = self.file_layout_of(ino)?;
        let mut attempt = 0;
        loop {
            let Some(record) = self.meta.stripe(ino, index)? else {
                return Ok(None);
            };
            let store = self.store.clone();
            let layout2 = layout.clone();
            let rec = record.clone();
            let read = tokio::task::spawn_blocking(move || {
                engine::read_stripe(store.as_ref(), ino, &layout2, &rec)
            })
            .await
            .map_err(|e| FsError::Internal(e.to_string()))?;
            match read {
                Ok(read) => {
                    for d in read.damaged {
                        tracing::warn!(file = %ino, stripe = index, chunk = d.chunk.index, disk = %d.chunk.disk, reason = %d.reason, "damaged chunk found on read");
                        if !d.recordable {
                            // its node did not answer: the chunk may be fine
                            continue;
                        }
                        let op = MetadataOp::SetChunkState {
                            ino,
                            stripe: index,
                            generation: record.generation,
                            chunk: d.chunk.index,
                            state: d.state,
                        };
                        // Recorded in the background: a read never waits for a metadata
                        // write (which needs a majority).
                        let log = self.log.clone();
                        tokio::spawn(async move {
                            if let Err(e) = log.submit(op).await {
                                tracing::warn!(error = %e, "could not record a damaged chunk");
                            }
                        });
                    }
                    return Ok(Some(read.data));
                }
                Err(
                    e @ (EngineError::Unreadable { .. }
                    | EngineError::Decode { .. }
                    | EngineError::InlineDamaged { .. }),
                ) => {
                    // A concurrent rewrite may have replaced the stripe and deleted the chunks
                    // just read: try again with the new record.
                    let now = self.meta.stripe(ino, index)?;
                    attempt += 1;
                    if attempt < READ_RETRIES
                        && now.as_ref().map(|s| s.generation) != Some(record.generation)
                    {
                        continue;
                    }
                    tracing::error!(file = %ino, stripe = index, error = %e, "stripe read failed");
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads bytes `offset..offset + len` of stripe `index` (clipped to it) from the data
    /// chunks that hold them; when one of those is missing or damaged, reads the whole
    /// stripe (decoding around it and recording the damage) and cuts the range out. `None`
    /// for a hole.
    pub async fn read_range(
        &self,
        ino: FileId,
        index: u64,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, FsError> {
        let (_, layout) = self.file_layout_of(ino)?;
        let Some(record) = self.meta.stripe(ino, index)? else {
            return Ok(None);
        };
        let fast = match engine::remote_stripe_range(
            self.store.as_ref(),
            ino,
            &layout,
            &record,
            offset,
            len,
        ) {
            // one chunk on another node holds it all: no thread waits for its bytes
            Some(read) => read.await,
            None => {
                let store = self.store.clone();
                tokio::task::spawn_blocking(move || {
                    engine::read_stripe_range(store.as_ref(), ino, &layout, &record, offset, len)
                })
                .await
                .map_err(|e| FsError::Internal(e.to_string()))?
            }
        };
        match fast {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) => {
                tracing::debug!(file = %ino, stripe = index, error = %e, "range read falls back to the whole stripe");
                let whole = self.read_stripe(ino, index).await?;
                Ok(whole.map(|d| {
                    let lo = (offset as usize).min(d.len());
                    let hi = (offset.saturating_add(len) as usize).min(d.len());
                    d[lo..hi].to_vec()
                }))
            }
        }
    }

    /// Codes and stores `data` as stripe `index` of a file (replacing what was there) and
    /// commits it; the file grows to cover it. Returns when the chunks are durable and the
    /// metadata committed.
    pub async fn write_stripe(
        &self,
        ino: FileId,
        index: u64,
        data: Vec<u8>,
    ) -> Result<Attr, FsError> {
        let (_, layout) = self.file_layout_of(ino)?;
        if data.is_empty() || data.len() as u64 > layout.stripe_size {
            return Err(FsError::Invalid(format!(
                "stripe {index} of inode {ino} has {} bytes; a stripe of this file holds 1 to {}",
                data.len(),
                layout.stripe_size
            )));
        }
        let end = index
            .checked_mul(layout.stripe_size)
            .and_then(|s| s.checked_add(data.len() as u64))
            .filter(|e| *e <= i64::MAX as u64)
            .ok_or_else(|| {
                FsError::Invalid(format!("stripe {index} lies past the largest file size"))
            })?;
        let record = self.store_stripe(ino, &layout, index, data).await?;
        if !record.chunks.is_empty() {
            crate::crash::point(crate::crash::STRIPE_CHUNKS_SYNCED);
        }
        let op = MetadataOp::CommitStripe {
            ino,
            stripe: record.clone(),
            size: end,
            time: Timestamp::now(),
        };
        match self.submit(op).await {
            Ok(applied) => {
                crate::crash::point(crate::crash::STRIPE_COMMITTED);
                Ok(applied.attr.expect("commit returns the inode"))
            }
            Err(e) => {
                // Refused: the chunks just written belong to nothing. An unconfirmed commit
                // (the log unavailable) may still land: then the chunks are the stripe, so
                // they stay (at worst as orphans for the scrubber).
                if !e.outcome_unknown() {
                    self.drop_chunks(ino, &layout, &record).await;
                }
                Err(e)
            }
        }
    }

    async fn store_stripe(
        &self,
        ino: FileId,
        layout: &FileLayout,
        index: u64,
        data: Vec<u8>,
    ) -> Result<StripeRecord, FsError> {
        let generation = engine::next_generation();
        let inline_max = self.policies.inline_max();
        if let Some(record) = engine::inline_stripe(index, generation, layout, &data, inline_max) {
            // small enough to keep in the metadata: no chunk files, one commit
            return Ok(record);
        }
        let path = self
            .meta
            .path_of(ino)?
            .unwrap_or_else(|| format!("/.orphan/{ino}"));
        let store = self.store.clone();
        let placement = self.placement.clone();
        let node = self.node.clone();
        let layout = layout.clone();
        let draining = self.meta.draining_disks()?;
        tokio::task::spawn_blocking(move || {
            let view = || {
                let mut view = engine::local_view(&node, store.as_ref())?;
                // disks being drained take no new chunks
                view.close(|d| draining.contains(d));
                Ok(view)
            };
            let w = StripeWrite {
                file: ino,
                path: &path,
                layout: &layout,
                index,
                generation,
                data: &data,
            };
            engine::store_stripe(store.as_ref(), placement.as_ref(), view, inline_max, w)
                .map_err(FsError::from)
        })
        .await
        .map_err(|e| FsError::Internal(e.to_string()))?
    }

    async fn drop_chunks(&self, ino: FileId, layout: &FileLayout, record: &StripeRecord) {
        let garbage = record
            .chunks
            .iter()
            .map(|c| crate::meta::ChunkLocation {
                node: c.node.clone(),
                disk: c.disk.clone(),
                folder: layout.folder.clone(),
                key: crate::ids::ChunkKey {
                    file: ino,
                    stripe: record.index,
                    generation: record.generation,
                    index: c.index,
                },
            })
            .collect();
        self.collect_garbage(garbage).await;
    }

    /// Sets a file's size. Shrinking into a stripe rewrites that stripe cut at the new size,
    /// so no stale bytes reappear if the file grows again.
    pub async fn truncate(&self, ino: FileId, size: u64) -> Result<Attr, FsError> {
        let (attr, layout) = self.file_layout_of(ino)?;
        if size > i64::MAX as u64 {
            return Err(FsError::Invalid(format!(
                "{size} bytes is past the largest file size"
            )));
        }
        let mut tail = None;
        if size < attr.size {
            let index = size / layout.stripe_size;
            let start = index * layout.stripe_size;
            if let Some(old) = self.meta.stripe(ino, index)? {
                if start < size && size < start + old.len {
                    let mut data = self.read_stripe(ino, index).await?.unwrap_or_default();
                    data.truncate((size - start) as usize);
                    data.resize((size - start) as usize, 0);
                    tail = Some(self.store_stripe(ino, &layout, index, data).await?);
                }
            }
        }
        let op = MetadataOp::Truncate {
            ino,
            size,
            tail: tail.clone(),
            time: Timestamp::now(),
        };
        match self.submit(op).await {
            Ok(applied) => Ok(applied.attr.expect("truncate returns the inode")),
            Err(e) => {
                if let Some(t) = tail.filter(|_| !e.outcome_unknown()) {
                    self.drop_chunks(ino, &layout, &t).await;
                }
                Err(e)
            }
        }
    }

    /// The file at `path` with every stripe and chunk, for `wormfs file info`.
    pub fn file_layout(&self, path: &str) -> Result<(Attr, Vec<StripeRecord>), FsError> {
        let attr = self.attr_at(path)?;
        let stripes = self.meta.stripes(attr.ino)?;
        Ok((attr, stripes))
    }

    /// Where stripes `first..first + count` of a file lie on this node's disks, for a
    /// client on this machine that reads the chunk files itself: one entry per stripe, up
    /// to the file's last (fewer near its end, none past it), `None` for a hole.
    pub fn locate_stripes(
        &self,
        ino: FileId,
        first: u64,
        count: u64,
    ) -> Result<Vec<Option<StripeLocation>>, FsError> {
        let (attr, layout) = self.file_layout_of(ino)?;
        let end = attr
            .size
            .div_ceil(layout.stripe_size.max(1))
            .min(first.saturating_add(count));
        if first >= end {
            return Ok(Vec::new());
        }
        let mut found = self
            .meta
            .stripes_in(ino, first..end)?
            .into_iter()
            .peekable();
        let mut out = Vec::with_capacity((end - first) as usize);
        for index in first..end {
            let s = match found.next_if(|s| s.index == index) {
                Some(s) => s,
                None => {
                    out.push(None);
                    continue;
                }
            };
            let k = usize::from(s.k);
            let mut data = Vec::new();
            if s.inline.is_none() {
                data = (0..s.k)
                    .map(|i| {
                        let c = s
                            .chunks
                            .iter()
                            .find(|c| c.index == i && c.state == crate::meta::ChunkState::Ok)?;
                        let addr = engine::chunk_addr(ino, &layout, &s, i);
                        let path = self.store.chunk_file(&c.disk, &addr)?;
                        Some((c.disk.clone(), path))
                    })
                    .collect();
            }
            out.push(Some(StripeLocation {
                generation: s.generation,
                len: s.len,
                crc: s.crc,
                shard_len: s.len.div_ceil(k.max(1) as u64).max(1),
                data,
            }));
        }
        Ok(out)
    }

    /// The local path of a chunk file, when the chunk is on this node and its store keeps
    /// chunks as files.
    pub fn chunk_path(
        &self,
        disk: &crate::ids::DiskId,
        addr: &crate::store::ChunkAddr,
    ) -> Option<std::path::PathBuf> {
        self.store.chunk_file(disk, addr)
    }
}

/// Where a stripe's data chunks lie on a node's disks (see [`NodeFs::locate_stripes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StripeLocation {
    /// The stripe's write generation, part of each chunk's key.
    pub generation: u64,
    /// The stripe's length in bytes.
    pub len: u64,
    /// CRC32 of the stripe's bytes.
    pub crc: u32,
    /// Bytes each data chunk holds: data chunk `i` holds the stripe's bytes from
    /// `i × shard_len`.
    pub shard_len: u64,
    /// The `k` data chunks in order: the disk and the chunk file's path, or `None` when the
    /// chunk is not on this node or is known to be damaged. Empty for a stripe kept in the
    /// metadata.
    pub data: Vec<Option<(crate::ids::DiskId, std::path::PathBuf)>>,
}
