//! `cargo xtask setup`: installs what is missing and nothing else.

use crate::run;
use anyhow::{Context, bail};
use std::process::{Command, Stdio};

/// Debian packages: LLVM 22 for bpf-linker, and the tools the tests drive
/// (chromium: the stats page's end-to-end test reads it in a real headless
/// browser, about 350 MB and 13 s to install here; keepalived: the pair's
/// interoperability test runs one box of the pair with it).
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "iproute2",
    "ethtool",
    "iputils-ping",
    "util-linux",
    "procps",
    "chromium",
    "keepalived",
    // The Kubernetes API emulator's (kmock) interpreter and installer.
    "python3",
    "python3-pip",
];

pub fn setup() -> anyhow::Result<()> {
    install_packages()?;
    install_rust_src()?;
    install_bpf_linker()?;
    install_kmock()
}

/// The Kubernetes API emulator the `[kubernetes]` tests run against:
/// PyPI's kmock, pinned (the tests' wrapper, `tests/k8s/emulator.py`,
/// relies on its internals).
const KMOCK: &str = "kmock==0.8";
/// Where it goes (no virtualenv needed, nothing of the system's changes):
/// `target/python-kmock`, found there by `tests/src/kube_api.rs`.
pub const KMOCK_DIR: &str = "target/python-kmock";

/// What pip writes last for the pinned version: its presence says the
/// install is that version and complete.
const KMOCK_DIST_INFO: &str = "kmock-0.8.dist-info";

fn install_kmock() -> anyhow::Result<()> {
    let dir = crate::workspace_root().join(KMOCK_DIR);
    if dir.join(KMOCK_DIST_INFO).is_dir() {
        return Ok(());
    }
    eprintln!("setup: installing {KMOCK} into {}", dir.display());
    // Into a directory beside it, then renamed: an interrupted install
    // (or another version) is never taken for a complete one.
    let partial = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&partial)
        .arg(KMOCK))
    .context("installing the Kubernetes API emulator (python3 -m pip)")?;
    if !partial.join(KMOCK_DIST_INFO).is_dir() {
        bail!(
            "pip installed no {KMOCK_DIST_INFO} into {}",
            partial.display()
        );
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::rename(&partial, &dir)
        .with_context(|| format!("moving {} to {}", partial.display(), dir.display()))
}

fn quiet(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn install_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output();
            !out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("installing Debian packages (run as root)")
}

fn install_rust_src() -> anyhow::Result<()> {
    if !quiet(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        bail!(
            "the nightly toolchain is missing; it is needed to build the eBPF object (rustup toolchain install nightly)"
        );
    }
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    if std::path::Path::new(&sysroot)
        .join("lib/rustlib/src/rust/library/core")
        .exists()
    {
        return Ok(());
    }
    eprintln!("setup: adding rust-src to nightly");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn install_bpf_linker() -> anyhow::Result<()> {
    if quiet(Command::new("bpf-linker").arg("--version")) {
        return Ok(());
    }
    eprintln!("setup: building bpf-linker against LLVM 22 (about a minute)");
    let path = format!(
        "/usr/lib/llvm-22/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    run(Command::new("cargo")
        .args(["install", "bpf-linker", "--version", "0.13.0"])
        .args(["--no-default-features", "--features", "llvm-22"])
        .env("PATH", path)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO"))
    .context("installing bpf-linker")
}
