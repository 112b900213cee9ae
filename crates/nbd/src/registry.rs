//! [`ExportRegistry`]: how the server finds exports by name, plus a simple
//! map-backed implementation.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::export::Export;

/// One entry of an export listing (`NBD_OPT_LIST`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportListing {
    /// Export name.
    pub name: String,
    /// Optional description.
    pub description: Option<String>,
}

/// The set of exports a server offers. Called from async code: keep it cheap
/// (no I/O; opening an export must not block on the backend for long).
pub trait ExportRegistry: Send + Sync {
    /// All exports, in the order `LIST` shows them.
    fn list(&self) -> Vec<ExportListing>;
    /// The export called `name` (already resolved from "" by the server).
    fn open(&self, name: &str) -> Option<Arc<dyn Export>>;
    /// The name an empty export name stands for; `None` means "" is unknown.
    fn default_export(&self) -> Option<String> {
        None
    }
    /// Why exports cannot be opened now although they may exist (the backend
    /// is not serving); `None` when an export [`open`](Self::open) refuses
    /// is simply unknown. A client asking for one is told this message
    /// (`NBD_REP_ERR_SHUTDOWN`) instead of "unknown export".
    fn unavailable(&self) -> Option<String> {
        None
    }
}

/// Resolve a client-sent name: "" becomes the registry's default.
pub(crate) fn resolve_name(registry: &dyn ExportRegistry, name: &str) -> Option<String> {
    if name.is_empty() {
        registry.default_export()
    } else {
        Some(name.to_string())
    }
}

/// A registry backed by a name -> export map; exports can be added and
/// removed while the server runs (existing connections keep their export).
#[derive(Default)]
pub struct StaticRegistry {
    exports: RwLock<BTreeMap<String, Arc<dyn Export>>>,
    default_name: RwLock<Option<String>>,
    unavailable: RwLock<Option<String>>,
}

impl StaticRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }
    /// A registry holding one export that is also the default.
    pub fn single(name: &str, export: Arc<dyn Export>) -> Self {
        let r = Self::new();
        r.insert(name, export);
        r.set_default(Some(name));
        r
    }
    /// Add or replace an export.
    pub fn insert(&self, name: &str, export: Arc<dyn Export>) {
        self.exports.write().insert(name.to_string(), export);
    }
    /// Remove an export; returns it if it existed.
    pub fn remove(&self, name: &str) -> Option<Arc<dyn Export>> {
        self.exports.write().remove(name)
    }
    /// Set (or clear) the export an empty name stands for.
    pub fn set_default(&self, name: Option<&str>) {
        *self.default_name.write() = name.map(str::to_string);
    }
    /// Take every export offline for new clients, saying why (`None`: back
    /// online); connections already open keep their export.
    pub fn set_unavailable(&self, why: Option<&str>) {
        *self.unavailable.write() = why.map(str::to_string);
    }
}

impl ExportRegistry for StaticRegistry {
    fn list(&self) -> Vec<ExportListing> {
        self.exports
            .read()
            .iter()
            .map(|(name, e)| ExportListing {
                name: name.clone(),
                description: e.description(),
            })
            .collect()
    }
    fn open(&self, name: &str) -> Option<Arc<dyn Export>> {
        if self.unavailable.read().is_some() {
            return None;
        }
        self.exports.read().get(name).cloned()
    }
    fn default_export(&self) -> Option<String> {
        self.default_name.read().clone()
    }
    fn unavailable(&self) -> Option<String> {
        self.unavailable.read().clone()
    }
}
