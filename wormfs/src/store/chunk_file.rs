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
use std::mem::MaybeUninit;
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
    // SAFETY: `u8` and `MaybeUninit<u8>` have the same layout, and the reader below only
    // ever writes initialised bytes (from the kernel) into the buffer.
    let dest = unsafe { &mut *(std::ptr::from_mut::<[u8]>(dest) as *mut [MaybeUninit<u8>]) };
    read_chunk_file_uninit(path, disk, key, dest)
}

/// [`read_chunk_file_into`] into a buffer that need not be initialised (a vector's spare
/// capacity, which saves clearing a stripe buffer only to overwrite it). On success every
/// byte of `dest` is initialised.
pub fn read_chunk_file_uninit(
    path: &Path,
    disk: &DiskId,
    key: ChunkKey,
    dest: &mut [MaybeUninit<u8>],
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
    pread_exact(&file, dest, start).map_err(io_err("read chunk", path))?;
    // SAFETY: `pread_exact` succeeded, so the kernel wrote every byte of `dest`.
    let data: &[u8] = unsafe { std::slice::from_raw_parts(dest.as_ptr().cast(), dest.len()) };
    let mut rest = vec![0u8; (header.data_len - data.len() as u64) as usize];
    file.read_exact_at(&mut rest, start + data.len() as u64)
        .map_err(io_err("read chunk", path))?;
    // The whole-chunk checksum covers every byte after itself: header and data. The data's
    // own CRC is kept apart on the way, for the caller.
    let mut data_crc = crc32fast::Hasher::new();
    data_crc.update(data);
    let mut whole = crc32fast::Hasher::new();
    whole.update(&head[4..]);
    whole.combine(&data_crc);
    whole.update(&rest);
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

/// Fills `buf` from `file` at `offset`; a file that ends first is `UnexpectedEof`.
fn pread_exact(file: &File, buf: &mut [MaybeUninit<u8>], offset: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        let at = libc::off_t::try_from(offset + done as u64)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        // SAFETY: the pointer is valid for writes of `rest.len()` bytes, and the kernel
        // writes at most that many.
        let n = unsafe { libc::pread(file.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len(), at) };
        match n {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n if n > 0 => done += n as usize,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}
