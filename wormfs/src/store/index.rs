//! The index file of a chunk folder: an append-only list of records, one per line, each
//! line `<crc32 of the JSON, 8 hex digits> <JSON>`. Folding the records gives the folder's
//! chunks and the current path of each file, without SQLite.
//!
//! A torn last line (a crash mid-append) fails its checksum and is skipped; so is any other
//! damaged line, and the fold reports how many were skipped.

use crate::checksum::crc32;
use crate::ids::{ChunkKey, FileId};
use serde::{Deserialize, Serialize};
#[cfg(any(feature = "local", test))]
use std::collections::BTreeMap;

/// The index file's name inside each chunk folder.
pub const INDEX_FILE_NAME: &str = "index.wfi";

/// One line of an index file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum IndexRecord {
    /// A chunk was stored.
    Put {
        /// The file's path when the chunk was stored.
        path: String,
        /// The chunk.
        key: ChunkKey,
        /// Chunk file size.
        size: u64,
        /// Chunk checksum.
        crc: u32,
        /// Stripe start offset in the file.
        start: u64,
        /// Stripe end offset in the file.
        end: u64,
        /// Data shards.
        k: u16,
        /// Parity shards.
        m: u16,
    },
    /// A chunk was removed.
    Delete {
        /// The chunk.
        key: ChunkKey,
    },
    /// A file was renamed.
    Path {
        /// The file.
        file: FileId,
        /// Its new path.
        path: String,
    },
}

impl IndexRecord {
    /// The record as one line, newline included.
    pub fn to_line(&self) -> String {
        let json = serde_json::to_string(self).expect("index records serialize");
        format!("{:08x} {json}\n", crc32(json.as_bytes()))
    }

    /// Parses one line (without its newline); `None` when damaged.
    pub fn from_line(line: &str) -> Option<IndexRecord> {
        let (crc, json) = line.split_once(' ')?;
        let crc = u32::from_str_radix(crc, 16).ok()?;
        if crc32(json.as_bytes()) != crc {
            return None;
        }
        serde_json::from_str(json).ok()
    }
}

/// A chunk as the index lists it, before the disk and folder are attached.
#[cfg(any(feature = "local", test))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FoldedChunk {
    pub path: String,
    pub size: u64,
    pub crc: u32,
    pub start: u64,
    pub end: u64,
    pub k: u16,
    pub m: u16,
}

#[cfg(any(feature = "local", test))]
/// Folds an index file's text into its live chunks; returns them and the count of damaged
/// lines skipped.
pub(crate) fn fold(text: &str) -> (BTreeMap<ChunkKey, FoldedChunk>, usize) {
    let mut chunks: BTreeMap<ChunkKey, FoldedChunk> = BTreeMap::new();
    let mut paths: BTreeMap<FileId, String> = BTreeMap::new();
    let mut damaged = 0;
    for line in text.split_terminator('\n') {
        match IndexRecord::from_line(line) {
            Some(IndexRecord::Put {
                path,
                key,
                size,
                crc,
                start,
                end,
                k,
                m,
            }) => {
                paths.insert(key.file, path.clone());
                chunks.insert(
                    key,
                    FoldedChunk {
                        path,
                        size,
                        crc,
                        start,
                        end,
                        k,
                        m,
                    },
                );
            }
            Some(IndexRecord::Delete { key }) => {
                chunks.remove(&key);
            }
            Some(IndexRecord::Path { file, path }) => {
                paths.insert(file, path);
            }
            None => damaged += 1,
        }
    }
    // Renames recorded after a chunk's put give its file's current path.
    for (key, chunk) in chunks.iter_mut() {
        if let Some(p) = paths.get(&key.file) {
            chunk.path.clone_from(p);
        }
    }
    (chunks, damaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(stripe: u64) -> ChunkKey {
        ChunkKey {
            file: FileId(5),
            stripe,
            generation: 1,
            index: 0,
        }
    }

    fn put(stripe: u64, path: &str) -> IndexRecord {
        IndexRecord::Put {
            path: path.into(),
            key: key(stripe),
            size: 10,
            crc: 1,
            start: 0,
            end: 10,
            k: 1,
            m: 0,
        }
    }

    #[test]
    fn fold_applies_puts_deletes_and_renames() {
        let text: String = [
            put(0, "/a"),
            put(1, "/a"),
            IndexRecord::Delete { key: key(0) },
            IndexRecord::Path {
                file: FileId(5),
                path: "/b\n\"quoted\"".into(),
            },
        ]
        .iter()
        .map(IndexRecord::to_line)
        .collect();
        let (chunks, damaged) = fold(&text);
        assert_eq!(damaged, 0);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[&key(1)].path, "/b\n\"quoted\"");
    }

    #[test]
    fn torn_and_damaged_lines_are_skipped_and_counted() {
        let good = put(0, "/a").to_line();
        let torn = &put(1, "/a").to_line()[..20];
        let mut flipped = put(2, "/a").to_line().into_bytes();
        flipped[15] ^= 1;
        let text = format!(
            "{good}{}\n{torn}",
            String::from_utf8_lossy(&flipped).trim_end()
        );
        let (chunks, damaged) = fold(&text);
        assert_eq!(chunks.keys().copied().collect::<Vec<_>>(), vec![key(0)]);
        assert_eq!(damaged, 2);
    }

    /// Fuzz target: folding an index file and parsing its lines (and chunk file names)
    /// never panics, and a record that parses writes back as a line that parses the same.
    #[test]
    fn fuzz_index_file() {
        use crate::fuzz;
        let records = [
            put(0, "/a"),
            put(1, "/dir/with space/é"),
            IndexRecord::Delete { key: key(0) },
            IndexRecord::Path {
                file: FileId(5),
                path: "/b\n\"quoted\"".into(),
            },
        ];
        let mut corpus: Vec<Vec<u8>> = records.iter().map(|r| r.to_line().into_bytes()).collect();
        corpus.push(
            records
                .iter()
                .map(IndexRecord::to_line)
                .collect::<String>()
                .into_bytes(),
        );
        corpus.push(key(7).file_name().into_bytes());
        corpus.extend(fuzz::corpus("index_file"));
        let tokens = [
            "\n",
            "\"",
            "{",
            "}",
            ":",
            ",",
            "null",
            "\"Put\"",
            "\"Delete\"",
            "\"Path\"",
            "\"stripe\":",
            "\"k\":",
            "18446744073709551615",
            "-1",
            "1e999",
            "\\u0000",
        ];
        let mut m = fuzz::Mutator::new(fuzz::seed(), &tokens);
        fuzz::run(
            "index_file",
            &corpus,
            fuzz::iterations(3000),
            &mut m,
            |input| {
                let text = String::from_utf8_lossy(input);
                // the same lines with their checksums made right, to reach the JSON behind them
                let fixed: String = text
                    .split_terminator('\n')
                    .map(|line| {
                        let json = line.split_once(' ').map_or(line, |(_, j)| j);
                        format!("{:08x} {json}\n", crc32(json.as_bytes()))
                    })
                    .collect();
                for text in [&*text, &fixed] {
                    let _ = fold(text);
                    for line in text.split_terminator('\n') {
                        let _ = ChunkKey::parse_file_name(line);
                        if let Some(rec) = IndexRecord::from_line(line) {
                            let again = rec.to_line();
                            assert_eq!(
                                IndexRecord::from_line(again.trim_end_matches('\n')),
                                Some(rec),
                                "a parsed record writes back the same"
                            );
                        }
                    }
                }
            },
        );
    }
}
