//! How a [`Client`] moves to another node: which calls it repeats there ([`Retry`]), what
//! counts as a node that did not answer, failing over, waiting for a node that is behind
//! (see [`crate::rpc::fresh`]), and following the moves of the other clients of its family.

use super::nodes::log_warn;
use super::{open, Client, ClientError, Conn};
use crate::errno;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Whether a call may be sent again after its node stopped answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads, lookups and whole-stripe writes: repeating them changes nothing more.
    Safe,
    /// Metadata changes: repeated only when the request surely never left the client.
    OnlyUnsent,
    /// Metadata changes that carry a request id ([`request_id`]): repeated on the next
    /// node, which applies the id once.
    Deduplicated,
}

/// How long a move away from a node is followed by the other clients of its family.
const FOLLOW_MOVES_FOR: Duration = Duration::from_secs(60);

/// The failovers of a client and its forks (a mount's connections), shared: when one
/// leaves a node that stopped answering, the others follow it on their next call instead of
/// each waiting for the silent node on its own (up to the keep-alive timeout, 30 s, each:
/// tests/soak.sh saw one overwrite wait the whole 68 s freeze of a node).
#[derive(Clone, Debug, Default)]
pub(super) struct Moves(
    Arc<Mutex<std::collections::HashMap<String, (std::time::Instant, String)>>>,
);

impl Moves {
    fn record(&self, from: &str, to: &str) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, (at, _)| at.elapsed() < FOLLOW_MOVES_FOR);
        m.insert(from.to_owned(), (std::time::Instant::now(), to.to_owned()));
    }

    /// Where a client family moved to from `from` after `after`, if it did.
    fn moved_from(&self, from: &str, after: std::time::Instant) -> Option<String> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(from)
            .filter(|(at, _)| *at > after && at.elapsed() < FOLLOW_MOVES_FOR)
            .map(|(_, to)| to.clone())
    }
}

/// True when `s` says the node could not be reached or the call broke on the way, rather
/// than the node's own answer (which always carries an errno).
fn is_unreachable(s: &tonic::Status) -> bool {
    use tonic::Code;
    s.metadata().get(crate::rpc::ERRNO_METADATA).is_none()
        && matches!(
            s.code(),
            Code::Unavailable
                | Code::Unknown
                | Code::Cancelled
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::Internal
        )
}

/// True when `s` is a failure to open the connection, so the request never left, or a
/// refusal of a node that is behind, so the call did not run.
fn never_sent(s: &tonic::Status) -> bool {
    if crate::rpc::fresh::is_behind(s) {
        return true;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(s);
    let mut texts = vec![s.message().to_owned()];
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        texts.push(e.to_string());
        cur = e.source();
    }
    texts.iter().any(|t| {
        let t = t.to_ascii_lowercase();
        t.contains("tcp connect error")
            || t.contains("error trying to connect")
            || t.contains("connection refused")
    })
}

impl Client {
    /// Moves to the next node that answers, unless another call already moved away from
    /// the connection of `generation`. Tries every other node, then the failed one again.
    async fn fail_over(&self, generation: u64) -> Result<(), ClientError> {
        let _one_at_a_time = self.shared.failover.lock().await;
        let (nodes, current) = {
            let s = self.lock();
            if s.generation != generation {
                return Ok(());
            }
            (s.nodes.clone(), s.current)
        };
        let mut errors = Vec::new();
        for step in 1..=nodes.len() {
            let i = (current + step) % nodes.len();
            match open(&nodes[i], &self.shared.opts, &self.shared.seen).await {
                Ok(conn) => {
                    {
                        let mut s = self.lock();
                        s.current = i;
                        s.conn = conn;
                        s.generation += 1;
                        s.since = std::time::Instant::now();
                    }
                    if i != current {
                        log_warn!(
                            "node {} stopped answering; now using {}",
                            nodes[current],
                            nodes[i]
                        );
                        self.shared.moves.record(&nodes[current], &nodes[i]);
                    }
                    self.refresh_nodes().await;
                    return Ok(());
                }
                Err(e) => errors.push(e.message),
            }
        }
        Err(ClientError {
            errno: errno::EIO,
            message: format!(
                "no node of the cluster answers ({}): {}",
                nodes.join(", "),
                errors.join("; ")
            ),
        })
    }

    /// Moves to the node another client of this family moved to, when it left the node in
    /// use after this client connected (see [`Moves`]). Nothing is sent before, so it is
    /// safe for every call; a node that does not take the connection leaves things as they
    /// are.
    async fn follow_moves(&self) {
        let (address, to, generation) = {
            let s = self.lock();
            let current = &s.nodes[s.current];
            let Some(to) = self.shared.moves.moved_from(current, s.since) else {
                return;
            };
            (current.clone(), to, s.generation)
        };
        let _one_at_a_time = self.shared.failover.lock().await;
        if self.lock().generation != generation {
            return;
        }
        match open(&to, &self.shared.opts, &self.shared.seen).await {
            Ok(conn) => {
                let mut s = self.lock();
                let i = match s.nodes.iter().position(|n| *n == to) {
                    Some(i) => i,
                    None => {
                        s.nodes.push(to.clone());
                        s.nodes.len() - 1
                    }
                };
                s.current = i;
                s.conn = conn;
                s.generation += 1;
                s.since = std::time::Instant::now();
                drop(s);
                log_warn!("node {address} stopped answering another connection; now using {to}");
            }
            Err(e) => {
                // not worth a failover of its own: the call finds out
                log_warn!(
                    "cannot follow the move from {address} to {to}: {}",
                    e.message
                );
                self.lock().since = std::time::Instant::now();
            }
        }
    }

    /// Runs `call` on the node in use, failing over as the type says (see [`Client`]).
    pub(super) async fn call<T, F, Fut>(
        &self,
        what: &str,
        retry: Retry,
        call: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let mut attempts = 0;
        let mut behind_since: Option<std::time::Instant> = None;
        self.follow_moves().await;
        loop {
            let (conn, generation, address, known) = {
                let s = self.lock();
                (
                    s.conn.clone(),
                    s.generation,
                    s.nodes[s.current].clone(),
                    s.nodes.len(),
                )
            };
            let status = match call(conn).await {
                Ok(v) => return Ok(v),
                Err(s) => s,
            };
            if crate::rpc::fresh::is_behind(&status) {
                // the node has not applied what this client has seen: it catches up in
                // milliseconds, or the client moves on (nothing of the call ran)
                let since = *behind_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() < crate::rpc::fresh::BEHIND_PATIENCE {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                behind_since = None;
                log_warn!(
                    "{what}: the node at {address} is behind the cluster ({}); moving to another node",
                    status.message()
                );
            } else if !is_unreachable(&status) {
                return Err(status.into());
            }
            attempts += 1;
            let unsent = never_sent(&status);
            let moved = self.fail_over(generation).await;
            if retry == Retry::OnlyUnsent && !unsent {
                return Err(ClientError {
                    errno: errno::EIO,
                    message: format!(
                        "{what}: the node at {address} stopped answering during the call ({}: {}), \
                         so the change could not be confirmed: it may or may not have been made",
                        status.code(),
                        status.message()
                    ),
                });
            }
            moved?;
            if attempts > known {
                return Err(ClientError {
                    errno: errno::EIO,
                    message: format!(
                        "{what}: no node answered after {attempts} attempts; the last, {address}, said: {} ({:?})",
                        status.message(),
                        status.code()
                    ),
                });
            }
        }
    }
}
