//! The attributes of a directory's next entries, fetched in one call when a program looks
//! its files up one after another (`stat` of each file, a backup tool's walk, `find`).
//!
//! The kernel sends a lookup per name, and each was a call to the node. When two lookups
//! in one directory within the attribute TTL found files that were not known here, the
//! mount lists a page of the directory's entries from the second name on, with their
//! attributes ([`PAGE`] at most, as the caller: a caller who may not list the directory
//! keeps plain lookups), and answers the next lookups of names in that page from it.
//!
//! A page answers only while it is younger than the TTL and nothing was changed through
//! this mount since it was asked for: every call that may change a name or attributes
//! (each call through `WormFuse::rpc`, each create, each write of data) moves a generation
//! at its start and at its end, and a page fetched at another generation is not used. One
//! change is known well enough to be made to the page instead: an unlink that succeeded
//! removes its name, and any other name in the page (of that directory or another) that may
//! be a hard link of the same file (its attributes changed too). So a program that looks files up and removes them one
//! after another (`rm -r`) has its lookups answered from a page. A page asked for while any
//! change was on its way is not kept. A name the page does not hold is looked up at the
//! node: a page never answers "no such file". Changes made through other mounts show
//! within the TTL, as with the kernel's own cache of names and attributes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wormfs::meta::{Attr, DirEntry, FileKind};

/// Entries fetched in one listing call.
pub(super) const PAGE: u32 = 1024;

/// See the module documentation.
#[derive(Default)]
pub(super) struct Listed(Mutex<State>);

#[derive(Default)]
struct State {
    /// Moves at the start and at the end of every call that may change a name or
    /// attributes: a page asked for at one generation is kept only if it is still current.
    generation: u64,
    /// Moves with the generation, except for a change made to the page itself (an
    /// [`Unlinking`] that succeeded): a page answers only at the one it was kept at.
    unknown: u64,
    /// The directory of the last lookup that found a file not in a page, the `unknown`
    /// generation then, and when.
    found: Option<(u64, u64, Instant)>,
    /// One directory's page.
    page: Option<Page>,
    /// A directory whose listing was refused (its caller may search it but not read it),
    /// and when: no page is asked for it again within the TTL.
    refused: Option<(u64, Instant)>,
    /// Lookups answered from a page, and pages fetched (for the mount's log at its end).
    answered: u64,
    fetched: u64,
}

struct Page {
    dir: u64,
    /// The `unknown` generation it was kept at.
    unknown: u64,
    at: Instant,
    attrs: HashMap<String, Attr>,
}

/// A call that may change a name or attributes, on its way: ends when dropped (it may go
/// with a call sent in the background).
pub(super) struct Change(Arc<Listed>);

impl Drop for Change {
    fn drop(&mut self) {
        self.0.state().moved();
    }
}

/// An unlink of `name` in `dir` through this mount, on its way: [`Unlinking::done`] when it
/// succeeded makes it to the page; dropped otherwise, it ends as any [`Change`] does.
pub(super) struct Unlinking {
    listed: Arc<Listed>,
    dir: u64,
    name: String,
    done: bool,
}

impl Unlinking {
    /// The node removed the name.
    pub(super) fn done(mut self) {
        self.done = true;
        let mut s = self.listed.state();
        s.generation += 1;
        let unknown = s.unknown;
        let Some(page) = s.page.as_mut().filter(|p| p.unknown == unknown) else {
            return;
        };
        // The file's other names, if it had any, changed too (link count, ctime): they
        // leave the page, to be looked up at the node. When the page did not hold the name
        // (it may be another directory's), any file in it with more than one name may have
        // been that file.
        let gone = if page.dir == self.dir {
            page.attrs.remove(&self.name)
        } else {
            None
        };
        let linked = |a: &Attr| a.kind != FileKind::Directory && a.nlink > 1;
        match gone {
            Some(g) => page.attrs.retain(|_, a| a.ino != g.ino),
            None => page.attrs.retain(|_, a| !linked(a)),
        }
    }
}

impl Drop for Unlinking {
    fn drop(&mut self) {
        if !self.done {
            self.listed.state().moved();
        }
    }
}

/// A page asked for: the directory, and the generation when it was.
pub(super) struct Asked {
    dir: u64,
    generation: u64,
    at: Instant,
}

impl State {
    /// A change whose effect on pages is not known started or ended.
    fn moved(&mut self) {
        self.generation += 1;
        self.unknown += 1;
    }
}

impl Listed {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A call that may change a name or attributes starts.
    pub(super) fn change(self: &Arc<Self>) -> Change {
        self.state().moved();
        Change(self.clone())
    }

    /// An unlink of `name` in `dir` starts (see [`Unlinking`]).
    pub(super) fn unlinking(self: &Arc<Self>, dir: u64, name: &str) -> Unlinking {
        self.state().generation += 1;
        Unlinking {
            listed: self.clone(),
            dir,
            name: name.to_owned(),
            done: false,
        }
    }

    /// The attributes of `name` in directory `dir` from a page younger than `ttl` that no
    /// change has retired.
    pub(super) fn find(&self, dir: u64, name: &str, ttl: Duration) -> Option<Attr> {
        let mut s = self.state();
        let unknown = s.unknown;
        let page = s.page.as_ref()?;
        if page.dir != dir || page.unknown != unknown || page.at.elapsed() >= ttl {
            return None;
        }
        let attr = page.attrs.get(name).cloned()?;
        s.answered += 1;
        Some(attr)
    }

    /// A lookup in `dir` found a file at the node. Returns the page to ask for when it is
    /// the second within `ttl` with no change between them but unlinks (and no page of
    /// `dir` holds the name, or the lookup would not have gone to the node).
    pub(super) fn found(&self, dir: u64, ttl: Duration) -> Option<Asked> {
        let mut s = self.state();
        let now = Instant::now();
        let (generation, unknown) = (s.generation, s.unknown);
        if s.refused.is_some_and(|(d, at)| d == dir && now - at < ttl) {
            return None;
        }
        let again = s
            .found
            .is_some_and(|(d, u, at)| d == dir && u == unknown && now - at < ttl);
        if again {
            s.found = None;
            Some(Asked {
                dir,
                generation,
                at: now,
            })
        } else {
            s.found = Some((dir, unknown, now));
            None
        }
    }

    /// Keeps the page `asked` brought, unless a change started or ended since it was asked
    /// for. Entries without attributes are left out.
    pub(super) fn keep(&self, asked: Asked, entries: Vec<(DirEntry, Option<Attr>)>) {
        let mut s = self.state();
        if s.generation != asked.generation {
            return;
        }
        let attrs = entries
            .into_iter()
            .filter_map(|(e, a)| a.map(|a| (e.name, a)))
            .collect();
        let unknown = s.unknown;
        s.page = Some(Page {
            dir: asked.dir,
            unknown,
            at: asked.at,
            attrs,
        });
        s.fetched += 1;
    }

    /// The page `asked` could not be listed (a caller who may not read the directory):
    /// lookups in it go to the node, without asking for a page again, for the TTL.
    pub(super) fn refused(&self, asked: Asked) {
        self.state().refused = Some((asked.dir, asked.at));
    }

    /// Lookups answered from pages, and pages fetched.
    pub(super) fn counts(&self) -> (u64, u64) {
        let s = self.state();
        (s.answered, s.fetched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wormfs::ids::FileId;
    use wormfs::meta::Timestamp;

    const TTL: Duration = Duration::from_secs(1);

    fn attr(ino: u64) -> Attr {
        let t = Timestamp::now();
        Attr {
            ino: FileId(ino),
            kind: FileKind::File,
            size: ino,
            perm: 0o644,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            layout: None,
        }
    }

    /// A page of directory 2 asked for, as the second file found there asks for one.
    fn with_page() -> (Arc<Listed>, Asked) {
        let l = Arc::new(Listed::default());
        l.found(2, TTL);
        let asked = l
            .found(2, TTL)
            .expect("the second file found asks for a page");
        (l, asked)
    }

    fn entries(names: &[(&str, u64)]) -> Vec<(DirEntry, Option<Attr>)> {
        names
            .iter()
            .map(|&(n, ino)| {
                let e = DirEntry {
                    name: n.to_owned(),
                    ino: FileId(ino),
                    kind: FileKind::File,
                };
                (e, Some(attr(ino)))
            })
            .collect()
    }

    #[test]
    fn the_second_file_found_in_a_directory_asks_for_a_page_that_answers_the_next() {
        let l = Arc::new(Listed::default());
        assert!(l.found(1, TTL).is_none(), "one lookup is not a walk");
        assert!(l.found(2, TTL).is_none(), "another directory starts again");
        let asked = l.found(2, TTL).expect("the second in one directory asks");
        l.keep(asked, entries(&[("b", 11), ("c", 12)]));
        assert_eq!(l.find(2, "c", TTL).map(|a| a.ino), Some(FileId(12)));
        assert_eq!(l.find(2, "zz", TTL), None, "a page never says no such file");
        assert_eq!(
            l.find(1, "c", TTL),
            None,
            "nor answers for another directory"
        );
        assert_eq!(l.counts(), (1, 1));
    }

    #[test]
    fn a_change_through_this_mount_retires_the_page() {
        let (l, asked) = with_page();
        l.keep(asked, entries(&[("b", 11)]));
        drop(l.change());
        assert_eq!(l.find(2, "b", TTL), None);
    }

    #[test]
    fn a_page_asked_for_while_a_change_started_or_ended_is_not_kept() {
        let (l, asked) = with_page();
        let change = l.change();
        l.keep(asked, entries(&[("b", 11)]));
        assert_eq!(
            l.find(2, "b", TTL),
            None,
            "a change started during the call"
        );
        l.found(2, TTL);
        let asked = l.found(2, TTL).unwrap();
        drop(change);
        l.keep(asked, entries(&[("b", 11)]));
        assert_eq!(l.find(2, "b", TTL), None, "a change ended during the call");
    }

    #[test]
    fn an_unlink_through_this_mount_removes_its_name_and_keeps_the_page() {
        let (l, asked) = with_page();
        l.keep(asked, entries(&[("b", 11), ("c", 12)]));
        l.unlinking(2, "b").done();
        assert_eq!(l.find(2, "b", TTL), None, "the name removed is gone");
        assert_eq!(l.find(2, "c", TTL).map(|a| a.ino), Some(FileId(12)));
        // one that failed, or whose outcome is not known, retires the page
        drop(l.unlinking(2, "c"));
        assert_eq!(l.find(2, "c", TTL), None);
    }

    #[test]
    fn an_unlink_of_a_file_that_may_have_other_names_in_the_page_retires_them() {
        let linked = |n: &[(&str, u64)], nlink: u32| {
            let mut e = entries(n);
            for (_, a) in &mut e {
                a.as_mut().unwrap().nlink = nlink;
            }
            e
        };
        // the name removed had another; a file with two other names stays
        let (l, asked) = with_page();
        l.keep(
            asked,
            linked(&[("b", 11), ("c", 11), ("d", 12), ("e", 12)], 2),
        );
        l.unlinking(2, "b").done();
        assert_eq!(l.find(2, "c", TTL), None);
        assert!(l.find(2, "d", TTL).is_some());
        // the name removed is not in the page (not in it, or in another directory): any
        // file in the page with two names may have been it
        for (dir, name) in [(2, "a"), (3, "d")] {
            let (l, asked) = with_page();
            let mut e = linked(&[("c", 11)], 2);
            e.extend(entries(&[("d", 12)]));
            l.keep(asked, e);
            l.unlinking(dir, name).done();
            assert_eq!(l.find(2, "c", TTL), None, "{dir}/{name} removed");
            assert!(l.find(2, "d", TTL).is_some(), "{dir}/{name} removed");
        }
    }

    #[test]
    fn unlinks_between_two_lookups_still_ask_for_a_page_but_one_on_its_way_discards_it() {
        let l = Arc::new(Listed::default());
        l.found(2, TTL);
        l.unlinking(2, "a").done();
        let asked = l
            .found(2, TTL)
            .expect("a walk that removes what it finds asks");
        let unlinking = l.unlinking(2, "b");
        l.keep(asked, entries(&[("b", 11), ("c", 12)]));
        unlinking.done();
        assert_eq!(
            l.find(2, "c", TTL),
            None,
            "listed while an unlink was on its way: it may or may not show it"
        );
    }

    #[test]
    fn a_directory_that_could_not_be_listed_is_not_asked_again_within_the_ttl() {
        let (l, asked) = with_page();
        l.refused(asked);
        assert!(l.found(2, TTL).is_none());
        assert!(
            l.found(2, TTL).is_none(),
            "a refused directory is asked again"
        );
        l.found(3, TTL);
        assert!(l.found(3, TTL).is_some(), "another directory is asked");
    }

    #[test]
    fn a_page_older_than_the_ttl_answers_nothing() {
        let (l, asked) = with_page();
        l.keep(asked, entries(&[("b", 11)]));
        assert!(l.find(2, "b", TTL).is_some());
        assert_eq!(l.find(2, "b", Duration::ZERO), None);
    }
}
