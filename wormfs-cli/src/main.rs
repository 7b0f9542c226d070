//! `wormfs`: the admin command of a WormFS cluster.

mod commands;
mod heal;
mod membership;
mod output;
mod quickstart;
mod users;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Administer a WormFS cluster.
#[derive(Parser)]
#[command(version, name = "wormfs")]
struct Cli {
    /// A node's gRPC address. Without it (or WORMFS_NODE): the nodes of the client config
    /// file, then the cached node list, then 127.0.0.1:7070 (see docs/client.md).
    #[arg(long, global = true, env = "WORMFS_NODE")]
    node: Option<String>,
    /// The identity file to present to the nodes (user name and key; see
    /// docs/security.md). Without it: WORMFS_IDENTITY, then the client config's `identity`.
    #[arg(long, global = true, env = "WORMFS_IDENTITY")]
    identity: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Nodes, disks, the master and the last committed sequence number.
    Status,
    /// Storage policies of files and directories.
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// Cluster membership.
    Node {
        #[command(subcommand)]
        action: NodeAction,
    },
    /// Disks: drain one (no new chunks; repair moves its chunks away), stop draining,
    /// remove a drained one.
    Disk {
        #[command(subcommand)]
        action: DiskAction,
    },
    /// Users: who may connect, as which uid, and with what rights (admin only).
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Bearer tokens for the admin API on the nodes' admin listener (admin only).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Files.
    File {
        #[command(subcommand)]
        action: FileAction,
    },
    /// Check every chunk: a shallow scrub stats each chunk file, a deep one reads and
    /// verifies each chunk and the parity. Damaged chunks go to the repair queue.
    Scrub {
        /// Read and verify every chunk and recompute the parity.
        #[arg(long)]
        deep: bool,
        /// Show progress until the pass finishes.
        #[arg(long)]
        wait: bool,
        /// I/O budget of the scrub in bytes per second (e.g. 100MiB; default: the node's).
        #[arg(long)]
        rate: Option<wormfs::size::ByteSize>,
    },
    /// The repair worker: `status` (default), `start` (look for work now), `pause` or
    /// `resume`; `--rate` and `--ops` set its I/O budget.
    Repair {
        #[arg(default_value = "status", value_parser = ["status", "start", "pause", "resume"])]
        action: String,
        /// I/O budget in bytes per second (e.g. 200MiB; 0: the node's default).
        #[arg(long)]
        rate: Option<wormfs::size::ByteSize>,
        /// Budget in chunk operations per second (0: the node's default).
        #[arg(long)]
        ops: Option<u64>,
        /// Then show progress until repair has rebuilt all it can; fails if stripes are
        /// still degraded or unreadable then.
        #[arg(long)]
        wait: bool,
    },
    /// Files by remaining margin (further losses they survive; 0: one more loss and data is
    /// gone, -1: unreadable now).
    AtRisk {
        /// List files whose margin is at most this.
        #[arg(long, default_value_t = 0)]
        max_margin: i64,
        /// At most this many files.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Which files would become unreadable or at risk if these nodes and disks were lost.
    WhatIf {
        /// A node's name (several allowed).
        #[arg(long = "lose-node", value_name = "NODE")]
        nodes: Vec<String>,
        /// A disk's id (several allowed).
        #[arg(long = "lose-disk", value_name = "DISK")]
        disks: Vec<String>,
        /// At most this many files.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Rebuild a stopped node's lost metadata database from its disks: files, paths,
    /// sizes, layouts and chunk locations come back from the chunk-folder index files and
    /// chunk headers; what they do not hold is reported.
    Recover {
        /// The node's TOML config.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a storage node in the foreground (what `wormfs-node` does).
    Serve {
        /// The node's TOML config.
        #[arg(long)]
        config: PathBuf,
    },
    /// Mount the cluster (through the node given by --node) at MOUNTPOINT in the foreground (what `wormfs-fuse` does).
    Mount {
        /// An empty directory.
        mountpoint: PathBuf,
        /// Kernel request threads.
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// Let users other than the one mounting use the mount.
        #[arg(long)]
        allow_other: bool,
        /// Always read through the node, even when its chunk files are on this machine.
        #[arg(long)]
        no_local_reads: bool,
    },
    /// Start a node over N disk directories under DIR and mount it at DIR/mnt, in the
    /// foreground until Ctrl-C.
    Quickstart {
        /// Where the disks, metadata and mount point go.
        #[arg(long)]
        dir: PathBuf,
        /// How many disk directories to create for a single node (6 fit every built-in
        /// policy).
        #[arg(long, default_value_t = 6)]
        disks: usize,
        /// Start this many node processes as one cluster (2 or more; 1 is a single node).
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        /// Disk directories per node in a cluster.
        #[arg(long, default_value_t = 2)]
        disks_per_node: usize,
        /// Address the node listens on.
        #[arg(long, default_value = "127.0.0.1:7070")]
        listen: String,
        /// Let users other than the one mounting use the mount.
        #[arg(long)]
        allow_other: bool,
    },
}

#[derive(Subcommand)]
enum NodeAction {
    /// Add the node listening (node-to-node) at ADDR to the cluster as a voting member. The
    /// node must be running with ADDR as its `cluster.listen` and this cluster's nodes as
    /// its peers.
    Add {
        /// The node's node-to-node address, IP:PORT.
        addr: String,
        /// Pin it to this peer ID (default: trust the first ID it presents).
        #[arg(long)]
        peer_id: Option<String>,
    },
    /// Remove the node named ID from the cluster; its chunks are then rebuilt on the other
    /// nodes. Shows what that costs first, and removes only with --yes.
    Remove {
        /// The node's name, as `wormfs status` shows it.
        id: String,
        /// Remove it (after the preview).
        #[arg(long)]
        yes: bool,
        /// Remove it even though some files would become unreadable.
        #[arg(long)]
        force: bool,
        /// Then show the repair's progress until the node's chunks are rebuilt.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Subcommand)]
enum DiskAction {
    /// Stop putting chunks on DISK and move its chunks to other disks (repair does it).
    Drain {
        /// The disk's id, as `wormfs status` shows it.
        disk: String,
        /// Then show the repair's progress until the disk's chunks are moved.
        #[arg(long)]
        wait: bool,
    },
    /// Stop draining DISK: it takes new chunks again.
    Undrain {
        /// The disk's id.
        disk: String,
    },
    /// Forget a drained DISK (refused while it holds chunks or is still configured).
    Remove {
        /// The disk's id.
        disk: String,
    },
}

#[derive(Subcommand)]
enum PolicyAction {
    /// The policy of PATH: a file's recorded one, or the one new files in a directory get.
    Get {
        /// A path in WormFS (`/photos`) or through a mount (`./mnt/photos`).
        path: String,
    },
    /// Set the policy of directory PATH (files created under it later get it).
    Set {
        /// A directory.
        path: String,
        /// A policy name, or `inherit` to take the parent's again.
        policy: String,
    },
}

#[derive(Subcommand)]
enum FileAction {
    /// Every stripe of a file with its chunks: node, disk, path and state.
    Info {
        /// A path in WormFS or through a mount.
        path: String,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user and write its identity file (mode 0600): the user's name and a new
    /// random key.
    Add {
        name: String,
        /// The uid it acts as (default: the local account of that name).
        #[arg(long)]
        uid: Option<u32>,
        /// Its primary gid (default: the local account's, else the uid).
        #[arg(long)]
        gid: Option<u32>,
        /// Supplementary groups, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<u32>,
        /// May change membership, users, disks, workers and the policy of `/`, and act as
        /// any uid.
        #[arg(long)]
        admin: bool,
        /// A trusted host: a mount serving many local users, acting as each caller's uid.
        #[arg(long)]
        host: bool,
        /// Where to write the identity file (default: ./NAME.identity).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List the users.
    List,
    /// Remove a user: every node refuses its identity from now on, on open connections too.
    Remove { name: String },
    /// Give a user a new key and write its new identity file; the old one is refused.
    Rotate {
        name: String,
        /// Where to write the new identity file (default: ./NAME.identity).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Make a token: printed once (or written to --out, mode 0600); the nodes keep only its
    /// SHA-256.
    Create {
        name: String,
        /// Write the token to this file (mode 0600) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List the tokens by name.
    List,
    /// Revoke a token: every node refuses it from its next request.
    Revoke { name: String },
}

fn main() -> ExitCode {
    wormfs::process::keep_stripe_buffers();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                let serving = matches!(
                    cli.command,
                    Command::Serve { .. } | Command::Mount { .. } | Command::Quickstart { .. }
                );
                match cli.command {
                    Command::Serve { .. } | Command::Quickstart { .. } => wormfs_node::DEFAULT_LOG,
                    _ if serving => "info",
                    _ => "warn",
                }
                .into()
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = commands::IDENTITY.set(cli.identity.clone());
    match &cli.command {
        Command::Serve { config } => return wormfs_node::serve_foreground(config),
        Command::Mount {
            mountpoint,
            threads,
            allow_other,
            no_local_reads,
        } => {
            let opts = wormfs_fuse::MountOptions {
                threads: *threads,
                allow_other: *allow_other,
                local_reads: !*no_local_reads,
                identity: cli.identity.clone(),
                ..Default::default()
            };
            return match wormfs_fuse::mount_foreground(cli.node.as_deref(), mountpoint, &opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("wormfs: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wormfs: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Empty: not given, `commands` finds the nodes.
    let node = cli.node.clone().unwrap_or_default();
    let result = match cli.command {
        Command::Status => rt.block_on(commands::status(&node, cli.json)),
        Command::Policy {
            action: PolicyAction::Get { path },
        } => rt.block_on(commands::policy_get(&node, &path, cli.json)),
        Command::Policy {
            action: PolicyAction::Set { path, policy },
        } => rt.block_on(commands::policy_set(&node, &path, &policy, cli.json)),
        Command::File {
            action: FileAction::Info { path },
        } => rt.block_on(commands::file_info(&node, &path, cli.json)),
        Command::Quickstart {
            dir,
            disks,
            nodes,
            disks_per_node,
            listen,
            allow_other,
        } => {
            if nodes > 1 {
                quickstart::run_cluster(&rt, &dir, nodes, disks_per_node, &listen, allow_other)
            } else {
                quickstart::run(&rt, &dir, disks, &listen, allow_other)
            }
        }
        Command::Node {
            action: NodeAction::Add { addr, peer_id },
        } => rt.block_on(membership::add(&node, &addr, peer_id.as_deref(), cli.json)),
        Command::Node {
            action:
                NodeAction::Remove {
                    id,
                    yes,
                    force,
                    wait,
                },
        } => rt.block_on(async {
            membership::remove(&node, &id, yes, force, cli.json).await?;
            if wait {
                heal::wait_for_repair(&node, cli.json).await?;
            }
            Ok(())
        }),
        Command::Disk { action } => {
            let (disk, verb, wait) = match action {
                DiskAction::Drain { disk, wait } => (disk, "drain", wait),
                DiskAction::Undrain { disk } => (disk, "undrain", false),
                DiskAction::Remove { disk } => (disk, "remove", false),
            };
            rt.block_on(async {
                heal::disk(&node, &disk, verb, cli.json).await?;
                if wait {
                    heal::wait_for_repair(&node, cli.json).await?;
                }
                Ok(())
            })
        }
        Command::Scrub { deep, wait, rate } => rt.block_on(heal::scrub(
            &node,
            deep,
            wait,
            rate.map_or(0, |r| r.0),
            cli.json,
        )),
        Command::Repair {
            action,
            rate,
            ops,
            wait,
        } => rt.block_on(async {
            heal::repair(&node, &action, rate.map(|r| r.0), ops, cli.json).await?;
            if wait {
                heal::wait_for_repair(&node, cli.json).await?;
            }
            Ok(())
        }),
        Command::AtRisk { max_margin, limit } => {
            rt.block_on(heal::at_risk(&node, max_margin, limit, cli.json))
        }
        Command::WhatIf {
            nodes,
            disks,
            limit,
        } => rt.block_on(heal::what_if(&node, &nodes, &disks, limit, cli.json)),
        Command::Recover { config } => heal::recover(&config, cli.json),
        Command::User { action } => rt.block_on(async {
            match action {
                UserAction::Add {
                    name,
                    uid,
                    gid,
                    groups,
                    admin,
                    host,
                    out,
                } => {
                    let new = users::NewUser {
                        name,
                        uid,
                        gid,
                        groups,
                        admin,
                        host,
                        out,
                    };
                    users::add(&node, new, cli.json).await
                }
                UserAction::List => users::list(&node, cli.json).await,
                UserAction::Remove { name } => users::remove(&node, &name, cli.json).await,
                UserAction::Rotate { name, out } => {
                    users::rotate(&node, &name, out, cli.json).await
                }
            }
        }),
        Command::Token { action } => rt.block_on(async {
            match action {
                TokenAction::Create { name, out } => {
                    users::token_create(&node, &name, out, cli.json).await
                }
                TokenAction::List => users::token_list(&node, cli.json).await,
                TokenAction::Revoke { name } => users::token_revoke(&node, &name, cli.json).await,
            }
        }),
        Command::Serve { .. } | Command::Mount { .. } => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wormfs: {e:#}");
            ExitCode::FAILURE
        }
    }
}
