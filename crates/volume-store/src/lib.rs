//! volume-store (under construction).
#![deny(missing_docs)]
