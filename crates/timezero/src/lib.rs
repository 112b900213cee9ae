//! timezero (under construction).
#![deny(missing_docs)]
