//! The Kubernetes API emulator (`tests/k8s/emulator.py`: PyPI's kmock with
//! resource versions added) run in a namespace on its loopback, and a
//! plain HTTP/1.1 client to drive it as `kubectl` would: create, patch,
//! delete, get. No real kube-apiserver can be installed on these
//! machines; see the emulator's doc for what it does and does not do.

use crate::netns::Netns;
use anyhow::{Context, bail};
use serde_json::Value;
use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpStream},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

/// Where `cargo xtask setup` installs kmock.
pub fn kmock_dir() -> PathBuf {
    std::env::var_os("KUBE_XDP_KMOCK").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/python-kmock"),
        PathBuf::from,
    )
}

/// The emulator, running in a namespace; killed on drop.
pub struct Emulator {
    child: Option<Child>,
    ns_path: PathBuf,
    pub host: Ipv4Addr,
    pub port: u16,
    log: PathBuf,
}

impl Emulator {
    /// Starts the emulator in `ns` on 127.0.0.1:`port` (0: any free port)
    /// and waits (at most 20 s) until it listens; its log goes to
    /// `dir/emulator.log`.
    ///
    /// # Errors
    ///
    /// When kmock is not installed or the emulator does not come up.
    pub fn start(ns: &Netns, dir: &Path, port: u16) -> anyhow::Result<Self> {
        Emulator::start_on(ns, dir, Ipv4Addr::LOCALHOST, port)
    }

    /// [`Emulator::start`] on `host` (an address of `ns`), for boxes in
    /// other namespaces.
    ///
    /// # Errors
    ///
    /// As [`Emulator::start`].
    pub fn start_on(ns: &Netns, dir: &Path, host: Ipv4Addr, port: u16) -> anyhow::Result<Self> {
        let kmock = kmock_dir();
        if !kmock.join("kmock").exists() {
            bail!(
                "kmock is not installed in {}: run `cargo xtask setup`",
                kmock.display()
            );
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s/emulator.py");
        let port_file = dir.join(format!("emulator-{}.port", std::process::id()));
        let _ = std::fs::remove_file(&port_file);
        let log = dir.join("emulator.log");
        let mut command = ns.command("python3");
        command
            .arg(&script)
            .arg(&port_file)
            .arg(port.to_string())
            .arg(host.to_string())
            .env("PYTHONPATH", &kmock)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        // A test killed outright (no Drop) leaves no Python behind: the
        // kernel kills the emulator when the thread that started it (the
        // test's, which also drops it) ends. nsenter execs python3, which
        // keeps the setting.
        // SAFETY: only prctl(2), async-signal-safe, between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().context("starting the emulator")?;
        let mut emulator = Emulator {
            child: Some(child),
            ns_path: ns.path(),
            host,
            port: 0,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Ok(p) = text.trim().parse()
            {
                emulator.port = p;
                return Ok(emulator);
            }
            if let Some(child) = emulator.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("the emulator exited ({status}):\n{}", emulator.log());
            }
            if Instant::now() > deadline {
                bail!("the emulator did not come up in 20 s:\n{}", emulator.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it (the cluster "goes away").
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A kubeconfig for kube-xdp: plain http to the emulator on `host`
    /// (loopback, or an address on the test segment), no credentials.
    pub fn kubeconfig(host: Ipv4Addr, port: u16) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: http://{host}:{port}\n\
             users:\n- name: test\n  user: {{}}\ncontexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: test\n\
             current-context: emulator\n"
        )
    }

    /// One request, from the emulator's namespace: the status and the JSON
    /// body (`Null` when empty or not JSON).
    ///
    /// # Errors
    ///
    /// When the emulator cannot be reached.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let ns_path = self.ns_path.clone();
        let port = self.port;
        let host = self.host;
        let method = method.to_owned();
        let path = path.to_owned();
        let body = body.map(Value::to_string);
        let thread = std::thread::spawn(move || -> anyhow::Result<(u16, Value)> {
            let file = std::fs::File::open(&ns_path)?;
            // SAFETY: a valid namespace fd; setns affects only this thread.
            if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) }
                != 0
            {
                bail!("setns: {}", std::io::Error::last_os_error());
            }
            let mut s = TcpStream::connect_timeout(
                &std::net::SocketAddr::from((host, port)),
                Duration::from_secs(2),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let content_type = if method == "PATCH" {
                "application/merge-patch+json"
            } else {
                "application/json"
            };
            let body = body.unwrap_or_default();
            write!(
                s,
                "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
            let mut raw = Vec::new();
            s.read_to_end(&mut raw)?;
            let text = String::from_utf8_lossy(&raw);
            let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let chunked = head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked");
            let body = if chunked {
                dechunk(rest)
            } else {
                rest.to_owned()
            };
            Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
        });
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("the request thread panicked"))?
    }

    /// A request that must succeed (2xx); its body.
    ///
    /// # Errors
    ///
    /// Any other status, with the body.
    pub fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let (status, v) = self.request(method, path, body)?;
        if !(200..300).contains(&status) {
            bail!("{method} {path}: {status} {v}");
        }
        Ok(v)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}
