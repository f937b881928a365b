//! The real `kube-xdp` binary, run as a child process in a namespace.

use crate::netns::Netns;
use anyhow::{Context, bail};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// The `kube-xdp` binary under test: `KUBE_XDP_BIN` (set by `cargo xtask
/// test`), else the workspace's debug build.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBE_XDP_BIN") {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/kube-xdp");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`",
        path.display()
    );
    path
}

/// A pin directory on the host's bpffs, unique to a test, removed on drop.
pub struct PinDir(PathBuf);

impl PinDir {
    pub fn new(prefix: &str) -> Self {
        PinDir(PathBuf::from(format!("/sys/fs/bpf/{prefix}")))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `kube-xdp run`, killed on drop.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `kube-xdp run --config CONFIG` in `ns` and waits (bounded)
    /// until its log says it is running.
    ///
    /// # Errors
    ///
    /// When it exits or does not come up within 20 s; the error holds its
    /// log.
    pub fn start(ns: &Netns, config: &Path) -> anyhow::Result<Self> {
        let log = config.with_extension("log");
        let log_file = std::fs::File::create(&log)?;
        let child = ns
            .command(binary().to_str().unwrap())
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .context("starting kube-xdp")?;
        let mut daemon = Daemon { child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if daemon.log().contains("kube-xdp running") {
                return Ok(daemon);
            }
            if let Some(status) = daemon.child.try_wait()? {
                bail!(
                    "kube-xdp exited ({status}) during start-up:\n{}",
                    daemon.log()
                );
            }
            if Instant::now() > deadline {
                bail!("kube-xdp did not come up within 20 s:\n{}", daemon.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the daemon has written to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    ///
    /// # Errors
    ///
    /// When it does not exit within 10 s.
    pub fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("kube-xdp did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a `kube-xdp` subcommand in `ns`; returns its output whatever the
/// exit status.
pub fn cli(ns: &Netns, args: &[&str]) -> anyhow::Result<Output> {
    ns.command(binary().to_str().unwrap())
        .args(args)
        .output()
        .context("running the kube-xdp CLI")
}

/// A plain command (no namespace) for the CLI, for tests that do not need
/// one.
pub fn cli_here(args: &[&str]) -> anyhow::Result<Output> {
    Command::new(binary())
        .args(args)
        .output()
        .context("running the kube-xdp CLI")
}
