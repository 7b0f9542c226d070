//! Read a file's layout: its policy, and for every stripe where each chunk lies and in
//! what state, as `wormfs file info` shows it for a cluster. The file is written to a
//! temporary archive over six directories; one chunk is then lost and one rots, and a
//! read finds both and records them, so the layout says which stripes need repair.
//!
//! ```sh
//! cargo run -p wormfs --example layout
//! ```

use std::error::Error;
use std::path::PathBuf;
use wormfs::archive::LocalArchive;
use wormfs::meta::ChunkState;
use wormfs::policy::PolicySet;

fn print_layout(archive: &LocalArchive, path: &str) -> Result<usize, Box<dyn Error>> {
    let attr = archive.stat(path)?;
    let layout = attr.layout.as_ref().ok_or("not a regular file")?;
    println!(
        "{path}: {} bytes, inode {}, policy `{}` ({}+{}, {} KiB stripes)",
        attr.size,
        attr.ino,
        layout.policy,
        layout.k,
        layout.m,
        layout.stripe_size / 1024
    );
    let mut damaged = 0;
    for s in archive.meta().stripes(attr.ino)? {
        if s.inline.is_some() {
            println!("  stripe {}: {} bytes kept in the metadata", s.index, s.len);
            continue;
        }
        let ok = s
            .chunks
            .iter()
            .filter(|c| c.state == ChunkState::Ok)
            .count();
        println!(
            "  stripe {}: {} bytes, generation {}, {ok} of {} chunks ok (needs {})",
            s.index,
            s.len,
            s.generation,
            s.chunks.len(),
            s.k
        );
        for c in &s.chunks {
            println!(
                "    chunk {} on {}: {} bytes, crc {:08x}, {:?}",
                c.index, c.disk, c.size, c.crc, c.state
            );
            damaged += usize::from(c.state != ChunkState::Ok);
        }
    }
    Ok(damaged)
}

fn main() -> Result<(), Box<dyn Error>> {
    let root = tempfile::tempdir()?;
    let disks: Vec<PathBuf> = (0..6).map(|i| root.path().join(format!("d{i}"))).collect();
    for d in &disks {
        std::fs::create_dir_all(d)?;
    }
    let archive = LocalArchive::open(root.path().join("meta"), &disks, PolicySet::defaults())?;
    archive.mkdir_all("/videos")?;
    archive.set_policy("/videos", Some("media"))?;
    // two full 4 MiB stripes and a tail of 3,000 bytes, small enough to stay inline
    let data: Vec<u8> = (0..(8 << 20) + 3000u32).map(|i| (i % 253) as u8).collect();
    archive.write_file("/videos/clip.mp4", &data[..])?;
    if print_layout(&archive, "/videos/clip.mp4")? != 0 {
        return Err("a fresh file has damaged chunks".into());
    }

    // lose chunk 2 of stripe 0, rot chunk 1 of stripe 1 (data chunks: a read needs them)
    let chunks = archive.chunk_files("/videos/clip.mp4")?;
    let file_of = |stripe, index| {
        chunks
            .iter()
            .find(|c| c.stripe == stripe && c.index == index)
            .and_then(|c| c.path.clone())
            .ok_or("no such chunk file")
    };
    std::fs::remove_file(file_of(0, 2)?)?;
    let rotten = file_of(1, 1)?;
    let mut bytes = std::fs::read(&rotten)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&rotten, bytes)?;

    if archive.read_to_vec("/videos/clip.mp4")? != data {
        return Err("the file read back differs".into());
    }
    println!("read back identical; the layout now records what the read found:");
    let damaged = print_layout(&archive, "/videos/clip.mp4")?;
    if damaged != 2 {
        return Err(format!("expected 2 damaged chunks in the layout, found {damaged}").into());
    }
    Ok(())
}
