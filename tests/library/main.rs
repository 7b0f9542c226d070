//! Integration tests of the `wormfs` library through its public API, on real directories
//! and real SQLite files. One binary, so it links once.

mod archive;
mod durability;
