//! Write a file across six directories with the `media` policy (4 data + 2 parity chunks per
//! stripe), delete two chunk files of one stripe, and read the file back identical.
//!
//! ```sh
//! cargo run -p wormfs --example archive            # in a temporary directory
//! cargo run -p wormfs --example archive -- ./demo  # or keep it in ./demo
//! ```

use std::error::Error;
use std::path::PathBuf;
use wormfs::archive::LocalArchive;
use wormfs::policy::PolicySet;

fn main() -> Result<(), Box<dyn Error>> {
    let temp;
    let root = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    let disks: Vec<PathBuf> = (0..6).map(|i| root.join(format!("disk{i}"))).collect();
    for d in &disks {
        std::fs::create_dir_all(d)?;
    }
    let archive = LocalArchive::open(root.join("meta"), &disks, PolicySet::defaults())?;
    archive.mkdir_all("/videos")?;
    archive.set_policy("/videos", Some("media"))?;

    // 10 MiB and a bit: three 4 MiB stripes, the last one short.
    let data: Vec<u8> = (0..10 * 1024 * 1024 + 12345)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let attr = archive.write_file("/videos/holiday.mkv", &data[..])?;
    let layout = attr.layout.as_ref().expect("a regular file has a layout");
    println!(
        "wrote /videos/holiday.mkv: {} bytes, policy `{}` ({}+{}, {} KiB stripes)",
        attr.size,
        layout.policy,
        layout.k,
        layout.m,
        layout.stripe_size / 1024
    );

    let chunks = archive.chunk_files("/videos/holiday.mkv")?;
    for c in chunks.iter().filter(|c| c.stripe == 1) {
        let path = c
            .path
            .as_ref()
            .ok_or("the disk store keeps chunks as files")?;
        println!(
            "  stripe 1 chunk {} on {}: {}",
            c.index,
            c.disk,
            path.display()
        );
    }
    let victims: Vec<_> = chunks
        .iter()
        .filter(|c| c.stripe == 1 && (c.index == 0 || c.index == 3))
        .filter_map(|c| Some((c.index, c.path.as_ref()?)))
        .collect();
    for (index, path) in &victims {
        std::fs::remove_file(path)?;
        println!("deleted chunk {index} of stripe 1 ({})", path.display());
    }

    let back = archive.read_to_vec("/videos/holiday.mkv")?;
    if back != data {
        return Err("the file read back differs from what was written".into());
    }
    println!(
        "read back {} bytes: identical, with 2 of the 6 chunks of stripe 1 gone",
        back.len()
    );
    Ok(())
}
