//! Files with many problems, and what a parsed file records about itself.

use std::path::{Path, PathBuf};

use super::*;

#[test]
fn all_errors_of_a_file_are_reported_together_in_file_order() {
    let text = r#"[daemon]
interfaces = []
flow_table_size = 10
snat_ports = "40000-30000"

[[service]]
name = "api"
vip = "10.4.0.999"
port = 6443

[service.health_check]
fall = 0
timeout = "5s"

[[service.backend]]
name = "bettley"
address = "10.4.0.11"
weight = 300

[[service]]
name = "api"
vip = "10.4.0.10"
ports = "32767-30000"
mode = "dsr"
"#;
    let err = parse(text).unwrap_err();
    let all = err.issues();
    let lines: Vec<Option<usize>> = all.iter().map(|i| i.line).collect();
    let want = [2, 3, 4, 8, 12, 13, 18, 21, 23, 24];
    assert_eq!(
        lines,
        want.iter().map(|n| Some(*n)).collect::<Vec<_>>(),
        "{err}"
    );
    let shown = err.to_string();
    assert_eq!(shown.lines().count(), want.len(), "{shown}");
    for n in want {
        assert!(
            shown.contains(&format!("test.toml:{n}: ")),
            "{n} missing:\n{shown}"
        );
    }
}

#[test]
fn config_path_is_recorded() {
    let config = Config::parse(Path::new("/etc/kube-xdp/kube-xdp.toml"), DAEMON).unwrap();
    assert_eq!(config.path, PathBuf::from("/etc/kube-xdp/kube-xdp.toml"));
}
