//! Which subsystem configuration a boot uses, and the data directory's own
//! copy of it (`DIR/subsystem.toml`).
//!
//! Rules (docs/CLI.md, "Daemon"):
//! - `--config FILE` wins;
//! - without it, a data directory that holds a `subsystem.toml` boots the
//!   subsystem it belongs to (booting it again is an IPL of *that*
//!   subsystem, whatever config created it);
//! - otherwise the embedded default.
//!
//! Invariant: after every successful boot `DIR/subsystem.toml` is the config
//! the subsystem runs with (rewritten atomically when it differs), so it
//! never keeps a config that failed or was replaced.

use std::path::{Path, PathBuf};

use controller::datadir::DataDir;
use controller::SubsystemConfig;

use crate::error::CliError;

/// Where the configuration of a boot came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config FILE`.
    File(PathBuf),
    /// The data directory's own `subsystem.toml`.
    DataDir(PathBuf),
    /// The embedded default.
    Embedded,
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::DataDir(p) => {
                write!(f, "{} (the data directory's own config)", p.display())
            }
            ConfigSource::Embedded => f.write_str("the embedded default"),
        }
    }
}

/// Loads `--config FILE`, else the data directory's `subsystem.toml`, else
/// the embedded default; errors name the file, line and field.
pub fn load_config(
    file: Option<&Path>,
    data_dir: &Path,
) -> Result<(SubsystemConfig, ConfigSource), CliError> {
    let (path, source) = match file {
        Some(p) => (p.to_path_buf(), ConfigSource::File(p.to_path_buf())),
        None => {
            let stored = DataDir::new(data_dir).config_path();
            if !stored.is_file() {
                return Ok((SubsystemConfig::embedded_default(), ConfigSource::Embedded));
            }
            (stored.clone(), ConfigSource::DataDir(stored))
        }
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CliError::failed(format!("cannot read config {}", path.display()), e))?;
    let config = SubsystemConfig::from_toml_str(&text).map_err(|e| {
        let hint = match source {
            ConfigSource::DataDir(_) => {
                " (the data directory's own config; pass --config FILE to boot with another)"
            }
            _ => "",
        };
        CliError::failed(format!("config {}{hint}", path.display()), e)
    })?;
    Ok((config, source))
}

/// The subsystem id the data directory's `subsystem.toml` names, if it has
/// a readable one.
pub fn stored_subsystem_id(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(DataDir::new(data_dir).config_path()).ok()?;
    SubsystemConfig::from_toml_str(&text).ok().map(|c| c.id)
}

/// What to add to a failed open: when the config came from the directory
/// itself, say so; when the directory belongs to another subsystem than the
/// config's, say which and what to pass.
pub fn mismatch_hint(
    data_dir: &Path,
    config: &SubsystemConfig,
    source: &ConfigSource,
    kind: controller::ErrorKind,
) -> String {
    if let ConfigSource::DataDir(p) = source {
        // Its id edited: the metadata names another subsystem.
        if let Some(owner) = controller::check::subsystem_of(data_dir).filter(|o| *o != config.id) {
            return format!(
                "; {} names subsystem {}, but the metadata in {} belongs to subsystem \
                 {owner}: put back id = \"{owner}\" in it, or boot with --config FILE, the \
                 config the directory was created with",
                p.display(),
                config.id,
                data_dir.display()
            );
        }
        if kind != controller::ErrorKind::InvalidRequest {
            return String::new(); // not about the config (a missing file, damage)
        }
        return format!(
            "; the config came from {} (pass --config FILE to boot with another)",
            p.display()
        );
    }
    if let Some(owner) = stored_subsystem_id(data_dir)
        .is_none()
        .then(|| controller::check::subsystem_of(data_dir))
        .flatten()
        .filter(|o| *o != config.id)
    {
        return format!(
            "; data directory {} belongs to subsystem {owner} and has no subsystem.toml, \
             so {source} (subsystem {}) was tried: boot it with --config FILE, a config \
             with id = \"{owner}\"",
            data_dir.display(),
            config.id
        );
    }
    match stored_subsystem_id(data_dir) {
        Some(stored) if stored != config.id => format!(
            "; data directory {} belongs to subsystem {stored}, but {source} is subsystem {}: \
             boot it without --config (it keeps its own in subsystem.toml) or with the config \
             it was created with",
            data_dir.display(),
            config.id
        ),
        _ => String::new(),
    }
}

/// Checks, before the subsystem creates anything, that the filesystem of the
/// data directory can hold each config volume that does not exist yet (a
/// sparse file of its size), so a model too large for it (`fb:100T` on ext4)
/// is refused up front instead of failing half-way through the first boot.
pub fn check_volume_sizes(data_dir: &Path, config: &SubsystemConfig) -> Result<(), CliError> {
    let dir = DataDir::new(data_dir);
    let probe = data_dir.join(".volume-size-probe");
    for v in &config.volumes {
        if dir.volume_path(&v.id).exists() {
            continue;
        }
        let size = match geometry::Geometry::new(v.model) {
            Ok(g) => g.size_bytes(),
            Err(_) => continue, // the controller names a bad geometry itself
        };
        let fits = if i64::try_from(size).is_err() {
            Err(std::io::Error::other("larger than any file can be"))
        } else {
            let r = std::fs::File::create(&probe).and_then(|f| f.set_len(size));
            let _ = std::fs::remove_file(&probe);
            r
        };
        if let Err(e) = fits {
            return Err(CliError::Failed(format!(
                "volume {} ({}, {size} bytes) cannot be stored in {}: {e}; choose a smaller \
                 model or a data directory on a filesystem that allows files this large",
                v.id,
                v.model,
                data_dir.display()
            )));
        }
    }
    Ok(())
}

/// What the volumes could still grow by (provisioned size minus what their
/// sparse files already hold) against the free space of the data
/// directory's filesystem. Volumes are thin: an overcommitted directory
/// boots, and the first sign of a full filesystem would be a client's
/// ENOSPC, so boot says so up front. `None` when everything fits (or the
/// filesystem cannot be asked).
pub fn overcommit(data_dir: &Path, volumes: &[(String, u64)]) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dir = DataDir::new(data_dir);
    let st = rustix::fs::statvfs(data_dir).ok()?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let mut growth = 0u64;
    let mut provisioned = 0u64;
    for (id, size) in volumes {
        let held = std::fs::metadata(dir.volume_path(id)).map_or(0, |m| m.blocks() * 512);
        growth = growth.saturating_add(size.saturating_sub(held));
        provisioned = provisioned.saturating_add(*size);
    }
    (growth > free).then(|| {
        format!(
            "the volumes provision {} but the filesystem of {} has {} free: writes will fail with ENOSPC once it fills (nothing acknowledged is lost); free space there, or move the data directory (README, \"Runbook\")",
            crate::output::human_bytes(provisioned),
            data_dir.display(),
            crate::output::human_bytes(free),
        )
    })
}

/// [`overcommit`] for the volumes `sub` serves now, in its data directory
/// (at boot, and after each volume create).
pub fn overcommit_of(sub: &controller::Subsystem) -> Option<String> {
    let sizes: Vec<(String, u64)> = sub
        .volumes()
        .into_iter()
        .map(|v| (v.id, v.size_bytes))
        .collect();
    overcommit(sub.data_dir(), &sizes)
}

/// Adds `--peer ID=[https://]HOST:PORT` flags to `config` (replacing a `[[peers]]`
/// entry of the same id), checked as the config file's peers are.
pub fn add_peers(config: &mut SubsystemConfig, flags: &[String]) -> Result<(), CliError> {
    for flag in flags {
        let bad = |why: String| CliError::Usage(format!("--peer {flag}: {why}"));
        let (id, api) = flag
            .split_once('=')
            .ok_or_else(|| bad("expected ID=HOST:PORT, e.g. SS02=127.0.0.1:10820".into()))?;
        let (id, api) = (id.trim(), api.trim());
        controller::config::check_id("peer id", id).map_err(bad)?;
        if id == config.id {
            return Err(bad(format!("{id} is this subsystem's own id")));
        }
        controller::config::check_peer_api(api).map_err(bad)?;
        config.peers.retain(|p| p.id != id);
        config.peers.push(controller::PeerConfig {
            id: id.to_string(),
            api: api.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_config_round_trips_and_is_preferred_without_flag() {
        let dir = tempfile::tempdir().unwrap();
        let (c, src) = load_config(None, dir.path()).unwrap();
        assert_eq!(src, ConfigSource::Embedded);
        let mut other = c.clone();
        other.id = "SS07".into();
        assert!(DataDir::new(dir.path()).store_config(&other).unwrap());
        assert!(
            !DataDir::new(dir.path()).store_config(&other).unwrap(),
            "unchanged: no write"
        );
        let (back, src) = load_config(None, dir.path()).unwrap();
        assert_eq!(back.id, "SS07");
        assert!(matches!(src, ConfigSource::DataDir(_)));
        let bad = controller::ErrorKind::InvalidRequest;
        assert!(mismatch_hint(dir.path(), &c, &ConfigSource::Embedded, bad).contains("SS07"));
        assert!(mismatch_hint(dir.path(), &back, &src, bad).contains("the config came from"));
        let file = ConfigSource::File(dir.path().join("x.toml"));
        assert!(mismatch_hint(dir.path(), &back, &file, bad).is_empty());
        let io = controller::ErrorKind::Io;
        assert!(mismatch_hint(dir.path(), &back, &src, io).is_empty());
    }

    #[test]
    fn overcommit_is_named_only_when_the_volumes_could_outgrow_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        assert!(overcommit(dir.path(), &[("A".into(), 1 << 20)]).is_none());
        let w = overcommit(dir.path(), &[("A".into(), 1 << 62), ("B".into(), 1 << 20)])
            .expect("4 EiB cannot fit");
        assert!(w.contains("ENOSPC"), "{w}");
        assert!(w.contains(&dir.path().display().to_string()), "{w}");
        assert!(w.contains("Runbook"), "{w}");
    }

    #[test]
    fn peer_flags_take_plain_and_https_addresses_and_refuse_the_rest() {
        let (mut c, _) = load_config(None, tempfile::tempdir().unwrap().path()).unwrap();
        add_peers(
            &mut c,
            &[
                "SS02=127.0.0.1:10820".into(),
                "SS03=https://10.0.0.3:10810".into(),
                "SS04=http://h4:1/".into(),
            ],
        )
        .unwrap();
        let apis: Vec<&str> = c.peers.iter().map(|p| p.api.as_str()).collect();
        assert_eq!(
            apis,
            ["127.0.0.1:10820", "https://10.0.0.3:10810", "http://h4:1/"]
        );
        for bad in ["SS05=https://", "SS05=ftp://h:1", "SS05=https://h:99999"] {
            let e = add_peers(&mut c, &[bad.to_string()]).unwrap_err();
            assert!(e.to_string().contains("--peer SS05="), "{bad}: {e}");
        }
    }
}
