//! controller (under construction).
#![deny(missing_docs)]
