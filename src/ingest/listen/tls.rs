//! TLS on the receive endpoint (`listen.tls_cert`, `listen.tls_key`, optionally
//! `listen.tls_client_ca`): a rustls `ServerConnection` per accepted connection, fed by the
//! event loop.
//!
//! rustls does no I/O of its own: [`Session::read`] moves TLS records from the socket into it
//! and its plaintext into the connection's buffer, for the same HTTP framing as plain
//! connections; [`Session::write`] encrypts an answer and sends it as far as the socket takes
//! it, the rest at the next writable event (connections are registered for both). A handshake
//! is part of the wait for a request's head, so it counts against `listen.header_timeout`.
//! Without the `tls` feature a [`Session`] cannot exist, and setting the options fails the run.

#[cfg(feature = "tls")]
pub(super) use on::{server_config, ServerConfig, Session};

#[cfg(not(feature = "tls"))]
pub(super) use off::{server_config, ServerConfig, Session};

/// How a read of a TLS connection ended.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(super) enum ReadEnd {
    /// The socket has nothing more for now (or the buffer reached `limit`).
    Open,
    /// The peer closed the connection.
    Closed,
    /// The TLS handshake or a record failed: the connection must close ([`Session::close`]
    /// sends the alert that says why).
    Failed(String),
}

#[cfg(feature = "tls")]
mod on {
    use std::io::{self, Read, Write};
    use std::sync::Arc;

    use mio::net::TcpStream;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::server::WebPkiClientVerifier;
    use rustls::RootCertStore;

    use super::ReadEnd;
    use crate::error::{Error, Result};
    use crate::ingest::http::transport::{bad_file, flush_tls as flush, read_certs};
    use crate::ingest::listen::ListenOptions;

    /// The server configuration every TLS connection of a run shares.
    pub(in crate::ingest::listen) type ServerConfig = Arc<rustls::ServerConfig>;

    /// Reads the certificate, key and client CA files: `None` when TLS is off. A missing,
    /// unreadable or invalid file fails here, at start, naming the option and the path.
    pub(in crate::ingest::listen) fn server_config(
        opts: &ListenOptions,
    ) -> Result<Option<ServerConfig>> {
        let (Some(cert), Some(key)) = (&opts.tls_cert, &opts.tls_key) else {
            return Ok(None);
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config("listen.tls_cert", e.to_string()))?;
        let builder = match &opts.tls_client_ca {
            Some(path) => {
                let name = "listen.tls_client_ca";
                let mut roots = RootCertStore::empty();
                for c in read_certs(name, path)? {
                    roots.add(c).map_err(|e| {
                        bad_file(name, path, format!("not a usable CA certificate: {e}"))
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| bad_file(name, path, e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let chain = read_certs("listen.tls_cert", cert)?;
        let private = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| bad_file("listen.tls_key", key, format!("no usable private key: {e}")))?;
        let mut config = builder
            .with_single_cert(chain, private)
            .map_err(|e| bad_file("listen.tls_key", key, e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Arc::new(config)))
    }

    /// One connection's TLS state (boxed: it is large, and plain connections carry none).
    pub(in crate::ingest::listen) struct Session(Box<rustls::ServerConnection>);

    impl Session {
        /// A session for a connection just accepted; the handshake proceeds as the loop reads.
        pub(in crate::ingest::listen) fn new(config: &ServerConfig) -> Option<Session> {
            // Fails only when the configuration is unusable, which building it ruled out.
            rustls::ServerConnection::new(Arc::clone(config))
                .ok()
                .map(|c| Session(Box::new(c)))
        }

        /// Whether the handshake is still under way.
        pub(in crate::ingest::listen) fn handshaking(&self) -> bool {
            self.0.is_handshaking()
        }

        /// Reads what the socket has, decrypts it, and appends the plaintext to `buf` until it
        /// holds more than `limit` bytes; sends the handshake's replies on the way.
        pub(in crate::ingest::listen) fn read(
            &mut self,
            tcp: &mut TcpStream,
            buf: &mut Vec<u8>,
            limit: usize,
        ) -> ReadEnd {
            let tls = &mut self.0;
            let mut chunk = [0u8; 16 << 10];
            loop {
                // The plaintext rustls holds first: its buffer is bounded, so it must be emptied
                // before more records are read.
                loop {
                    if buf.len() > limit {
                        return flushed(tcp, tls, ReadEnd::Open);
                    }
                    match tls.reader().read(&mut chunk) {
                        Ok(0) => return ReadEnd::Closed,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => return ReadEnd::Closed,
                    }
                }
                match tls.read_tls(tcp) {
                    Ok(0) => return ReadEnd::Closed,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return flushed(tcp, tls, ReadEnd::Open)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return ReadEnd::Closed,
                }
                if let Err(e) = tls.process_new_packets() {
                    // The alert that tells the client why goes with the close, after the
                    // caller counted the failure.
                    return ReadEnd::Failed(e.to_string());
                }
            }
        }

        /// Encrypts `out[*at..]` and sends what is pending. `Ok(true)` once all of it is on
        /// the socket; `Ok(false)` while the socket is full (a writable event follows).
        pub(in crate::ingest::listen) fn write(
            &mut self,
            tcp: &mut TcpStream,
            out: &[u8],
            at: &mut usize,
        ) -> io::Result<bool> {
            let tls = &mut self.0;
            loop {
                if *at < out.len() {
                    *at += tls.writer().write(&out[*at..])?;
                }
                match flush(tcp, tls) {
                    Ok(()) if *at == out.len() => return Ok(true),
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) => return Err(e),
                }
            }
        }

        /// Sends the TLS records waiting (handshake replies); `Err` when the socket failed.
        pub(in crate::ingest::listen) fn send_pending(
            &mut self,
            tcp: &mut TcpStream,
        ) -> io::Result<()> {
            match flush(tcp, &mut self.0) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                other => other,
            }
        }

        /// Says goodbye (close_notify), best effort, before the socket closes.
        pub(in crate::ingest::listen) fn close(&mut self, tcp: &mut TcpStream) {
            self.0.send_close_notify();
            let _ = flush(tcp, &mut self.0);
        }
    }

    /// `end`, after the handshake's replies are sent (a failed socket closes the connection).
    fn flushed(tcp: &mut TcpStream, tls: &mut rustls::ServerConnection, end: ReadEnd) -> ReadEnd {
        match flush(tcp, tls) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => ReadEnd::Closed,
            _ => end,
        }
    }
}

#[cfg(not(feature = "tls"))]
mod off {
    use std::io;

    use mio::net::TcpStream;

    use super::ReadEnd;
    use crate::error::{Error, Result};
    use crate::ingest::listen::ListenOptions;

    /// No TLS in this build: nothing to configure.
    pub(in crate::ingest::listen) type ServerConfig = std::convert::Infallible;

    /// Fails when TLS is asked of a build without it.
    pub(in crate::ingest::listen) fn server_config(
        opts: &ListenOptions,
    ) -> Result<Option<ServerConfig>> {
        match opts.tls_cert {
            Some(_) => Err(Error::config(
                "listen.tls_cert",
                "this build has no TLS (cargo feature `tls`)",
            )),
            None => Ok(None),
        }
    }

    /// Never built without the `tls` feature.
    pub(in crate::ingest::listen) enum Session {}

    impl Session {
        pub(in crate::ingest::listen) fn new(config: &ServerConfig) -> Option<Session> {
            match *config {}
        }
        pub(in crate::ingest::listen) fn handshaking(&self) -> bool {
            match *self {}
        }
        pub(in crate::ingest::listen) fn read(
            &mut self,
            _: &mut TcpStream,
            _: &mut Vec<u8>,
            _: usize,
        ) -> ReadEnd {
            match *self {}
        }
        pub(in crate::ingest::listen) fn write(
            &mut self,
            _: &mut TcpStream,
            _: &[u8],
            _: &mut usize,
        ) -> io::Result<bool> {
            match *self {}
        }
        pub(in crate::ingest::listen) fn send_pending(
            &mut self,
            _: &mut TcpStream,
        ) -> io::Result<()> {
            match *self {}
        }
        pub(in crate::ingest::listen) fn close(&mut self, _: &mut TcpStream) {
            match *self {}
        }
    }
}
