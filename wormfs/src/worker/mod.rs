//! Background work in one shape (after Garage's `Worker`): a [`Worker`] does its work in
//! small steps; a runner ([`run_worker`], feature `node`) drives the steps, pauses and
//! resumes it as its [`WorkerControl`] says, keeps it within an I/O budget, backs off after
//! errors, and records its [`WorkerStatus`] (with the cursor a new master resumes from)
//! through the metadata log.

mod record;
#[cfg(feature = "node")]
mod runner;

pub use record::{names, Cursor, WorkerControl, WorkerState, WorkerStatus};
#[cfg(feature = "node")]
pub use runner::{run_worker, Budget, Pacer, Step, Worker, WorkerHost};
