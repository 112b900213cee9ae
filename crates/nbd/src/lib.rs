//! NBD server for firmware-sim: serves anything implementing [`Export`]
//! to real NBD clients (qemu, libnbd, fio) over TCP, unix sockets,
//! socket activation or stdin/stdout.
//!
//! What it must not depend on: the controller or any storage crate. The
//! binary adapts controller volumes to [`Export`]; error mapping from the
//! controller to [`ErrorKind`] lives there, and from [`ErrorKind`] to the
//! NBD errno in exactly one place, [`ErrorKind::nbd_errno`].
//!
//! Key types:
//! - [`Export`] (blocking calls, run on tokio's blocking pool) with
//!   [`BlockSize`], [`ZeroFlags`], [`Extent`], [`ExportError`].
//! - [`ExportRegistry`] (names -> exports; [`StaticRegistry`] is a ready one).
//! - [`Server`] + [`ServerConfig`]: `serve_tcp`, `serve_unix`, `serve`
//!   (any [`Listener`], e.g. from [`listener_from_systemd_env`]),
//!   `serve_stream` (one connection), `serve_stdio`.
//!
//! Protocol: fixed newstyle only, NO_ZEROES, options EXPORT_NAME, ABORT,
//! LIST, INFO, GO, STRUCTURED_REPLY, LIST/SET_META_CONTEXT (base:allocation);
//! every other option gets `ERR_UNSUP`. Commands READ, WRITE, DISC, FLUSH,
//! TRIM, CACHE, WRITE_ZEROES (NO_HOLE, FAST_ZERO), BLOCK_STATUS (REQ_ONE).
//! docs/NBD.md says what the server does for each checklist item.
//!
//! Invariants (each module states its own in detail):
//! - Input never panics the server: every malformed message gets the
//!   protocol's error or a closed connection, plus a tracing line.
//! - A WRITE payload is always consumed before its reply.
//! - A FLUSH or FUA reply is sent only after the export's call returned.
//! - Replies may go out of order; in-flight bytes per connection and the
//!   number of connections are bounded.
//! - Export calls never run on the async reactor: each request (or, while
//!   the export is fast, a batch of up to `max_batch` small ones) runs in a
//!   `spawn_blocking` task.
#![deny(missing_docs)]

mod activation;
mod bufpool;
mod dispatch;
mod export;
pub mod extents;
mod limits;
mod negotiate;
mod ops;
pub mod proto;
mod registry;
mod server;
#[cfg(feature = "test-utils")]
pub mod testing;
mod tls;
mod transmit;
mod writer;

pub use activation::listener_from_systemd_env;
pub use export::{BlockSize, ErrorKind, Export, ExportError, Extent, ExtentFlags, ZeroFlags};
pub use registry::{ExportListing, ExportRegistry, StaticRegistry};
pub use server::{Listener, Server, ServerConfig, ServerError};
pub use tls::{load_pem_cert_key, parse_psk_file, rustls_server_config, TlsConfig};

pub(crate) use server::ServerError as ConnError;
