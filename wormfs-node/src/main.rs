//! `wormfs-node --config node.toml`: the storage node daemon.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// WormFS storage node: serves the file system on its disks over gRPC.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The node's TOML config (see docs/config.md).
    #[arg(long, short)]
    config: PathBuf,
}

fn main() -> ExitCode {
    wormfs::process::keep_stripe_buffers();
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| wormfs_node::DEFAULT_LOG.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    wormfs_node::serve_foreground(&args.config)
}
