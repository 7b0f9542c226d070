//! How the FUSE request threads reach the node: each thread's own runtime and connection,
//! or the shared ones.

use super::*;

/// A FUSE thread's own runtime, driving its own connection.
pub(super) struct OwnDriver {
    rt: tokio::runtime::Runtime,
    client: Client,
}

/// What runs a call's future: the thread's own runtime, or the mount's shared one.
pub(super) enum Driver<'a> {
    Own(&'a tokio::runtime::Runtime),
    Shared(&'a tokio::runtime::Handle),
}

impl Driver<'_> {
    pub(super) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        match self {
            Driver::Own(rt) => rt.block_on(f),
            Driver::Shared(h) => h.block_on(f),
        }
    }
}

impl WormFuse {
    /// Runs `f` on the mount's shared runtime.
    pub(super) fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Makes a call to the node from a FUSE thread. Each FUSE thread has its own
    /// single-threaded runtime and connection, so a request's round trip stays on the
    /// thread that serves it: no hand-off to the shared runtime's workers and back, which
    /// costs more than the call itself on a small machine.
    ///
    /// Any call may change a directory unless it goes through [`WormFuse::rpc_quiet`]:
    /// this one counts as a change (see [`super::fresh`]).
    pub(super) fn rpc<T>(&self, call: impl FnOnce(&Client, &Driver<'_>) -> T) -> T {
        let _listed = self.listed.change();
        self.rpc_changing(call)
    }

    /// [`WormFuse::rpc`] for a call whose change the caller makes to the listed pages
    /// itself (an unlink: see [`super::listed::Unlinking`]).
    pub(super) fn rpc_changing<T>(&self, call: impl FnOnce(&Client, &Driver<'_>) -> T) -> T {
        let _change = self.fresh.begin();
        self.rpc_quiet(call)
    }

    /// [`WormFuse::rpc`] for a call that changes no directory's attributes (reads, data,
    /// locks): it leaves the attributes a create returned fresh.
    pub(super) fn rpc_quiet<T>(&self, call: impl FnOnce(&Client, &Driver<'_>) -> T) -> T {
        match self.own_driver() {
            Some(own) => call(&own.client, &Driver::Own(&own.rt)),
            None => call(&self.client, &Driver::Shared(&self.rt)),
        }
    }

    /// [`WormFuse::rpc`] acting as the caller of `req`: the node checks its permissions.
    /// Only the call the caller asked for goes this way; what the mount does for itself
    /// (the orphan directory, data sent in the background) acts as the mount's identity.
    pub(super) fn rpc_as<T>(
        &self,
        req: &Request,
        call: impl FnOnce(&Client, &Driver<'_>) -> T,
    ) -> T {
        wormfs::rpc::client::acting_as(crate::caller::of(req), || self.rpc(call))
    }

    /// [`WormFuse::rpc_as`] for a call that changes no directory (see
    /// [`WormFuse::rpc_quiet`]).
    pub(super) fn rpc_as_quiet<T>(
        &self,
        req: &Request,
        call: impl FnOnce(&Client, &Driver<'_>) -> T,
    ) -> T {
        wormfs::rpc::client::acting_as(crate::caller::of(req), || self.rpc_quiet(call))
    }

    /// [`WormFuse::rpc_as`] with `req`'s caller, or [`WormFuse::rpc`] without one.
    pub(super) fn rpc_opt<T>(
        &self,
        req: Option<&Request>,
        call: impl FnOnce(&Client, &Driver<'_>) -> T,
    ) -> T {
        match req {
            Some(req) => self.rpc_as(req, call),
            None => self.rpc(call),
        }
    }

    pub(super) fn own_driver(&self) -> Option<Arc<OwnDriver>> {
        let id = std::thread::current().id();
        if let Some(d) = lock(&self.threads).get(&id) {
            return d.clone();
        }
        let made = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                let client = rt.block_on(self.client.fork()).map_err(|e| e.message)?;
                Ok(Arc::new(OwnDriver { rt, client }))
            });
        let own = match made {
            Ok(own) => Some(own),
            Err(e) => {
                tracing::warn!(error = %e, "a FUSE thread could not open its own connection; it shares the mount's");
                None
            }
        };
        lock(&self.threads).insert(id, own.clone());
        own
    }
}
