//! A typed Rust client of the firmware-sim control API, and the API's wire
//! types.
//!
//! The daemon (`firmware-sim boot`) serves a JSON control API over HTTP;
//! this crate has one method per route ([`Client`]), the request and answer
//! documents ([`model`], the same definitions the daemon's handlers use)
//! and the API's error kinds as an enum ([`ErrorKind`] inside
//! [`ClientError`]). The CLI's client verbs and the test kit are built on it.
//!
//! ```no_run
//! use firmware_sim_client::{Client, ClientError, ErrorKind, model::CreateMap};
//!
//! let api = Client::new("127.0.0.1:10810")
//!     .with_token(firmware_sim_client::resolve_token(None, None).unwrap());
//! let map = api.create_map(&CreateMap {
//!     source: "PROD".into(),
//!     target: "SNAP".into(),
//!     copy_type: "nocopy".into(),
//!     ..CreateMap::default()
//! })?;
//! api.start_map(&map.id.to_string(), false)?;
//! match api.map("999") {
//!     Err(ClientError::Api { kind: ErrorKind::UnknownMap, .. }) => {}
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), ClientError>(())
//! ```
//!
//! Calls block (ureq). Features: `async` adds `Client::spawn`, which runs
//! calls on tokio's blocking pool for async callers; `openapi` derives
//! `utoipa::ToSchema` on every wire type (the daemon builds its
//! `/openapi.json` from them).
#![deny(missing_docs)]

mod client;
mod error;
pub mod model;

pub use client::{
    base_url, check_id, load_ca_file, resolve_ca, resolve_token, CaError, Client, Event,
    TokenError, CA_ENV, POLL_INTERVAL, TOKEN_ENV,
};
pub use error::{ClientError, ErrorKind};
