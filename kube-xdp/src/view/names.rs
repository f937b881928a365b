//! The names of what the daemon programmed: service and backend ids →
//! the names (and weights) of the plan it last applied. The daemon writes
//! them to `run_dir` after every apply; readers join them with the maps by
//! id, so a name is never guessed from addresses, and no reader needs the
//! configuration file or DNS.

use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
};

/// The file in `run_dir`.
pub const NAMES_FILE: &str = "names.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendName {
    pub name: String,
    pub weight: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceName {
    pub name: String,
    /// The Kubernetes Service it was made for (`namespace/name`); `None`
    /// for a service of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// By backend id.
    pub backends: BTreeMap<u32, BackendName>,
}

/// Names by id, for the maps pinned at `pin_path`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    /// The pins these names describe.
    pub pin_path: PathBuf,
    /// By service id.
    pub services: BTreeMap<u32, ServiceName>,
}

impl Names {
    /// The names in `run_dir`, if they describe the maps pinned at
    /// `pin_path` (another daemon's names are not these maps' names).
    pub fn load(run_dir: &Path, pin_path: &Path) -> Option<Names> {
        let text = std::fs::read_to_string(run_dir.join(NAMES_FILE)).ok()?;
        let names: Names = serde_json::from_str(&text).ok()?;
        (names.pin_path == pin_path).then_some(names)
    }

    /// The JSON the daemon writes.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Every (service, backend) pair named.
    pub fn backend_pairs(&self) -> HashSet<(String, String)> {
        self.services
            .values()
            .flat_map(|s| {
                s.backends
                    .values()
                    .map(move |b| (s.name.clone(), b.name.clone()))
            })
            .collect()
    }

    /// A backend's name, `None` when unknown.
    pub fn backend(&self, service_id: u32, backend_id: u32) -> Option<&BackendName> {
        self.services.get(&service_id)?.backends.get(&backend_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_belong_to_their_pins() {
        let dir = std::env::temp_dir().join(format!("kxdp-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut names = Names {
            pin_path: "/sys/fs/bpf/kxdp-a".into(),
            ..Names::default()
        };
        names.services.insert(
            3,
            ServiceName {
                name: "kube-apiserver".into(),
                origin: None,
                backends: BTreeMap::from([(
                    7,
                    BackendName {
                        name: "cp1".into(),
                        weight: 2,
                    },
                )]),
            },
        );
        std::fs::write(dir.join(NAMES_FILE), names.to_json()).unwrap();
        let read = Names::load(&dir, Path::new("/sys/fs/bpf/kxdp-a")).unwrap();
        assert_eq!(read, names);
        assert_eq!(read.backend(3, 7).unwrap().name, "cp1");
        assert!(read.backend(3, 8).is_none());
        assert!(Names::load(&dir, Path::new("/sys/fs/bpf/other")).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
