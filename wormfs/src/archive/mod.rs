//! A daemon-less archive: WormFS's erasure coding and placement over a few local
//! directories (one per disk), with metadata in a local SQLite file. For programs that want
//! to write archives with `cargo add wormfs` and no running node.
//!
//! Stripes go the node's way ([`engine::store_stripe`]): a stripe of at most the policy
//! set's `inline_max` bytes is kept in the metadata, so small files cost no chunk files;
//! bigger ones are coded over the disks. The chunks live in any [`ChunkStore`]: the local
//! directories of [`LocalArchive::open`], or a store of your own through
//! [`LocalArchive::builder`].
//!
//! Writes are atomic per file: a file is written under a temporary name and renamed over
//! the target once all its stripes are durable and committed, so a reader (or a crash) sees
//! the old file or the new one, never a mix.

use crate::engine::{self, EngineError, StripeWrite};
use crate::ids::{DiskId, FileId, NodeId};
use crate::meta::{
    Attr, DirEntry, FileKind, FileLayout, LocalLog, LogError, MetaError, MetaStore, MetadataOp,
    NewKind, Refusal, Timestamp,
};
use crate::placement::{PlacementPolicy, SpreadPlacement};
use crate::policy::{normalize_path, PolicyError, PolicySet};
use crate::store::{ChunkFolder, ChunkStore, DiskChunkStore, StoreError};
use crate::stripe::Stripes;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The name of the metadata database inside the archive's metadata directory.
pub const META_FILE_NAME: &str = "meta.sqlite";

/// Why an archive operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The path is not absolute or not normalizable.
    #[error("bad path: {0}")]
    BadPath(String),
    /// The file system refused (not found, exists, not empty, ...).
    #[error("{path}: {refusal}")]
    Refused {
        /// The path.
        path: String,
        /// Why.
        refusal: Refusal,
    },
    /// Reading the input or writing the output failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Writing or reading a stripe failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A policy problem.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The chunk store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The builder was given no chunk store.
    #[error(
        "the archive has nowhere to keep chunks: call ArchiveBuilder::disks with its \
         directories, or ArchiveBuilder::store with a chunk store"
    )]
    NoStore,
    /// The metadata store failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The metadata log failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

impl ArchiveError {
    /// The `errno` this error corresponds to, for callers that speak POSIX.
    pub fn errno(&self) -> i32 {
        match self {
            ArchiveError::BadPath(_) | ArchiveError::Policy(_) => 22,
            ArchiveError::Refused { refusal, .. } => refusal.errno(),
            ArchiveError::Engine(EngineError::Placement(_)) => 28, // ENOSPC
            _ => 5,                                                // EIO
        }
    }
}

/// A chunk file of an archived file, for inspection and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkFileInfo {
    /// The stripe's index.
    pub stripe: u64,
    /// The shard index.
    pub index: u16,
    /// The disk.
    pub disk: DiskId,
    /// The chunk file, when the store keeps chunks as files on this machine
    /// ([`ChunkStore::chunk_file`]).
    pub path: Option<PathBuf>,
}

/// Where an archive keeps its chunks.
enum Chunks {
    Disks(Vec<PathBuf>),
    Store(Arc<dyn ChunkStore>),
}

/// Opens a [`LocalArchive`] over a chunk store of your choice; see
/// [`LocalArchive::builder`].
pub struct ArchiveBuilder {
    meta_dir: PathBuf,
    chunks: Option<Chunks>,
    policies: PolicySet,
    placement: Arc<dyn PlacementPolicy>,
}

impl ArchiveBuilder {
    /// Keeps chunks in these directories, one per disk (disk ids `disk0`, `disk1`, … in
    /// this order; the disks' marker files catch a reordering). Each directory must exist
    /// and be empty on first use.
    pub fn disks(mut self, disks: &[PathBuf]) -> ArchiveBuilder {
        self.chunks = Some(Chunks::Disks(disks.to_vec()));
        self
    }

    /// Keeps chunks in `store`: any [`ChunkStore`] (a store of your own can check itself
    /// with the conformance suite, feature `conformance`).
    pub fn store(mut self, store: Arc<dyn ChunkStore>) -> ArchiveBuilder {
        self.chunks = Some(Chunks::Store(store));
        self
    }

    /// The storage policies (default: [`PolicySet::defaults`]).
    pub fn policies(mut self, policies: PolicySet) -> ArchiveBuilder {
        self.policies = policies;
        self
    }

    /// How chunks are spread over the disks (default: [`SpreadPlacement`], the most free
    /// space first, never two chunks of a stripe on one disk).
    pub fn placement(mut self, placement: Arc<dyn PlacementPolicy>) -> ArchiveBuilder {
        self.placement = placement;
        self
    }

    /// Opens the archive, creating its metadata on first use, and removes the temporary
    /// files of writes a crash cut short.
    pub fn open(self) -> Result<LocalArchive, ArchiveError> {
        let meta_dir = self.meta_dir.as_path();
        let chunks = self.chunks.ok_or(ArchiveError::NoStore)?;
        std::fs::create_dir_all(meta_dir).map_err(|source| ArchiveError::Io {
            action: "create metadata directory",
            source,
        })?;
        let lock = crate::store::DirLock::acquire(meta_dir, "archive metadata directory")?;
        let store: Arc<dyn ChunkStore> = match chunks {
            Chunks::Store(store) => store,
            Chunks::Disks(disks) => {
                let disks: Vec<(DiskId, PathBuf)> = disks
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| (DiskId(format!("disk{i}")), p))
                    .collect();
                Arc::new(DiskChunkStore::open(&disks)?)
            }
        };
        let meta = Arc::new(MetaStore::open(&meta_dir.join(META_FILE_NAME))?);
        let log = LocalLog::new(meta)?;
        let archive = LocalArchive {
            node: NodeId("local".into()),
            store,
            log,
            policies: self.policies,
            placement: self.placement,
            _lock: lock,
        };
        archive.remove_unfinished_writes()?;
        Ok(archive)
    }
}

debug_by_name!(ArchiveBuilder);

/// An erasure-coded archive over local directories.
pub struct LocalArchive {
    node: NodeId,
    store: Arc<dyn ChunkStore>,
    log: LocalLog,
    policies: PolicySet,
    placement: Arc<dyn PlacementPolicy>,
    /// This archive's exclusive hold on its metadata directory.
    _lock: crate::store::DirLock,
}

impl LocalArchive {
    /// Opens (creating on first use) an archive with its metadata in `meta_dir` and one disk
    /// per directory of `disks` (disk ids `disk0`, `disk1`, … in this order; the disks'
    /// marker files catch a reordering). Each disk directory must exist and be empty on first
    /// use.
    pub fn create(
        meta_dir: impl AsRef<Path>,
        disks: &[PathBuf],
        policies: PolicySet,
    ) -> Result<LocalArchive, ArchiveError> {
        Self::builder(meta_dir)
            .disks(disks)
            .policies(policies)
            .open()
    }

    /// An archive with its metadata in `meta_dir`, its chunks where the builder says:
    ///
    /// ```no_run
    /// # fn main() -> Result<(), wormfs::archive::ArchiveError> {
    /// use std::sync::Arc;
    /// use wormfs::archive::LocalArchive;
    /// use wormfs::ids::DiskId;
    /// use wormfs::store::MemoryChunkStore;
    ///
    /// let disks: Vec<(DiskId, u64)> =
    ///     (0..6).map(|i| (DiskId(format!("m{i}")), 1 << 30)).collect();
    /// let archive = LocalArchive::builder("/tmp/archive-meta")
    ///     .store(Arc::new(MemoryChunkStore::new(&disks)))
    ///     .open()?;
    /// archive.write_file("/hello.txt", &b"hello"[..])?;
    /// # Ok(()) }
    /// ```
    pub fn builder(meta_dir: impl AsRef<Path>) -> ArchiveBuilder {
        ArchiveBuilder {
            meta_dir: meta_dir.as_ref().to_owned(),
            chunks: None,
            policies: PolicySet::defaults(),
            placement: Arc::new(SpreadPlacement),
        }
    }

    /// Same as [`LocalArchive::create`]: opening an existing archive and creating a new one
    /// are one operation.
    pub fn open(
        meta_dir: impl AsRef<Path>,
        disks: &[PathBuf],
        policies: PolicySet,
    ) -> Result<LocalArchive, ArchiveError> {
        Self::create(meta_dir, disks, policies)
    }

    /// The metadata, for reads.
    pub fn meta(&self) -> &MetaStore {
        self.log.store()
    }

    fn submit(&self, path: &str, op: MetadataOp) -> Result<crate::meta::Applied, ArchiveError> {
        self.log
            .apply(&op)?
            .map_err(|refusal| ArchiveError::Refused {
                path: path.to_owned(),
                refusal,
            })
    }

    /// Removes the temporary files of writes a crash cut short (`.NAME.wormfs-tmp-GEN`):
    /// only this archive writes them, and it holds the metadata directory's lock, so none
    /// is in progress.
    fn remove_unfinished_writes(&self) -> Result<(), ArchiveError> {
        for (parent, name) in self.meta().entries_like(".%.wormfs-tmp-%")? {
            let op = MetadataOp::Unlink {
                parent,
                name: name.clone(),
                time: Timestamp::now(),
            };
            let applied = self.submit(&name, op)?;
            self.collect_garbage(&applied.garbage);
        }
        Ok(())
    }

    fn collect_garbage(&self, garbage: &[crate::meta::ChunkLocation]) {
        for g in garbage {
            // A chunk left behind is found by the index files; losing a delete loses no data.
            let _ = self.store.delete_chunk(&g.disk, &g.addr());
        }
    }

    fn attr_at(&self, path: &str) -> Result<Attr, ArchiveError> {
        let norm = normalize_path(path).map_err(ArchiveError::BadPath)?;
        self.meta()
            .lookup_path(&norm)?
            .ok_or_else(|| ArchiveError::Refused {
                path: norm,
                refusal: Refusal::NotFound("no such file or directory".into()),
            })
    }

    /// The attributes of the object at `path`.
    pub fn stat(&self, path: &str) -> Result<Attr, ArchiveError> {
        self.attr_at(path)
    }

    /// Creates directory `path` and its missing parents; existing directories are fine.
    pub fn mkdir_all(&self, path: &str) -> Result<FileId, ArchiveError> {
        let norm = normalize_path(path).map_err(ArchiveError::BadPath)?;
        let mut ino = FileId::ROOT;
        let mut so_far = String::new();
        for part in norm.split('/').filter(|p| !p.is_empty()) {
            so_far.push('/');
            so_far.push_str(part);
            ino = match self.meta().lookup(ino, part)? {
                Some(a) if a.kind == FileKind::Directory => a.ino,
                Some(_) => {
                    return Err(ArchiveError::Refused {
                        path: so_far,
                        refusal: Refusal::NotDir("exists and is not a directory".into()),
                    })
                }
                None => {
                    let op = MetadataOp::Create {
                        parent: ino,
                        name: part.to_owned(),
                        kind: NewKind::Directory,
                        perm: 0o755,
                        uid: 0,
                        gid: 0,
                        time: Timestamp::now(),
                    };
                    self.submit(&so_far, op)?
                        .attr
                        .expect("create returns the new inode")
                        .ino
                }
            };
        }
        Ok(ino)
    }

    /// Sets the policy of directory `path` (and so of files created under it later) to the
    /// policy named `name`; `None` makes it inherit again.
    pub fn set_policy(&self, path: &str, name: Option<&str>) -> Result<(), ArchiveError> {
        if let Some(n) = name {
            self.policies.check_name(n, "policy")?;
        }
        let attr = self.attr_at(path)?;
        self.submit(
            path,
            MetadataOp::SetDirPolicy {
                ino: attr.ino,
                policy: name.map(str::to_owned),
            },
        )?;
        Ok(())
    }

    /// Writes the file at `path` from `reader`, replacing any file there, and creating
    /// missing parent directories. Returns when every stripe is durable and committed.
    pub fn write_file(&self, path: &str, mut reader: impl Read) -> Result<Attr, ArchiveError> {
        let path = normalize_path(path).map_err(ArchiveError::BadPath)?;
        let (dir, name) = path
            .rsplit_once('/')
            .filter(|(_, n)| !n.is_empty())
            .ok_or_else(|| ArchiveError::BadPath(format!("`{path}` names no file")))?;
        let parent = self.mkdir_all(if dir.is_empty() { "/" } else { dir })?;
        let (policy_name, policy) = self
            .policies
            .resolve(&path, |d| self.meta().dir_policy_at(d).ok().flatten())?;
        let layout = FileLayout {
            policy: policy_name,
            k: policy.k,
            m: policy.m,
            stripe_size: policy.stripe_size,
            folder: ChunkFolder::for_path(&path),
        };
        let tmp_name = format!(".{name}.wormfs-tmp-{}", engine::next_generation());
        let create = MetadataOp::Create {
            parent,
            name: tmp_name.clone(),
            kind: NewKind::File(layout.clone()),
            perm: 0o644,
            uid: 0,
            gid: 0,
            time: Timestamp::now(),
        };
        let ino = self
            .submit(&path, create)?
            .attr
            .expect("create returns the new inode")
            .ino;
        let written = self.fill(ino, &path, &layout, &mut reader);
        let outcome = written.and_then(|()| {
            let rename = MetadataOp::Rename {
                parent,
                name: tmp_name.clone(),
                new_parent: parent,
                new_name: name.to_owned(),
                no_replace: false,
                time: Timestamp::now(),
            };
            self.submit(&path, rename)
        });
        match outcome {
            Ok(applied) => {
                self.collect_garbage(&applied.garbage);
                self.attr_at(&path)
            }
            Err(e) => {
                if let Ok(Ok(applied)) = self.log.apply(&MetadataOp::Unlink {
                    parent,
                    name: tmp_name,
                    time: Timestamp::now(),
                }) {
                    self.collect_garbage(&applied.garbage);
                }
                Err(e)
            }
        }
    }

    fn fill(
        &self,
        ino: FileId,
        path: &str,
        layout: &FileLayout,
        reader: &mut dyn Read,
    ) -> Result<(), ArchiveError> {
        let mut buf = vec![0u8; layout.stripe_size as usize];
        let mut index = 0u64;
        loop {
            let mut len = 0;
            while len < buf.len() {
                match reader.read(&mut buf[len..]) {
                    Ok(0) => break,
                    Ok(n) => len += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(source) => {
                        return Err(ArchiveError::Io {
                            action: "read input",
                            source,
                        })
                    }
                }
            }
            if len == 0 {
                return Ok(());
            }
            let w = StripeWrite {
                file: ino,
                path,
                layout,
                index,
                generation: engine::next_generation(),
                data: &buf[..len],
            };
            let view = || engine::local_view(&self.node, self.store.as_ref());
            let record = engine::store_stripe(
                self.store.as_ref(),
                self.placement.as_ref(),
                view,
                self.policies.inline_max(),
                w,
            )?;
            let size = index * layout.stripe_size + len as u64;
            let commit = MetadataOp::CommitStripe {
                ino,
                stripe: record,
                size,
                time: Timestamp::now(),
            };
            self.submit(path, commit)?;
            if len < buf.len() {
                return Ok(());
            }
            index += 1;
        }
    }

    /// Reads the file at `path` into `out`; returns the number of bytes written. Chunks
    /// found missing or corrupt on the way are recorded in the metadata for repair.
    pub fn read_file(&self, path: &str, mut out: impl Write) -> Result<u64, ArchiveError> {
        let attr = self.attr_at(path)?;
        let Some(layout) = attr.layout.clone() else {
            return Err(ArchiveError::Refused {
                path: path.to_owned(),
                refusal: Refusal::IsDir("not a regular file".into()),
            });
        };
        let stripes = self.meta().stripes(attr.ino)?;
        let mut records = stripes.iter().peekable();
        let io = |source| ArchiveError::Io {
            action: "write output",
            source,
        };
        for range in Stripes::new(layout.stripe_size, attr.size).iter() {
            while records.peek().is_some_and(|r| r.index < range.index) {
                records.next();
            }
            match records.peek().filter(|r| r.index == range.index) {
                Some(record) => {
                    let read = engine::read_stripe(self.store.as_ref(), attr.ino, &layout, record)?;
                    for d in &read.damaged {
                        let op = MetadataOp::SetChunkState {
                            ino: attr.ino,
                            stripe: record.index,
                            generation: record.generation,
                            chunk: d.chunk.index,
                            state: d.state,
                        };
                        let _ = self.log.apply(&op);
                    }
                    let want = range.len() as usize;
                    let have = read.data.len().min(want);
                    out.write_all(&read.data[..have]).map_err(io)?;
                    out.write_all(&vec![0; want - have]).map_err(io)?;
                }
                None => out.write_all(&vec![0; range.len() as usize]).map_err(io)?, // a hole
            }
        }
        Ok(attr.size)
    }

    /// Reads the whole file at `path`.
    pub fn read_to_vec(&self, path: &str) -> Result<Vec<u8>, ArchiveError> {
        let mut out = Vec::new();
        self.read_file(path, &mut out)?;
        Ok(out)
    }

    /// The entries of directory `path`.
    pub fn list(&self, path: &str) -> Result<Vec<DirEntry>, ArchiveError> {
        let attr = self.attr_at(path)?;
        if attr.kind != FileKind::Directory {
            return Err(ArchiveError::Refused {
                path: path.to_owned(),
                refusal: Refusal::NotDir("cannot list a file".into()),
            });
        }
        Ok(self.meta().readdir(attr.ino)?)
    }

    /// Deletes the file (or empty directory) at `path` and its chunk files.
    pub fn delete(&self, path: &str) -> Result<(), ArchiveError> {
        let norm = normalize_path(path).map_err(ArchiveError::BadPath)?;
        let attr = self.attr_at(&norm)?;
        let (dir, name) = norm
            .rsplit_once('/')
            .filter(|(_, n)| !n.is_empty())
            .ok_or_else(|| ArchiveError::BadPath("cannot delete the root".into()))?;
        let parent = self.attr_at(if dir.is_empty() { "/" } else { dir })?.ino;
        let time = Timestamp::now();
        let op = if attr.kind == FileKind::Directory {
            MetadataOp::Rmdir {
                parent,
                name: name.to_owned(),
                time,
            }
        } else {
            MetadataOp::Unlink {
                parent,
                name: name.to_owned(),
                time,
            }
        };
        let applied = self.submit(&norm, op)?;
        self.collect_garbage(&applied.garbage);
        Ok(())
    }

    /// Every chunk file of the file at `path`, by stripe and shard index.
    pub fn chunk_files(&self, path: &str) -> Result<Vec<ChunkFileInfo>, ArchiveError> {
        let attr = self.attr_at(path)?;
        let Some(layout) = attr.layout else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for s in self.meta().stripes(attr.ino)? {
            for c in s.chunks {
                let addr = crate::store::ChunkAddr {
                    folder: layout.folder.clone(),
                    key: crate::ids::ChunkKey {
                        file: attr.ino,
                        stripe: s.index,
                        generation: s.generation,
                        index: c.index,
                    },
                };
                out.push(ChunkFileInfo {
                    stripe: s.index,
                    index: c.index,
                    path: self.store.chunk_file(&c.disk, &addr),
                    disk: c.disk,
                });
            }
        }
        Ok(out)
    }
}

debug_by_name!(LocalArchive);
