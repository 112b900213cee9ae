//! resource-manager (under construction).
#![deny(missing_docs)]
