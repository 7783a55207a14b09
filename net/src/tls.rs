//! TLS 1.3 between `sixpath-client` and `sixpath-server`: rustls with the
//! `ring` provider, TLS 1.3 only.
//!
//! - [`server_config`]: a certificate chain and key from PEM files;
//!   [`ServerTls`] the same, re-readable while the server runs.
//! - [`client_config`]: the server is trusted either by the SHA-256
//!   fingerprint of its certificate ([`ServerVerification::Pinned`], for
//!   self-signed certificates from `sixpath-server gen-cert`) or by a CA
//!   file ([`ServerVerification::CaFile`], web PKI path validation and name
//!   check).
//! - [`fingerprint`], [`format_fingerprint`], [`parse_fingerprint`]: the
//!   pin, printed as `sha256:AB:CD:…` and read with or without the prefix
//!   and the colons.
//! - [`generate_self_signed`]: a fresh self-signed certificate (ECDSA
//!   P-256) and its fingerprint.
//!
//! Both sides offer the ALPN identifier [`ALPN_SIXPATH`]; a server built
//! with it still accepts clients that send no ALPN extension.
//!
//! Resumption (RFC 8446 §2.2, §4.6.1): the server hands out stateless
//! session tickets, encrypted under a key that rotates every 6 hours and
//! valid for 12, so it keeps no state per client. The keys are random per
//! process ([`rustls::crypto::ring::Ticketer`]), or derived from a secret
//! the processes of a fleet share ([`ServerTlsOptions::ticket_secret`],
//! [`FleetTicketer`]), so that any of them resumes the others' tickets; a client keeps the tickets of its last 256 servers in the
//! [`ClientConfig`] it shares across connections. A resumed handshake skips
//! the certificate and its signature (a fresh ECDHE key exchange is still
//! made, `psk_dhe_ke`, so forward secrecy stays). [`Handshake::of`] tells
//! which kind a connection made.
//!
//! Early data (RFC 8446 §2.3): with [`ServerTlsOptions::max_early_data`]
//! the server takes the request a resuming client sends with its
//! `ClientHello` ([`client_config_with`]); [`early::accept`] hands it out
//! before the handshake completes and says when it may be a replay.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, CommonState, DigitallySignedStruct, HandshakeKind, RootCertStore, ServerConfig,
    SignatureScheme,
};
use sha2::{Digest, Sha256};

pub mod early;
mod tickets;

pub use rustls;
pub use tickets::FleetTicketer;
pub use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

/// The ALPN protocol identifier of sixpath's client–server link.
pub const ALPN_SIXPATH: &[u8] = b"sixpath";

/// Why a TLS configuration could not be built. Every variant that concerns
/// a file names it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate file could not be read, holds malformed PEM or no
    /// usable certificate.
    #[error("{}: {message}", path.display())]
    Cert {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A key file could not be read or holds malformed PEM or no key.
    #[error("{}: {message}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key does not belong to the certificate, or is of an unsupported
    /// kind.
    #[error("{} does not fit the certificate in {}: {source}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls found.
        source: rustls::Error,
    },
    /// A name for a new certificate is neither a DNS name nor an IP
    /// address.
    #[error("{0:?} is neither a DNS name nor an IP address")]
    BadName(String),
    /// A certificate could not be generated.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The rustls configuration could not be built.
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsError {
    /// The file at fault, if one is.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Cert { path, .. } | Self::Key { path, .. } => Some(path),
            Self::KeyMismatch { key, .. } => Some(key),
            Self::BadName(_) | Self::Generate(_) | Self::Rustls(_) => None,
        }
    }

    fn cert(path: &Path, message: impl Into<String>) -> Self {
        Self::Cert {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Which kind of TLS handshake a connection made, for its log line and
/// the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// A full handshake: certificate, signature and key exchange (a
    /// `HelloRetryRequest` round trip included).
    Full,
    /// A resumed handshake (a session ticket of an earlier connection):
    /// no certificate, no signature.
    Resumed,
}

impl Handshake {
    /// Every kind, in the order of counters indexed by `kind as usize`.
    pub const ALL: [Self; 2] = [Self::Full, Self::Resumed];

    /// The kind of a finished handshake; `None` while it is running.
    pub fn of(conn: &CommonState) -> Option<Self> {
        conn.handshake_kind().map(|k| match k {
            HandshakeKind::Full | HandshakeKind::FullWithHelloRetryRequest => Self::Full,
            HandshakeKind::Resumed => Self::Resumed,
        })
    }

    /// `full` or `resumed`: the log field's value and the metric label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Resumed => "resumed",
        }
    }
}

/// How a client decides to trust the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerVerification {
    /// Accept exactly a certificate whose DER has one of these SHA-256
    /// digests; names, dates and issuers are not checked (the pin is the
    /// trust decision), the handshake signature is.
    Pinned(Vec<[u8; 32]>),
    /// Trust anchors from this PEM file; the certificate chain and the
    /// server name are verified as on the web.
    CaFile(PathBuf),
}

/// The crypto provider: `ring`, with every algorithm it offers, AES-128-GCM
/// with SHA-256 first. A TLS 1.3 handshake runs its key schedule (HKDF,
/// RFC 8446 §7.1) through the suite's hash; most x86-64 and 64-bit Arm
/// processors have instructions for SHA-256 and few for SHA-384, and
/// AES-128 takes fewer rounds than AES-256 for bulk data. The server follows
/// the client's order, so other clients keep their preference.
fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

fn pem_message(e: &pem::Error, what: &str) -> String {
    match e {
        pem::Error::Io(e) => format!("cannot read: {e}"),
        pem::Error::NoItemsFound => format!("no {what} found in PEM"),
        e => format!("malformed PEM: {e}"),
    }
}

/// Every certificate in the PEM file `path`, in order; at least one.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::cert(path, pem_message(&e, "certificate")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::cert(path, pem_message(&e, "certificate")))?;
    if certs.is_empty() {
        return Err(TlsError::cert(
            path,
            "no certificate found in PEM (expected a \"BEGIN CERTIFICATE\" section)",
        ));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in the PEM file `path`.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.to_path_buf(),
        message: pem_message(&e, "private key (PKCS#8, RSA or EC PRIVATE KEY)"),
    })
}

/// A TLS 1.3 server configuration: the certificate chain in `cert_pem`
/// (end-entity first), the key in `key_pem`, and the ALPN protocols to
/// accept. A client that sends no ALPN extension is served; one that
/// offers only other protocols is refused (`no_application_protocol`).
pub fn server_config(
    cert_pem: &Path,
    key_pem: &Path,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    ServerTls::load(cert_pem, key_pem, alpn).map(|t| t.config)
}

/// Server TLS settings beyond the certificate.
#[derive(Clone, Default)]
pub struct ServerTlsOptions {
    /// Input keying material for session-ticket keys shared by every
    /// process given the same bytes ([`FleetTicketer`]); `None` draws
    /// random keys for this process alone.
    pub ticket_secret: Option<Vec<u8>>,
    /// Most bytes of TLS 1.3 early data accepted from a resuming client
    /// (RFC 8446 §4.2.10); 0 turns early data off. rustls accepts early
    /// data only with single-use tickets kept in this process (RFC 8446
    /// §8.1), so a non-zero size replaces the stateless tickets (and
    /// `ticket_secret`) with a cache of [`EARLY_DATA_SESSIONS`] sessions.
    pub max_early_data: u32,
}

/// Sessions kept for resumption with early data: a client's ticket is
/// forgotten once used or when newer ones push it out.
pub const EARLY_DATA_SESSIONS: usize = 16 * 1024;

impl std::fmt::Debug for ServerTlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTlsOptions")
            .field("ticket_secret", &self.ticket_secret.as_ref().map(|_| ".."))
            .field("max_early_data", &self.max_early_data)
            .finish()
    }
}

/// A server's TLS configuration whose certificate and key can be re-read
/// from their files while it runs (certificate rotation): handshakes
/// started after [`ServerTls::reload`] use the new pair.
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    certs: Arc<CertFiles>,
}

impl ServerTls {
    /// Loads the chain in `cert_pem` (end-entity first) and the key in
    /// `key_pem`, offering the ALPN protocols `alpn` (see
    /// [`server_config`]).
    pub fn load(cert_pem: &Path, key_pem: &Path, alpn: &[&[u8]]) -> Result<Self, TlsError> {
        Self::load_with(cert_pem, key_pem, alpn, &ServerTlsOptions::default())
    }

    /// As [`ServerTls::load`], with `options`.
    pub fn load_with(
        cert_pem: &Path,
        key_pem: &Path,
        alpn: &[&[u8]],
        options: &ServerTlsOptions,
    ) -> Result<Self, TlsError> {
        let provider = provider();
        let current = CertFiles::read(cert_pem, key_pem, &provider)?;
        let certs = Arc::new(CertFiles {
            cert: cert_pem.to_path_buf(),
            key: key_pem.to_path_buf(),
            provider: Arc::clone(&provider),
            current: RwLock::new(current),
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certs) as Arc<dyn ResolvesServerCert>);
        // Stateless tickets: resumption for any number of clients without
        // a server-side cache (the default stateful cache holds 256).
        if options.max_early_data > 0 {
            // Early data needs the ticketer off (rustls, RFC 8446 §8.1).
            config.session_storage =
                rustls::server::ServerSessionMemoryCache::new(EARLY_DATA_SESSIONS);
            config.max_early_data_size = options.max_early_data;
            // The answer to a request served from early data leaves with
            // the server's flight (0.5-RTT data, RFC 8446 §2.3) instead of
            // a round trip later, after the client's Finished: what early
            // data is for. No client is authenticated by TLS here (the
            // SOCKS6 request carries the credentials), so the Finished
            // adds nothing the answer waits for; a replay is refused by
            // its spent idempotence token, and its answer, if the original
            // lost the race, is sealed with keys only the client holds.
            config.send_half_rtt_data = true;
        } else {
            config.ticketer = match &options.ticket_secret {
                Some(secret) => Arc::new(FleetTicketer::new(secret)),
                None => rustls::crypto::ring::Ticketer::new()?,
            };
        }
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            config: Arc::new(config),
            certs,
        })
    }

    /// The rustls configuration.
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }

    /// Whether resuming clients may send early data
    /// ([`ServerTlsOptions::max_early_data`]); then accept connections with
    /// [`early::accept`] to read it.
    pub fn early_data(&self) -> bool {
        self.config.max_early_data_size > 0
    }

    /// An acceptor for this configuration.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config())
    }

    /// The SHA-256 fingerprint of the end-entity certificate in use.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.certs
            .current()
            .end_entity_cert()
            .map_or([0; 32], |c| fingerprint(c))
    }

    /// Re-reads both files. On error the pair in use stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = CertFiles::read(&self.certs.cert, &self.certs.key, &self.certs.provider)?;
        *self
            .certs
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }
}

/// The certificate files behind a [`ServerTls`], and the pair read last.
#[derive(Debug)]
struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertFiles {
    fn read(
        cert: &Path,
        key: &Path,
        provider: &CryptoProvider,
    ) -> Result<Arc<CertifiedKey>, TlsError> {
        let chain = load_certs(cert)?;
        let der = load_key(key)?;
        // Checks that the key is the certificate's.
        CertifiedKey::from_der(chain, der, provider)
            .map(Arc::new)
            .map_err(|source| TlsError::KeyMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                source,
            })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A TLS 1.3 client configuration trusting the server as `verify` says and
/// offering the ALPN protocols `alpn`. Fails only when a CA file cannot be
/// loaded.
pub fn client_config(
    verify: ServerVerification,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_with(verify, alpn, false)
}

/// As [`client_config`]; with `early_data`, a client resuming with a
/// ticket that allows it may send TLS 1.3 early data (connect with
/// `TlsConnector::early_data(true)` and write before the handshake ends;
/// data the server refuses is sent again after the handshake).
pub fn client_config_with(
    verify: ServerVerification,
    alpn: &[&[u8]],
    early_data: bool,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let mut config = match verify {
        ServerVerification::Pinned(pins) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier { pins, provider }))
            .with_no_client_auth(),
        ServerVerification::CaFile(path) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs(&path)? {
                roots.add(cert).map_err(|e| {
                    TlsError::cert(&path, format!("not a usable CA certificate: {e}"))
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.enable_early_data = early_data;
    Ok(Arc::new(config))
}

/// Accepts exactly the pinned certificates, and checks that the server
/// proves possession of the certificate's key (the TLS 1.3
/// `CertificateVerify` signature) with the provider's algorithms.
#[derive(Debug)]
struct PinnedVerifier {
    pins: Vec<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

/// The server's certificate is not one of the pinned ones.
#[derive(thiserror::Error)]
#[error("server certificate {0} is not the pinned one")]
struct NotPinned(String);

/// rustls shows the error of a custom verifier with `Debug`: make that the
/// readable message.
impl std::fmt::Debug for NotPinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = fingerprint(end_entity);
        if self.pins.contains(&actual) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(NotPinned(
                    format_fingerprint(&actual),
                )))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The SHA-256 digest of a certificate's DER encoding: what a client pins.
pub fn fingerprint(cert_der: &[u8]) -> [u8; 32] {
    Sha256::digest(cert_der).into()
}

/// `sha256:` and the digest in upper-case hex pairs separated by colons
/// (the form `openssl x509 -fingerprint -sha256` prints after its `=`).
pub fn format_fingerprint(fp: &[u8; 32]) -> String {
    let mut s = String::with_capacity(7 + 32 * 3);
    s.push_str("sha256:");
    for (i, b) in fp.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// Reads a SHA-256 fingerprint: 64 hex digits, upper or lower case, with or
/// without colons between the pairs, optionally after `sha256:` (or
/// `openssl`'s `sha256 Fingerprint=`).
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let hex = ["sha256 fingerprint=", "sha256:", "sha-256:"]
        .iter()
        .find_map(|p| lower.strip_prefix(p))
        .unwrap_or(&lower);
    let digits: Vec<u8> = hex.bytes().filter(|&b| b != b':').collect();
    let bad = || {
        format!("{s:?} is not a SHA-256 fingerprint (64 hex digits, optionally sha256: and colons)")
    };
    // Checked digit by digit: `from_str_radix` would take a `+` sign.
    if digits.len() != 64 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
        *o = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// A new self-signed certificate (ECDSA P-256) for `names` (DNS names or IP
/// addresses; `localhost` when empty): `(cert_pem, key_pem, fingerprint)`.
pub fn generate_self_signed(names: &[String]) -> Result<(String, String, [u8; 32]), TlsError> {
    if let Some(bad) = names
        .iter()
        .find(|n| ServerName::try_from(n.as_str()).is_err())
    {
        return Err(TlsError::BadName(bad.clone()));
    }
    let names = if names.is_empty() {
        vec!["localhost".to_owned()]
    } else {
        names.to_vec()
    };
    let mut params = rcgen::CertificateParams::new(names)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sixpath-server");
    let signing_key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&signing_key)?;
    Ok((
        cert.pem(),
        signing_key.serialize_pem(),
        fingerprint(cert.der()),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let d = std::env::temp_dir()
                .join(format!("sixpath-net-tls-{tag}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            Self(d)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn self_signed(dir: &TempDir, names: &[&str]) -> (PathBuf, PathBuf, [u8; 32]) {
        let names: Vec<String> = names.iter().map(ToString::to_string).collect();
        let (cert, key, fp) = generate_self_signed(&names).unwrap();
        let tag = names.first().cloned().unwrap_or_default();
        (
            dir.write(&format!("{tag}.crt"), &cert),
            dir.write(&format!("{tag}.key"), &key),
            fp,
        )
    }

    /// One TLS handshake over an in-memory duplex: the server echoes one
    /// message; returns the client's result (the echoed bytes) and the
    /// negotiated ALPN.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        name: &str,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), std::io::Error> {
        let (c, s) = tokio::io::duplex(64 * 1024);
        let acceptor = TlsAcceptor::from(server);
        let srv = tokio::spawn(async move {
            let mut s = acceptor.accept(s).await?;
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await?;
            s.write_all(&buf).await?;
            s.shutdown().await?;
            Ok::<_, std::io::Error>(())
        });
        let connector = TlsConnector::from(client);
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let result = async {
            let mut c = connector.connect(name, c).await?;
            let alpn = c.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            c.write_all(b"hello").await?;
            let mut back = Vec::new();
            c.read_to_end(&mut back).await?;
            Ok((back, alpn))
        }
        .await;
        let _ = srv.await;
        result
    }

    /// One connection over loopback TCP: the client sends a message, the
    /// server echoes it and closes; returns the handshake kind each side
    /// saw.
    async fn tcp_exchange(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> (Option<Handshake>, Option<Handshake>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(server);
        let srv = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut s = acceptor.accept(tcp).await.unwrap();
            let kind = Handshake::of(s.get_ref().1);
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
            s.shutdown().await.unwrap();
            kind
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut c = TlsConnector::from(client).connect(name, tcp).await.unwrap();
        let kind = Handshake::of(c.get_ref().1);
        c.write_all(b"hello").await.unwrap();
        let mut back = Vec::new();
        // Reading to the end also takes in the server's session tickets.
        c.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"hello");
        (kind, srv.await.unwrap())
    }

    #[tokio::test]
    async fn second_connection_with_a_shared_client_config_resumes() {
        let dir = TempDir::new("resume");
        let (cert, key, fp) = self_signed(&dir, &["localhost"]);
        let server = server_config(&cert, &key, &[ALPN_SIXPATH]).unwrap();
        let client = client_config(ServerVerification::Pinned(vec![fp]), &[ALPN_SIXPATH]).unwrap();
        let full = Some(Handshake::Full);
        let resumed = Some(Handshake::Resumed);
        assert_eq!(
            tcp_exchange(Arc::clone(&server), Arc::clone(&client)).await,
            (full, full)
        );
        for _ in 0..3 {
            assert_eq!(
                tcp_exchange(Arc::clone(&server), Arc::clone(&client)).await,
                (resumed, resumed)
            );
        }
        // A client configuration of its own has no ticket: full again.
        let other = client_config(ServerVerification::Pinned(vec![fp]), &[ALPN_SIXPATH]).unwrap();
        assert_eq!(tcp_exchange(Arc::clone(&server), other).await, (full, full));
        // Another server (another ticket key) cannot read the ticket: the
        // client falls back to a full handshake.
        let restarted = server_config(&cert, &key, &[ALPN_SIXPATH]).unwrap();
        assert_eq!(tcp_exchange(restarted, client).await, (full, full));
    }

    #[tokio::test]
    async fn servers_sharing_a_ticket_secret_resume_each_others_tickets() {
        let dir = TempDir::new("fleet");
        let (cert, key, fp) = self_signed(&dir, &["localhost"]);
        let shared = ServerTlsOptions {
            ticket_secret: Some(vec![9; 32]),
            ..ServerTlsOptions::default()
        };
        let load = |o: &ServerTlsOptions| {
            ServerTls::load_with(&cert, &key, &[ALPN_SIXPATH], o)
                .unwrap()
                .config()
        };
        let (a, b) = (load(&shared), load(&shared));
        let client = client_config(ServerVerification::Pinned(vec![fp]), &[ALPN_SIXPATH]).unwrap();
        let full = Some(Handshake::Full);
        let resumed = Some(Handshake::Resumed);
        assert_eq!(tcp_exchange(a, Arc::clone(&client)).await, (full, full));
        // The ticket from `a` resumes on `b`, and `b`'s on a third process.
        assert_eq!(
            tcp_exchange(b, Arc::clone(&client)).await,
            (resumed, resumed)
        );
        assert_eq!(
            tcp_exchange(load(&shared), Arc::clone(&client)).await,
            (resumed, resumed)
        );
        // Another secret cannot read them.
        let other = ServerTlsOptions {
            ticket_secret: Some(vec![8; 32]),
            ..ServerTlsOptions::default()
        };
        assert_eq!(tcp_exchange(load(&other), client).await, (full, full));
    }

    /// A connection with early data: whether the server accepted it (or
    /// saw it offered and refused it), whether the client saw it accepted,
    /// and the server's handshake kind; `hello`, written before the
    /// handshake, is echoed either way.
    async fn early_exchange(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> (Result<bool, bool>, bool, Option<Handshake>) {
        use crate::framed::EarlyData;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let srv = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut s = early::accept(
                server,
                tcp,
                tokio::time::Instant::now() + std::time::Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
            let accepted = if s.early_data_accepted() {
                Ok(true)
            } else {
                Err(s.early_data_rejected())
            };
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"hello");
            std::future::poll_fn(|cx| s.poll_confirm(cx)).await.unwrap();
            assert!(!s.is_early());
            let kind = Handshake::of(s.get_ref().1);
            s.write_all(&buf).await.unwrap();
            s.shutdown().await.unwrap();
            (accepted, kind)
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut c = TlsConnector::from(client)
            .early_data(true)
            .connect(name, tcp)
            .await
            .unwrap();
        c.write_all(b"hello").await.unwrap();
        c.flush().await.unwrap();
        let client_saw = c.get_ref().1.is_early_data_accepted();
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"hello", "sent once, whether in early data or after");
        let (accepted, kind) = srv.await.unwrap();
        (accepted, client_saw, kind)
    }

    #[tokio::test]
    async fn early_data_is_read_by_the_server_and_resent_when_refused() {
        let dir = TempDir::new("early");
        let (cert, key, fp) = self_signed(&dir, &["localhost"]);
        let early = ServerTlsOptions {
            max_early_data: 16 * 1024,
            ..ServerTlsOptions::default()
        };
        let server = ServerTls::load_with(&cert, &key, &[ALPN_SIXPATH], &early).unwrap();
        assert!(server.early_data());
        let client =
            client_config_with(ServerVerification::Pinned(vec![fp]), &[ALPN_SIXPATH], true)
                .unwrap();
        let full = Some(Handshake::Full);
        assert_eq!(
            tcp_exchange(server.config(), Arc::clone(&client)).await,
            (full, full)
        );
        let resumed = Some(Handshake::Resumed);
        assert_eq!(
            early_exchange(server.config(), Arc::clone(&client)).await,
            (Ok(true), true, resumed)
        );
        // A server without early data cannot read the other's ticket: a
        // full handshake, the early data refused and written again after
        // it.
        let plain = ServerTls::load(&cert, &key, &[ALPN_SIXPATH]).unwrap();
        assert!(!plain.early_data());
        assert_eq!(
            early_exchange(plain.config(), client).await,
            (Err(true), false, full)
        );
    }

    #[tokio::test]
    async fn pinned_client_accepts_the_pinned_certificate() {
        let dir = TempDir::new("pin-ok");
        let (cert, key, fp) = self_signed(&dir, &["localhost", "127.0.0.1"]);
        let server = server_config(&cert, &key, &[ALPN_SIXPATH]).unwrap();
        let client = client_config(ServerVerification::Pinned(vec![fp]), &[ALPN_SIXPATH]).unwrap();
        // The pin is the trust decision: any server name goes.
        let (echo, alpn) = handshake(server, client, "anything.invalid").await.unwrap();
        assert_eq!(echo, b"hello");
        assert_eq!(alpn.as_deref(), Some(ALPN_SIXPATH));
    }

    #[tokio::test]
    async fn pinned_client_rejects_another_certificate() {
        let dir = TempDir::new("pin-bad");
        let (cert, key, _) = self_signed(&dir, &["localhost"]);
        let (_, _, other) = self_signed(&dir, &["other.example"]);
        let server = server_config(&cert, &key, &[ALPN_SIXPATH]).unwrap();
        let client =
            client_config(ServerVerification::Pinned(vec![other]), &[ALPN_SIXPATH]).unwrap();
        let err = handshake(server, client, "localhost").await.unwrap_err();
        assert!(err.to_string().contains("is not the pinned one"), "{err}");
    }

    #[tokio::test]
    async fn server_accepts_a_client_without_alpn() {
        let dir = TempDir::new("no-alpn");
        let (cert, key, fp) = self_signed(&dir, &["localhost"]);
        let server = server_config(&cert, &key, &[ALPN_SIXPATH]).unwrap();
        let client = client_config(ServerVerification::Pinned(vec![fp]), &[]).unwrap();
        let (echo, alpn) = handshake(server, client, "localhost").await.unwrap();
        assert_eq!(echo, b"hello");
        assert_eq!(alpn, None);
    }

    #[tokio::test]
    async fn server_refuses_a_client_offering_only_other_alpn() {
        let dir = TempDir::new("other-alpn");
        let (cert, key, fp) = self_signed(&dir, &["localhost"]);
        let server = server_config(&cert, &key, &[ALPN_SIXPATH]).unwrap();
        let client = client_config(ServerVerification::Pinned(vec![fp]), &[b"h2"]).unwrap();
        assert!(handshake(server, client, "localhost").await.is_err());
    }

    /// A CA, and a server certificate for `localhost` it signed.
    fn ca_and_leaf(dir: &TempDir) -> (PathBuf, PathBuf, PathBuf) {
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sixpath test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        (
            dir.write("ca.crt", &ca.pem()),
            dir.write("leaf.crt", &leaf.pem()),
            dir.write("leaf.key", &leaf_key.serialize_pem()),
        )
    }

    #[tokio::test]
    async fn ca_file_client_accepts_a_certificate_the_ca_signed() {
        let dir = TempDir::new("ca-ok");
        let (ca, cert, key) = ca_and_leaf(&dir);
        let server = server_config(&cert, &key, &[ALPN_SIXPATH]).unwrap();
        let client = client_config(ServerVerification::CaFile(ca), &[ALPN_SIXPATH]).unwrap();
        let (echo, _) = handshake(server, client, "localhost").await.unwrap();
        assert_eq!(echo, b"hello");
    }

    #[tokio::test]
    async fn ca_file_client_rejects_a_wrong_name_and_a_foreign_certificate() {
        let dir = TempDir::new("ca-bad");
        let (ca, cert, key) = ca_and_leaf(&dir);
        let server = server_config(&cert, &key, &[ALPN_SIXPATH]).unwrap();
        let client =
            client_config(ServerVerification::CaFile(ca.clone()), &[ALPN_SIXPATH]).unwrap();
        let err = handshake(server, Arc::clone(&client), "example.com")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");

        let (self_cert, self_key, _) = self_signed(&dir, &["localhost"]);
        let server = server_config(&self_cert, &self_key, &[ALPN_SIXPATH]).unwrap();
        let err = handshake(server, client, "localhost").await.unwrap_err();
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    }

    #[test]
    fn bad_pem_errors_name_the_file() {
        let dir = TempDir::new("bad-pem");
        let (cert, key, _) = self_signed(&dir, &["localhost"]);
        let garbage = dir.write("garbage.pem", "not a pem file\n");
        let broken = dir.write(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\nMIIB\n", // no END line
        );
        let missing = dir.0.join("missing.pem");

        for (c, k, named, says) in [
            (&garbage, &key, &garbage, "no certificate found"),
            (&broken, &key, &broken, "malformed PEM"),
            (&missing, &key, &missing, "cannot read"),
            (&cert, &garbage, &garbage, "no private key"),
            (&cert, &cert, &cert, "no private key"),
        ] {
            let e = server_config(c, k, &[]).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(&named.display().to_string()), "{msg}");
            assert!(msg.contains(says), "{msg}");
            assert_eq!(e.path(), Some(named.as_path()));
        }
        let e = client_config(ServerVerification::CaFile(garbage.clone()), &[]).unwrap_err();
        assert!(e.to_string().contains("garbage.pem"), "{e}");
    }

    #[test]
    fn key_of_another_certificate_is_refused_naming_both_files() {
        let dir = TempDir::new("mismatch");
        let (cert, _, _) = self_signed(&dir, &["a.example"]);
        let (_, key, _) = self_signed(&dir, &["b.example"]);
        let e = server_config(&cert, &key, &[]).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, TlsError::KeyMismatch { .. }), "{msg}");
        assert!(
            msg.contains("a.example.crt") && msg.contains("b.example.key"),
            "{msg}"
        );
        assert_eq!(e.path(), Some(key.as_path()));
    }

    #[tokio::test]
    async fn reload_serves_the_new_pair_and_keeps_the_old_on_error() {
        let dir = TempDir::new("reload");
        let (cert, key, old) = self_signed(&dir, &["localhost"]);
        let tls = ServerTls::load(&cert, &key, &[ALPN_SIXPATH]).unwrap();
        assert_eq!(tls.fingerprint(), old);
        let pinned = |fp| client_config(ServerVerification::Pinned(vec![fp]), &[]).unwrap();

        let (new_cert, new_key, new) = generate_self_signed(&[]).unwrap();
        std::fs::write(&cert, &new_cert).unwrap();
        std::fs::write(&key, &new_key).unwrap();
        tls.reload().unwrap();
        assert_eq!(tls.fingerprint(), new);
        assert!(
            handshake(tls.config(), pinned(new), "localhost")
                .await
                .is_ok()
        );
        assert!(
            handshake(tls.config(), pinned(old), "localhost")
                .await
                .is_err()
        );

        // A half-written rotation (key of another certificate) is refused;
        // the pair in use stays.
        let (_, other_key, _) = generate_self_signed(&[]).unwrap();
        std::fs::write(&key, other_key).unwrap();
        assert!(matches!(tls.reload(), Err(TlsError::KeyMismatch { .. })));
        assert_eq!(tls.fingerprint(), new);
        assert!(
            handshake(tls.config(), pinned(new), "localhost")
                .await
                .is_ok()
        );
    }

    #[test]
    fn fingerprint_matches_the_certificate_der() {
        let (cert_pem, _, fp) = generate_self_signed(&[]).unwrap();
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        assert_eq!(fp, fingerprint(&der));
    }

    #[test]
    fn fingerprint_round_trips_in_every_accepted_form() {
        let fp: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xA5);
        let text = format_fingerprint(&fp);
        assert!(text.starts_with("sha256:A5:"), "{text}");
        assert_eq!(text.len(), 7 + 32 * 3 - 1);
        let plain: String = text[7..].chars().filter(|&c| c != ':').collect();
        for form in [
            text.clone(),
            text.to_ascii_lowercase(),
            text[7..].to_owned(),
            plain.clone(),
            plain.to_ascii_lowercase(),
            format!("SHA256:{plain}"),
            format!("sha256 Fingerprint={}", &text[7..]),
            format!("  {text}\n"),
        ] {
            assert_eq!(parse_fingerprint(&form), Ok(fp), "{form}");
        }
    }

    #[test]
    fn parse_fingerprint_rejects_wrong_length_and_non_hex() {
        let ok = "ab".repeat(32);
        assert!(parse_fingerprint(&ok).is_ok());
        assert!(parse_fingerprint(&ok[..62]).is_err());
        assert!(parse_fingerprint(&format!("{ok}ab")).is_err());
        assert!(parse_fingerprint(&format!("{}zz", &ok[..62])).is_err());
        assert!(parse_fingerprint(&format!("{}+1", &ok[..62])).is_err());
        assert!(parse_fingerprint("").is_err());
        assert!(parse_fingerprint(&"é".repeat(32)).is_err());
    }

    #[test]
    fn generate_refuses_names_that_are_neither_dns_nor_ip() {
        for bad in ["bad name!", "", "a..b", "\u{e9}.example"] {
            let e = generate_self_signed(&[bad.to_owned()]).unwrap_err();
            assert!(matches!(e, TlsError::BadName(ref n) if n == bad), "{e}");
        }
        assert!(generate_self_signed(&["::1".to_owned(), "proxy.example".to_owned()]).is_ok());
    }

    #[test]
    fn generated_certificate_names_ip_addresses_as_ip_sans() {
        // A CA-style check needs an IP SAN for an IP server name; rcgen makes
        // one from a string that parses as an address.
        let (cert_pem, _, _) = generate_self_signed(&["127.0.0.1".to_owned()]).unwrap();
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        // 0x87 0x04 = [7] IMPLICIT OCTET STRING of 4 bytes: iPAddress.
        assert!(der.windows(6).any(|w| w == [0x87, 4, 127, 0, 0, 1]));
    }
}
