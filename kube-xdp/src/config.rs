//! The configuration file (`/etc/kube-xdp/kube-xdp.toml`).

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Where `kube-xdp` looks for its configuration by default.
pub const DEFAULT_CONFIG: &str = "/etc/kube-xdp/kube-xdp.toml";
/// Where maps and links are pinned by default.
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/kube-xdp";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{path}: [daemon] interfaces: {message}")]
    Interfaces { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub daemon: DaemonConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Interfaces to attach to.
    pub interfaces: Vec<String>,
    #[serde(default)]
    pub xdp_mode: XdpMode,
    #[serde(default = "default_pin_path")]
    pub pin_path: PathBuf,
}

fn default_pin_path() -> PathBuf {
    PathBuf::from(DEFAULT_PIN_PATH)
}

/// How the program is attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native, falling back to generic where the driver has no XDP support.
    #[default]
    Auto,
    Native,
    Generic,
}

impl Config {
    /// Parses and validates a configuration held in `text`, read from
    /// `path` (named in errors).
    ///
    /// # Errors
    ///
    /// Any syntax or schema error, with the line and key.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        if config.daemon.interfaces.is_empty() {
            return Err(ConfigError::Interfaces {
                path: path.to_owned(),
                message: "name at least one interface".into(),
            });
        }
        Ok(config)
    }

    /// Reads, parses and validates the file at `path`.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is invalid.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), text)
    }

    #[test]
    fn defaults_apply_when_only_interfaces_are_given() {
        let config = parse("[daemon]\ninterfaces = [\"eth0\"]\n").unwrap();
        assert_eq!(config.daemon.interfaces, ["eth0"]);
        assert_eq!(config.daemon.xdp_mode, XdpMode::Auto);
        assert_eq!(config.daemon.pin_path, Path::new(DEFAULT_PIN_PATH));
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = parse("[daemon]\ninterfaces = [\"eth0\"]\nxdp_mdoe = \"native\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("test.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("xdp_mdoe"), "{err}");
    }

    #[test]
    fn bad_xdp_mode_is_rejected() {
        let err = parse("[daemon]\ninterfaces = [\"eth0\"]\nxdp_mode = \"fast\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("fast"), "{err}");
    }

    #[test]
    fn empty_interface_list_is_rejected() {
        let err = parse("[daemon]\ninterfaces = []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("interfaces"), "{err}");
    }
}
