//! sim (under construction).
#![deny(missing_docs)]
