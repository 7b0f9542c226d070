//! Local reads: a client on a node's machine reads a stripe's data chunk files itself.
//!
//! A stripe fetched through the node is copied about seven times on its way (the chunk
//! file into the node's stripe buffer, into gRPC messages, through a socket, into the
//! client's decoder…). A client on the same machine can instead ask the node where the data
//! chunks lie ([`Client::locate_stripes`](super::client::Client::locate_stripes), several
//! stripes a call) and read the files into its own buffer: one copy, and little work for
//! the node.
//!
//! Nothing read this way is trusted on its path alone. Each chunk file must hold exactly
//! the chunk asked for (file, stripe, generation and index, from its header) and pass its
//! whole-chunk checksum, and the stripe must match its checksum. Any failure, including a
//! file that is gone because the stripe was rewritten since it was located, makes
//! [`read_located`] fail; the caller then locates the stripe again or reads through the
//! node, which decodes around damaged chunks and records them.

use super::client::StripePieces;
use super::proto;
use crate::ids::{ChunkKey, DiskId, FileId};
use prost::bytes::Bytes;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Mutex;
use std::sync::OnceLock;

/// This machine's boot id (`/proc/sys/kernel/random/boot_id`), which tells a client whether
/// a node runs on the same machine; `None` where the kernel does not have one.
pub fn boot_id() -> Option<&'static str> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    })
    .as_deref()
}

/// A read of one chunk file, run by a chunk reader.
type Job = Box<dyn FnOnce() + Send>;

/// Threads that read chunk files for [`read_located`], kept between stripes: a stripe's
/// chunks are read side by side, and starting threads for each stripe cost more than the
/// reads (every thread start and exit maps and unmaps a stack).
struct ChunkReaders {
    jobs: mpsc::Sender<Job>,
}

/// Chunk readers at most; each waits on one file at a time.
const CHUNK_READERS: usize = 8;

impl ChunkReaders {
    fn run(&self, job: Job) {
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            job(); // no reader left: read here
        }
    }
}

fn chunk_readers() -> &'static ChunkReaders {
    static READERS: OnceLock<ChunkReaders> = OnceLock::new();
    READERS.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..CHUNK_READERS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("chunk-reader-{i}"))
                .spawn(move || loop {
                    let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
            if spawned.is_err() {
                break; // fewer readers; with none, `run` reads on the caller's thread
            }
        }
        ChunkReaders { jobs: tx }
    })
}

/// Why a stripe could not be read from its chunk files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalReadError {
    /// The node runs on another machine (or either side has no boot id).
    #[error("the node runs on another machine")]
    Elsewhere,
    /// The stripe has no chunk files (it is kept in the metadata).
    #[error("the stripe has no chunk files")]
    NoChunks,
    /// A data chunk is not on the node's disks, or is known to be damaged.
    #[error("data chunk {0} cannot be read on this machine")]
    NotHere(usize),
    /// The node's answer does not describe a stripe that can be read.
    #[error("the node's stripe location is inconsistent: {0}")]
    Inconsistent(String),
    /// A chunk file is missing, unreadable or fails its checks.
    #[error(transparent)]
    Chunk(#[from] crate::store::StoreError),
    /// The bytes of the data chunks not on this machine could not be read through the node.
    #[error("reading the other data chunks through the node: {0}")]
    ThroughNode(String),
    /// Every chunk passed, but the stripe does not match its checksum.
    #[error("the stripe read from chunk files fails its checksum")]
    StripeChecksum,
}

/// Checks that `loc`, a found stripe, can be read from chunk files on this machine, and
/// that its shape can be right. Returns the stripe's length and its shard length.
fn check_location(loc: &proto::StripeLocation) -> Result<(usize, usize), LocalReadError> {
    match boot_id() {
        Some(mine) if mine == loc.boot_id => {}
        _ => return Err(LocalReadError::Elsewhere),
    }
    if loc.data.is_empty() {
        return Err(LocalReadError::NoChunks);
    }
    if loc.len > crate::policy::MAX_STRIPE_SIZE {
        return Err(LocalReadError::Inconsistent(format!(
            "a stripe of {} bytes, longer than any policy's",
            loc.len
        )));
    }
    let len = usize::try_from(loc.len)
        .map_err(|_| LocalReadError::Inconsistent(format!("stripe length {}", loc.len)))?;
    let shard_len = usize::try_from(loc.shard_len).unwrap_or(usize::MAX);
    let k = loc.data.len();
    if shard_len == 0 || len > shard_len.saturating_mul(k) || len <= shard_len.saturating_mul(k - 1)
    {
        return Err(LocalReadError::Inconsistent(format!(
            "{k} data chunks of {shard_len} bytes cannot hold a stripe of {len} bytes"
        )));
    }
    Ok((len, shard_len))
}

/// The key of data chunk `i` of a located stripe.
fn data_chunk_key(
    file: FileId,
    index: u64,
    loc: &proto::StripeLocation,
    i: usize,
) -> Result<ChunkKey, LocalReadError> {
    Ok(ChunkKey {
        file,
        stripe: index,
        generation: loc.generation,
        index: u16::try_from(i)
            .map_err(|_| LocalReadError::Inconsistent(format!("{} data chunks", loc.data.len())))?,
    })
}

/// Reads bytes `offset..offset + len` of stripe `index` of `file` (clipped to the stripe)
/// from the data chunk files `loc` names that hold them: only their 64 KiB blocks that
/// hold the bytes, each checked against its CRC, as the node's own range read does (there
/// is no stripe checksum to check a part against). `loc` must be a found stripe.
pub fn read_located_range(
    file: FileId,
    index: u64,
    loc: &proto::StripeLocation,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, LocalReadError> {
    let (stripe_len, shard_len) = check_location(loc)?;
    let mut out = Vec::with_capacity(len.min((stripe_len as u64).saturating_sub(offset)) as usize);
    for piece in crate::stripe::shard_pieces(stripe_len as u64, shard_len as u64, offset, len) {
        let (i, from, n) = (piece.shard, piece.offset, piece.len);
        let place = &loc.data[i];
        if place.path.is_empty() {
            return Err(LocalReadError::NotHere(i));
        }
        let key = data_chunk_key(file, index, loc, i)?;
        let disk = DiskId(place.disk.clone());
        let bytes =
            crate::store::read_chunk_file_range(Path::new(&place.path), &disk, key, from, n)?;
        if bytes.len() as u64 != n {
            return Err(LocalReadError::Inconsistent(format!(
                "data chunk {i} holds {} of the {n} bytes from {from} the stripe needs",
                bytes.len()
            )));
        }
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

/// Reads stripe `index` of `file` from the chunk files `loc` names (see the module's
/// documentation). `loc` must be a found stripe, with every data chunk on this machine.
pub fn read_located(
    file: FileId,
    index: u64,
    loc: &proto::StripeLocation,
) -> Result<StripePieces, LocalReadError> {
    read_parts(file, index, loc, None)
}

/// Bytes `offset..offset + len` of a stripe, as the node reads them for a client (see
/// [`read_located_partly`]); the error says why they could not be had.
pub type ThroughNode<'a> = &'a dyn Fn(u64, u64) -> Result<StripePieces, String>;

/// Reads stripe `index` of `file`: the data chunks on this machine from their files, as
/// [`read_located`] does, and the bytes of the others from `through_node`, one call per
/// run of adjacent ones (a node's own disks take a stripe's first data chunks, so those are
/// usually one run at the end). The stripe must match its checksum, whoever read which
/// part, so bytes of another version of the stripe are refused.
/// [`LocalReadError::NotHere`] when no data chunk is on this machine: the node then reads
/// the whole stripe better itself.
pub fn read_located_partly(
    file: FileId,
    index: u64,
    loc: &proto::StripeLocation,
    through_node: ThroughNode<'_>,
) -> Result<StripePieces, LocalReadError> {
    if loc.data.iter().all(|c| c.path.is_empty()) {
        return Err(LocalReadError::NotHere(0));
    }
    read_parts(file, index, loc, Some(through_node))
}

/// One part of a stripe's bytes: a whole data chunk read from its file, or a run of
/// adjacent data chunks' bytes (`offset`, `len` within the stripe) read through the node.
enum Part {
    File(usize),
    Node(u64, u64),
}

fn read_parts(
    file: FileId,
    index: u64,
    loc: &proto::StripeLocation,
    through_node: Option<ThroughNode<'_>>,
) -> Result<StripePieces, LocalReadError> {
    let (len, shard_len) = check_location(loc)?;
    let k = loc.data.len();
    // Each data chunk's share of the stripe's bytes, and where it is read.
    let mut plan: Vec<Part> = Vec::with_capacity(k);
    let mut jobs = Vec::with_capacity(k);
    let mut left = len;
    for (i, place) in loc.data.iter().enumerate() {
        let want = left.min(shard_len);
        let start = (len - left) as u64;
        left -= want;
        if place.path.is_empty() {
            if through_node.is_none() {
                return Err(LocalReadError::NotHere(i));
            }
            match plan.last_mut() {
                Some(Part::Node(offset, n)) if *offset + *n == start => *n += want as u64,
                _ => plan.push(Part::Node(start, want as u64)),
            }
            continue;
        }
        let key = data_chunk_key(file, index, loc, i)?;
        plan.push(Part::File(jobs.len()));
        jobs.push((place.path.clone(), DiskId(place.disk.clone()), key, want));
    }
    let read = move |(path, disk, key, want): (String, DiskId, ChunkKey, usize)| {
        crate::store::read_chunk_file_whole(Path::new(&path), &disk, key, want, shard_len)
    };
    // The chunk files are read side by side (on a real disk each read waits for its own
    // seek) by the chunk readers; this thread reads the first itself or, when some bytes
    // come through the node, asks for those meanwhile.
    let (tx, rx) = mpsc::channel();
    let files = jobs.len();
    let mut jobs = jobs.into_iter();
    let all_here = !plan.iter().any(|p| matches!(p, Part::Node(..)));
    let first = if all_here { jobs.next() } else { None };
    let skip = usize::from(first.is_some());
    for (i, job) in jobs.enumerate() {
        let tx = tx.clone();
        chunk_readers().run(Box::new(move || {
            // The reader stopped waiting only if it gave up on the stripe.
            let _ = tx.send((i + skip, read(job)));
        }));
    }
    drop(tx);
    let mut from_files: Vec<Option<_>> = (0..files).map(|_| None).collect();
    if let Some(job) = first {
        from_files[0] = Some(read(job)?);
    }
    let mut from_node: Vec<StripePieces> = Vec::new();
    if let Some(through_node) = through_node {
        for part in &plan {
            if let Part::Node(offset, n) = *part {
                let bytes = through_node(offset, n).map_err(LocalReadError::ThroughNode)?;
                if bytes.len() as u64 != n {
                    return Err(LocalReadError::Inconsistent(format!(
                        "the node sent {} of the {n} bytes from {offset} of the stripe",
                        bytes.len()
                    )));
                }
                from_node.push(bytes);
            }
        }
    }
    for _ in skip..files {
        let (i, r) = rx.recv().map_err(|_| {
            LocalReadError::Inconsistent("a chunk reader stopped without an answer".into())
        })?;
        from_files[i] = Some(r?);
    }
    // The stripe's checksum: from the data CRCs the chunk reads computed on the way, and
    // over the bytes that came through the node.
    let mut crc = 0u32; // of no bytes
    let mut stripe = StripePieces::default();
    let mut from_node = from_node.into_iter();
    let mut add = |piece: Bytes, piece_crc: u32| {
        crc = crate::checksum::crc32_combine(crc, piece_crc, piece.len() as u64);
        stripe.push(piece);
    };
    for part in plan {
        match part {
            Part::File(j) => {
                let (chunk, data_crc) = from_files[j].take().expect("every chunk file was read");
                add(Bytes::from_owner(chunk), data_crc);
            }
            Part::Node(..) => {
                let run = from_node.next().expect("every run was read");
                for piece in run.pieces() {
                    add(piece.clone(), crate::checksum::crc32(piece));
                }
            }
        }
    }
    if crc != loc.crc {
        return Err(LocalReadError::StripeChecksum);
    }
    Ok(stripe)
}

#[cfg(all(test, feature = "local"))]
mod tests {
    use super::*;
    use crate::engine::{local_view, write_stripe, StripeWrite};
    use crate::ids::NodeId;
    use crate::meta::{FileLayout, StripeRecord};
    use crate::placement::SpreadPlacement;
    use crate::store::{ChunkFolder, DiskChunkStore};

    struct Setup {
        _dir: tempfile::TempDir,
        store: DiskChunkStore,
        layout: FileLayout,
        record: StripeRecord,
        data: Vec<u8>,
    }

    /// A 2+1 stripe of 10,001 bytes written to three disk directories.
    fn setup() -> Setup {
        setup_k(2)
    }

    /// A k+1 stripe of 10,001 bytes written to k + 1 disk directories.
    fn setup_k(k: u16) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let disks: Vec<_> = (0..=k)
            .map(|i| {
                let p = dir.path().join(format!("d{i}"));
                std::fs::create_dir(&p).unwrap();
                (DiskId(format!("d{i}")), p)
            })
            .collect();
        let store = DiskChunkStore::open(&disks).unwrap();
        let layout = FileLayout {
            policy: "t".into(),
            k,
            m: 1,
            stripe_size: 1 << 20,
            folder: ChunkFolder::for_path("/f"),
        };
        let data: Vec<u8> = (0..10_001u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let view = local_view(&NodeId("n".into()), &store).unwrap();
        let w = StripeWrite {
            file: FileId(9),
            path: "/f",
            layout: &layout,
            index: 3,
            generation: 5,
            data: &data,
        };
        let record = write_stripe(&store, &SpreadPlacement, &view, w).unwrap();
        Setup {
            _dir: dir,
            store,
            layout,
            record,
            data,
        }
    }

    /// What the node answers for the stripe (see `NodeFs::locate_stripes`).
    fn located(s: &Setup) -> proto::StripeLocation {
        let data = (0..s.record.k)
            .map(|i| {
                let c = s.record.chunks.iter().find(|c| c.index == i).unwrap();
                let addr = crate::engine::chunk_addr(FileId(9), &s.layout, &s.record, i);
                proto::DataChunkPlace {
                    disk: c.disk.0.clone(),
                    path: s
                        .store
                        .chunk_path(&c.disk, &addr)
                        .unwrap()
                        .display()
                        .to_string(),
                }
            })
            .collect();
        proto::StripeLocation {
            found: true,
            generation: 5,
            len: s.record.len,
            crc: s.record.crc,
            shard_len: s.record.len.div_ceil(u64::from(s.record.k)),
            data,
            boot_id: boot_id().unwrap_or_default().to_owned(),
        }
    }

    #[test]
    fn reads_a_stripe_from_its_chunk_files() {
        let s = setup();
        let loc = located(&s);
        assert_eq!(read_located(FileId(9), 3, &loc).unwrap().to_vec(), s.data);
    }

    #[test]
    fn reused_buffers_hold_each_read_s_own_bytes() {
        let s = setup();
        let loc = located(&s);
        // Each read's chunk buffers go back to the pool when dropped and serve the next.
        for _ in 0..20 {
            let stripe = read_located(FileId(9), 3, &loc).unwrap();
            assert_eq!(stripe.len(), s.data.len());
            assert_eq!(stripe.to_vec(), s.data);
        }
        // Two stripes alive at once never share a buffer.
        let (a, b) = (
            read_located(FileId(9), 3, &loc).unwrap(),
            read_located(FileId(9), 3, &loc).unwrap(),
        );
        assert_eq!((a.to_vec(), b.to_vec()), (s.data.clone(), s.data.clone()));
    }

    #[test]
    fn a_chunk_file_longer_than_its_shard_can_be_is_refused() {
        let s = setup();
        let loc = located(&s);
        let path = &loc.data[1].path;
        let mut bytes = std::fs::read(path).unwrap();
        bytes.resize(bytes.len() + usize::from(u16::MAX) + 1, 0);
        std::fs::write(path, &bytes).unwrap();
        let e = read_located(FileId(9), 3, &loc).unwrap_err();
        assert!(e.to_string().contains("file length"), "{e}");
        // A shard length no stripe can have neither overflows nor lets a bad file through.
        let key = ChunkKey {
            file: FileId(9),
            stripe: 3,
            generation: 5,
            index: 1,
        };
        let disk = DiskId(loc.data[1].disk.clone());
        let e = crate::store::read_chunk_file_whole(Path::new(path), &disk, key, 1, usize::MAX)
            .unwrap_err();
        assert!(e.to_string().contains("not the file length"), "{e}");
    }

    #[test]
    fn refuses_what_it_cannot_trust() {
        let s = setup();
        let loc = located(&s);
        let refused = |loc: &proto::StripeLocation, index: u64| {
            read_located(FileId(9), index, loc).unwrap_err()
        };
        // another machine
        let mut other = loc.clone();
        other.boot_id = "another machine".into();
        assert!(matches!(refused(&other, 3), LocalReadError::Elsewhere));
        // a chunk that is not here
        let mut missing = loc.clone();
        missing.data[1].path.clear();
        assert!(matches!(refused(&missing, 3), LocalReadError::NotHere(1)));
        // the files hold stripe 3, not stripe 4: the key in the header says so
        let e = refused(&loc, 4);
        assert!(e.to_string().contains("chunk key"), "{e}");
        // a stale generation
        let mut stale = loc.clone();
        stale.generation = 4;
        assert!(matches!(refused(&stale, 3), LocalReadError::Chunk(_)));
        // a shape that cannot be right, or a length no policy allows
        for (len, shard_len) in [(loc.len, 10), (loc.len, u64::MAX), (u64::MAX, u64::MAX)] {
            let mut wrong = loc.clone();
            (wrong.len, wrong.shard_len) = (len, shard_len);
            assert!(matches!(
                refused(&wrong, 3),
                LocalReadError::Inconsistent(_)
            ));
        }
        // a stripe checksum that does not match
        let mut crc = loc.clone();
        crc.crc ^= 1;
        assert!(matches!(refused(&crc, 3), LocalReadError::StripeChecksum));
        // a flipped byte in a chunk file
        let path = &loc.data[0].path;
        let mut bytes = std::fs::read(path).unwrap();
        let at = bytes.len() - 10;
        bytes[at] ^= 1;
        std::fs::write(path, &bytes).unwrap();
        let e = refused(&loc, 3);
        assert!(
            matches!(
                &e,
                LocalReadError::Chunk(crate::store::StoreError::Corrupt { .. })
            ),
            "{e}"
        );
        // and a missing file
        std::fs::remove_file(path).unwrap();
        assert!(matches!(
            refused(&loc, 3),
            LocalReadError::Chunk(crate::store::StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn reads_ranges_from_the_chunks_that_hold_them() {
        let s = setup();
        let loc = located(&s);
        let half = loc.shard_len; // data chunk 1 starts here
        let range = |offset: u64, len: u64| read_located_range(FileId(9), 3, &loc, offset, len);
        let want = |offset: u64, len: u64| {
            let end = (offset + len).min(s.data.len() as u64);
            s.data[offset.min(end) as usize..end as usize].to_vec()
        };
        for (offset, len) in [
            (0, 1),
            (100, 4096),
            (half - 5, 10), // across the two data chunks
            (half, 3000),
            (0, s.data.len() as u64),
            (s.data.len() as u64 - 3, 100), // clipped to the stripe
            (s.data.len() as u64 + 10, 5),  // past it: nothing
        ] {
            assert_eq!(
                range(offset, len).unwrap(),
                want(offset, len),
                "{offset}+{len}"
            );
        }
        // only the chunks a range needs must be here
        let mut missing = loc.clone();
        missing.data[1].path.clear();
        assert_eq!(
            read_located_range(FileId(9), 3, &missing, 10, 20).unwrap(),
            want(10, 20)
        );
        assert!(matches!(
            read_located_range(FileId(9), 3, &missing, half - 1, 2).unwrap_err(),
            LocalReadError::NotHere(1)
        ));
        // another machine, and a stale generation
        let mut other = loc.clone();
        other.boot_id = "another machine".into();
        assert!(matches!(
            read_located_range(FileId(9), 3, &other, 0, 1).unwrap_err(),
            LocalReadError::Elsewhere
        ));
        let mut stale = loc.clone();
        stale.generation = 4;
        assert!(matches!(
            read_located_range(FileId(9), 3, &stale, 0, 1).unwrap_err(),
            LocalReadError::Chunk(_)
        ));
        // a flipped byte fails its block's CRC
        let path = &loc.data[1].path;
        let mut bytes = std::fs::read(path).unwrap();
        let at = bytes.len() - 10;
        bytes[at] ^= 1;
        std::fs::write(path, &bytes).unwrap();
        let e = read_located_range(FileId(9), 3, &loc, half + 1, 10).unwrap_err();
        assert!(
            matches!(
                &e,
                LocalReadError::Chunk(crate::store::StoreError::Corrupt { .. })
            ),
            "{e}"
        );
    }

    #[test]
    fn reads_the_chunks_elsewhere_through_the_node_in_runs_and_checks_the_whole() {
        let s = setup_k(4);
        let loc = located(&s);
        let shard = loc.shard_len;
        let asked = std::cell::RefCell::new(Vec::new());
        let node = |offset: u64, len: u64| {
            asked.borrow_mut().push((offset, len));
            let end = (offset + len).min(s.data.len() as u64);
            // in two pieces, as a node may send them
            let bytes = &s.data[offset as usize..end as usize];
            let (a, b) = bytes.split_at(bytes.len() / 2);
            let mut pieces = StripePieces::default();
            pieces.push(Bytes::copy_from_slice(a));
            pieces.push(Bytes::copy_from_slice(b));
            Ok(pieces)
        };
        let partly = |loc: &proto::StripeLocation, through: ThroughNode<'_>| {
            read_located_partly(FileId(9), 3, loc, through)
        };
        // chunks 1 and 2 elsewhere: one call for both; chunk 3 (the stripe's short tail)
        // elsewhere too: a second call
        let mut some = loc.clone();
        for i in [1, 2] {
            some.data[i].path.clear();
        }
        assert_eq!(partly(&some, &node).unwrap().to_vec(), s.data);
        assert_eq!(*asked.borrow(), vec![(shard, 2 * shard)]);
        asked.borrow_mut().clear();
        some.data[3].path.clear();
        some.data[0].path = loc.data[0].path.clone();
        let tail = s.data.len() as u64 - 3 * shard;
        some.data[2].path = loc.data[2].path.clone();
        assert_eq!(partly(&some, &node).unwrap().to_vec(), s.data);
        assert_eq!(*asked.borrow(), vec![(shard, shard), (3 * shard, tail)]);
        // all here: the node is not asked
        asked.borrow_mut().clear();
        assert_eq!(partly(&loc, &node).unwrap().to_vec(), s.data);
        assert!(asked.borrow().is_empty());
        // none here: the node reads the whole stripe better itself
        let mut none = loc.clone();
        for d in &mut none.data {
            d.path.clear();
        }
        assert!(matches!(
            partly(&none, &node).unwrap_err(),
            LocalReadError::NotHere(0)
        ));
        assert!(asked.borrow().is_empty());
        // bytes of another version of the stripe fail the stripe's checksum
        let mut one = loc.clone();
        one.data[1].path.clear();
        let changed = |offset: u64, len: u64| {
            let mut b = node(offset, len)?.to_vec();
            b[0] ^= 1;
            Ok(StripePieces::from(b))
        };
        assert!(matches!(
            partly(&one, &changed).unwrap_err(),
            LocalReadError::StripeChecksum
        ));
        // too few bytes, or none at all
        let short = |offset: u64, len: u64| node(offset, len - 1);
        assert_eq!(short(0, 10).unwrap().len(), 9);
        assert!(matches!(
            partly(&one, &short).unwrap_err(),
            LocalReadError::Inconsistent(_)
        ));
        let down = |_: u64, _: u64| Err("the node is restarting".to_owned());
        let e = partly(&one, &down).unwrap_err();
        assert!(matches!(&e, LocalReadError::ThroughNode(_)), "{e}");
        assert!(e.to_string().contains("restarting"), "{e}");
        // a damaged local chunk is still found, whoever reads the rest
        let path = &loc.data[0].path;
        let mut bytes = std::fs::read(path).unwrap();
        let at = bytes.len() - 10;
        bytes[at] ^= 1;
        std::fs::write(path, &bytes).unwrap();
        assert!(matches!(
            partly(&one, &node).unwrap_err(),
            LocalReadError::Chunk(crate::store::StoreError::Corrupt { .. })
        ));
    }
}
