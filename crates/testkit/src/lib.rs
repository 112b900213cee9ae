//! Boot a firmware-sim virtual storage subsystem from a Rust test.
//!
//! ```no_run
//! let sub = firmware_sim_testkit::Subsystem::builder()
//!     .volume("V0", "fb:64M")
//!     .volume("V1", "fb:64M")
//!     .boot()
//!     .unwrap();
//! let map = sub.api().post("/mappings", serde_json::json!({
//!     "source": "V0", "target": "V1", "type": "nocopy"
//! })).unwrap();
//! sub.api().post(&format!("/mappings/{}/start", map["id"]), serde_json::json!({})).unwrap();
//! println!("{}", sub.nbd_uri("V1"));
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
