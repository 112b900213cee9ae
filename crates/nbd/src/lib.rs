//! nbd (under construction).
#![deny(missing_docs)]
