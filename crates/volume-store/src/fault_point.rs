//! Named fault sites in the layers above the store.
//!
//! The controller calls [`FaultPoint::check`] at a [`FaultSite`] before the I/O
//! it guards (`cow.copy.write`, `bitmap.commit`, `table.append`, ...; the full
//! list is [`FaultSite::ALL`]). Production code uses [`NoFaults`]; simulations
//! use the seeded `FaultInjector` (feature `fault-injection`), which fails
//! chosen sites and counts hits per site.

pub use fault_site::{FaultSite, UnknownFaultSite};

use crate::error::StoreError;

/// A place where a test may inject a failure. Object safe.
pub trait FaultPoint: Send + Sync {
    /// `Ok(())` to proceed; an error to fail the operation at `site` as if the
    /// I/O there had failed.
    fn check(&self, site: FaultSite) -> Result<(), StoreError>;
}

/// The production fault point: never fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoFaults;

impl FaultPoint for NoFaults {
    fn check(&self, _site: FaultSite) -> Result<(), StoreError> {
        Ok(())
    }
}
