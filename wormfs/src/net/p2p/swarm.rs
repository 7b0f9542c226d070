//! The swarm task: dials and redials the book's peers, learns their names from their
//! hellos, carries request/response calls, and hands inbound chunk streams to the store.

use super::gate::{multiaddr, socket_addr};
use super::wire::{Wire, WireRequest, WireResponse};
use super::{chunks, Behaviour, BehaviourEvent, Command, Pending, Shared};
use crate::ids::NodeId;
use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, Swarm};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

pub(super) async fn accept_chunks(
    mut incoming: libp2p_stream::IncomingStreams,
    wire: Wire,
    shared: std::sync::Weak<Shared>,
) {
    while let Some((peer, stream)) = incoming.next().await {
        let Some(s) = shared.upgrade() else { break };
        // a node playing the release before protobuf (tests) knows no ranges either
        let ranges = s.speaks_v2;
        tokio::spawn(chunks::serve_stream(
            s.store.clone(),
            peer,
            wire,
            stream,
            ranges,
        ));
    }
}

pub(super) async fn run_swarm(
    mut swarm: Swarm<Behaviour>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    shared: std::sync::Weak<Shared>,
) {
    let mut pending: HashMap<OutboundRequestId, Pending> = HashMap::new();
    let mut counts: HashMap<PeerId, u32> = HashMap::new();
    loop {
        tokio::select! {
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { break };
                match cmd {
                    Command::Request { peer, request, reply } => {
                        let id = swarm.behaviour_mut().rpc.send_request(&peer, request);
                        pending.insert(id, Pending::Caller(reply));
                    }
                    Command::Respond { channel, response } => {
                        let _ = swarm.behaviour_mut().rpc.send_response(channel, response);
                    }
                    Command::Redial => {
                        let Some(s) = shared.upgrade() else { break };
                        redial(&mut swarm, &s, &counts);
                    }
                }
            }
            event = swarm.select_next_some() => {
                let Some(s) = shared.upgrade() else { break };
                on_event(&mut swarm, &s, event, &mut pending, &mut counts);
            }
        }
    }
}

fn redial(swarm: &mut Swarm<Behaviour>, shared: &Shared, counts: &HashMap<PeerId, u32>) {
    let entries = match shared.book.entries() {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("cannot read the peer book: {e}");
            return;
        }
    };
    for e in entries {
        if e.addr == shared.listen {
            continue;
        }
        if let Some(id) = e.peer_id {
            if id == shared.peer_id || counts.contains_key(&id) {
                continue;
            }
            swarm.add_peer_address(id, multiaddr(e.addr));
        }
        if let Err(err) = swarm.dial(multiaddr(e.addr)) {
            tracing::debug!(addr = %e.addr, "dial failed: {err}");
        }
    }
}

fn learn_name(shared: &Shared, peer: PeerId, node: NodeId) {
    let mut names = shared.names.write().unwrap_or_else(|e| e.into_inner());
    if let Some(old) = names.by_node.insert(node.clone(), peer) {
        if old != peer {
            names.by_peer.remove(&old);
        }
    }
    names.by_peer.insert(peer, node);
}

fn on_event(
    swarm: &mut Swarm<Behaviour>,
    shared: &Arc<Shared>,
    event: SwarmEvent<BehaviourEvent>,
    pending: &mut HashMap<OutboundRequestId, Pending>,
    counts: &mut HashMap<PeerId, u32>,
) {
    match event {
        SwarmEvent::ConnectionEstablished {
            peer_id, endpoint, ..
        } => {
            if let Some(addr) = socket_addr(endpoint.get_remote_address()) {
                shared
                    .remote_ip
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(peer_id, addr.ip());
            }
            let n = counts.entry(peer_id).or_insert(0);
            *n += 1;
            if *n == 1 {
                shared
                    .connected
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(peer_id);
                let id = swarm.behaviour_mut().rpc.send_request(
                    &peer_id,
                    WireRequest::Hello {
                        node: shared.node.clone(),
                    },
                );
                pending.insert(id, Pending::Hello);
            }
        }
        SwarmEvent::ConnectionClosed {
            peer_id,
            num_established,
            ..
        } => {
            if num_established == 0 {
                counts.remove(&peer_id);
                // its data connections end with it (the peer serves them only meanwhile)
                let node = shared
                    .names
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .by_peer
                    .get(&peer_id)
                    .cloned();
                if let Some(node) = node {
                    shared
                        .data
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .idle
                        .remove(&node);
                }
                shared
                    .remote_ip
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&peer_id);
                shared
                    .connected
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&peer_id);
            } else {
                counts.insert(peer_id, num_established);
            }
        }
        SwarmEvent::Behaviour(BehaviourEvent::Rpc(ev)) => match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => match request {
                    WireRequest::Hello { node } => {
                        learn_name(shared, peer, node);
                        let _ = swarm.behaviour_mut().rpc.send_response(
                            channel,
                            WireResponse::Hello {
                                node: shared.node.clone(),
                            },
                        );
                    }
                    WireRequest::Call { protocol, body } => {
                        let handler = shared
                            .handlers
                            .read()
                            .unwrap_or_else(|e| e.into_inner())
                            .get(&protocol)
                            .cloned();
                        let Some(handler) = handler else {
                            let _ = swarm
                                .behaviour_mut()
                                .rpc
                                .send_response(channel, WireResponse::NoHandler);
                            return;
                        };
                        let caller = shared
                            .names
                            .read()
                            .unwrap_or_else(|e| e.into_inner())
                            .by_peer
                            .get(&peer)
                            .cloned()
                            .unwrap_or_else(|| NodeId(peer.to_string()));
                        let commands = shared.commands.clone();
                        tokio::spawn(async move {
                            let response = match handler(caller, body).await {
                                Ok(b) => WireResponse::Reply(b),
                                Err(e) => WireResponse::Failed(e),
                            };
                            let _ = commands.send(Command::Respond { channel, response });
                        });
                    }
                },
                request_response::Message::Response {
                    request_id,
                    response,
                } => match pending.remove(&request_id) {
                    Some(Pending::Caller(tx)) => {
                        let _ = tx.send(Ok(response));
                    }
                    Some(Pending::Hello) => {
                        if let WireResponse::Hello { node } = response {
                            learn_name(shared, peer, node);
                        }
                    }
                    None => {}
                },
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => match pending.remove(&request_id) {
                Some(Pending::Caller(tx)) => {
                    let _ = tx.send(Err(error.to_string()));
                }
                Some(Pending::Hello) => {
                    tracing::debug!("hello failed: {error}");
                }
                None => {}
            },
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound request failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        },
        SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
            tracing::debug!(?peer_id, "outgoing connection failed: {error}");
        }
        SwarmEvent::IncomingConnectionError { error, .. } => {
            tracing::debug!("incoming connection failed: {error}");
        }
        _ => {}
    }
}
