//! Crash points: named places at the dangerous steps where a test build kills its own
//! process with SIGKILL, so that tests check what a crash exactly there leaves behind.
//!
//! They exist only with the feature `crash-points`, which the test suite turns on (the
//! end-to-end tests' dev-dependency); a normal build compiles [`point`] to nothing. A node
//! started with [`CRASH_AT_ENV`] naming a point dies the first time it reaches it.
//!
//! A failure point ([`fails`]) is the same switch for a step that returns an error instead
//! (an I/O error on a disk, say), for tests of what a node does when that step fails.

/// The environment variable that names the point a test build crashes at.
pub const CRASH_AT_ENV: &str = "WORMFS_CRASH_AT";

/// A stripe's chunk files are written and synced; its metadata is not committed.
pub const STRIPE_CHUNKS_SYNCED: &str = "stripe-chunks-synced";
/// A stripe's metadata is committed; the writer has not been answered.
pub const STRIPE_COMMITTED: &str = "stripe-committed";
/// A rename is committed; the chunk folders' index files do not record it yet.
pub const RENAME_COMMITTED: &str = "rename-committed";

/// A follower replaced its metadata database with the master's snapshot; the snapshot is
/// not yet recorded as its own.
pub const SNAPSHOT_REPLACED: &str = "snapshot-replaced";

/// The repair worker stored a stripe's rebuilt chunks; their metadata is not committed.
pub const REPAIR_CHUNKS_WRITTEN: &str = "repair-chunks-written";

/// A failure point: applying committed entries to the metadata database fails, as an I/O
/// error on its disk would make it (see [`fails`]).
pub const APPLY_FAILS: &str = "apply-fails";

/// Every crash point, for tests that go through them all.
pub const POINTS: &[&str] = &[
    STRIPE_CHUNKS_SYNCED,
    STRIPE_COMMITTED,
    RENAME_COMMITTED,
    SNAPSHOT_REPLACED,
    REPAIR_CHUNKS_WRITTEN,
    APPLY_FAILS,
];

/// Whether this process was started with [`CRASH_AT_ENV`] = `name` and built with the
/// feature `crash-points`.
#[inline]
fn armed(name: &str) -> bool {
    #[cfg(feature = "crash-points")]
    {
        static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        AT.get_or_init(|| std::env::var(CRASH_AT_ENV).ok())
            .as_deref()
            == Some(name)
    }
    #[cfg(not(feature = "crash-points"))]
    {
        let _ = name;
        false
    }
}

/// Whether the step named `name` must fail here (a test build started with
/// [`CRASH_AT_ENV`] = `name`); always `false` in a normal build. The caller returns its
/// ordinary error for that step.
#[inline]
pub fn fails(name: &str) -> bool {
    let armed = armed(name);
    if armed {
        eprintln!("wormfs: failure point `{name}` reached: failing this step");
    }
    armed
}

/// Kills this process with SIGKILL when it was started with [`CRASH_AT_ENV`] = `name` and
/// built with the feature `crash-points`; does nothing otherwise.
#[inline]
pub fn point(name: &str) {
    #[cfg(feature = "crash-points")]
    {
        if armed(name) {
            eprintln!("wormfs: crash point `{name}` reached: killing this process (SIGKILL)");
            // SAFETY: kill(2) on our own pid; nothing is borrowed or freed.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
    #[cfg(not(feature = "crash-points"))]
    let _ = name;
}
