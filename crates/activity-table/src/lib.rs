//! activity-table (under construction).
#![deny(missing_docs)]
