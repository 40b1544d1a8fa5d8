//! The byte stream under one fetcher connection: plain TCP, or (with the `tls` feature) rustls
//! over TCP, fed by the event loop.
//!
//! rustls does no I/O of its own: it turns plaintext into TLS records and back, and the caller
//! moves the records over the socket. [`Transport`] wraps a non-blocking mio `TcpStream`, with or
//! without a rustls `ClientConnection`, behind `read` / `write` calls that behave like the
//! socket's own (`WouldBlock` when the socket would block), so the fetcher's connection code is
//! the same for both schemes.
//!
//! Trust: Mozilla's root certificates (compiled in through `webpki-roots`, so a static binary
//! on an appliance with no `/etc/ssl` still works) plus, optionally, the CA certificates of a
//! PEM file (`fetch.tls_ca_file`, for a private CA), and optionally a client certificate for
//! servers that require mutual TLS (`fetch.tls_client_cert` / `fetch.tls_client_key`).
//!
//! Encryption runs on the I/O thread: the one piece of CPU work there that cannot move, since
//! the TLS record layer sits between the socket and the HTTP framing.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;

#[cfg(feature = "tls")]
pub use tls::client_config;
/// Shared with the receive endpoint's TLS ([`crate::ingest::listen::tls`]).
#[cfg(feature = "tls")]
pub(crate) use tls::{bad_file, read_certs};

#[cfg(feature = "tls")]
mod tls {
    use std::fmt;
    use std::io;
    use std::path::Path;
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::{ClientConfig, RootCertStore};

    use crate::config::FetchConfig;
    use crate::error::{Error, Result};

    /// Builds the client configuration for every `https://` connection of a run: the roots, the
    /// optional client certificate, HTTP/1.1 by ALPN. A missing or unreadable PEM file fails here,
    /// before any request, naming the option and the path.
    pub fn client_config(cfg: &FetchConfig) -> Result<Arc<ClientConfig>> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = &cfg.tls_ca_file {
            let key = "fetch.tls_ca_file";
            for cert in read_certs(key, path)? {
                roots.add(cert).map_err(|e| {
                    bad_file(key, path, format!("not a usable CA certificate: {e}"))
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config("fetch.tls", e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match (&cfg.tls_client_cert, &cfg.tls_client_key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs("fetch.tls_client_cert", cert)?;
                let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    bad_file(
                        "fetch.tls_client_key",
                        key,
                        format!("no usable private key: {e}"),
                    )
                })?;
                builder
                    .with_client_auth_cert(chain, private)
                    .map_err(|e| bad_file("fetch.tls_client_key", key, e.to_string()))?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The certificates of the PEM file `path` (the option `key`); none or an unreadable file
    /// is an error naming both.
    pub(crate) fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| bad_file(key, path, e.to_string()))?;
        if certs.is_empty() {
            return Err(bad_file(
                key,
                path,
                "no PEM certificates in the file".into(),
            ));
        }
        Ok(certs)
    }

    /// A configuration error naming the option `key` and its file `path`.
    pub(crate) fn bad_file(key: &str, path: &Path, why: String) -> Error {
        Error::config(key, format!("{}: {why}", path.display()))
    }

    /// A TLS failure (handshake, certificate, protocol): carried inside an `io::Error` so that the
    /// fetcher can tell it from socket errors and fail the request at once (a retry would meet the
    /// same certificate).
    #[derive(Debug)]
    pub struct TlsFailure(pub rustls::Error);

    impl fmt::Display for TlsFailure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "TLS: {}", self.0)?;
            if matches!(
                self.0,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            ) {
                // Also when fetch.tls_ca_file is set: then it holds the wrong CA.
                f.write_str(
                    " (issued by no CA trusted here: a private CA's certificate goes in fetch.tls_ca_file)",
                )?;
            }
            Ok(())
        }
    }

    impl std::error::Error for TlsFailure {}

    /// The TLS failure inside `e`, if it is one.
    pub fn tls_failure(e: &io::Error) -> Option<&TlsFailure> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<TlsFailure>())
    }
}

/// A connection's byte stream: plain TCP, or TLS over TCP.
pub enum Transport {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`.
    #[cfg(feature = "tls")]
    Tls {
        /// The socket.
        tcp: TcpStream,
        /// The TLS state machine (boxed: it is large, and most connections are plain).
        tls: Box<rustls::ClientConnection>,
        /// The socket reached end of file.
        eof: bool,
        /// The peer closed the TCP connection without a close_notify alert.
        cut: bool,
    },
}

impl Transport {
    #[cfg(feature = "tls")]
    /// Starts TLS for `server` over `tcp` (the handshake proceeds as the loop reads and writes).
    pub fn tls(
        tcp: TcpStream,
        config: &std::sync::Arc<rustls::ClientConfig>,
        server: &str,
    ) -> io::Result<Transport> {
        let name = rustls::pki_types::ServerName::try_from(server.to_string()).map_err(|e| {
            io::Error::other(tls::TlsFailure(rustls::Error::General(format!(
                "`{server}` is not a valid TLS server name: {e}"
            ))))
        })?;
        let conn = rustls::ClientConnection::new(std::sync::Arc::clone(config), name)
            .map_err(|e| io::Error::other(tls::TlsFailure(e)))?;
        Ok(Transport::Tls {
            tcp,
            tls: Box::new(conn),
            eof: false,
            cut: false,
        })
    }

    /// The socket, to register with or deregister from the poll.
    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(tcp) => tcp,
            #[cfg(feature = "tls")]
            Transport::Tls { tcp, .. } => tcp,
        }
    }

    /// The socket's pending error (a failed non-blocking connect).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Transport::Plain(tcp) => tcp.take_error(),
            #[cfg(feature = "tls")]
            Transport::Tls { tcp, .. } => tcp.take_error(),
        }
    }

    /// The peer's address; `NotConnected` while a connect is still in progress.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Transport::Plain(tcp) => tcp.peer_addr(),
            #[cfg(feature = "tls")]
            Transport::Tls { tcp, .. } => tcp.peer_addr(),
        }
    }

    /// Sends TLS records waiting to go out (handshake messages, encrypted requests). `Ok` when
    /// none are left; `WouldBlock` when the socket is full (a writable event will follow).
    pub fn flush_pending(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(_) => Ok(()),
            #[cfg(feature = "tls")]
            Transport::Tls { tcp, tls, .. } => flush_tls(tcp, tls),
        }
    }

    /// Whether the peer ended a TLS connection by closing TCP without a close_notify alert:
    /// the end of the stream is then not authenticated, and anyone on the path could have cut
    /// it, so a body delimited by the close cannot be trusted as whole (the truncation attack).
    pub fn closed_without_notify(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            #[cfg(feature = "tls")]
            Transport::Tls { cut, .. } => *cut,
        }
    }

    /// Says goodbye politely on TLS (close_notify), best effort; the socket closes on drop.
    pub fn shutdown(&mut self) {
        #[cfg(feature = "tls")]
        if let Transport::Tls { tcp, tls, .. } = self {
            tls.send_close_notify();
            let _ = flush_tls(tcp, tls);
        }
    }
}

/// Sends the TLS records rustls has waiting (a client's or a server's connection); `WouldBlock`
/// when the socket is full.
#[cfg(feature = "tls")]
pub(crate) fn flush_tls<Side>(
    tcp: &mut TcpStream,
    tls: &mut rustls::ConnectionCommon<Side>,
) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(tcp) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(feature = "tls")]
fn pending_ok(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        other => other,
    }
}

impl Read for Transport {
    /// Plaintext bytes; `Ok(0)` at the end of the stream.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.read(buf),
            #[cfg(feature = "tls")]
            Transport::Tls { tcp, tls, eof, cut } => read_tls(tcp, tls, eof, cut, buf),
        }
    }
}

/// Decrypted bytes of a TLS connection. A peer that closes the TCP connection without a
/// close_notify alert also reads as the end: many HTTP servers do that, and the HTTP framing
/// (Content-Length, chunked) decides whether the response was complete; `cut` records it, so
/// that a body delimited by the close is not taken as complete (see `Conn::eof`).
#[cfg(feature = "tls")]
fn read_tls(
    tcp: &mut TcpStream,
    tls: &mut rustls::ClientConnection,
    eof: &mut bool,
    cut: &mut bool,
    buf: &mut [u8],
) -> io::Result<usize> {
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                *cut = true;
                return Ok(0);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if *eof {
                    return Ok(0);
                }
            }
            Err(e) => return Err(e),
        }
        match tls.read_tls(tcp) {
            Ok(0) => *eof = true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if let Err(e) = tls.process_new_packets() {
            // Send the alert that explains the failure to the server, then give up.
            let _ = flush_tls(tcp, tls);
            return Err(io::Error::other(tls::TlsFailure(e)));
        }
        // Handshake replies, or the request held back until the handshake finished.
        pending_ok(flush_tls(tcp, tls))?;
    }
}

impl Write for Transport {
    /// On TLS the bytes are encrypted into rustls's buffer and sent as far as the socket takes
    /// them; what is left goes out on [`Transport::flush_pending`] at the next writable event.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.write(buf),
            #[cfg(feature = "tls")]
            Transport::Tls { tcp, tls, .. } => {
                flush_tls(tcp, tls)?;
                let n = tls.writer().write(buf)?;
                pending_ok(flush_tls(tcp, tls))?;
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_pending()
    }
}

/// The text of the TLS failure inside `e` (a handshake or certificate problem), if it is one.
pub fn tls_error_text(e: &io::Error) -> Option<String> {
    #[cfg(feature = "tls")]
    {
        tls::tls_failure(e).map(ToString::to_string)
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = e;
        None
    }
}
