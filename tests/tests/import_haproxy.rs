//! End to end: the real binary's `import-haproxy` on corpus files, then
//! its `check-config` on the output, in a namespace that holds the
//! interface and the addresses the files name (the load balancer's
//! 198.18.0.2 and the VIP 198.18.0.10 on `eth0`).

use std::path::{Path, PathBuf};
use std::process::Command;

use kube_xdp_tests::{
    daemon::{binary, cli},
    netns::Netns,
    require_root,
};

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/haproxy")
        .join(name)
}

/// A namespace with an `eth0` (a veth end: this kernel kind has no dummy
/// interfaces) holding the LB's address and the VIP.
fn lb_namespace(tag: &str) -> Netns {
    let ns = Netns::new(&format!("kxdp-imp-{tag}-{}", std::process::id())).unwrap();
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
    ])
    .unwrap();
    ns.ip(&["addr", "add", "198.18.0.2/24", "dev", "eth0"])
        .unwrap();
    ns.ip(&["addr", "add", "198.18.0.10/32", "dev", "eth0"])
        .unwrap();
    ns.ip(&["link", "set", "eth0", "up"]).unwrap();
    ns
}

/// `kube-xdp import-haproxy FILE -o OUT ARGS…` with the file's `.env`
/// variables in the environment.
fn import(file: &str, out: &Path, args: &[&str]) -> std::process::Output {
    let cfg = corpus(file);
    let mut cmd = Command::new(binary());
    cmd.arg("import-haproxy")
        .arg(&cfg)
        .arg("-o")
        .arg(out)
        .args(args);
    if let Ok(env) = std::fs::read_to_string(cfg.with_extension("env")) {
        for (k, v) in env.lines().filter_map(|l| l.split_once('=')) {
            cmd.env(k, v);
        }
    }
    cmd.output().unwrap()
}

#[test]
fn imported_kubeadm_guide_passes_the_real_check_config() {
    require_root();
    let ns = lb_namespace("ok");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kube-xdp.toml");
    let imported = import("kubeadm-guide.cfg", &out, &["--vip", "198.18.0.10"]);
    let summary = String::from_utf8_lossy(&imported.stderr);
    assert!(imported.status.success(), "{summary}");
    assert!(summary.contains("1 service, 3 backends"), "{summary}");
    assert!(
        summary.contains("left out:") && summary.contains("approximated"),
        "{summary}"
    );

    let checked = cli(&ns, &["check-config", "--config", out.to_str().unwrap()]).unwrap();
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(stdout.contains("198.18.0.11"), "{stdout}");
}

#[test]
fn unknown_vip_is_a_placeholder_the_real_check_config_refuses() {
    require_root();
    let ns = lb_namespace("vip");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kube-xdp.toml");
    let imported = import("kubeadm-guide-legacy.cfg", &out, &[]);
    assert!(imported.status.success());

    let checked = cli(&ns, &["check-config", "--config", out.to_str().unwrap()]).unwrap();
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(!checked.status.success());
    assert!(
        stderr.contains("vip: is still the placeholder") && stderr.contains("--vip"),
        "{stderr}"
    );
}

#[test]
fn a_file_with_nothing_usable_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        "frontend www\n  bind :80\n  mode http\n  default_backend web\nbackend web\n  server a 198.18.0.20:80\n",
    )
    .unwrap();
    let out = dir.path().join("kube-xdp.toml");
    let imported = Command::new(binary())
        .arg("import-haproxy")
        .arg(&cfg)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!imported.status.success());
    assert!(String::from_utf8_lossy(&imported.stderr).contains("nothing to translate"));
    assert!(!out.exists());
}
