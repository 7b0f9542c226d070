//! `wormfs-fuse [--node ADDR] MOUNTPOINT`: mount a WormFS cluster.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Mount a WormFS storage node at MOUNTPOINT until SIGTERM or Ctrl-C.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// A node's gRPC address, e.g. 127.0.0.1:7070. Without it (or WORMFS_NODE): the nodes
    /// of the client config file, then the cached node list, then 127.0.0.1:7070.
    #[arg(long, env = "WORMFS_NODE")]
    node: Option<String>,
    /// The identity file to present (user name and key). Without it: WORMFS_IDENTITY, then
    /// the client config's `identity`.
    #[arg(long, env = "WORMFS_IDENTITY")]
    identity: Option<PathBuf>,
    /// An empty directory to mount on.
    mountpoint: PathBuf,
    /// Kernel request threads.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// MiB of stripes to cache for reads.
    #[arg(long, default_value_t = 256)]
    cache_mib: usize,
    /// Let other users use the mount.
    #[arg(long)]
    allow_other: bool,
    /// Always read through the node, even when its chunk files are on this machine.
    #[arg(long)]
    no_local_reads: bool,
}

fn main() -> ExitCode {
    wormfs::process::keep_stripe_buffers();
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let opts = wormfs_fuse::MountOptions {
        threads: args.threads,
        cache_bytes: args.cache_mib << 20,
        allow_other: args.allow_other,
        local_reads: !args.no_local_reads,
        identity: args.identity,
    };
    match wormfs_fuse::mount_foreground(args.node.as_deref(), &args.mountpoint, &opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wormfs-fuse: {e:#}");
            ExitCode::FAILURE
        }
    }
}
