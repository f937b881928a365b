//! `cargo xtask`: toolchain setup, the eBPF build, and the test and demo
//! drivers. Every command runs `setup` first, so a fresh machine needs no
//! manual step.

mod bench;
mod deb;
mod setup;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

#[derive(Parser)]
#[command(name = "xtask")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing: Debian's LLVM 22 and tools, rust-src for
    /// nightly, bpf-linker.
    Setup,
    /// Build the eBPF object (always optimized: the verifier rejects
    /// unoptimized BPF code).
    BuildEbpf {
        /// Accepted for symmetry with cargo; the object is always built
        /// with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Set up, build, and run every test (unit, datapath, end to end).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, and run the demo.
    Demo,
    /// Run the benchmarks and write BENCHMARKS.md; with a part, run only
    /// that part and replace only its block of BENCHMARKS.md.
    Bench {
        /// The part to run alone (every part when absent).
        #[arg(value_enum)]
        part: Option<bench::Part>,
        /// The SYN-flood part's flood length in seconds (default 60; 10 for
        /// a quick check).
        #[arg(long)]
        flood_secs: Option<u32>,
    },
    /// Build the Debian package target/debian/kube-xdp_VERSION_amd64.deb
    /// (installs cargo-deb 3.8 if missing).
    Deb {
        /// Then install it here, run the installed check-config on the
        /// shipped file, verify the systemd unit, purge it, and check that
        /// nothing is left.
        #[arg(long)]
        check: bool,
    },
    /// `cargo fmt --check` and clippy (host crates, and the eBPF crate for
    /// its own target), warnings as errors.
    Lint,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = workspace_root();
    match args.command {
        Cmd::Setup => setup::setup(),
        Cmd::BuildEbpf { release: _ } => {
            setup::setup()?;
            build_ebpf(&root)
        }
        Cmd::Test { args } => {
            setup::setup()?;
            build_ebpf(&root)?;
            build_daemon(&root)?;
            let mut cmd = cargo(&root);
            cmd.args(["test", "--workspace"]).args(&args);
            cmd.env("KUBE_XDP_BIN", root.join("target/debug/kube-xdp"));
            run(&mut cmd)
        }
        Cmd::Demo => {
            setup::setup()?;
            build_ebpf(&root)?;
            build_daemon(&root)?;
            let mut cmd = cargo(&root);
            cmd.args(["run", "--quiet", "-p", "kube-xdp-tests", "--bin", "demo"]);
            cmd.env("KUBE_XDP_BIN", root.join("target/debug/kube-xdp"));
            run(&mut cmd)
        }
        Cmd::Bench { part, flood_secs } => {
            setup::setup()?;
            build_ebpf(&root)?;
            bench::bench(&root, part, flood_secs)
        }
        Cmd::Deb { check } => {
            setup::setup()?;
            deb::deb(&root, check)
        }
        Cmd::Lint => {
            setup::setup()?;
            run(cargo(&root).args(["fmt", "--all", "--", "--check"]))?;
            run(cargo(&root).args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
            run(nightly_cargo(&root)
                .args(["clippy", "--release", "-p", "kube-xdp-ebpf"])
                .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
                .args(["--", "-D", "warnings"]))
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// `cargo` for the host crates (the toolchain this xtask runs with).
pub fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Builds `target/bpfel-unknown-none/release/kube-xdp-ebpf` with nightly.
fn build_ebpf(root: &Path) -> anyhow::Result<()> {
    run(nightly_cargo(root)
        .args(["build", "--release", "-p", "kube-xdp-ebpf"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"]))
    .context("building the eBPF object")?;
    println!(
        "eBPF object: {}",
        root.join("target/bpfel-unknown-none/release/kube-xdp-ebpf")
            .display()
    );
    Ok(())
}

/// `cargo` from the nightly toolchain, for the eBPF crate.
fn nightly_cargo(root: &Path) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.current_dir(root)
        .args(["run", "nightly", "cargo"])
        // The outer cargo's choices must not leak into the nightly build.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO");
    cmd
}

/// Builds the daemon, which embeds the object just built.
fn build_daemon(root: &Path) -> anyhow::Result<()> {
    run(cargo(root).args(["build", "-p", "kube-xdp"]))
}
