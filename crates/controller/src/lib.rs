//! controller: the simulated subsystem (under construction).
#![deny(missing_docs)]

pub mod config;
pub mod datadir;
pub mod error;
pub mod meta;

pub use config::{
    ConfigError, DurabilityMode, ListenConfig, RateLimits, SubsystemConfig, VolumeConfig,
};
pub use error::{ControllerError, ErrorKind, Result};
