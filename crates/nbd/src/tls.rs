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
//! Two kinds of credentials:
//! - X.509 (a server certificate and its key, PEM): rustls with ring, no
//!   client authentication; clients check the server's certificate.
//! - Pre-shared keys (nbdkit's `--tls-psk` file: `username:hexkey` per
//!   line): OpenSSL, since rustls has no external PSK. Both sides prove
//!   they hold the key of the username the client names, so this *is*
//!   client authentication: a client without a listed key completes no
//!   handshake. TLS 1.3 (PSK with ECDHE) and TLS 1.2 PSK cipher suites, as
//!   gnutls (libnbd, qemu) offers them.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::ServerError;

/// How a STARTTLS connection is accepted.
#[derive(Clone)]
pub(crate) enum Acceptor {
    /// X.509 certificate (rustls).
    Certificate(TlsAcceptor),
    /// Pre-shared keys (OpenSSL).
    Psk(openssl::ssl::SslContext),
}

/// The server's TLS setting (`ServerConfig::tls`).
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) acceptor: Acceptor,
    /// Refuse everything in the clear (`--tls require`).
    pub require: bool,
}

/// Reads a certificate chain (the server certificate first, then any
/// intermediates) and its private key from PEM files, naming the file and
/// what is wrong on failure.
pub fn load_pem_cert_key(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ServerError> {
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
    Ok((certs, key))
}

/// A rustls server configuration for a certificate and key (no client
/// certificates), offering `alpn` protocols (none for NBD; `http/1.1` for
/// the control API). Also used by the daemon's HTTPS control API.
pub fn rustls_server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    // ring, not aws-lc-rs: no C/cmake build in the product. rustls marks
    // ring's provider deprecated only for lacking post-quantum key
    // exchange (X25519MLKEM768); classical ECDHE is what NBD clients
    // (gnutls in qemu and libnbd) offer today.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Config(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Config(format!("TLS certificate and key: {e}")))?;
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

/// Longest PSK username accepted (a TLS PSK identity; longer is a mistake).
const PSK_USERNAME_MAX: usize = 255;
/// Shortest and longest key, in bytes (the file holds twice as many hex digits).
const PSK_KEY_BYTES: std::ops::RangeInclusive<usize> = 16..=256;

/// Parses a PSK file (`username:hexkey` per line, as `psktool` writes it
/// for nbdkit and qemu). Blank lines and lines starting with `#` are
/// skipped. `Err` names the line and what is wrong, never the key.
pub fn parse_psk_file(text: &str) -> Result<HashMap<String, Vec<u8>>, String> {
    let mut keys = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hex)) = line.split_once(':') else {
            return Err(format!("line {n}: not username:hexkey"));
        };
        if user.is_empty() || user.len() > PSK_USERNAME_MAX {
            return Err(format!(
                "line {n}: the username must have 1 to {PSK_USERNAME_MAX} bytes"
            ));
        }
        if let Some((at, c)) = hex.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(format!(
                "line {n}: the key of {user} has {c:?} at character {}: a key is hex digits \
                 only (0-9, a-f)",
                at + 1
            ));
        }
        if hex.len() % 2 != 0 {
            return Err(format!(
                "line {n}: the key of {user} has an odd number of hex digits ({}): each byte \
                 is two",
                hex.len()
            ));
        }
        let key: Vec<u8> = hex
            .as_bytes()
            .chunks(2)
            .map(|p| {
                let d = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                d(p[0]) << 4 | d(p[1])
            })
            .collect();
        if !PSK_KEY_BYTES.contains(&key.len()) {
            return Err(format!(
                "line {n}: the key of {user} has {} bytes, not {} to {}",
                key.len(),
                PSK_KEY_BYTES.start(),
                PSK_KEY_BYTES.end()
            ));
        }
        if keys.insert(user.to_string(), key).is_some() {
            return Err(format!("line {n}: {user} is listed twice"));
        }
    }
    if keys.is_empty() {
        return Err("no username:hexkey line".into());
    }
    Ok(keys)
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
        let (certs, key) = load_pem_cert_key(cert, key)?;
        Self::from_der(certs, key, require)
    }

    /// The same from DER values (tests, embedders).
    pub fn from_der(
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        require: bool,
    ) -> Result<TlsConfig, ServerError> {
        let config = rustls_server_config(certs, key, Vec::new())?;
        Ok(TlsConfig {
            acceptor: Acceptor::Certificate(TlsAcceptor::from(config)),
            require,
        })
    }

    /// Pre-shared keys from a file (`username:hexkey` per line, see
    /// [`parse_psk_file`]).
    pub fn from_psk_file(path: &Path, require: bool) -> Result<TlsConfig, ServerError> {
        let bad = |e: &dyn fmt::Display| {
            ServerError::Config(format!("TLS PSK file {}: {e}", path.display()))
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(&e))?;
        let keys = parse_psk_file(&text).map_err(|e| bad(&e))?;
        Self::from_psk_keys(keys, require)
    }

    /// The same from usernames and keys (tests, embedders).
    pub fn from_psk_keys(
        keys: HashMap<String, Vec<u8>>,
        require: bool,
    ) -> Result<TlsConfig, ServerError> {
        use openssl::ssl::{SslContextBuilder, SslMethod, SslOptions, SslVersion};
        let err = |e: openssl::error::ErrorStack| ServerError::Config(format!("TLS PSK: {e}"));
        let mut b = SslContextBuilder::new(SslMethod::tls_server()).map_err(err)?;
        b.set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(err)?;
        // TLS 1.2: PSK suites with forward secrecy first, as gnutls's
        // NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK offers them. TLS 1.3 uses the key
        // through the same callback (OpenSSL falls back to it, SHA-256 suites).
        b.set_cipher_list("ECDHEPSK:PSK:!aNULL:!eNULL:!MD5:!RC4:!3DES")
            .map_err(err)?;
        b.set_options(SslOptions::NO_RENEGOTIATION);
        b.set_psk_server_callback(move |_ssl, identity, out| {
            // An unknown username, or a key that does not fit: no key (0),
            // and the handshake fails.
            let key = identity
                .and_then(|id| std::str::from_utf8(id).ok())
                .and_then(|user| keys.get(user));
            match key {
                Some(k) if k.len() <= out.len() => {
                    out[..k.len()].copy_from_slice(k);
                    Ok(k.len())
                }
                _ => Ok(0),
            }
        });
        Ok(TlsConfig {
            acceptor: Acceptor::Psk(b.build()),
            require,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psk_files_parse_like_psktool_writes_them() {
        let k = parse_psk_file(
            "# keys\nalice:000102030405060708090a0b0c0d0e0f\n\nbob:FFEEDDCCBBAA99887766554433221100ffee\n",
        )
        .unwrap();
        assert_eq!(k["alice"], (0u8..16).collect::<Vec<u8>>());
        assert_eq!(k["bob"].len(), 18);
        assert_eq!(k["bob"][0], 0xff);
    }

    #[test]
    fn bad_psk_files_name_the_line_and_not_the_key() {
        let key = "00112233445566778899aabbccddeeff";
        for (text, needle) in [
            ("", "no username"),
            ("alice\n", "line 1: not username:hexkey"),
            (&format!(":{key}\n") as &str, "line 1: the username"),
            (
                "alice:0g112233445566778899aabbccddeeff\n",
                "line 1: the key of alice has 'g' at character 2: a key is hex digits only",
            ),
            // QA: 32 characters, not hex, were called an odd count.
            (
                "alice:zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\n",
                "has 'z' at character 1",
            ),
            ("alice:123\n", "an odd number of hex digits (3)"),
            ("alice:0011\n", "has 2 bytes"),
            (
                &format!("a:{key}\nb:{key}\na:{key}\n"),
                "line 3: a is listed twice",
            ),
        ] {
            let e = parse_psk_file(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(!e.contains("aabbcc"), "the key leaked: {e}");
        }
    }

    #[test]
    fn a_psk_config_builds() {
        let keys = parse_psk_file("alice:00112233445566778899aabbccddeeff\n").unwrap();
        let t = TlsConfig::from_psk_keys(keys, true).unwrap();
        assert!(t.require);
        assert!(matches!(t.acceptor, Acceptor::Psk(_)));
    }
}
