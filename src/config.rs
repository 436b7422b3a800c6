//! The client's config file (`$XDG_CONFIG_HOME/hallway/config.toml`): the default server and
//! name, and the session token kept for each server so a restart keeps your identity.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What the config file holds. Every field is optional; command-line flags win.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Server URL (or room link) to use when `--server` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Display name to use when `--name` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Ignored: protocol version 1's shared access code, replaced by invitations. Kept so
    /// an old config file still loads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_code: Option<String>,
    /// What playout favours: `auto` (low delay on stage, smoothness in the audience),
    /// `low` or `smooth`.
    #[serde(default, skip_serializing_if = "is_auto")]
    pub latency: Latency,
    /// Session tokens by server URL.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tokens: BTreeMap<String, String>,
    /// Keys rebound, by action name: `mute = "v"`, `hand = ["h", "H"]` (see
    /// [`crate::app::keymap`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, Keys>,
    /// People whose device fingerprints were compared with them, by `"SERVER @handle"`:
    /// their devices' X25519 keys (base64url), marked ✓ in private rooms.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub verified: BTreeMap<String, Vec<String>>,
}

/// One key or several, for an action in `[keys]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Keys {
    One(String),
    Many(Vec<String>),
}

impl Config {
    /// The keymap: the defaults with `[keys]` on top; a clear error when it cannot be.
    pub fn keymap(&self) -> Result<crate::app::keymap::Keymap, crate::app::keymap::KeymapError> {
        let keys: Vec<(String, Vec<String>)> = self
            .keys
            .iter()
            .map(|(action, keys)| {
                let keys = match keys {
                    Keys::One(key) => vec![key.clone()],
                    Keys::Many(keys) => keys.clone(),
                };
                (action.clone(), keys)
            })
            .collect();
        crate::app::keymap::Keymap::with(&keys)
    }
}

/// The `latency` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Latency {
    /// Low delay on stage, where people converse; smoothness in the audience.
    #[default]
    Auto,
    /// Always low delay (a rare stall is heard as a short gap).
    Low,
    /// Always smooth (up to 600 ms of delay on bad networks).
    Smooth,
}

fn is_auto(latency: &Latency) -> bool {
    *latency == Latency::Auto
}

/// Why the config file could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// No home or XDG config directory to keep it in.
    #[error("cannot find a config directory: set XDG_CONFIG_HOME or HOME")]
    NoDirectory,
    /// The file exists but could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("{path} is not a valid config file: {message}; fix or delete it")]
    Parse { path: PathBuf, message: String },
}

impl Config {
    /// The device keys marked verified for people on `server`, by lowercase handle.
    pub fn verified_on(
        &self,
        server: &str,
    ) -> std::collections::HashMap<String, std::collections::BTreeSet<String>> {
        let prefix = format!("{server} @");
        self.verified
            .iter()
            .filter_map(|(slot, keys)| {
                let handle = slot.strip_prefix(&prefix)?;
                Some((handle.to_lowercase(), keys.iter().cloned().collect()))
            })
            .collect()
    }

    /// Keeps (`on`) or forgets that `keys` of `handle` on `server` were compared.
    pub fn set_verified(&mut self, server: &str, handle: &str, keys: &[String], on: bool) {
        let slot = format!("{server} @{}", handle.to_lowercase());
        let kept = self.verified.entry(slot.clone()).or_default();
        if on {
            for key in keys {
                if !kept.contains(key) {
                    kept.push(key.clone());
                }
            }
        } else {
            kept.retain(|k| !keys.contains(k));
        }
        if kept.is_empty() {
            self.verified.remove(&slot);
        }
    }

    /// The default path, `$XDG_CONFIG_HOME/hallway/config.toml`.
    pub fn default_path() -> Result<PathBuf, ConfigError> {
        directories::ProjectDirs::from("", "", "hallway")
            .map(|dirs| dirs.config_dir().join("config.toml"))
            .ok_or(ConfigError::NoDirectory)
    }

    /// Reads the file; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(ConfigError::Io {
                    action: "read",
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })
    }

    /// Writes the file (creating its directory), readable only by its owner: it holds tokens.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let io = |action, source| ConfigError::Io {
            action,
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
        }
        let text = toml::to_string(self).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        // Write a sibling and rename, so a crash never leaves half a file. The sibling is
        // created 0600: written first and protected after, the tokens would be readable by
        // anyone for a moment. A stale sibling from a crash is replaced, not trusted.
        let tmp = path.with_extension("toml.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(|e| io("create", e))?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|e| io("write", e))?;
        file.sync_all().map_err(|e| io("write", e))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| io("write", e))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_rebound_from_the_file_and_a_bad_binding_says_why() {
        let config: Config =
            toml::from_str("[keys]\nmute = \"v\"\nhand = [\"h\", \"H\"]\n").expect("parses");
        let keys = config.keymap().expect("valid");
        use crate::app::keymap::Action;
        use crossterm::event::KeyCode;
        assert_eq!(keys.in_room(KeyCode::Char('v')), Some(Action::Mute));
        assert_eq!(keys.in_room(KeyCode::Char('H')), Some(Action::Hand));
        let clash: Config = toml::from_str("[keys]\nmute = \"h\"\n").expect("parses");
        let error = clash.keymap().expect_err("h is the hand's").to_string();
        assert!(error.contains("mean both"), "{error}");
    }

    #[test]
    fn verified_keys_are_kept_per_server_and_handle_and_forgotten() {
        let mut config = Config::default();
        let a = "http://a:1/";
        config.set_verified(a, "Ada", &["k1".into(), "k2".into()], true);
        config.set_verified("http://b:1/", "ada", &["k9".into()], true);
        let on_a = config.verified_on(a);
        assert_eq!(on_a.len(), 1);
        assert_eq!(on_a["ada"].iter().collect::<Vec<_>>(), ["k1", "k2"]);
        let text = toml::to_string(&config).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
        config.set_verified(a, "ada", &["k1".into(), "k2".into()], false);
        assert!(config.verified_on(a).is_empty());
        assert_eq!(config.verified.len(), 1, "b's entry stays");
    }

    #[test]
    fn saves_and_loads_the_same_config() {
        let dir = std::env::temp_dir().join(format!("hallway-config-{}", std::process::id()));
        let path = dir.join("sub/config.toml");
        let mut config = Config {
            server: Some("http://127.0.0.1:7600".into()),
            name: Some("ada".into()),
            ..Config::default()
        };
        config
            .tokens
            .insert("http://127.0.0.1:7600/".into(), "abc".into());
        config.save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), config);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the token file is the owner's alone");
        }
        // A stale sibling left by a crash (or planted, readable by all) is replaced.
        std::fs::write(path.with_extension("toml.tmp"), "junk").unwrap();
        config.save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), config);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn latency_is_auto_unless_set_and_a_wrong_value_is_an_error() {
        let dir = std::env::temp_dir().join(format!("hallway-latency-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, "name = \"ada\"\n").unwrap();
        assert_eq!(Config::load(&path).unwrap().latency, Latency::Auto);
        std::fs::write(&path, "latency = \"smooth\"\n").unwrap();
        assert_eq!(Config::load(&path).unwrap().latency, Latency::Smooth);
        std::fs::write(&path, "latency = \"fast\"\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("latency") || err.contains("fast"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_file_is_empty_and_a_broken_one_is_an_error() {
        let dir = std::env::temp_dir().join(format!("hallway-config-bad-{}", std::process::id()));
        assert_eq!(
            Config::load(&dir.join("none.toml")).unwrap(),
            Config::default()
        );
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, "server = [").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("not a valid config file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
