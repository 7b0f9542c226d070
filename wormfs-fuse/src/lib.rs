//! `wormfs-fuse`: mounts a WormFS storage node as a local directory.

mod cache;
mod caller;
mod fetch;
mod file;
mod fs;
mod locks;

pub use fs::{FsOptions, WormFuse};

use anyhow::Context;
use std::path::{Path, PathBuf};
use wormfs::rpc::client::Client;

/// How to mount.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Kernel request threads (parallel readers need more than one).
    pub threads: usize,
    /// Bytes of the stripe read cache.
    pub cache_bytes: usize,
    /// Let users other than the one mounting use the mount.
    pub allow_other: bool,
    /// Read stripes straight from the node's chunk files when the node runs on this
    /// machine and this process can read them (the node only says where they are).
    pub local_reads: bool,
    /// The identity file to present (else `WORMFS_IDENTITY`, else the client config's).
    pub identity: Option<PathBuf>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            threads: 4,
            cache_bytes: 256 << 20,
            allow_other: false,
            local_reads: true,
            identity: None,
        }
    }
}

/// A live mount; [`Mounted::unmount`] ends it.
pub struct Mounted {
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
    files: file::OpenFiles,
}

/// Mounts the node behind `client` at `mountpoint`, serving requests on background threads
/// and running gRPC calls on `rt`.
pub fn mount(
    client: Client,
    rt: tokio::runtime::Handle,
    mountpoint: &Path,
    opts: &MountOptions,
) -> anyhow::Result<Mounted> {
    let fs = WormFuse::new(
        client,
        rt,
        FsOptions {
            cache_bytes: opts.cache_bytes,
            local_reads: opts.local_reads,
        },
    );
    let files = fs.open_files();
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![
        fuser::MountOption::FSName("wormfs".into()),
        fuser::MountOption::Subtype("wormfs".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::RW,
    ];
    if opts.allow_other {
        cfg.acl = fuser::SessionACL::All;
    }
    cfg.n_threads = Some(opts.threads.max(1));
    cfg.clone_fd = true;
    let session = fuser::spawn_mount(fs, mountpoint, &cfg).with_context(|| {
        format!(
            "mount at `{}` (is /dev/fuse there, and are you root or is fuse3 installed?)",
            mountpoint.display()
        )
    })?;
    raise_read_ahead(mountpoint);
    Ok(Mounted {
        session: Some(session),
        mountpoint: mountpoint.to_owned(),
        files,
    })
}

/// The kernel's read-ahead for a mount, in KiB. Its default, 128 KiB, makes every 128 KiB
/// of a sequential read one FUSE request; at 1 MiB (the largest request FUSE sends) a
/// request carries eight times as much.
const READ_AHEAD_KIB: u32 = 1024;

/// Sets the mount's read-ahead (`/sys/class/bdi/MAJOR:MINOR/read_ahead_kb`, which only root
/// may write) to [`READ_AHEAD_KIB`]. Without it the mount works the same, with smaller
/// requests.
fn raise_read_ahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    let dev = match std::fs::metadata(mountpoint) {
        Ok(m) => m.dev(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot stat the mount point to set its read-ahead");
            return;
        }
    };
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    match std::fs::write(&path, READ_AHEAD_KIB.to_string()) {
        Ok(()) => tracing::debug!(%path, kib = READ_AHEAD_KIB, "read-ahead raised"),
        Err(e) => tracing::debug!(%path, error = %e, "read-ahead left as it is"),
    }
}

impl Mounted {
    /// The mount point.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// True when the session ended on its own (someone unmounted it).
    pub fn is_finished(&self) -> bool {
        self.session.as_ref().is_none_or(|s| s.guard.is_finished())
    }

    /// Unmounts. Buffered writes are sent first (the kernel flushes open files on unmount).
    /// When files are still open, the mount is detached lazily. An error when any write
    /// this mount acknowledged did not reach the node: those bytes are lost, and saying
    /// "unmounted" would hide it.
    pub fn unmount(mut self) -> anyhow::Result<()> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> anyhow::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let detached = if session.guard.is_finished() {
            session.join().context("join the FUSE session")?;
            false
        } else {
            match session.umount_and_join() {
                Ok(()) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "unmount failed; detaching lazily");
                    lazy_unmount(&self.mountpoint)?;
                    true
                }
            }
        };
        let unsaved = self.files.unsaved();
        if unsaved.is_empty() {
            return Ok(());
        }
        let bytes: u64 = unsaved.iter().map(|(_, b)| b).sum();
        let inodes: Vec<String> = unsaved.iter().map(|(i, _)| i.to_string()).collect();
        let why = if detached {
            "files were still open and the mount was detached with their writes buffered"
        } else {
            "the node did not take them at unmount (see the errors above)"
        };
        Err(anyhow::anyhow!(
            "{bytes} bytes written to {} file(s) through `{}` were NOT stored: {why}; \
             inodes: {}",
            unsaved.len(),
            self.mountpoint.display(),
            inodes.join(", ")
        ))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_inner() {
            tracing::error!(error = %e, "unmount at drop failed");
        }
    }
}

/// `umount -l`: detach now, finish when the last file closes.
fn lazy_unmount(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).context("mount point path")?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EPERM) {
            let status = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(path)
                .status();
            return match status {
                Ok(s) if s.success() => Ok(()),
                _ => Err(anyhow::anyhow!(
                    "lazy unmount of `{}` failed: {e}",
                    path.display()
                )),
            };
        }
        return Err(anyhow::anyhow!(
            "lazy unmount of `{}` failed: {e}",
            path.display()
        ));
    }
    Ok(())
}

/// Connects to the cluster through `node` (or, when `None` or empty, the nodes of the
/// client config file, else of the node cache, else 127.0.0.1:7070; see
/// [`wormfs::rpc::client_config::resolve`]), mounts it at `mountpoint`, prints
/// `wormfs-fuse mounted ...` on stdout, and serves until SIGTERM, SIGINT or an unmount from
/// outside; then unmounts. The body of `wormfs-fuse` and of `wormfs mount`. The mount fails
/// over to another node of the cluster when the one in use stops answering.
pub fn mount_foreground(
    node: Option<&str>,
    mountpoint: &Path,
    opts: &MountOptions,
) -> anyhow::Result<()> {
    use std::time::Duration;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let client = rt
        .block_on(wormfs::rpc::client_config::connect(
            node,
            opts.identity.as_deref(),
        ))
        .context("connect to the cluster")?;
    let node = client.current_address();
    tracing::info!(nodes = ?client.nodes(), "connected to {node}");
    // The handlers are in place before anyone can learn that the mount is up: a SIGTERM
    // right after the "mounted" line must unmount, not kill the process.
    let (mut term, mut int) = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
        let int = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
        anyhow::Ok((term, int))
    })?;
    let mounted = mount(client, rt.handle().clone(), mountpoint, opts)?;
    {
        use std::io::Write;
        println!("wormfs-fuse mounted {node} at {}", mountpoint.display());
        let _ = std::io::stdout().flush();
    }
    rt.block_on(async {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                // fuser has no completion future: look at the session now and then.
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    if mounted.is_finished() {
                        tracing::info!("unmounted from outside");
                        break;
                    }
                }
            }
        }
        anyhow::Ok(())
    })?;
    mounted.unmount()?;
    tracing::info!("unmounted");
    Ok(())
}
