//! End-to-end tests: real `wormfs serve` node processes on loopback ports, real FUSE mounts
//! (`wormfs mount`), real files. Needs `/dev/fuse` and root (or fuse3); CI has both.

mod cluster;
mod cluster_heal;
mod crash;
mod faults;
mod fixture;
mod heal;
mod locks;
mod mount;
mod netns;
mod node;
mod session;
mod ui;
