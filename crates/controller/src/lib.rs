//! controller: the simulated subsystem (under construction).
#![deny(missing_docs)]

pub mod config;

pub use config::{
    ConfigError, DurabilityMode, ListenConfig, RateLimits, SubsystemConfig, VolumeConfig,
};
