//! The data path: chunk calls on plain TCP connections beside libp2p, each record sealed
//! with AES-256-GCM under keys handed out over the libp2p connection.
//!
//! One libp2p connection (noise, yamux) carries chunk bytes at a tenth of what loopback TCP
//! does: yamux cuts a stream into 16 KiB frames and noise seals each on its own, all
//! through one task. Chunk bytes therefore take a second road:
//!
//! 1. The caller asks the holder for a **ticket** on the request channel
//!    ([`TICKET_CALL`]). That channel is the pinned, noise-encrypted libp2p connection, so
//!    the ticket (the data port, a 128-bit ticket id, one 256-bit key for each direction,
//!    all random) reaches only the peer the book pins, and only from it.
//! 2. The caller opens a TCP connection to the data port and sends the ticket id. The
//!    holder redeems it once (a replayed or unknown id is refused and logged) within
//!    [`TICKET_LIFETIME`].
//! 3. Both sides then exchange **sealed records**: `u32 LE` length, then AES-256-GCM
//!    ciphertext and tag. The nonce is the record's number in its direction (the keys are
//!    fresh per connection and differ per direction, so no nonce repeats under a key); the
//!    length is the associated data. A record that fails authentication ends the
//!    connection. A chunk-protocol message is one record holding
//!    `header ‖ u32 LE header length ‖ u64 LE payload length`, then the payload in records
//!    of [`PIECE`] bytes (the last one shorter): the far end opens one piece while this end
//!    seals the next, and each piece is read and opened in its place in the payload, with
//!    no copy after it.
//!
//! A connection carries one call at a time and goes back to an idle pool after it; a node of
//! a release before the data path answers the ticket call with "no handler", and is asked
//! through libp2p streams instead.
//!
//! Request-channel calls (Raft, forwarded metadata ops, heartbeats) ride the same
//! connections as `Call` messages: one libp2p request costs about five times the CPU of
//! one round trip here (yamux stream, protocol negotiation, a timer, the swarm task). The
//! holder serves a message only while the caller's libp2p connection is up, so a node
//! dropped from the book loses its data connections with its libp2p one.

use super::chunks::{ChunkRequest, ChunkResponse, MAX_HEADER, MAX_PAYLOAD};
use super::wire::{Header, Wire};
use super::Shared;
use crate::ids::NodeId;
use openssl::cipher::{Cipher, CipherRef};
use openssl::cipher_ctx::CipherCtx;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The request-channel protocol a caller asks a ticket on (the body is empty).
pub(super) const TICKET_CALL: &str = "/wormfs/data-ticket/1";
/// How long an issued ticket may wait for its connection.
pub(super) const TICKET_LIFETIME: Duration = Duration::from_secs(30);
/// How long a caller waits for a data port to accept its connection.
const CONNECT_WITHIN: Duration = Duration::from_secs(2);
/// How long a new data connection may take to present its ticket id.
const PRESENT_WITHIN: Duration = Duration::from_secs(5);
/// Idle connections kept per peer.
pub(super) const IDLE_PER_PEER: usize = 8;

const ID_LEN: usize = 16;
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
const TRAILER_LEN: usize = 12;
const TICKET_LEN: usize = 2 + ID_LEN + 2 * KEY_LEN;
/// The payload bytes in one record.
const PIECE: usize = 256 * 1024;

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn random<const N: usize>() -> io::Result<[u8; N]> {
    let mut b = [0u8; N];
    openssl::rand::rand_bytes(&mut b).map_err(io::Error::other)?;
    Ok(b)
}

/// What a holder hands a caller for one data connection. Holds keys: never printed.
#[derive(Clone)]
pub(super) struct Ticket {
    /// The holder's data port.
    pub(super) port: u16,
    id: [u8; ID_LEN],
    /// Seals what the caller sends.
    to_holder: [u8; KEY_LEN],
    /// Seals what the holder sends.
    to_caller: [u8; KEY_LEN],
}

impl Ticket {
    fn fresh(port: u16) -> io::Result<Ticket> {
        Ok(Ticket {
            port,
            id: random()?,
            to_holder: random()?,
            to_caller: random()?,
        })
    }

    /// `port ‖ id ‖ key to the holder ‖ key to the caller`.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TICKET_LEN);
        out.extend_from_slice(&self.port.to_le_bytes());
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.to_holder);
        out.extend_from_slice(&self.to_caller);
        out
    }

    pub(super) fn decode(b: &[u8]) -> io::Result<Ticket> {
        if b.len() != TICKET_LEN {
            return Err(invalid(format!(
                "a data ticket of {} bytes, not {TICKET_LEN}",
                b.len()
            )));
        }
        let take = |at: usize, n: usize| &b[at..at + n];
        Ok(Ticket {
            port: u16::from_le_bytes([b[0], b[1]]),
            id: take(2, ID_LEN).try_into().expect("length checked"),
            to_holder: take(2 + ID_LEN, KEY_LEN)
                .try_into()
                .expect("length checked"),
            to_caller: take(2 + ID_LEN + KEY_LEN, KEY_LEN)
                .try_into()
                .expect("length checked"),
        })
    }

    /// Opens the caller's end: connects to `ip` at the ticket's port and presents it.
    /// A port that does not answer within [`CONNECT_WITHIN`] (a firewall dropping it) is
    /// an error, so the caller turns to libp2p streams instead of waiting out its call.
    pub(super) async fn connect(&self, ip: std::net::IpAddr) -> io::Result<Sealed> {
        let at = SocketAddr::new(ip, self.port);
        let mut stream = tokio::time::timeout(CONNECT_WITHIN, TcpStream::connect(at))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {CONNECT_WITHIN:?}"),
                )
            })??;
        stream.set_nodelay(true)?;
        stream.write_all(&self.id).await?;
        Ok(Sealed::new(stream, self.to_holder, self.to_caller))
    }
}

/// The tickets a holder has issued and not yet seen redeemed.
#[derive(Default)]
pub(super) struct Tickets {
    issued: Mutex<HashMap<[u8; ID_LEN], (NodeId, Ticket, Instant)>>,
}

impl Tickets {
    /// A fresh ticket for `node`, to the data port `port`; forgets expired ones.
    pub(super) fn issue(&self, node: NodeId, port: u16) -> io::Result<Ticket> {
        let ticket = Ticket::fresh(port)?;
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        issued.retain(|_, (_, _, at)| at.elapsed() < TICKET_LIFETIME);
        issued.insert(ticket.id, (node, ticket.clone(), Instant::now()));
        Ok(ticket)
    }

    /// The ticket with `id`, once, if it is still live.
    fn redeem(&self, id: &[u8; ID_LEN]) -> Option<(NodeId, Ticket)> {
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        match issued.remove(id) {
            Some((node, ticket, at)) if at.elapsed() < TICKET_LIFETIME => Some((node, ticket)),
            _ => None,
        }
    }
}

/// One end of a data connection: sealed records both ways.
pub(super) struct Sealed {
    stream: TcpStream,
    seal_key: [u8; KEY_LEN],
    open_key: [u8; KEY_LEN],
    sent: u64,
    received: u64,
    /// The buffer records are sealed into, kept between records.
    scratch: Vec<u8>,
}

fn nonce(n: u64) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[4..].copy_from_slice(&n.to_be_bytes());
    b
}

fn aead() -> &'static CipherRef {
    Cipher::aes_256_gcm()
}

fn crypto(e: openssl::error::ErrorStack) -> io::Error {
    invalid(format!("data record sealing failed: {e}"))
}

impl Sealed {
    fn new(stream: TcpStream, seal_key: [u8; KEY_LEN], open_key: [u8; KEY_LEN]) -> Sealed {
        Sealed {
            stream,
            seal_key,
            open_key,
            sent: 0,
            received: 0,
            scratch: Vec::new(),
        }
    }

    /// Seals `pieces`, one after the other, as one record written into `out` from `start`;
    /// returns where the record ends. `out` keeps its length from message to message and
    /// grows only where the record does not fit, so its bytes are not zeroed each time.
    fn seal_into(
        &mut self,
        out: &mut Vec<u8>,
        start: usize,
        pieces: &[&[u8]],
    ) -> io::Result<usize> {
        let plain: usize = pieces.iter().map(|p| p.len()).sum();
        let len = ((plain + TAG_LEN) as u32).to_le_bytes();
        let end = start + 4 + plain + TAG_LEN;
        if out.len() < end {
            out.resize(end, 0);
        }
        out[start..start + 4].copy_from_slice(&len);
        let mut ctx = CipherCtx::new().map_err(crypto)?;
        ctx.encrypt_init(Some(aead()), Some(&self.seal_key), Some(&nonce(self.sent)))
            .map_err(crypto)?;
        self.sent += 1;
        ctx.cipher_update(&len, None).map_err(crypto)?;
        let mut at = start + 4;
        for piece in pieces {
            at += ctx
                .cipher_update(piece, Some(&mut out[at..at + piece.len()]))
                .map_err(crypto)?;
        }
        // GCM holds nothing back: the final step writes no bytes (it wants a block's room)
        let n = ctx.cipher_final(&mut [0u8; 16]).map_err(crypto)?;
        debug_assert_eq!((n, at), (0, start + 4 + plain));
        ctx.tag(&mut out[at..end]).map_err(crypto)?;
        Ok(end)
    }

    /// Seals and sends one message: `header` (encoded) and its `payload`. The header goes
    /// in a record of its own, the payload in records of [`PIECE`] bytes, so the other end
    /// opens one while this one seals the next.
    pub(super) async fn send(&mut self, header: &[u8], payload: &[u8]) -> io::Result<()> {
        self.send_parts(header, &[payload]).await
    }

    /// [`Sealed::send`] with the payload given in parts, one after the other (a chunk's
    /// header and data, not joined first): a record may take bytes of two parts.
    pub(super) async fn send_parts(&mut self, header: &[u8], parts: &[&[u8]]) -> io::Result<()> {
        let plen: usize = parts.iter().map(|p| p.len()).sum();
        if header.len() > MAX_HEADER as usize || plen as u64 > MAX_PAYLOAD {
            return Err(invalid(format!(
                "a message of {} header and {plen} payload bytes is over the limits ({MAX_HEADER} and {MAX_PAYLOAD})",
                header.len(),
            )));
        }
        let mut trailer = [0u8; TRAILER_LEN];
        trailer[..4].copy_from_slice(&(header.len() as u32).to_le_bytes());
        trailer[4..].copy_from_slice(&(plen as u64).to_le_bytes());
        // sealing copies the message into the buffer, kept from message to message
        let mut buf = std::mem::take(&mut self.scratch);
        let result = async {
            let mut used = self.seal_into(&mut buf, 0, &[header, &trailer])?;
            let mut rest = parts.iter().copied().filter(|p| !p.is_empty());
            let mut part: &[u8] = rest.next().unwrap_or_default();
            while !part.is_empty() {
                // the next PIECE bytes of the payload, from one part or more
                let mut piece: Vec<&[u8]> = Vec::with_capacity(2);
                let mut room = PIECE;
                while room > 0 && !part.is_empty() {
                    let (take, left) = part.split_at(room.min(part.len()));
                    piece.push(take);
                    room -= take.len();
                    part = if left.is_empty() {
                        rest.next().unwrap_or_default()
                    } else {
                        left
                    };
                }
                used = self.seal_into(&mut buf, used, &piece)?;
                if used >= PIECE {
                    self.stream.write_all(&buf[..used]).await?;
                    used = 0;
                }
            }
            if used > 0 {
                self.stream.write_all(&buf[..used]).await?;
            }
            Ok(())
        }
        .await;
        self.scratch = buf;
        result
    }

    /// Whether an idle connection is still usable: the other end has not closed it (a
    /// restarted peer) and sent nothing unasked. Does not wait.
    pub(super) fn is_open(&self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Reads one record's length prefix; `Ok(None)` at a clean end of the connection.
    async fn record_len(&mut self) -> io::Result<Option<[u8; 4]>> {
        let mut len4 = [0u8; 4];
        match self.stream.read_exact(&mut len4).await {
            Ok(_) => Ok(Some(len4)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens, in place, a record's `body` sealed with length prefix `len4` and `tag`.
    fn open(&mut self, len4: [u8; 4], body: &mut [u8], tag: &[u8]) -> io::Result<()> {
        let mut ctx = CipherCtx::new().map_err(crypto)?;
        ctx.decrypt_init(
            Some(aead()),
            Some(&self.open_key),
            Some(&nonce(self.received)),
        )
        .map_err(crypto)?;
        self.received += 1;
        ctx.cipher_update(&len4, None).map_err(crypto)?;
        ctx.set_tag(tag).map_err(crypto)?;
        let n = ctx
            .cipher_update_inplace(body, body.len())
            .map_err(crypto)?;
        debug_assert_eq!(n, body.len());
        ctx.cipher_final(&mut [0u8; 16])
            .map_err(|_| invalid("a data record failed authentication"))?;
        Ok(())
    }

    /// Receives and opens one message: its header bytes and payload. `Ok(None)` when the
    /// other end closed the connection between messages.
    pub(super) async fn recv(&mut self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let Some(len4) = self.record_len().await? else {
            return Ok(None);
        };
        let record = u32::from_le_bytes(len4) as usize;
        if record < TRAILER_LEN + TAG_LEN || record > MAX_HEADER as usize + TRAILER_LEN + TAG_LEN {
            return Err(invalid(format!(
                "a data header record of {record} bytes (outside {}..={})",
                TRAILER_LEN + TAG_LEN,
                MAX_HEADER as usize + TRAILER_LEN + TAG_LEN
            )));
        }
        let mut head = vec![0u8; record];
        self.stream.read_exact(&mut head).await?;
        let (body, tag) = head.split_at_mut(record - TAG_LEN);
        self.open(len4, body, tag)?;
        let (header, trailer) = body.split_at(body.len() - TRAILER_LEN);
        let hlen = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes")) as usize;
        let plen = u64::from_le_bytes(trailer[4..].try_into().expect("8 bytes"));
        if hlen != header.len() || plen > MAX_PAYLOAD {
            return Err(invalid(format!(
                "a data header record says {hlen} header bytes (it holds {}) and {plen} payload bytes",
                header.len()
            )));
        }
        let header = header.to_vec();
        // each piece is read into place without zeroing the memory first, and opened there
        let plen = plen as usize;
        let mut payload = Vec::with_capacity(plen);
        while payload.len() < plen {
            let piece = PIECE.min(plen - payload.len());
            let len4 = self
                .record_len()
                .await?
                .ok_or(io::ErrorKind::UnexpectedEof)?;
            if u32::from_le_bytes(len4) as usize != piece + TAG_LEN {
                return Err(invalid(format!(
                    "a data record of {} bytes where one of {} was due",
                    u32::from_le_bytes(len4),
                    piece + TAG_LEN
                )));
            }
            let start = payload.len();
            while payload.len() < start + piece {
                let want = (start + piece - payload.len()) as u64;
                if (&mut self.stream).take(want).read_buf(&mut payload).await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            let mut tag = [0u8; TAG_LEN];
            self.stream.read_exact(&mut tag).await?;
            self.open(len4, &mut payload[start..], &tag)?;
        }
        Ok(Some((header, payload)))
    }
}

/// Accepts data connections until the transport stops.
pub(super) async fn accept(listener: TcpListener, tickets: Arc<Tickets>, shared: Weak<Shared>) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("data listener: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if shared.strong_count() == 0 {
            break;
        }
        tokio::spawn(serve(stream, from, tickets.clone(), shared.clone()));
    }
}

async fn serve(
    mut stream: TcpStream,
    from: SocketAddr,
    tickets: Arc<Tickets>,
    shared: Weak<Shared>,
) {
    let mut id = [0u8; ID_LEN];
    // a caller sends its ticket id at once; a connection that idles gets no more time
    let read = tokio::time::timeout(PRESENT_WITHIN, stream.read_exact(&mut id)).await;
    if !matches!(read, Ok(Ok(_))) {
        tracing::debug!(%from, "a data connection closed before presenting a ticket");
        return;
    }
    let Some((node, ticket)) = tickets.redeem(&id) else {
        tracing::warn!(%from, "refused a data connection: its ticket is unknown, used or expired");
        return;
    };
    let _ = stream.set_nodelay(true);
    let mut sealed = Sealed::new(stream, ticket.to_caller, ticket.to_holder);
    let result: io::Result<()> = async {
        while let Some((header, payload)) = sealed.recv().await? {
            let request = ChunkRequest::decode(&header, Wire::V2)?;
            let Some(shared) = shared.upgrade() else {
                return Ok(());
            };
            // the libp2p connection vouches for the peer: a node disconnected (removed
            // from the book, or gone) is not served on connections it opened before
            if !shared.node_connected(&node) {
                return Err(invalid(format!(
                    "{node} is no longer connected on the request channel"
                )));
            }
            let (reply, out) = match request {
                ChunkRequest::Call { protocol } => call(&shared, &node, &protocol, payload).await,
                request => {
                    let store = shared.store.clone();
                    drop(shared);
                    tokio::task::spawn_blocking(move || {
                        super::chunks::run_local(&*store, Wire::V2, request, payload)
                    })
                    .await
                    .map_err(|e| invalid(format!("chunk task failed: {e}")))?
                }
            };
            sealed.send(&reply.encode(Wire::V2)?, &out).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(%node, %from, "data connection ended: {e}");
    }
}

/// Runs a request-channel call that came on the data path: its protocol's handler, as
/// the libp2p request channel would.
async fn call(
    shared: &Shared,
    caller: &NodeId,
    protocol: &str,
    body: Vec<u8>,
) -> (ChunkResponse, Vec<u8>) {
    let handler = shared
        .handlers
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(protocol)
        .cloned();
    match handler {
        None => (ChunkResponse::NoHandler, Vec::new()),
        Some(handler) => match handler(caller.clone(), body).await {
            Ok(answer) => (ChunkResponse::Replied, answer),
            Err(e) => (ChunkResponse::Failed(e), Vec::new()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (Sealed, Sealed) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ticket = Ticket::fresh(addr.port()).unwrap();
        let again = Ticket::decode(&ticket.encode()).unwrap();
        let (caller, accepted) = tokio::join!(again.connect(addr.ip()), listener.accept());
        let (mut stream, _) = accepted.unwrap();
        let mut id = [0u8; ID_LEN];
        stream.read_exact(&mut id).await.unwrap();
        assert_eq!(id, ticket.id);
        (
            caller.unwrap(),
            Sealed::new(stream, ticket.to_caller, ticket.to_holder),
        )
    }

    /// An idle connection the other end closed (a restarted peer) is seen closed before
    /// it is used; one still open is kept.
    #[tokio::test]
    async fn an_idle_connection_closed_by_the_peer_is_not_reused() {
        let (a, b) = pair().await;
        assert!(a.is_open());
        drop(b);
        let deadline = Instant::now() + Duration::from_secs(5);
        while a.is_open() {
            assert!(Instant::now() < deadline, "the close never showed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A payload given in parts arrives as their concatenation, records spanning parts.
    #[tokio::test]
    async fn a_payload_in_parts_arrives_whole() {
        let (mut a, mut b) = pair().await;
        let one: Vec<u8> = (0..PIECE + 1000).map(|i| (i % 253) as u8).collect();
        let two: Vec<u8> = (0..PIECE - 10).map(|i| (i % 7) as u8).collect();
        for parts in [
            vec![&b"head"[..], &one[..], &[][..], &two[..], &[9u8][..]],
            vec![&[][..], &[][..]],
            vec![&two[..PIECE - 20], &one[..20]],
        ] {
            a.send_parts(b"h", &parts).await.unwrap();
            let (h, p) = b.recv().await.unwrap().unwrap();
            assert_eq!(h, b"h");
            assert_eq!(p, parts.concat());
        }
    }

    #[tokio::test]
    async fn records_go_both_ways_and_close_cleanly() {
        let (mut a, mut b) = pair().await;
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let huge_header = vec![1u8; MAX_HEADER as usize + 1];
        for (h, p) in [
            (&b"head"[..], &big[..]),
            (b"", b""),
            (b"x", &huge_header[..]),
        ] {
            a.send(h, p).await.unwrap();
            let (h2, p2) = b.recv().await.unwrap().unwrap();
            assert_eq!((&h2[..], &p2[..]), (h, p));
            // a header over the limit is refused before anything is sent
            let swapped = b.send(p, h).await;
            assert_eq!(swapped.is_err(), p.len() > MAX_HEADER as usize);
            if swapped.is_ok() {
                let (h3, p3) = a.recv().await.unwrap().unwrap();
                assert_eq!((&h3[..], &p3[..]), (p, h));
            }
            b.send(&h2, &p2[p2.len() / 2..]).await.unwrap();
            let (h3, p3) = a.recv().await.unwrap().unwrap();
            assert_eq!((&h3[..], &p3[..]), (h, &p[p.len() / 2..]));
        }
        drop(a);
        assert!(b.recv().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_changed_record_fails_authentication() {
        let (mut a, mut b) = pair().await;
        // a message sealed under the caller's key: a header record and one payload record
        a.send(b"head", b"payload").await.unwrap();
        let mut raw = vec![0u8; (4 + 4 + TRAILER_LEN + TAG_LEN) + (4 + 7 + TAG_LEN)];
        b.stream.read_exact(&mut raw).await.unwrap();
        for (at, what) in [
            (6, "the header record"),
            (raw.len() - 20, "the payload record"),
        ] {
            let (mut c, mut d) = pair().await;
            d.open_key = a.seal_key;
            let mut changed = raw.clone();
            changed[at] ^= 1;
            c.stream.write_all(&changed).await.unwrap();
            let err = d.recv().await.unwrap_err();
            assert!(
                err.to_string().contains("failed authentication"),
                "{what}: {err}"
            );
        }
        // the message unchanged opens
        let (mut e, mut f) = pair().await;
        f.open_key = a.seal_key;
        e.stream.write_all(&raw).await.unwrap();
        let (h, p) = f.recv().await.unwrap().unwrap();
        assert_eq!((&h[..], &p[..]), (&b"head"[..], &b"payload"[..]));
    }

    /// A port that drops connections (here: a listener whose accept queue is full, which
    /// drops new SYNs as a firewall would) fails the connect in `CONNECT_WITHIN`, not at the
    /// end of the caller's whole chunk timeout.
    #[tokio::test]
    async fn a_port_that_drops_connections_fails_fast() {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        // fill the queue: nothing is ever accepted
        let mut held = Vec::new();
        let ticket = Ticket::fresh(addr.port()).unwrap();
        let started = Instant::now();
        let err = loop {
            match ticket.connect(addr.ip()).await {
                Ok(conn) => held.push(conn),
                Err(e) => break e,
            }
            assert!(held.len() < 64, "the accept queue never filled");
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(
            started.elapsed() < CONNECT_WITHIN * 3,
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_ticket_is_redeemed_once_and_not_after_its_lifetime() {
        let tickets = Tickets::default();
        let t = tickets.issue(NodeId("n1".into()), 7).unwrap();
        assert_eq!(tickets.redeem(&t.id).map(|(n, _)| n.0), Some("n1".into()));
        assert!(tickets.redeem(&t.id).is_none(), "redeemed twice");
        let old = tickets.issue(NodeId("n1".into()), 7).unwrap();
        tickets.issued.lock().unwrap().get_mut(&old.id).unwrap().2 =
            Instant::now() - TICKET_LIFETIME;
        assert!(tickets.redeem(&old.id).is_none(), "an expired ticket");
        assert!(Ticket::decode(&[0u8; 5]).is_err());
    }
}
