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

/// Reads the first `dest.len()` data bytes of the chunk file at `path` into `dest`. The file
/// must hold chunk `key` (of disk `disk`, named in errors), with at least that many data
/// bytes, and pass its whole-chunk checksum, which is computed over every byte of the file.
///
/// A missing file is [`StoreError::NotFound`]; a file that fails a check is
/// [`StoreError::Corrupt`]; `dest` is then in an unspecified state.
pub fn read_chunk_file_into(
    path: &Path,
    disk: &DiskId,
    key: ChunkKey,
    dest: &mut [u8],
) -> Result<(), StoreError> {
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
    // The whole-chunk checksum covers every byte after itself: header and data.
    let mut h = crc32fast::Hasher::new();
    h.update(&head[4..]);
    h.update(dest);
    h.update(&rest);
    let computed = h.finalize();
    let stored = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
    if stored != computed {
        return Err(corrupt(disk, key)(ChunkFormatError::ChunkChecksum {
            stored,
            computed,
        }));
    }
    Ok(())
}
