//! Network namespaces and veth pairs, removed on drop.

use anyhow::{Context, bail};
use std::{
    fs::File,
    os::fd::AsRawFd,
    path::PathBuf,
    process::{Command, Output},
};

/// Runs a command; fails with its stderr when it exits non-zero.
pub fn cmd(program: &str, args: &[&str]) -> anyhow::Result<Output> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// A named network namespace (`ip netns add`), deleted on drop together
/// with every interface inside it.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace with its loopback up.
    ///
    /// # Errors
    ///
    /// When `ip netns add` fails (not root, name taken).
    pub fn new(name: &str) -> anyhow::Result<Self> {
        cmd("ip", &["netns", "add", name])?;
        let ns = Netns { name: name.into() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's file, for `nsenter --net=`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `nsenter --net=PATH program args…`: only the network namespace
    /// changes, so the host's bpffs stays visible (`ip netns exec` would
    /// remount /sys and hide it; see TOOLCHAIN.md).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        c
    }

    /// Runs a command in the namespace; fails with its stderr.
    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        let out = self
            .command(program)
            .args(args)
            .output()
            .with_context(|| format!("running {program} in {}", self.name))?;
        if !out.status.success() {
            bail!(
                "{program} {} in {} failed: {}",
                args.join(" "),
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out)
    }

    /// `ip …` in the namespace.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        cmd("ip", &full)
    }

    /// Sets a sysctl in the namespace (`net.ipv4.…`).
    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.exec("sysctl", &["-q", "-w", &format!("{key}={value}")])?;
        Ok(())
    }

    /// Runs `f` on a thread that has joined this namespace, so sockets it
    /// opens live there.
    ///
    /// # Errors
    ///
    /// When the namespace cannot be entered; `f`'s own error otherwise.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        self.spawn(f)
            .join()
            .map_err(|_| anyhow::anyhow!("thread in {} panicked", self.name))?
    }

    /// Like [`Netns::run`], without waiting.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> std::thread::JoinHandle<anyhow::Result<T>> {
        let path = self.path();
        std::thread::spawn(move || {
            let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            // SAFETY: a valid namespace fd; setns affects only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!(
                    "setns {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                );
            }
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace removes its veth ends, and with them
        // their peers.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Creates a veth pair with one end in each namespace, each with an
/// address, up, and TX checksum offload off: an XDP program that rewrites a
/// packet sent with a partial checksum (CHECKSUM_PARTIAL) produces one the
/// receiver rejects, where a real NIC would have delivered it whole (see
/// TOOLCHAIN.md).
///
/// # Errors
///
/// When `ip` or `ethtool` fails.
pub fn veth_pair(a: (&Netns, &str, &str), b: (&Netns, &str, &str)) -> anyhow::Result<()> {
    cmd(
        "ip",
        &[
            "link",
            "add",
            a.1,
            "netns",
            a.0.name(),
            "type",
            "veth",
            "peer",
            "name",
            b.1,
            "netns",
            b.0.name(),
        ],
    )?;
    for (ns, ifname, addr) in [a, b] {
        ns.ip(&["addr", "add", addr, "dev", ifname])?;
        ns.ip(&["link", "set", ifname, "up"])?;
        ns.exec("ethtool", &["-K", ifname, "tx", "off"])?;
    }
    Ok(())
}
