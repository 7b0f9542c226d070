//! A fuzzing harness that runs on the stable toolchain, inside `cargo test`: a seeded
//! mutator and a runner that feeds a parser its corpus and then mutations of it, and stops
//! at the first panic with the input saved and the seed to replay it.
//!
//! The targets are tests beside the parsers (`fuzz_*` in `chunk`, `store`, `net` and the
//! node's config). CI runs each for [`iterations`] inputs (a few thousand); a longer run is
//! the same test with `WORMFS_FUZZ_ITERS` set, and another sequence of inputs is
//! `WORMFS_FUZZ_SEED`. An input that made a target fail is kept as a file in the target's
//! corpus directory (`fuzz/corpus/TARGET/` in the repository), which every run replays.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The environment variable that sets how many mutated inputs each target runs.
pub const ITERS_ENV: &str = "WORMFS_FUZZ_ITERS";
/// The environment variable that sets the mutator's seed.
pub const SEED_ENV: &str = "WORMFS_FUZZ_SEED";

/// Inputs per target: `WORMFS_FUZZ_ITERS`, or `default` without it.
pub fn iterations(default: u64) -> u64 {
    std::env::var(ITERS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The mutator's seed: `WORMFS_FUZZ_SEED` (decimal or `0x` hex), or a fixed one.
pub fn seed() -> u64 {
    std::env::var(SEED_ENV)
        .ok()
        .and_then(|v| match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        })
        .unwrap_or(0xf022_5eed)
}

/// The corpus directory of `target` in the repository (`fuzz/corpus/TARGET`).
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// The files of `target`'s corpus directory (none when it does not exist), in name order.
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    let Ok(dir) = std::fs::read_dir(corpus_dir(target)) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// A small, seeded generator of input mutations (splitmix64 underneath): the same seed
/// gives the same sequence of inputs on every machine.
pub struct Mutator {
    state: u64,
    tokens: Vec<Vec<u8>>,
}

/// Values that sit on the edges parsers get wrong.
const EDGES: [u64; 10] = [
    0,
    1,
    2,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    i64::MAX as u64,
    u64::MAX,
];

impl Mutator {
    /// A mutator seeded with `seed` that also inserts the given `tokens` (keywords, field
    /// names, punctuation of the format under test).
    pub fn new(seed: u64, tokens: &[&str]) -> Mutator {
        Mutator {
            state: seed,
            tokens: tokens.iter().map(|t| t.as_bytes().to_vec()).collect(),
        }
    }

    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// `input` changed by one to four mutations: bit flips, edge values written over
    /// integers, cuts, random or repeated bytes, tokens, and splices with `others`.
    pub fn mutate(&mut self, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
        let mut b = input.to_vec();
        for _ in 0..=self.below(4) {
            let at = self.below(b.len() + 1);
            match self.below(9) {
                0 if !b.is_empty() => {
                    let i = self.below(b.len());
                    b[i] ^= 1 << self.below(8);
                }
                1 if !b.is_empty() => {
                    let i = self.below(b.len());
                    b[i] = self.next_u64() as u8;
                }
                2 => {
                    let width = [1, 2, 4, 8][self.below(4)];
                    let edge = EDGES[self.below(EDGES.len())];
                    let edge = if self.below(2) == 0 {
                        edge
                    } else {
                        edge.wrapping_sub(1)
                    };
                    let bytes = edge.to_le_bytes();
                    for (j, v) in bytes[..width].iter().enumerate() {
                        if let Some(slot) = b.get_mut(at + j) {
                            *slot = *v;
                        }
                    }
                }
                3 => b.truncate(at),
                4 => {
                    let end = (at + 1 + self.below(16)).min(b.len());
                    if at < end {
                        b.drain(at..end);
                    }
                }
                5 => {
                    let n = 1 + self.below(32);
                    let more: Vec<u8> = (0..n).map(|_| self.next_u64() as u8).collect();
                    b.splice(at..at, more);
                }
                6 if !b.is_empty() => {
                    let from = self.below(b.len());
                    let len = (1 + self.below(64)).min(b.len() - from);
                    let piece = b[from..from + len].to_vec();
                    b.splice(at..at, piece);
                }
                7 if !self.tokens.is_empty() => {
                    let i = self.below(self.tokens.len());
                    let t = self.tokens[i].clone();
                    b.splice(at..at, t);
                }
                8 if !others.is_empty() => {
                    let other = &others[self.below(others.len())];
                    let from = self.below(other.len() + 1);
                    b.truncate(at);
                    b.extend_from_slice(&other[from..]);
                }
                _ => {}
            }
        }
        b
    }
}

/// Runs `check` on every input of `corpus`, then on `iterations` mutations of them (each
/// built from a random corpus entry), stopping at the first panic: the failing input is
/// saved under the system's temporary directory, and the message names the target, the
/// seed, the input number and that file, so the failure can be replayed and the input
/// added to the corpus. Returns how many inputs ran.
pub fn run(
    target: &str,
    corpus: &[Vec<u8>],
    iterations: u64,
    mutator: &mut Mutator,
    check: impl Fn(&[u8]),
) -> u64 {
    assert!(!corpus.is_empty(), "fuzz target `{target}` has no corpus");
    let seed = mutator.state;
    let try_one = |n: u64, input: &[u8]| {
        if catch_unwind(AssertUnwindSafe(|| check(input))).is_err() {
            let saved = std::env::temp_dir().join(format!("wormfs-fuzz-{target}-{seed:x}-{n}"));
            let _ = std::fs::write(&saved, input);
            panic!(
                "fuzz target `{target}` failed on input {n} (seed {seed:#x}; replay with \
                 {SEED_ENV}={seed:#x}); the input is saved at {} ({} bytes): add it to \
                 {} once fixed",
                saved.display(),
                input.len(),
                corpus_dir(target).display()
            );
        }
    };
    for (n, input) in corpus.iter().enumerate() {
        try_one(n as u64, input);
    }
    for n in 0..iterations {
        let base = &corpus[mutator.below(corpus.len())];
        let input = mutator.mutate(base, corpus);
        try_one(corpus.len() as u64 + n, &input);
    }
    corpus.len() as u64 + iterations
}

debug_by_name!(Mutator);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_inputs_and_another_seed_others() {
        let base = b"{\"disk\":3,\"path\":\"/a/b\"}".to_vec();
        let inputs = |seed| {
            let mut m = Mutator::new(seed, &["\"", "{", "null"]);
            (0..200)
                .map(|_| m.mutate(&base, std::slice::from_ref(&base)))
                .collect::<Vec<_>>()
        };
        assert_eq!(inputs(7), inputs(7));
        assert_ne!(inputs(7), inputs(8));
        let changed = inputs(7).iter().filter(|i| **i != base).count();
        assert!(
            changed > 150,
            "only {changed} of 200 inputs differ from the base"
        );
    }

    #[test]
    fn a_panicking_target_is_reported_with_its_seed_and_input() {
        let corpus = vec![b"abc".to_vec()];
        let mut m = Mutator::new(1, &[]);
        let err = catch_unwind(AssertUnwindSafe(|| {
            run("selftest", &corpus, 1000, &mut m, |input| {
                assert!(input.len() != 5, "five bytes");
            })
        }))
        .unwrap_err();
        let text = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            text.contains("fuzz target `selftest` failed on input")
                && text.contains("WORMFS_FUZZ_SEED=0x1"),
            "{text}"
        );
        let saved = text
            .split("saved at ")
            .nth(1)
            .and_then(|t| t.split(" (").next())
            .unwrap();
        assert_eq!(std::fs::read(saved).unwrap().len(), 5);
        let _ = std::fs::remove_file(saved);
    }
}
