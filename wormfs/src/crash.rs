//! Crash points: named places at the dangerous steps where a test build kills its own
//! process with SIGKILL, so that tests check what a crash exactly there leaves behind.
//!
//! They exist only with the feature `crash-points`, which the test suite turns on (the
//! end-to-end tests' dev-dependency); a normal build compiles [`point`] to nothing. A node
//! started with [`CRASH_AT_ENV`] naming a point dies the first time it reaches it.

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

/// Every crash point, for tests that go through them all.
pub const POINTS: &[&str] = &[
    STRIPE_CHUNKS_SYNCED,
    STRIPE_COMMITTED,
    RENAME_COMMITTED,
    SNAPSHOT_REPLACED,
    REPAIR_CHUNKS_WRITTEN,
];

/// Kills this process with SIGKILL when it was started with [`CRASH_AT_ENV`] = `name` and
/// built with the feature `crash-points`; does nothing otherwise.
#[inline]
pub fn point(name: &str) {
    #[cfg(feature = "crash-points")]
    {
        static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        if AT
            .get_or_init(|| std::env::var(CRASH_AT_ENV).ok())
            .as_deref()
            == Some(name)
        {
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
