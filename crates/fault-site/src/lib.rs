//! The named places where a simulation may inject a failure, as one enum.
//!
//! What it is for: every crate that checks a fault site (the controller
//! through `volume_store::FaultPoint`, activity tables through their
//! `FaultHook`) and every crate that chooses faults (`FaultInjector`, the
//! simulator's fault plan) names a site by [`FaultSite`]. Adding a site is one
//! line in the `fault_sites!` list below: the variant, its name and its place in
//! [`FaultSite::ALL`] come from that line, and the compiler checks every use.
//!
//! What it must not depend on: anything of this workspace (it sits below
//! `volume-store` and `activity-table`, which must not depend on each other).
//!
//! Invariants: [`FaultSite::as_str`] is stable (it is the name in fault-run
//! summaries, kept regression files and the docs) and unique; parsing a name
//! ([`std::str::FromStr`], serde) gives back the same site.
#![deny(missing_docs)]

use std::fmt;
use std::str::FromStr;

macro_rules! fault_sites {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)+) => {
        /// A named fault site. Its text form ([`FaultSite::as_str`], `Display`,
        /// `FromStr`, serde) is the dotted name, e.g. `cow.copy.read`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum FaultSite {
            $($(#[doc = $doc])* $variant,)+
        }

        impl FaultSite {
            /// Every site, in declaration order.
            pub const ALL: &'static [FaultSite] = &[$(FaultSite::$variant,)+];

            /// The site's stable dotted name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(FaultSite::$variant => $name,)+
                }
            }
        }
    };
}

fault_sites! {
    /// Controller: reading the source track of a copy-on-write (or background) copy.
    CowCopyRead = "cow.copy.read",
    /// Controller: writing a copied track to the target.
    CowCopyWrite = "cow.copy.write",
    /// Controller: flushing targets before the copy bitmap records the copies.
    CowFlush = "cow.flush",
    /// Controller metadata: a journal (bitmap) record's durable write.
    BitmapCommit = "bitmap.commit",
    /// Controller metadata: writing one root slot.
    RootWrite = "root.write",
    /// Activity table: before an append's (or batch's) write.
    TableAppend = "table.append",
    /// Activity table: before an append's fdatasync, after the write (a
    /// failure here poisons the table, like a real failed sync).
    TableSync = "table.sync",
    /// Activity table: compaction, after the new file is durable and before
    /// the rename over the old one.
    TableCompactRename = "table.compact.rename",
}

impl fmt::Display for FaultSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A site equals its name (`site == "table.append"`).
impl PartialEq<str> for FaultSite {
    fn eq(&self, name: &str) -> bool {
        self.as_str() == name
    }
}

impl PartialEq<&str> for FaultSite {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}

/// A name that is not a [`FaultSite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFaultSite(pub String);

impl fmt::Display for UnknownFaultSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown fault site {:?} (known:", self.0)?;
        for s in FaultSite::ALL {
            write!(f, " {s}")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for UnknownFaultSite {}

impl FromStr for FaultSite {
    type Err = UnknownFaultSite;

    fn from_str(s: &str) -> Result<FaultSite, UnknownFaultSite> {
        FaultSite::ALL
            .iter()
            .copied()
            .find(|site| site.as_str() == s)
            .ok_or_else(|| UnknownFaultSite(s.to_string()))
    }
}

impl serde::Serialize for FaultSite {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for FaultSite {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FaultSite, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::FaultSite;

    #[test]
    fn names_are_unique_and_parse_back() {
        let mut names: Vec<&str> = FaultSite::ALL.iter().map(|s| s.as_str()).collect();
        for s in FaultSite::ALL {
            assert_eq!(s.as_str().parse::<FaultSite>(), Ok(*s));
            assert_eq!(s.to_string(), s.as_str());
            assert!(*s == s.as_str());
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FaultSite::ALL.len());
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let e = "cow.copy".parse::<FaultSite>().unwrap_err();
        assert!(e.to_string().contains("\"cow.copy\""), "{e}");
        assert!(e.to_string().contains("table.append"), "{e}");
        assert!("*".parse::<FaultSite>().is_err());
    }

    #[test]
    fn serde_uses_the_dotted_name() {
        let json = serde_json::to_string(&FaultSite::TableAppend).unwrap();
        assert_eq!(json, "\"table.append\"");
        let back: FaultSite = serde_json::from_str(&json).unwrap();
        assert_eq!(back, FaultSite::TableAppend);
        let list: Vec<FaultSite> = serde_json::from_str(r#"["root.write","cow.flush"]"#).unwrap();
        assert_eq!(list, vec![FaultSite::RootWrite, FaultSite::CowFlush]);
        assert!(serde_json::from_str::<FaultSite>("\"nope\"").is_err());
    }
}
