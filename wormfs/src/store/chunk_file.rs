//! Reading one chunk file by its path, with every check a chunk store makes: the header,
//! the chunk key it names and the whole-chunk checksum.
//!
//! The disk store reads its chunks through these functions, and so does a client on the
//! node's machine that reads chunk files itself (`wormfs-fuse`'s local reads): a file found
//! at a path is trusted only when it holds exactly the chunk asked for, intact.

use super::StoreError;
use crate::chunk::{ChunkFormatError, ChunkHeader, FIXED_HEADER_LEN};
use crate::ids::{ChunkKey, DiskId};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub(crate) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// An I/O error on a chunk file: a missing file is the chunk missing, anything else the
/// store failing.
pub(crate) fn chunk_io<'a>(
    disk: &'a DiskId,
    key: ChunkKey,
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |e| match e.kind() {
        io::ErrorKind::NotFound => StoreError::NotFound {
            disk: disk.clone(),
            key,
        },
        _ => io_err(action, path)(e),
    }
}

/// A chunk that fails verification.
pub(crate) fn corrupt(
    disk: &DiskId,
    key: ChunkKey,
) -> impl FnOnce(ChunkFormatError) -> StoreError + '_ {
    move |source| StoreError::Corrupt {
        disk: disk.clone(),
        key,
        source,
    }
}

/// A chunk file must hold the chunk its name says.
pub(crate) fn check_key(
    disk: &DiskId,
    key: ChunkKey,
    path: &Path,
    found: ChunkKey,
) -> Result<(), StoreError> {
    if found == key {
        return Ok(());
    }
    Err(corrupt(disk, key)(ChunkFormatError::BadField {
        field: "chunk key",
        reason: format!("file `{}` holds chunk ({found})", path.display()),
    }))
}

/// Reads up to `buf.len()` bytes at `offset`; fewer at the end of the file.
pub(crate) fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Opens the chunk file at `path`, which must hold chunk `key` of disk `disk`, and reads and
/// checks its header (not the data). Returns the file, the header and the header's bytes.
pub(crate) fn open_chunk_file(
    path: &Path,
    disk: &DiskId,
    key: ChunkKey,
) -> Result<(File, ChunkHeader, Vec<u8>), StoreError> {
    let file = File::open(path).map_err(chunk_io(disk, key, "open chunk", path))?;
    let file_len = file.metadata().map_err(io_err("stat chunk", path))?.len();
    // The fixed header, then the whole header once its length is known.
    let mut head = vec![0u8; FIXED_HEADER_LEN + 4];
    let got = read_at_most(&file, &mut head, 0).map_err(io_err("read chunk", path))?;
    head.truncate(got);
    let header_len = if head.len() >= 12 {
        usize::from(u16::from_le_bytes([head[10], head[11]]))
    } else {
        head.len()
    };
    if header_len as u64 <= file_len && header_len > head.len() {
        head.resize(header_len, 0);
        let got = read_at_most(&file, &mut head, 0).map_err(io_err("read chunk", path))?;
        head.truncate(got);
    }
    let header = ChunkHeader::parse(&head, file_len).map_err(corrupt(disk, key))?;
    check_key(disk, key, path, header.key)?;
    head.truncate(header.encoded_len());
    Ok((file, header, head))
}

/// Reads the first `dest.len()` data bytes of the chunk file at `path` into `dest` and
/// returns their CRC32. The file must hold chunk `key` (of disk `disk`, named in errors),
/// with at least that many data bytes, and pass its whole-chunk checksum, which is computed
/// over every byte of the file.
///
/// A missing file is [`StoreError::NotFound`]; a file that fails a check is
/// [`StoreError::Corrupt`]; `dest` is then in an unspecified state.
pub fn read_chunk_file_into(
    path: &Path,
    disk: &DiskId,
    key: ChunkKey,
    dest: &mut [u8],
) -> Result<u32, StoreError> {
    let (file, header, head) = open_chunk_file(path, disk, key)?;
    if dest.len() as u64 > header.data_len {
        return Err(StoreError::Corrupt {
            disk: disk.clone(),
            key,
            source: super::short_data(header.data_len, dest.len()),
        });
    }
    let start = head.len() as u64;
    file.read_exact_at(dest, start)
        .map_err(io_err("read chunk", path))?;
    let mut rest = vec![0u8; (header.data_len - dest.len() as u64) as usize];
    file.read_exact_at(&mut rest, start + dest.len() as u64)
        .map_err(io_err("read chunk", path))?;
    check_chunk_crc(disk, key, &head, dest, &rest)
}

/// Reads data bytes `offset..offset + len` of the chunk file at `path` (clipped to its data),
/// which must hold chunk `key` (of disk `disk`, named in errors). Only the 64 KiB blocks
/// holding them are read, each checked against its CRC in the header.
///
/// A missing file is [`StoreError::NotFound`]; a file that fails a check is
/// [`StoreError::Corrupt`].
pub fn read_chunk_file_range(
    path: &Path,
    disk: &DiskId,
    key: ChunkKey,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, StoreError> {
    let (file, header, head) = open_chunk_file(path, disk, key)?;
    let end = offset.saturating_add(len).min(header.data_len);
    if offset >= end {
        return Ok(Vec::new());
    }
    let bs = u64::from(header.block_size);
    let first_block = offset / bs;
    let block_end = (end.div_ceil(bs) * bs).min(header.data_len);
    let mut blocks = vec![0u8; (block_end - first_block * bs) as usize];
    file.read_exact_at(&mut blocks, head.len() as u64 + first_block * bs)
        .map_err(io_err("read chunk", path))?;
    header
        .verify_blocks(first_block as usize, &blocks)
        .map_err(corrupt(disk, key))?;
    let from = (offset - first_block * bs) as usize;
    blocks.truncate(from + (end - offset) as usize);
    blocks.drain(..from);
    Ok(blocks)
}

/// Checks the whole-chunk checksum, which covers every byte after itself: the rest of the
/// header `head`, then the data, in two parts (`data`, whose own CRC32 is returned for the
/// caller, and `rest`).
fn check_chunk_crc(
    disk: &DiskId,
    key: ChunkKey,
    head: &[u8],
    data: &[u8],
    rest: &[u8],
) -> Result<u32, StoreError> {
    let mut data_crc = crc32fast::Hasher::new();
    data_crc.update(data);
    let mut whole = crc32fast::Hasher::new();
    whole.update(&head[4..]);
    whole.combine(&data_crc);
    whole.update(rest);
    let computed = whole.finalize();
    let stored = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
    if stored != computed {
        return Err(corrupt(disk, key)(ChunkFormatError::ChunkChecksum {
            stored,
            computed,
        }));
    }
    Ok(data_crc.finalize())
}

/// Whole-chunk buffers are page-aligned and a whole number of pages long, so that chunks
/// of one shard length share buffers.
const PAGE: usize = 4096;
/// Freed whole-chunk buffers kept for the next reads, in bytes: reusing a buffer saves the
/// kernel faulting in and clearing fresh pages for each chunk.
const POOL_BYTES: usize = 64 << 20;

/// A page-aligned allocation of `cap` bytes.
struct RawBuf {
    ptr: std::ptr::NonNull<u8>,
    cap: usize,
}

// SAFETY: a `RawBuf` owns its allocation outright; nothing else points into it.
unsafe impl Send for RawBuf {}

impl RawBuf {
    fn layout(cap: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(cap, PAGE).expect("a valid layout")
    }

    /// A buffer of `cap` bytes (a multiple of [`PAGE`], not zero): one from the
    /// pool when it has one of that size, else a new one. Its contents are unspecified.
    fn take(cap: usize) -> RawBuf {
        {
            let mut pool = lock_pool();
            if let Some(i) = pool.bufs.iter().position(|b| b.cap == cap) {
                pool.bytes -= cap;
                return pool.bufs.swap_remove(i);
            }
        }
        let layout = Self::layout(cap);
        // SAFETY: `cap` is not zero.
        let ptr = unsafe { std::alloc::alloc(layout) };
        match std::ptr::NonNull::new(ptr) {
            Some(ptr) => RawBuf { ptr, cap },
            None => std::alloc::handle_alloc_error(layout),
        }
    }

    /// Keeps the buffer for a later read, or frees it when the pool is full.
    fn give_back(self) {
        let mut pool = lock_pool();
        while pool.bytes + self.cap > POOL_BYTES && !pool.bufs.is_empty() {
            let old = pool.bufs.remove(0);
            pool.bytes -= old.cap;
            old.free();
        }
        if pool.bytes + self.cap <= POOL_BYTES {
            pool.bytes += self.cap;
            pool.bufs.push(self);
        } else {
            drop(pool);
            self.free();
        }
    }

    fn free(self) {
        // SAFETY: allocated in `take` with this very layout, and not used after.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) }
    }
}

#[derive(Default)]
struct Pool {
    bufs: Vec<RawBuf>,
    bytes: usize,
}

fn lock_pool() -> std::sync::MutexGuard<'static, Pool> {
    static POOL: std::sync::Mutex<Pool> = std::sync::Mutex::new(Pool {
        bufs: Vec::new(),
        bytes: 0,
    });
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A chunk's data bytes, read and checked by [`read_chunk_file_whole`]. They live in a
/// page-aligned buffer that goes back to a small pool when this is dropped.
pub struct WholeChunk {
    buf: Option<RawBuf>,
    /// Bytes of the buffer the file filled.
    filled: usize,
    data: std::ops::Range<usize>,
}

impl WholeChunk {
    /// The bytes the file filled.
    fn filled(&self) -> &[u8] {
        let buf = self.buf.as_ref().expect("present until dropped");
        // SAFETY: the first `filled` bytes were written by the kernel's reads.
        unsafe { std::slice::from_raw_parts(buf.ptr.as_ptr(), self.filled) }
    }
}

impl AsRef<[u8]> for WholeChunk {
    fn as_ref(&self) -> &[u8] {
        &self.filled()[self.data.clone()]
    }
}

impl Drop for WholeChunk {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            buf.give_back();
        }
    }
}

impl std::fmt::Debug for WholeChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WholeChunk")
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

/// Reads the chunk file at `path` whole, in one read into a reused buffer, and returns its
/// first `want` data bytes and their CRC32, with the checks of [`read_chunk_file_into`].
/// The chunk's data must be at most `shard_len` bytes (a longer file is refused before
/// anything is allocated for it).
///
/// The bytes are not copied again: a caller keeps the returned chunk as a piece of its
/// stripe (a mount's local reads do), and its buffer serves a later chunk once dropped.
pub fn read_chunk_file_whole(
    path: &Path,
    disk: &DiskId,
    key: ChunkKey,
    want: usize,
    shard_len: usize,
) -> Result<(WholeChunk, u32), StoreError> {
    let file = File::open(path).map_err(chunk_io(disk, key, "open chunk", path))?;
    let file_len = file.metadata().map_err(io_err("stat chunk", path))?.len();
    // The longest header there is (its length is 16 bits), then the data.
    // A shard is never longer than a stripe, whatever `shard_len` says.
    let most = u64::from(u16::MAX) + (shard_len as u64).min(crate::policy::MAX_STRIPE_SIZE);
    if file_len > most {
        return Err(corrupt(disk, key)(ChunkFormatError::BadField {
            field: "file length",
            reason: format!(
                "{file_len} bytes, more than a chunk of {shard_len} data bytes can take"
            ),
        }));
    }
    let file_len = file_len as usize;
    let cap = file_len.div_ceil(PAGE).max(1) * PAGE;
    let mut chunk = WholeChunk {
        buf: Some(RawBuf::take(cap)),
        filled: 0,
        data: 0..0,
    };
    let ptr = chunk.buf.as_ref().expect("just taken").ptr.as_ptr();
    chunk.filled = fill(&file, ptr, cap).map_err(io_err("read chunk", path))?;
    if chunk.filled != file_len {
        return Err(io_err("read chunk", path)(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "read {} bytes of a {file_len}-byte file: it changed while it was read",
                chunk.filled
            ),
        )));
    }
    let bytes = chunk.filled();
    let header = ChunkHeader::parse(bytes, file_len as u64).map_err(corrupt(disk, key))?;
    check_key(disk, key, path, header.key)?;
    if want as u64 > header.data_len {
        return Err(StoreError::Corrupt {
            disk: disk.clone(),
            key,
            source: super::short_data(header.data_len, want),
        });
    }
    let start = header.encoded_len();
    let end = start + header.data_len as usize;
    if end > bytes.len() {
        return Err(io_err("read chunk", path)(
            io::ErrorKind::UnexpectedEof.into(),
        ));
    }
    let data_crc = check_chunk_crc(
        disk,
        key,
        &bytes[..start],
        &bytes[start..start + want],
        &bytes[start + want..end],
    )?;
    chunk.data = start..start + want;
    Ok((chunk, data_crc))
}

/// Reads `file` from its start into the `cap` bytes at `ptr` until its end or the
/// buffer's; returns the bytes read.
fn fill(file: &File, ptr: *mut u8, cap: usize) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut done = 0;
    while done < cap {
        // SAFETY: `ptr` is valid for writes of `cap` bytes, and the kernel writes at most
        // `cap - done` of them after `done`.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                ptr.add(done).cast(),
                cap - done,
                done as libc::off_t,
            )
        };
        match n {
            0 => break,
            n if n > 0 => done += n as usize,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(done)
}
