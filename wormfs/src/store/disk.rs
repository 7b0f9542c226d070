//! [`ChunkStore`] over directories of a local file system, one directory per disk.

use super::chunk_file::{check_key, chunk_io, corrupt, io_err, read_chunk_file_into};
use super::durable::FsSync;
use super::index::{fold, IndexRecord, INDEX_FILE_NAME};
use super::lock::{DirLock, LOCK_FILE_NAME};
use super::{
    ChunkAddr, ChunkFolder, ChunkStore, DiskStatus, IndexedChunk, StoreError, StoredChunk,
};
use crate::chunk::{ChunkFile, ChunkHeader};
use crate::ids::{DiskId, FileId};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The marker file at the root of every disk directory.
pub const MARKER_FILE_NAME: &str = "wormfs-disk.toml";

struct Disk {
    root: PathBuf,
    /// Why the disk is failed (not written to, reported unhealthy), if it is: from the
    /// start, or after [`IO_ERRORS_TO_FAIL`] I/O errors in a row.
    failed: Mutex<Option<String>>,
    /// I/O errors in a row (a success resets it).
    io_errors: std::sync::atomic::AtomicU32,
    /// This store's exclusive hold on the directory.
    _lock: DirLock,
    /// Serialises appends to index files on this disk.
    index_lock: Mutex<()>,
    /// Durability for the file system the disk is on (shared with the other disks on it).
    sync: Arc<FsSync>,
}

/// Chunks stored as files under one directory per disk.
///
/// Every disk directory holds a marker file naming its disk id; opening a directory whose
/// marker names another disk fails, so a disk mounted at the wrong place is noticed before
/// anything is written to it.
pub struct DiskChunkStore {
    disks: BTreeMap<DiskId, Disk>,
    temp_counter: AtomicU64,
}

/// Flushes a directory's entries (new, renamed or removed files) to stable storage.
fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync directory", dir))
}

/// Creates `dir` (and its parent) if missing. The new entries become durable with the
/// next [`Disk::durable`].
fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().expect("chunk folders have parents");
    ensure_dir(parent)?;
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err("create directory", dir)(e)),
    }
}

/// I/O errors in a row (reads and writes, not a missing or corrupt chunk) after which a
/// disk is taken as failed: reported unhealthy, not written to, its chunks rebuilt.
pub const IO_ERRORS_TO_FAIL: u32 = 3;

impl Disk {
    fn failed_reason(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counts the outcome of an operation: an I/O error (not a missing or corrupt chunk,
    /// not a full disk) adds to the errors in a row, anything else resets them.
    fn count<T>(&self, id: &DiskId, r: Result<T, StoreError>) -> Result<T, StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        match &r {
            // a full disk is full, not failing
            Err(StoreError::Io { source, .. })
                if matches!(
                    source.raw_os_error(),
                    Some(libc::ENOSPC) | Some(libc::EDQUOT)
                ) => {}
            Err(StoreError::Io {
                action,
                path,
                source,
            }) => {
                let n = self.io_errors.fetch_add(1, Relaxed) + 1;
                if n >= IO_ERRORS_TO_FAIL {
                    let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
                    if failed.is_none() {
                        *failed = Some(format!(
                            "disk `{id}`: {n} I/O errors in a row, the last: {action} `{}`: \
                             {source}. It is marked failed (not written to) and its chunks are \
                             rebuilt elsewhere; restart the node once the disk is fixed",
                            path.display()
                        ));
                    }
                }
            }
            _ => self.io_errors.store(0, Relaxed),
        }
        r
    }

    /// Makes every write this thread made on the disk durable (one shared `syncfs`).
    fn durable(&self) -> Result<(), StoreError> {
        self.sync
            .durable()
            .map_err(io_err("sync the file system of", self.sync.path()))
    }
}

/// Removes a temporary file unless disarmed.
struct TempGuard<'a>(Option<&'a Path>);

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

impl DiskChunkStore {
    /// Opens the disks `(id, directory)`. Each directory must exist. An empty directory is
    /// claimed for its disk id (a marker file is written); a directory with a marker must
    /// name the same id; a non-empty directory without a marker is refused, so WormFS never
    /// mixes its chunks into someone else's files.
    pub fn open(disks: &[(DiskId, PathBuf)]) -> Result<DiskChunkStore, StoreError> {
        Self::open_expecting(disks, &|_| false)
    }

    /// Like [`DiskChunkStore::open`], for a node whose metadata knows some disks
    /// (`holds_chunks`: recorded before, or holding chunks). A directory without a marker
    /// for such a disk was wiped, or is an empty mount point of an unmounted disk: it is
    /// not claimed again but opened as
    /// *failed* ([`DiskChunkStore::failed`]): reported unhealthy, never written to, so its
    /// chunks count as lost and are rebuilt elsewhere. Every directory is locked for this
    /// store ([`DirLock`]): a second store or node on the same disk is refused.
    pub fn open_expecting(
        disks: &[(DiskId, PathBuf)],
        holds_chunks: &dyn Fn(&DiskId) -> bool,
    ) -> Result<DiskChunkStore, StoreError> {
        let mut map = BTreeMap::new();
        let mut seen: BTreeMap<PathBuf, DiskId> = BTreeMap::new();
        let mut syncs: BTreeMap<u64, Arc<FsSync>> = BTreeMap::new();
        for (id, root) in disks {
            let canonical = fs::canonicalize(root).map_err(|e| {
                StoreError::DiskSetup(format!(
                    "disk `{id}`: directory `{}` cannot be opened ({e}); create it or fix the path",
                    root.display()
                ))
            })?;
            if !canonical.is_dir() {
                return Err(StoreError::DiskSetup(format!(
                    "disk `{id}`: `{}` is not a directory",
                    root.display()
                )));
            }
            if let Some(other) = seen.insert(canonical.clone(), id.clone()) {
                return Err(StoreError::DiskSetup(format!(
                    "disks `{other}` and `{id}` are the same directory `{}`; each disk needs its own",
                    canonical.display()
                )));
            }
            if map.contains_key(id) {
                return Err(StoreError::DiskSetup(format!(
                    "disk id `{id}` is listed twice"
                )));
            }
            let lock = DirLock::acquire(&canonical, &format!("disk `{id}`"))?;
            let failed = claim(id, &canonical, holds_chunks(id))?;
            let device = fs::metadata(&canonical)
                .map_err(io_err("inspect disk directory", &canonical))?
                .dev();
            let sync = match syncs.get(&device) {
                Some(s) => s.clone(),
                None => {
                    let s = Arc::new(
                        FsSync::open(&canonical)
                            .map_err(io_err("open disk directory", &canonical))?,
                    );
                    syncs.insert(device, s.clone());
                    s
                }
            };
            map.insert(
                id.clone(),
                Disk {
                    root: canonical,
                    failed: Mutex::new(failed),
                    io_errors: std::sync::atomic::AtomicU32::new(0),
                    _lock: lock,
                    index_lock: Mutex::new(()),
                    sync,
                },
            );
        }
        Ok(DiskChunkStore {
            disks: map,
            temp_counter: AtomicU64::new(0),
        })
    }

    fn disk(&self, id: &DiskId) -> Result<&Disk, StoreError> {
        self.disks
            .get(id)
            .ok_or_else(|| StoreError::UnknownDisk(id.clone()))
    }

    /// Writes the chunk file whose header is `h` and whose bytes are `parts` one after the
    /// other (their whole-chunk checksum `checksum` already at offset 0).
    fn put_parts_on(
        &self,
        disk_id: &DiskId,
        folder: &ChunkFolder,
        path: &str,
        h: &ChunkHeader,
        parts: &[&[u8]],
        checksum: u32,
    ) -> Result<StoredChunk, StoreError> {
        let disk = self.disk(disk_id)?;
        if let Some(why) = disk.failed_reason() {
            return Err(StoreError::DiskSetup(why));
        }
        let dir = disk.root.join(folder.relative_path());
        ensure_dir(&dir)?;
        let name = h.key.file_name();
        let size: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        let mut guard = TempGuard(Some(&tmp));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err("create chunk", &tmp))?;
        for part in parts {
            f.write_all(part).map_err(io_err("write chunk", &tmp))?;
        }
        drop(f);
        // Installed under its name at once, made durable below with its folder and index
        // line: until its stripe's metadata commits nothing refers to it, so after a crash
        // in between it is garbage, never a damaged chunk of a file.
        let dest = dir.join(&name);
        fs::rename(&tmp, &dest).map_err(io_err("install chunk", &dest))?;
        guard.0 = None;
        let record = IndexRecord::Put {
            path: path.to_owned(),
            key: h.key,
            size,
            crc: checksum,
            start: h.stripe_start,
            end: h.stripe_end,
            k: h.k,
            m: h.m,
        };
        self.append_index(disk, &dir, &record)?;
        disk.durable()?;
        Ok(StoredChunk {
            disk: disk_id.clone(),
            addr: ChunkAddr {
                folder: folder.clone(),
                key: h.key,
            },
            size,
            checksum,
        })
    }

    fn read_chunk_on(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<ChunkFile, StoreError> {
        let (header, mut bytes) = self.read_verified_on(disk, addr)?;
        bytes.drain(..header.encoded_len());
        Ok(ChunkFile::from_parts(header, bytes))
    }

    /// A chunk file's header and bytes, every checksum verified and its key checked.
    fn read_verified_on(
        &self,
        disk: &DiskId,
        addr: &ChunkAddr,
    ) -> Result<(ChunkHeader, Vec<u8>), StoreError> {
        let path = self.chunk_path(disk, addr)?;
        let bytes = fs::read(&path).map_err(chunk_io(disk, addr.key, "read chunk", &path))?;
        let header = crate::chunk::verify_chunk(&bytes).map_err(corrupt(disk, addr.key))?;
        check_key(disk, addr.key, &path, header.key)?;
        Ok((header, bytes))
    }

    /// The disks failed (opened failed, or failed since), each with why.
    pub fn failed(&self) -> Vec<(DiskId, String)> {
        self.disks
            .iter()
            .filter_map(|(id, d)| Some((id.clone(), d.failed_reason()?)))
            .collect()
    }

    /// The path of a chunk file.
    pub fn chunk_path(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<PathBuf, StoreError> {
        Ok(self
            .disk(disk)?
            .root
            .join(addr.folder.relative_path())
            .join(addr.key.file_name()))
    }

    fn append_index(
        &self,
        disk: &Disk,
        folder: &Path,
        record: &IndexRecord,
    ) -> Result<(), StoreError> {
        let path = folder.join(INDEX_FILE_NAME);
        let _guard = disk.index_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut f = OpenOptions::new()
            .read(true)
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err("open index", &path))?;
        let mut line = record.to_line();
        // After a torn append the file does not end in a newline: start a fresh line so this
        // record is not glued to the fragment.
        let len = f.metadata().map_err(io_err("stat index", &path))?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut last, len - 1)
                .map_err(io_err("read index", &path))?;
            if last[0] != b'\n' {
                line.insert(0, '\n');
            }
        }
        // durable with the caller's next `Disk::durable`
        f.write_all(line.as_bytes())
            .map_err(io_err("append to index", &path))
    }
}

/// Checks or writes the marker of disk `id` at `root`. Returns why the disk is failed
/// when its marker is missing but it should hold chunks (`expected`).
fn claim(id: &DiskId, root: &Path, expected: bool) -> Result<Option<String>, StoreError> {
    let marker = root.join(MARKER_FILE_NAME);
    match fs::read_to_string(&marker) {
        Ok(text) => {
            let found = text
                .lines()
                .find_map(|l| l.strip_prefix("disk_id = "))
                .map(|v| v.trim().trim_matches('"').to_owned());
            match found {
                Some(found) if found == id.0 => Ok(None),
                Some(found) => Err(StoreError::DiskSetup(format!(
                    "directory `{}` holds disk `{found}`, but the config says disk `{id}` is there; \
                     a disk is mounted at the wrong place or the config names the wrong directory",
                    root.display()
                ))),
                None => Err(StoreError::DiskSetup(format!(
                    "marker `{}` has no `disk_id` line; it is damaged — restore it or move the directory aside",
                    marker.display()
                ))),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if expected {
                return Ok(Some(format!(
                    "disk `{id}`: directory `{}` has no {MARKER_FILE_NAME} though the metadata \
                     knows this disk: it was wiped, or the disk is not mounted there. It is \
                     marked failed (not claimed, not written to) and its chunks are rebuilt \
                     elsewhere; mount the disk back and restart to use it again, or give a \
                     new disk a new id",
                    root.display()
                )));
            }
            let occupied = fs::read_dir(root)
                .map_err(io_err("list disk directory", root))?
                .filter_map(Result::ok)
                .any(|e| e.file_name() != "lost+found" && e.file_name() != LOCK_FILE_NAME);
            if occupied {
                return Err(StoreError::DiskSetup(format!(
                    "directory `{}` for disk `{id}` is not empty and has no {MARKER_FILE_NAME}; \
                     WormFS only claims empty directories — point the config at an empty one",
                    root.display()
                )));
            }
            let text = format!(
                "# WormFS disk marker: do not edit or copy\nformat = 1\ndisk_id = \"{id}\"\n"
            );
            let tmp = root.join(format!(".{MARKER_FILE_NAME}.tmp"));
            let mut f = File::create(&tmp).map_err(io_err("create disk marker", &tmp))?;
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io_err("write disk marker", &tmp))?;
            fs::rename(&tmp, &marker).map_err(io_err("install disk marker", &marker))?;
            fsync_dir(root).map(|()| None)
        }
        Err(e) => Err(io_err("read disk marker", &marker)(e)),
    }
}

impl ChunkStore for DiskChunkStore {
    fn disks(&self) -> Result<Vec<DiskStatus>, StoreError> {
        Ok(self
            .disks
            .iter()
            .map(|(id, d)| {
                let stat = rustix::fs::statvfs(&d.root);
                let (total, free, healthy) = match stat {
                    Ok(s) => (
                        s.f_blocks * s.f_frsize,
                        s.f_bavail * s.f_frsize,
                        d.failed_reason().is_none() && d.root.join(MARKER_FILE_NAME).exists(),
                    ),
                    Err(_) => (0, 0, false),
                };
                DiskStatus {
                    disk: id.clone(),
                    path: Some(d.root.clone()),
                    total,
                    free,
                    healthy,
                }
            })
            .collect())
    }

    fn chunk_file(&self, disk: &DiskId, addr: &ChunkAddr) -> Option<PathBuf> {
        self.chunk_path(disk, addr).ok()
    }

    fn put_chunk(
        &self,
        disk_id: &DiskId,
        folder: &ChunkFolder,
        path: &str,
        chunk: &ChunkFile,
    ) -> Result<StoredChunk, StoreError> {
        let (head, checksum) = chunk.encoded_header();
        // a header that does not describe its data (put together by hand, not by
        // `ChunkFile::new`) would be read back as damage: the strict parser first
        ChunkHeader::parse(&head, (head.len() + chunk.data.len()) as u64).map_err(|source| {
            StoreError::Corrupt {
                disk: disk_id.clone(),
                key: chunk.header.key,
                source,
            }
        })?;
        let parts = [&head[..], &chunk.data[..]];
        let r = self.put_parts_on(disk_id, folder, path, &chunk.header, &parts, checksum);
        self.disk(disk_id)?.count(disk_id, r)
    }

    fn put_encoded(
        &self,
        disk_id: &DiskId,
        folder: &ChunkFolder,
        path: &str,
        header: &ChunkHeader,
        bytes: Vec<u8>,
    ) -> Result<StoredChunk, StoreError> {
        let checksum = u32::from_le_bytes(bytes[..4].try_into().expect("a verified chunk"));
        let r = self.put_parts_on(disk_id, folder, path, header, &[&bytes], checksum);
        self.disk(disk_id)?.count(disk_id, r)
    }

    fn read_chunk(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<ChunkFile, StoreError> {
        let r = self.read_chunk_on(disk, addr);
        self.disk(disk)?.count(disk, r)
    }

    fn read_encoded(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<Vec<u8>, StoreError> {
        let r = self.read_verified_on(disk, addr).map(|(_, bytes)| bytes);
        self.disk(disk)?.count(disk, r)
    }

    fn read_chunk_range(
        &self,
        disk: &DiskId,
        addr: &ChunkAddr,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let path = self.chunk_path(disk, addr)?;
        super::chunk_file::read_chunk_file_range(&path, disk, addr.key, offset, len)
    }

    fn read_chunk_into(
        &self,
        disk: &DiskId,
        addr: &ChunkAddr,
        dest: &mut [u8],
    ) -> Result<(), StoreError> {
        read_chunk_file_into(&self.chunk_path(disk, addr)?, disk, addr.key, dest).map(|_| ())
    }

    fn check_chunk(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<Option<u64>, StoreError> {
        let path = self.chunk_path(disk, addr)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("stat chunk", &path)(e)),
        }
    }

    fn delete_chunk(&self, disk_id: &DiskId, addr: &ChunkAddr) -> Result<bool, StoreError> {
        let path = self.chunk_path(disk_id, addr)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("delete chunk", &path)(e)),
        }
        let dir = path.parent().expect("chunk files are in folders");
        let disk = self.disk(disk_id)?;
        self.append_index(disk, dir, &IndexRecord::Delete { key: addr.key })?;
        disk.durable()?;
        Ok(true)
    }

    fn rename_file(
        &self,
        disk_id: &DiskId,
        folder: &ChunkFolder,
        file: FileId,
        path: &str,
    ) -> Result<(), StoreError> {
        let disk = self.disk(disk_id)?;
        let dir = disk.root.join(folder.relative_path());
        if !dir.is_dir() {
            return Ok(());
        }
        self.append_index(
            disk,
            &dir,
            &IndexRecord::Path {
                file,
                path: path.to_owned(),
            },
        )?;
        disk.durable()
    }

    fn compact_index(&self, disk_id: &DiskId, folder: &ChunkFolder) -> Result<bool, StoreError> {
        let disk = self.disk(disk_id)?;
        let dir = disk.root.join(folder.relative_path());
        let path = dir.join(INDEX_FILE_NAME);
        // under the index lock: no record is appended while the file is rewritten
        let _guard = disk.index_lock.lock().unwrap_or_else(|e| e.into_inner());
        let text = match fs::read(&path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("read index", &path)(e)),
        };
        let lines = text.split_terminator('\n').count();
        let (live, _damaged) = fold(&text);
        if lines <= 2 * live.len() + 8 {
            return Ok(false);
        }
        let mut out = String::new();
        for (key, c) in &live {
            out.push_str(
                &IndexRecord::Put {
                    path: c.path.clone(),
                    key: *key,
                    size: c.size,
                    crc: c.crc,
                    start: c.start,
                    end: c.end,
                    k: c.k,
                    m: c.m,
                }
                .to_line(),
            );
        }
        let tmp = dir.join(format!(".{INDEX_FILE_NAME}.compact.tmp"));
        let mut f = File::create(&tmp).map_err(io_err("create index", &tmp))?;
        f.write_all(out.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io_err("write index", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_err("install index", &path))?;
        fsync_dir(&dir)?;
        Ok(true)
    }

    fn scan(&self, disk_id: &DiskId) -> Result<Vec<IndexedChunk>, StoreError> {
        let disk = self.disk(disk_id)?;
        let mut out = Vec::new();
        for top in fs::read_dir(&disk.root).map_err(io_err("list disk", &disk.root))? {
            let top = top.map_err(io_err("list disk", &disk.root))?;
            let is_top = top
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| (1..=1000).contains(&n));
            if !is_top {
                continue;
            }
            let top_path = top.path();
            for entry in fs::read_dir(&top_path).map_err(io_err("list top folder", &top_path))? {
                let entry = entry.map_err(io_err("list top folder", &top_path))?;
                let Ok(folder) =
                    ChunkFolder::try_from(entry.file_name().to_string_lossy().into_owned())
                else {
                    continue;
                };
                let index = entry.path().join(INDEX_FILE_NAME);
                let text = match fs::read(&index) {
                    Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err("read index", &index)(e)),
                };
                let (chunks, _damaged) = fold(&text);
                out.extend(chunks.into_iter().map(|(key, c)| IndexedChunk {
                    disk: disk_id.clone(),
                    folder: folder.clone(),
                    path: c.path,
                    key,
                    size: c.size,
                    checksum: c.crc,
                    stripe_start: c.start,
                    stripe_end: c.end,
                    k: c.k,
                    m: c.m,
                }));
            }
        }
        out.sort_by_key(|c| c.key);
        Ok(out)
    }
}

debug_by_name!(DiskChunkStore);

#[cfg(test)]
mod tests;
