//! The connection gate: which peers a node connects to and accepts, by the peer book's
//! pinned IDs, with every refusal recorded.

use super::{PeerBook, Refusal, REFUSALS_KEPT};
use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

/// The connection gate: pins outbound connections to the book's IDs (trusting an `auto`
/// peer's first ID) and admits inbound connections only from pinned IDs.
pub(super) struct Gate {
    pub(super) book: Arc<PeerBook>,
    pub(super) refusals: Arc<Mutex<VecDeque<Refusal>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Denied(String);

pub(super) fn socket_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut ip: Option<IpAddr> = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(a.into()),
            Protocol::Ip6(a) => ip = Some(a.into()),
            Protocol::Tcp(port) => return ip.map(|ip| SocketAddr::new(ip, port)),
            _ => {}
        }
    }
    None
}

pub(super) fn multiaddr(addr: SocketAddr) -> Multiaddr {
    Multiaddr::empty()
        .with(match addr.ip() {
            IpAddr::V4(a) => Protocol::Ip4(a),
            IpAddr::V6(a) => Protocol::Ip6(a),
        })
        .with(Protocol::Tcp(addr.port()))
}

impl Gate {
    fn refuse(&self, addr: String, expected: Option<PeerId>, presented: PeerId) {
        let mut r = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        let repeat = r.back().is_some_and(|last| {
            last.addr == addr && last.presented == presented && last.expected == expected
        });
        if repeat {
            tracing::debug!(%addr, ?expected, %presented, "refused again");
        } else {
            match expected {
                Some(expected) => tracing::error!(
                    "refusing the node at {addr}: its peer ID is pinned to {expected} but it \
                     presented {presented}; if the node was really reinstalled, remove it \
                     (`wormfs node remove NAME`) and add it again (`wormfs node add {addr} \
                     --peer-id {presented}`)"
                ),
                None => tracing::warn!(
                    "refusing a connection from {addr}: peer ID {presented} is not in this \
                     node's peer list; add it with `wormfs node add ADDR --peer-id {presented}`"
                ),
            }
        }
        r.push_back(Refusal {
            addr,
            expected,
            presented,
            at: SystemTime::now(),
        });
        while r.len() > REFUSALS_KEPT {
            r.pop_front();
        }
    }

    fn check_outbound(&self, peer: PeerId, addr: &Multiaddr) -> Result<(), ConnectionDenied> {
        let deny = |why: String| Err(ConnectionDenied::new(Denied(why)));
        let Some(sa) = socket_addr(addr) else {
            return deny(format!("{addr} is not a TCP address"));
        };
        let entry = match self.book.get(sa) {
            Ok(e) => e,
            Err(e) => return deny(e.to_string()),
        };
        match entry {
            Some(e) => {
                let expected = match e.peer_id {
                    Some(id) => id,
                    None => match self.book.pin_first_seen(sa, peer) {
                        Ok(id) => {
                            if id == peer {
                                tracing::info!(%sa, %peer, "pinned the peer ID first seen at this address");
                            }
                            id
                        }
                        Err(e) => return deny(e.to_string()),
                    },
                };
                if expected == peer {
                    Ok(())
                } else {
                    self.refuse(sa.to_string(), Some(expected), peer);
                    deny(format!(
                        "{sa} presented peer ID {peer}, pinned is {expected}"
                    ))
                }
            }
            None => match self.book.knows(&peer) {
                Ok(true) => Ok(()),
                Ok(false) => {
                    self.refuse(sa.to_string(), None, peer);
                    deny(format!("peer {peer} at {sa} is not in the peer list"))
                }
                Err(e) => deny(e.to_string()),
            },
        }
    }
}

impl NetworkBehaviour for Gate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        match self.book.knows(&peer) {
            Ok(true) => Ok(dummy::ConnectionHandler),
            Ok(false) => {
                let sa = socket_addr(remote);
                let addr = sa.map_or_else(|| remote.to_string(), |a| a.to_string());
                // a known address (the peer dials from its listen port) names the pinned ID
                let expected = sa
                    .and_then(|a| self.book.get(a).ok().flatten())
                    .and_then(|e| e.peer_id);
                self.refuse(addr.clone(), expected, peer);
                Err(ConnectionDenied::new(Denied(format!(
                    "peer {peer} from {addr} is not in the peer list"
                ))))
            }
            Err(e) => Err(ConnectionDenied::new(Denied(e.to_string()))),
        }
    }

    fn handle_established_outbound_connection(
        &mut self,
        _id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check_outbound(peer, addr)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _event: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        _cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
