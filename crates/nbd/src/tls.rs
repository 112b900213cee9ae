//! TLS for NBD (the `STARTTLS` option, X.509 certificates, rustls).
//!
//! The rules kept (NBD protocol, "TLS support"), as qemu-nbd and nbdkit keep
//! them:
//! - `STARTTLS` is answered `ACK`, then the TLS handshake runs on the same
//!   stream and negotiation starts again inside it, with nothing kept from
//!   before (structured replies and meta contexts must be asked for again).
//! - With TLS *required*, before TLS every option but `STARTTLS` and `ABORT`
//!   is refused with `ERR_TLS_REQD`, and `EXPORT_NAME` (which cannot be
//!   refused) closes the connection: no export is listed, described or
//!   served in the clear.
//! - With TLS *optional*, a client may go on in the clear.
//! - A second `STARTTLS` is `ERR_INVALID`; without TLS configured it is
//!   `ERR_UNSUP`.
//! - The client must wait for the `ACK` before its TLS hello; bytes already
//!   buffered after `STARTTLS` are a protocol violation (they would be lost).
//!
//! Pre-shared keys (nbdkit's `--tls-psk`) are not offered: rustls has no
//! TLS 1.3 external-PSK support. Use certificates.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::ServerError;

/// The server's TLS setting (`ServerConfig::tls`).
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) acceptor: TlsAcceptor,
    /// Refuse everything in the clear (`--tls require`).
    pub require: bool,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("require", &self.require)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// A server certificate chain and its private key, both PEM files (the
    /// chain: the server certificate first, then any intermediates).
    pub fn from_pem_files(
        cert: &Path,
        key: &Path,
        require: bool,
    ) -> Result<TlsConfig, ServerError> {
        let bad = |what: &str, p: &Path, e: &dyn fmt::Display| {
            ServerError::Config(format!("{what} {}: {e}", p.display()))
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| bad("TLS certificate file", cert, &e))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad("TLS certificate file", cert, &e))?;
        if certs.is_empty() {
            return Err(bad(
                "TLS certificate file",
                cert,
                &"no CERTIFICATE block in it",
            ));
        }
        let key =
            PrivateKeyDer::from_pem_file(key).map_err(|e| bad("TLS private key file", key, &e))?;
        Self::from_der(certs, key, require)
    }

    /// The same from DER values (tests, embedders).
    pub fn from_der(
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        require: bool,
    ) -> Result<TlsConfig, ServerError> {
        // ring, not aws-lc-rs: no C/cmake build in the product. rustls marks
        // ring's provider deprecated only for lacking post-quantum key
        // exchange (X25519MLKEM768); classical ECDHE is what NBD clients
        // (gnutls in qemu and libnbd) offer today.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::Config(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| ServerError::Config(format!("TLS certificate and key: {e}")))?;
        Ok(TlsConfig {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            require,
        })
    }
}
