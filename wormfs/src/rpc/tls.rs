//! The client↔node channel: TLS 1.3 with an external pre-shared key per user (OpenSSL;
//! rustls has no external-PSK support). The PSK identity is the user name, so a completed
//! handshake both encrypts the connection and authenticates the user to the node and the
//! node to the user (only a node that knows the key can finish it). Key exchange is
//! `psk_dhe_ke` (ECDHE under the PSK), so a key stolen later does not decrypt recorded
//! traffic. No certificates are involved, and a node accepts nothing else: a plaintext
//! client or one without an identity fails the handshake.
//!
//! Only the SHA-256 TLS 1.3 suites carry external PSKs in OpenSSL.

use super::identity::Identity;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

/// The TLS 1.3 suites offered: the ones that carry an external PSK.
const SUITES: &str = "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256";

/// The socket under a TLS stream, buffered both ways. OpenSSL reads each record's header
/// and body with two reads and writes each 16 KiB record with its own write; the buffers
/// turn those into one system call per [`SOCKET_BUFFER`] (without them, 1 GiB sent cost
/// about 170,000 reads on the receiving side). Every writer above (the handshake, HTTP/2)
/// flushes when it waits for an answer.
pub type Socket = tokio::io::BufStream<TcpStream>;

/// Bytes of each [`Socket`] buffer.
pub const SOCKET_BUFFER: usize = 256 << 10;

fn buffered(tcp: TcpStream) -> Socket {
    tokio::io::BufStream::with_capacity(SOCKET_BUFFER, SOCKET_BUFFER, tcp)
}

/// How long a handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Builds the client side for `identity`.
pub fn connector(identity: &Identity) -> io::Result<SslConnector> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(io::Error::other)?;
    b.set_min_proto_version(Some(SslVersion::TLS1_3))
        .map_err(io::Error::other)?;
    b.set_ciphersuites(SUITES).map_err(io::Error::other)?;
    // the PSK authenticates the node; there is no certificate to check
    b.set_verify(SslVerifyMode::NONE);
    let (user, key) = (identity.user.clone().into_bytes(), identity.key);
    b.set_psk_client_callback(move |_ssl, _hint, id_out, psk_out| {
        // a C string: the name and a NUL
        if user.len() >= id_out.len() || psk_out.len() < key.len() {
            return Ok(0);
        }
        id_out[..user.len()].copy_from_slice(&user);
        id_out[user.len()] = 0;
        psk_out[..key.len()].copy_from_slice(&key);
        Ok(key.len())
    });
    Ok(b.build())
}

/// Opens a TCP connection to `host:port` and completes the TLS-PSK handshake over it.
pub async fn connect(
    connector: &SslConnector,
    host: &str,
    port: u16,
) -> io::Result<SslStream<Socket>> {
    let tcp = TcpStream::connect((host, port)).await?;
    // small replies must not wait for Nagle's algorithm
    tcp.set_nodelay(true)?;
    let ssl = connector
        .configure()
        .map_err(io::Error::other)?
        .use_server_name_indication(false)
        .verify_hostname(false)
        .into_ssl(host)
        .map_err(io::Error::other)?;
    let mut stream = SslStream::new(ssl, buffered(tcp)).map_err(io::Error::other)?;
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, Pin::new(&mut stream).connect()).await {
        Ok(Ok(())) => Ok(stream),
        Ok(Err(e)) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the node at {host}:{port} refused this identity's TLS handshake ({e}): the \
                 user is unknown there, was removed, or its key was rotated"
            ),
        )),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the TLS handshake with {host}:{port} timed out"),
        )),
    }
}

/// A tonic connector for `identity`: every connection a channel opens is TLS-PSK.
pub fn tonic_connector(
    identity: Arc<Identity>,
) -> io::Result<
    impl tower::Service<
            tonic::transport::Uri,
            Response = hyper_util::rt::TokioIo<SslStream<Socket>>,
            Error = io::Error,
            Future = impl Send,
        > + Clone
        + Send
        + 'static,
> {
    let connector = Arc::new(connector(&identity)?);
    Ok(tower::service_fn(move |uri: tonic::transport::Uri| {
        let connector = connector.clone();
        async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::other(format!("`{uri}` has no host")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri
                .port_u16()
                .ok_or_else(|| io::Error::other(format!("`{uri}` has no port")))?;
            let stream = connect(&connector, &host, port).await?;
            Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    }))
}

#[cfg(feature = "node")]
pub use server::{incoming, KeyLookup, PskAcceptor, Session, SessionStream};

#[cfg(feature = "node")]
mod server {
    use super::*;
    use openssl::ssl::{Ssl, SslAcceptor, SslContext};
    use std::net::SocketAddr;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::TcpListener;

    debug_by_name!(PskAcceptor, SessionStream);

    /// Where the node finds a user's key during a handshake.
    pub trait KeyLookup: Send + Sync + 'static {
        /// The key of the user named `name`, if there is such a user.
        fn key_of(&self, name: &str) -> Option<[u8; 32]>;
    }

    /// What a client presented during a handshake, kept to explain a refusal.
    #[derive(Default)]
    enum Presented {
        #[default]
        Nothing,
        Unknown(String),
        Known(String, [u8; 32]),
    }

    /// The server side: accepts TLS-PSK handshakes for the users `keys` knows.
    pub struct PskAcceptor {
        ctx: SslContext,
        presented: openssl::ex_data::Index<Ssl, Presented>,
    }

    /// An authenticated client connection's identity: tonic hands it to every request on
    /// the connection (`Request::extensions`).
    #[derive(Clone)]
    pub struct Session {
        /// The user the handshake authenticated.
        pub user: String,
        /// The key it used (a rotated or removed user's connections are refused at their
        /// next call).
        pub key: [u8; 32],
        /// The client's address.
        pub peer: SocketAddr,
    }

    impl std::fmt::Debug for Session {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Session")
                .field("user", &self.user)
                .field("peer", &self.peer)
                .finish_non_exhaustive()
        }
    }

    impl PskAcceptor {
        /// An acceptor for the users `keys` knows.
        pub fn new(keys: Arc<dyn KeyLookup>) -> io::Result<PskAcceptor> {
            let presented = Ssl::new_ex_index::<Presented>().map_err(io::Error::other)?;
            let mut b = SslAcceptor::mozilla_modern_v5(SslMethod::tls_server())
                .map_err(io::Error::other)?;
            b.set_min_proto_version(Some(SslVersion::TLS1_3))
                .map_err(io::Error::other)?;
            b.set_ciphersuites(SUITES).map_err(io::Error::other)?;
            // no resumption: every connection is a full PSK handshake checked against the
            // users as they are now
            b.set_num_tickets(0).map_err(io::Error::other)?;
            b.set_psk_server_callback(move |ssl, identity, psk_out| {
                let name = identity
                    .map(|i| String::from_utf8_lossy(i).into_owned())
                    .unwrap_or_default();
                let key = keys.key_of(&name);
                let seen = match key {
                    Some(k) => Presented::Known(name, k),
                    None => Presented::Unknown(name),
                };
                if let Some(slot) = ssl.ex_data_mut(presented) {
                    *slot = seen;
                }
                match key {
                    Some(key) if psk_out.len() >= key.len() => {
                        psk_out[..key.len()].copy_from_slice(&key);
                        Ok(key.len())
                    }
                    _ => Ok(0),
                }
            });
            Ok(PskAcceptor {
                ctx: b.build().into_context(),
                presented,
            })
        }

        /// Completes the handshake on `tcp`: the authenticated session, or why the client
        /// was refused (naming the identity it presented and its address).
        pub async fn accept(
            &self,
            tcp: TcpStream,
            peer: SocketAddr,
        ) -> Result<SessionStream, String> {
            let mut ssl = Ssl::new(&self.ctx).map_err(|e| format!("TLS setup: {e}"))?;
            ssl.set_ex_data(self.presented, Presented::Nothing);
            let mut stream =
                SslStream::new(ssl, buffered(tcp)).map_err(|e| format!("TLS setup: {e}"))?;
            let result =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, Pin::new(&mut stream).accept()).await;
            let presented = match stream.ssl().ex_data(self.presented) {
                Some(Presented::Known(u, k)) => Some((true, u.clone(), *k)),
                Some(Presented::Unknown(u)) => Some((false, u.clone(), [0; 32])),
                _ => None,
            };
            match (result, presented) {
                (Ok(Ok(())), Some((true, user, key))) => Ok(SessionStream {
                    inner: stream,
                    session: Session { user, key, peer },
                }),
                (Ok(Ok(())), _) => Err(format!(
                    "refused client {peer}: the handshake completed without a user key"
                )),
                (Err(_), _) => Err(format!(
                    "refused client {peer}: no TLS handshake within {HANDSHAKE_TIMEOUT:?}"
                )),
                (Ok(Err(_)), Some((false, user, _))) => Err(format!(
                    "refused client {peer}: unknown user `{user}` (never added, or removed)"
                )),
                (Ok(Err(e)), Some((true, user, _))) => Err(format!(
                    "refused client {peer}: wrong key for user `{user}` ({e})"
                )),
                (Ok(Err(e)), None) => Err(format!(
                    "refused client {peer}: not a TLS-PSK client with a WormFS identity \
                     (plaintext, or no identity): {e}"
                )),
            }
        }
    }

    /// A client connection after its handshake.
    pub struct SessionStream {
        inner: SslStream<super::Socket>,
        session: Session,
    }

    impl SessionStream {
        /// Who is on the other end.
        pub fn session(&self) -> &Session {
            &self.session
        }
    }

    impl tonic::transport::server::Connected for SessionStream {
        type ConnectInfo = Session;
        fn connect_info(&self) -> Session {
            self.session.clone()
        }
    }

    impl AsyncRead for SessionStream {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for SessionStream {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.inner).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// Accepts connections on `listener` and completes their handshakes concurrently; the
    /// stream yields authenticated connections (for tonic's `serve_with_incoming`). Each
    /// refusal is one warning in the log, naming the identity presented and the peer.
    pub fn incoming(
        listener: TcpListener,
        acceptor: Arc<PskAcceptor>,
    ) -> impl tokio_stream::Stream<Item = io::Result<SessionStream>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<SessionStream>>(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    _ = tx.closed() => return,
                    r = listener.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!("accept a client connection: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let _ = tcp.set_nodelay(true);
                let (tx, acceptor) = (tx.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor.accept(tcp, peer).await {
                        Ok(s) => {
                            let _ = tx.send(Ok(s)).await;
                        }
                        Err(why) => tracing::warn!("{why}"),
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}
