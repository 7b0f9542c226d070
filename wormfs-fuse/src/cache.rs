//! A bounded cache of whole stripes read from the node, least recently used out first.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use wormfs::rpc::client::StripePieces;

struct Entry {
    data: Arc<StripePieces>,
    version: u64,
    used: u64,
}

/// Stripes by `(inode, stripe index)`, each tagged with the file's version when it was read;
/// an entry of an older version is never returned.
pub struct StripeCache {
    entries: HashMap<(u64, u64), Entry>,
    bytes: usize,
    limit: usize,
    tick: u64,
}

impl StripeCache {
    /// A cache holding at most `limit` bytes of stripes.
    pub fn new(limit: usize) -> StripeCache {
        StripeCache {
            entries: HashMap::new(),
            bytes: 0,
            limit,
            tick: 0,
        }
    }

    /// The stripe, if cached for this version of the file.
    pub fn get(&mut self, ino: u64, index: u64, version: u64) -> Option<Arc<StripePieces>> {
        self.tick += 1;
        let tick = self.tick;
        let e = self.entries.get_mut(&(ino, index))?;
        if e.version != version {
            return None;
        }
        e.used = tick;
        Some(e.data.clone())
    }

    /// Whether the stripe is cached for this version.
    pub fn contains(&self, ino: u64, index: u64, version: u64) -> bool {
        self.entries
            .get(&(ino, index))
            .is_some_and(|e| e.version == version)
    }

    /// Caches a stripe read at `version`, evicting the least recently used ones to fit.
    pub fn insert(&mut self, ino: u64, index: u64, version: u64, data: Arc<StripePieces>) {
        if data.len() > self.limit {
            return;
        }
        self.tick += 1;
        if let Some(old) = self.entries.remove(&(ino, index)) {
            self.bytes -= old.data.len();
        }
        while self.bytes + data.len() > self.limit {
            let Some((&key, _)) = self.entries.iter().min_by_key(|(_, e)| e.used) else {
                break;
            };
            let e = self.entries.remove(&key).expect("just found");
            self.bytes -= e.data.len();
        }
        self.bytes += data.len();
        self.entries.insert(
            (ino, index),
            Entry {
                data,
                version,
                used: self.tick,
            },
        );
    }

    /// Drops one stripe of a file, whatever its version.
    pub fn forget_stripe(&mut self, ino: u64, index: u64) {
        if let Some(e) = self.entries.remove(&(ino, index)) {
            self.bytes -= e.data.len();
        }
    }

    /// Drops the stripes `behind` of a file of `file_size` bytes that a sequential reader
    /// has left behind, when the file is larger than half the cache: reading it through
    /// pushes out most of what the cache holds and keeps nothing of itself for long either.
    /// A smaller file stays, so reading it again after the kernel dropped its pages asks
    /// the node for nothing.
    pub fn leave_behind(&mut self, ino: u64, file_size: u64, behind: Range<u64>) {
        if file_size > self.limit as u64 / 2 {
            for index in behind {
                self.forget_stripe(ino, index);
            }
        }
    }

    /// Drops every stripe of a file.
    pub fn forget_file(&mut self, ino: u64) {
        let bytes = &mut self.bytes;
        self.entries.retain(|(i, _), e| {
            if *i == ino {
                *bytes -= e.data.len();
            }
            *i != ino
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(v: Vec<u8>) -> Arc<StripePieces> {
        Arc::new(StripePieces::from(v))
    }

    #[test]
    fn evicts_least_recently_used_and_respects_versions() {
        let mut c = StripeCache::new(30);
        c.insert(1, 0, 1, piece(vec![0; 10]));
        c.insert(1, 1, 1, piece(vec![1; 10]));
        c.insert(2, 0, 1, piece(vec![2; 10]));
        assert!(c.get(1, 0, 1).is_some()); // 1/0 is now the most recent
        c.insert(3, 0, 1, piece(vec![3; 10])); // evicts 1/1
        assert!(c.get(1, 1, 1).is_none());
        assert!(c.get(1, 0, 1).is_some());
        assert!(
            c.get(1, 0, 2).is_none(),
            "a newer version of the file does not see old stripes"
        );
        c.forget_file(1);
        assert!(!c.contains(1, 0, 1));
        assert!(c.contains(2, 0, 1));
        c.insert(9, 9, 1, piece(vec![0; 31]));
        assert!(
            !c.contains(9, 9, 1),
            "larger than the whole cache: not kept"
        );
    }

    #[test]
    fn one_stripe_is_forgotten_and_its_bytes_freed() {
        let mut c = StripeCache::new(30);
        c.insert(1, 0, 7, piece(vec![1; 10]));
        c.insert(1, 1, 7, piece(vec![2; 10]));
        c.forget_stripe(1, 0);
        c.forget_stripe(1, 5); // not cached: nothing happens
        assert!(!c.contains(1, 0, 7));
        assert!(c.contains(1, 1, 7));
        // the freed room takes two more without evicting stripe 1
        c.insert(2, 0, 1, piece(vec![3; 10]));
        assert!(c.contains(1, 1, 7) && c.contains(2, 0, 1));
        assert_eq!(c.bytes, 20);
    }

    #[test]
    fn only_a_file_larger_than_half_the_cache_is_left_behind() {
        let mut c = StripeCache::new(30);
        c.insert(1, 0, 7, piece(vec![1; 10]));
        c.insert(2, 0, 7, piece(vec![2; 10]));
        c.insert(2, 1, 7, piece(vec![2; 5]));
        c.leave_behind(1, 15, 0..1); // half the cache: kept for a second read
        assert!(c.contains(1, 0, 7));
        c.leave_behind(2, 16, 0..3); // larger: a stream through the cache
        assert!(!c.contains(2, 0, 7) && !c.contains(2, 1, 7));
        assert_eq!(c.bytes, 10);
    }
}
