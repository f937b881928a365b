//! `cargo xtask deb [--check]`: the Debian package, with cargo-deb
//! (installed here if missing). `--check` installs it on this machine,
//! runs the installed `kube-xdp check-config` on the shipped file, verifies
//! the systemd unit, purges the package and checks that nothing is left.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::{build_ebpf, cargo, run};

const CARGO_DEB: &str = "3.8";
/// The namespace the check runs `check-config` in: it holds the `eth0`
/// and the address the shipped file needs, whatever this machine has.
const NETNS: &str = "kube-xdp-deb-check";

pub fn deb(root: &Path, check: bool) -> anyhow::Result<()> {
    ensure_cargo_deb(root)?;
    build_ebpf(root)?;
    run(cargo(root).args(["deb", "-p", "kube-xdp"]))?;
    let version = env!("CARGO_PKG_VERSION");
    let deb = root.join(format!("target/debian/kube-xdp_{version}_amd64.deb"));
    if !deb.exists() {
        bail!("cargo deb did not write {}", deb.display());
    }
    println!("built {}", deb.display());
    if check {
        check_package(&deb)?;
    }
    Ok(())
}

fn ensure_cargo_deb(root: &Path) -> anyhow::Result<()> {
    let installed = cargo(root)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(CARGO_DEB)
        });
    if !installed {
        run(cargo(root)
            .args(["install", "cargo-deb", "--locked", "--version"])
            .arg(format!("~{CARGO_DEB}")))?;
    }
    Ok(())
}

fn sh(script: &str) -> anyhow::Result<String> {
    println!("$ {script}");
    let out = Command::new("bash")
        .args(["-c", script])
        .output()
        .with_context(|| format!("running {script}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{text}");
    if !out.status.success() {
        bail!("`{script}` failed ({})", out.status);
    }
    Ok(text)
}

fn check_package(deb: &Path) -> anyhow::Result<()> {
    let path = deb.canonicalize()?;
    let deb = path.display();
    sh(
        "dpkg-query -W kube-xdp >/dev/null 2>&1 && { echo 'kube-xdp is already installed: remove it first'; exit 1; } || true",
    )?;
    sh(&format!(
        "dpkg-deb --info {deb} | sed -n '/Package/,$p'; dpkg-deb --contents {deb}"
    ))?;
    sh(&format!(
        "apt-get install -y {deb} 2>&1 | grep -v '^(Reading' | tail -n 4"
    ))?;
    let result = installed_checks();
    // Purge even when a check failed, then judge.
    let purge = purge_and_verify();
    result.and(purge)
}

fn installed_checks() -> anyhow::Result<()> {
    sh("command -v kube-xdp && kube-xdp --version && dpkg-query -W -f='${Conffiles}\\n' kube-xdp")?;
    sh("man -w kube-xdp")?;
    // A veth end as `eth0` (this kernel kind has no dummy interfaces).
    let setup = sh(&format!(
        "ip netns add {NETNS} && \
         ip -n {NETNS} link add eth0 type veth peer name peer0 && \
         ip -n {NETNS} addr add 198.18.0.2/24 dev eth0 && ip -n {NETNS} link set eth0 up"
    ));
    let checked = setup.and_then(|_| {
        sh(&format!(
            "ip netns exec {NETNS} /usr/bin/kube-xdp check-config --config /etc/kube-xdp/kube-xdp.toml"
        ))
    });
    let _ = sh(&format!("ip netns del {NETNS}"));
    checked?;
    if Path::new("/usr/bin/systemd-analyze").exists() {
        sh(
            "systemd-analyze verify /usr/lib/systemd/system/kube-xdp.service && echo 'unit verified'",
        )?;
    } else {
        println!("systemd-analyze is not installed: unit not verified");
    }
    sh("systemctl is-enabled kube-xdp 2>&1 || true")?;
    Ok(())
}

fn purge_and_verify() -> anyhow::Result<()> {
    let files = sh("dpkg-query -L kube-xdp")?;
    sh("apt-get purge -y kube-xdp 2>&1 | grep -v '^(Reading' | tail -n 3")?;
    let left: Vec<PathBuf> = files
        .lines()
        .map(PathBuf::from)
        .filter(|p| p.is_file() || p.is_symlink())
        .collect();
    let mut problems: Vec<String> = left
        .iter()
        .map(|p| format!("{} is left", p.display()))
        .collect();
    for dir in ["/etc/kube-xdp", "/usr/share/doc/kube-xdp"] {
        if Path::new(dir).exists() {
            problems.push(format!("{dir} is left"));
        }
    }
    if sh("dpkg-query -W kube-xdp 2>&1; true")?.contains("\tkube-xdp") {
        problems.push("dpkg still knows the package".into());
    }
    sh(
        "ls /var/lib/systemd/deb-systemd-helper-enabled/ 2>/dev/null | grep kube-xdp || echo 'no systemd enablement state left'",
    )?;
    if !problems.is_empty() {
        bail!("after apt-get purge: {}", problems.join("; "));
    }
    println!("purged: nothing of kube-xdp is left");
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The unit runs the binary where the package puts it, on the file the
    /// package ships as a conffile.
    #[test]
    fn unit_paths_match_the_package() {
        let root = crate::workspace_root();
        let unit = std::fs::read_to_string(root.join("packaging/kube-xdp.service")).unwrap();
        let manifest: toml::Table = std::fs::read_to_string(root.join("kube-xdp/Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
        let deb = &manifest["package"]["metadata"]["deb"];
        let assets: Vec<(String, String)> = deb["assets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a[0].as_str().unwrap().to_owned(),
                    a[1].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert!(assets.contains(&("target/release/kube-xdp".into(), "usr/bin/".into())));
        assert!(
            assets
                .iter()
                .any(|(_, to)| to == "etc/kube-xdp/kube-xdp.toml")
        );
        assert_eq!(
            deb["conf-files"].as_array().unwrap()[0].as_str(),
            Some("/etc/kube-xdp/kube-xdp.toml")
        );
        for line in unit
            .lines()
            .filter(|l| l.starts_with("Exec") && l.contains("kube-xdp "))
        {
            let command = line.split_once('=').unwrap().1;
            assert!(command.starts_with("/usr/bin/kube-xdp "), "{line}");
            if command.contains("--config") {
                assert!(
                    command.ends_with("--config /etc/kube-xdp/kube-xdp.toml"),
                    "{line}"
                );
            }
        }
        for (from, _) in &assets {
            if !from.starts_with("target/") {
                assert!(
                    root.join("kube-xdp").join(from).exists(),
                    "asset {from} is missing"
                );
            }
        }
    }
}
