//! `wormfs-node`: placeholder until the single-node issue wires it up.

fn main() {
    eprintln!(
        "wormfs-node {}: not usable yet; see README.md for what works today (the wormfs library and its archive example)",
        wormfs::VERSION
    );
    std::process::exit(2);
}
