//! Rebuilding a node's metadata from its disks (`wormfs recover`). The caller first puts
//! the newest metadata copy found on the disks in place (see [`super::back_up`]), if any;
//! then every chunk-folder index names its file's path, and every chunk's header its
//! stripe, generation, code and stripe checksum. Files the copy does not know come back
//! under their original inode numbers (chunk keys carry them), with their paths, sizes,
//! layouts and stripes; stripes rewritten after the copy take their newer generation.
//! What neither holds (for files newer than the copy: owners, modes, times; stripes small
//! enough to be kept in the metadata and written after the copy) is reported.

use crate::chunk::ChunkFile;
use crate::ids::{DiskId, FileId, NodeId};
use crate::meta::{
    ChunkRecord, ChunkState, FileLayout, LocalLog, MetaStore, MetadataOp, NewKind, StripeRecord,
    Timestamp,
};
use crate::policy::PolicySet;
use crate::store::{ChunkAddr, ChunkStore, IndexedChunk};
use std::collections::BTreeMap;

/// Where files whose path is taken or unknown are put back.
pub const RECOVERED_DIR: &str = "/.wormfs-recovered";

/// What `recover` brought back and what it could not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoverReport {
    /// Files restored.
    pub files: u64,
    /// Stripes restored.
    pub stripes: u64,
    /// Chunks restored.
    pub chunks: u64,
    /// Bytes in the files restored.
    pub bytes: u64,
    /// Chunks left out: failing their checks, of an older generation, or a second copy.
    pub chunks_left_out: u64,
    /// Stripes restored with fewer than `k` good chunks (they read as errors), by path.
    pub unreadable: Vec<String>,
    /// Files put under [`RECOVERED_DIR`] because their path was taken or unknown.
    pub moved: Vec<String>,
    /// Anything else that went wrong.
    pub problems: Vec<String>,
    /// The metadata copy started from, if one was found.
    pub backup: Option<super::Backup>,
    /// Stripes of files the copy knows, taken newer from the disks.
    pub updated_stripes: u64,
    /// Files the copy knows that were renamed after it, moved to their new path.
    pub renamed: Vec<String>,
    /// Files the copy knows whose chunks are no longer on the disks (deleted or rewritten
    /// after the copy was made, or lost): they read as errors until removed.
    pub gone: Vec<String>,
}

/// One file's chunks, as the disks list them.
#[derive(Default)]
struct Parts {
    paths: BTreeMap<String, usize>,
    folder: Option<crate::store::ChunkFolder>,
    /// stripe index → generation → chunks
    stripes: BTreeMap<u64, BTreeMap<u64, Vec<IndexedChunk>>>,
}

/// Rebuilds the metadata in `meta` (empty, or a metadata copy) from the chunks on `disks`
/// of `store`, recording them on `node`. Every chunk used is read and verified.
pub fn recover(
    store: &dyn ChunkStore,
    disks: &[DiskId],
    node: &NodeId,
    meta: &MetaStore,
    log: &LocalLog,
    policies: &PolicySet,
) -> Result<RecoverReport, String> {
    let mut files: BTreeMap<FileId, Parts> = BTreeMap::new();
    for d in disks {
        for c in store.scan(d).map_err(|e| format!("scan disk {d}: {e}"))? {
            let p = files.entry(c.key.file).or_default();
            *p.paths.entry(c.path.clone()).or_default() += 1;
            p.folder.get_or_insert_with(|| c.folder.clone());
            p.stripes
                .entry(c.key.stripe)
                .or_default()
                .entry(c.key.generation)
                .or_default()
                .push(c);
        }
    }
    let mut report = RecoverReport::default();
    if let Some(max) = files.keys().max() {
        meta.reserve_inodes_through(*max)
            .map_err(|e| e.to_string())?;
    }
    let now = Timestamp::now();
    for (ino, parts) in files {
        let Some(folder) = parts.folder.clone() else {
            continue;
        };
        let mut stripes = Vec::new();
        for (index, gens) in &parts.stripes {
            match choose_generation(store, node, gens, &mut report) {
                Some(s) => stripes.push(StripeRecord { index: *index, ..s }),
                None => {
                    report.chunks_left_out += gens.values().map(|v| v.len() as u64).sum::<u64>()
                }
            }
        }
        let Some(first) = stripes.first() else {
            continue;
        };
        match meta.attr(ino).map_err(|e| e.to_string())? {
            Some(attr) if attr.layout.is_some() => {
                merge(meta, log, &attr, stripes, now, &mut report)?;
                follow_rename(meta, log, ino, &parts, now, &mut report)?;
                continue;
            }
            Some(_) => {
                report.problems.push(format!(
                    "chunks of inode {ino} found, but the metadata copy has it as a {:?}",
                    attr_kind(meta, ino)
                ));
                continue;
            }
            None => {}
        }
        let (k, m) = (first.k, first.m);
        let path = parts
            .paths
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(p, _)| p.clone())
            .unwrap_or_default();
        let layout = layout_of(&stripes, (k, m), folder, policies, &parts);
        let size = stripes
            .iter()
            .map(|s| s.index * layout.stripe_size + s.len)
            .max()
            .unwrap_or(0);
        let (parent, name) = match place(meta, log, &path, ino, now) {
            Ok(v) => v,
            Err(e) => {
                report.problems.push(format!("file {ino} at {path}: {e}"));
                continue;
            }
        };
        if name != path.rsplit('/').next().unwrap_or_default() || path.is_empty() {
            report
                .moved
                .push(format!("{path} → {RECOVERED_DIR}/{name}"));
        }
        if let Err(e) = meta.restore_file(ino, parent, &name, &layout, now) {
            report.problems.push(format!("file {ino} at {path}: {e}"));
            continue;
        }
        report.files += 1;
        report.bytes += size;
        for s in stripes {
            let chunks = s.chunks.len() as u64;
            let good = s.chunks.len();
            let (sk, index) = (usize::from(s.k), s.index);
            let op = MetadataOp::CommitStripe {
                ino,
                size: s.index * layout.stripe_size + s.len,
                stripe: s,
                time: now,
            };
            match log.apply(&op) {
                Ok(Ok(_)) => {
                    report.stripes += 1;
                    report.chunks += chunks;
                    if good < sk {
                        report
                            .unreadable
                            .push(format!("{path} stripe {index}: {good} of {sk} chunks"));
                    }
                }
                Ok(Err(r)) => report.problems.push(format!("{path} stripe {index}: {r}")),
                Err(e) => return Err(format!("record {path} stripe {index}: {e}")),
            }
        }
    }
    report.gone = gone_since_copy(store, meta)?;
    Ok(report)
}

/// Files whose stripes (stored as chunks) have none of their chunks on the disks any more.
fn gone_since_copy(store: &dyn ChunkStore, meta: &MetaStore) -> Result<Vec<String>, String> {
    let mut gone = Vec::new();
    let mut cursor = None;
    let mut last: Option<FileId> = None;
    loop {
        let page = meta
            .stripes_after(cursor, 1024)
            .map_err(|e| e.to_string())?;
        for row in &page.rows {
            if last == Some(row.ino) {
                continue;
            }
            let present = row.stripe.chunks.iter().any(|c| {
                let addr = crate::engine::chunk_addr(row.ino, &row.layout, &row.stripe, c.index);
                matches!(store.check_chunk(&c.disk, &addr), Ok(Some(_)))
            });
            if !present {
                last = Some(row.ino);
                let path = meta.path_of(row.ino).ok().flatten().unwrap_or_default();
                gone.push(format!("{path} (inode {})", row.ino));
            }
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => return Ok(gone),
        }
    }
}

/// A file the metadata copy knows under another path than its chunk folders' index files
/// (which record every rename) was renamed after the copy: it moves to that path when free.
fn follow_rename(
    meta: &MetaStore,
    log: &LocalLog,
    ino: FileId,
    parts: &Parts,
    now: Timestamp,
    report: &mut RecoverReport,
) -> Result<(), String> {
    let Some(indexed) = parts.paths.iter().max_by_key(|(_, n)| **n).map(|(p, _)| p) else {
        return Ok(());
    };
    let Ok(target) = crate::policy::normalize_path(indexed) else {
        return Ok(());
    };
    let Some(current) = meta.path_of(ino).map_err(|e| e.to_string())? else {
        return Ok(());
    };
    if current == target || target.starts_with("/.orphan/") {
        return Ok(());
    }
    let (Some((from_dir, from_name)), Some((to_dir, to_name))) =
        (current.rsplit_once('/'), target.rsplit_once('/'))
    else {
        return Ok(());
    };
    let parent = mkdir_p(meta, log, from_dir, now)?;
    let new_parent = mkdir_p(meta, log, to_dir, now)?;
    let op = MetadataOp::Rename {
        parent,
        name: from_name.to_owned(),
        new_parent,
        new_name: to_name.to_owned(),
        no_replace: true,
        time: now,
    };
    match log.apply(&op).map_err(|e| e.to_string())? {
        Ok(_) => report.renamed.push(format!("{current} → {target}")),
        Err(r) => report.problems.push(format!(
            "{current} was renamed to {target} after the copy, but: {r}"
        )),
    }
    Ok(())
}

fn attr_kind(meta: &MetaStore, ino: FileId) -> Option<crate::meta::FileKind> {
    meta.attr(ino).ok().flatten().map(|a| a.kind)
}

/// Stripes of a file the metadata copy knows: each newer on the disks than in the copy is
/// committed (with at least `k` good chunks).
fn merge(
    meta: &MetaStore,
    log: &LocalLog,
    attr: &crate::meta::Attr,
    stripes: Vec<StripeRecord>,
    now: Timestamp,
    report: &mut RecoverReport,
) -> Result<(), String> {
    let layout = attr.layout.as_ref().expect("checked by the caller");
    let mut size = attr.size;
    for s in stripes {
        let known = meta.stripe(attr.ino, s.index).map_err(|e| e.to_string())?;
        if known.is_some_and(|k| k.generation >= s.generation) || s.chunks.len() < usize::from(s.k)
        {
            continue;
        }
        size = size.max(s.index * layout.stripe_size + s.len);
        let index = s.index;
        let op = MetadataOp::CommitStripe {
            ino: attr.ino,
            size,
            stripe: s,
            time: now,
        };
        match log.apply(&op) {
            Ok(Ok(_)) => report.updated_stripes += 1,
            Ok(Err(r)) => report
                .problems
                .push(format!("inode {} stripe {index}: {r}", attr.ino)),
            Err(e) => return Err(format!("record inode {} stripe {index}: {e}", attr.ino)),
        }
    }
    Ok(())
}

/// The newest generation of a stripe with at least `k` chunks that verify (else the one
/// with the most), as a record with one chunk per shard index.
fn choose_generation(
    store: &dyn ChunkStore,
    node: &NodeId,
    gens: &BTreeMap<u64, Vec<IndexedChunk>>,
    report: &mut RecoverReport,
) -> Option<StripeRecord> {
    let mut best: Option<StripeRecord> = None;
    for (generation, chunks) in gens.iter().rev() {
        let mut by_index: BTreeMap<u16, (ChunkRecord, ChunkFile)> = BTreeMap::new();
        for c in chunks {
            let addr = ChunkAddr {
                folder: c.folder.clone(),
                key: c.key,
            };
            match store.read_chunk(&c.disk, &addr) {
                Ok(file) if !by_index.contains_key(&c.key.index) => {
                    by_index.insert(
                        c.key.index,
                        (
                            ChunkRecord {
                                index: c.key.index,
                                node: node.clone(),
                                disk: c.disk.clone(),
                                size: c.size,
                                crc: c.checksum,
                                state: ChunkState::Ok,
                            },
                            file,
                        ),
                    );
                }
                _ => report.chunks_left_out += 1,
            }
        }
        let Some((_, (_, any))) = by_index.iter().next() else {
            continue;
        };
        let h = &any.header;
        let record = StripeRecord {
            index: h.key.stripe,
            generation: *generation,
            len: h.stripe_end.saturating_sub(h.stripe_start),
            crc: h.stripe_crc,
            k: h.k,
            m: h.m,
            chunks: by_index
                .values()
                .filter(|(_, f)| f.header.stripe_crc == h.stripe_crc)
                .map(|(r, _)| r.clone())
                .collect(),
            inline: None,
        };
        let enough = record.chunks.len() >= usize::from(record.k);
        if enough {
            if let Some(b) = &best {
                report.chunks_left_out += b.chunks.len() as u64;
            }
            return Some(record);
        }
        if best
            .as_ref()
            .is_none_or(|b| b.chunks.len() < record.chunks.len())
        {
            best = Some(record);
        }
    }
    best
}

/// The file's layout: the stripe size from a stripe past the first (or a policy of the
/// same code), and the name of a configured policy of that shape (else `recovered`).
fn layout_of(
    stripes: &[StripeRecord],
    (k, m): (u16, u16),
    folder: crate::store::ChunkFolder,
    policies: &PolicySet,
    parts: &Parts,
) -> FileLayout {
    let from_offsets = stripes.iter().find(|s| s.index > 0).and_then(|s| {
        let c = parts.stripes.get(&s.index)?.get(&s.generation)?.first()?;
        Some(c.stripe_start / s.index)
    });
    let longest = stripes.iter().map(|s| s.len).max().unwrap_or(1);
    let same_code: Vec<(&String, u64)> = policies
        .named()
        .iter()
        .filter(|(_, p)| (p.k, p.m) == (k, m))
        .map(|(n, p)| (n, p.stripe_size))
        .collect();
    let (policy, stripe_size) = match from_offsets {
        Some(size) => (
            same_code
                .iter()
                .find(|(_, s)| *s == size)
                .map_or_else(|| "recovered".to_owned(), |(n, _)| (*n).clone()),
            size,
        ),
        None => same_code.iter().find(|(_, s)| *s >= longest).map_or_else(
            || ("recovered".to_owned(), longest),
            |(n, s)| ((*n).clone(), *s),
        ),
    };
    FileLayout {
        policy,
        k,
        m,
        stripe_size,
        folder,
    }
}

/// Creates the directories of `path` and returns its parent and name; a path that is taken
/// or unusable goes under [`RECOVERED_DIR`] as `INO-NAME`.
fn place(
    meta: &MetaStore,
    log: &LocalLog,
    path: &str,
    ino: FileId,
    now: Timestamp,
) -> Result<(FileId, String), String> {
    let usable = crate::policy::normalize_path(path)
        .ok()
        .filter(|p| p != "/" && !p.starts_with("/.orphan/"));
    if let Some(p) = usable {
        let (dir, name) = p.rsplit_once('/').expect("normalized paths start with /");
        let parent = mkdir_p(meta, log, dir, now)?;
        if meta
            .lookup(parent, name)
            .map_err(|e| e.to_string())?
            .is_none()
        {
            return Ok((parent, name.to_owned()));
        }
    }
    let parent = mkdir_p(meta, log, RECOVERED_DIR, now)?;
    let base = path
        .rsplit('/')
        .next()
        .filter(|b| !b.is_empty())
        .unwrap_or("file");
    Ok((parent, format!("{ino}-{base}")))
}

/// The directory at `path`, created with its parents where missing.
fn mkdir_p(meta: &MetaStore, log: &LocalLog, path: &str, now: Timestamp) -> Result<FileId, String> {
    let mut cur = FileId::ROOT;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        cur = match meta.lookup(cur, part).map_err(|e| e.to_string())? {
            Some(a) if a.kind == crate::meta::FileKind::Directory => a.ino,
            Some(_) => return Err(format!("`{part}` in {path} is not a directory")),
            None => {
                let op = MetadataOp::Create {
                    parent: cur,
                    name: part.to_owned(),
                    kind: NewKind::Directory,
                    perm: 0o755,
                    uid: 0,
                    gid: 0,
                    time: now,
                };
                log.apply(&op)
                    .map_err(|e| e.to_string())?
                    .map_err(|r| r.to_string())?
                    .attr
                    .map(|a| a.ino)
                    .ok_or("directory created without attributes")?
            }
        };
    }
    Ok(cur)
}
