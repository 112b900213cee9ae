//! Boot a firmware-sim virtual storage subsystem from a Rust test.
//!
//! ```no_run
//! let sub = firmware_sim_testkit::Subsystem::builder()
//!     .volume("V0", "fb:64M")
//!     .volume("V1", "fb:64M")
//!     .boot()
//!     .unwrap();
//! // The typed client of the control API (firmware-sim-client):
//! let api = sub.client();
//! let map = api
//!     .create_map(&firmware_sim_client::model::CreateMap {
//!         source: "V0".into(),
//!         target: "V1".into(),
//!         copy_type: "nocopy".into(),
//!         ..Default::default()
//!     })
//!     .unwrap();
//! api.start_map(&map.id.to_string(), false).unwrap();
//! println!("{}", sub.nbd_uri("V1"));
//! // Or JSON values, route by route:
//! let maps = sub.api().get("/mappings").unwrap();
//! assert_eq!(maps[0]["state"], "copying");
//! ```
//!
//! The daemon is the real `firmware-sim` binary (`$FIRMWARE_SIM_BIN`, else
//! `firmware-sim` on `PATH`), so [`Subsystem::crash`] is a real `SIGKILL` and
//! [`Subsystem::ipl`] a real boot of the same data directory. Each subsystem
//! gets a fresh temporary data directory and free ports (port 0, read back
//! from the boot banner), so tests run in parallel; dropping the handle stops
//! the daemon and removes the directory, also when the test panics.
#![deny(missing_docs)]

mod api;
mod daemon;

pub use api::{Api, ApiError};
pub use daemon::{find_binary, Builder, Error, Subsystem};
/// The typed client of the control API, re-exported so a test needs one
/// dependency only.
pub use firmware_sim_client;
pub use firmware_sim_client::{Client, ClientError, ErrorKind};
