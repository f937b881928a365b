//! Child processes in namespaces (killed on drop) and the kernel's
//! counters the end-to-end benchmark reads: `/proc/stat`, a process's CPU
//! time, and a namespace's TCP counters.

use anyhow::{Context, bail};
use kube_xdp_tests::netns::Netns;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

/// `/proc` counts CPU time in USER_HZ, 100 on every Linux architecture.
pub const TICKS_PER_SEC: f64 = 100.0;

/// A server started with `nsenter --net=… program args…` (nsenter execs
/// it, so the child's pid is the server's). SIGTERM on drop, then SIGKILL
/// if it has not exited within 3 s.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `program args…` in `ns`, its stdout and stderr in `log`.
    pub fn spawn(
        ns: &Netns,
        name: &str,
        program: &str,
        args: &[&str],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let out = std::fs::File::create(log)?;
        let err = out.try_clone()?;
        let child = ns
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} ({program})"))?;
        Ok(Proc {
            name: name.into(),
            child,
            log: log.into(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process (not to its children), unless it has
    /// already exited (and been reaped: its pid may be someone else's).
    pub fn signal(&mut self, signal: i32) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill has no memory-safety preconditions; the pid is
            // our own child, not yet reaped.
            unsafe { libc::kill(self.child.id() as i32, signal) };
        }
    }

    /// Waits (bounded by `limit`) for the process to exit; whether it did.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Fails, with the process's output, when it has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}):\n{}",
                self.name,
                std::fs::read_to_string(&self.log)
                    .unwrap_or_default()
                    .trim()
            );
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill has no memory-safety preconditions; the pid is our
            // own child, not yet reaped.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// utime + stime of `pid` (fields 14 and 15 of `/proc/PID/stat`), ticks.
pub fn process_cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The fields after "pid (comm)" start with field 3 (state).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        Ok(fields.get(n - 3).context("short /proc/PID/stat")?.parse()?)
    };
    Ok(field(14)? + field(15)?)
}

/// The machine's CPU time by kind (the `cpu` line of `/proc/stat`), ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    pub user: u64,
    pub system: u64,
    pub idle: u64,
    pub irq: u64,
    pub softirq: u64,
    pub total: u64,
}

impl CpuTimes {
    pub fn now() -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let line = stat
            .lines()
            .find(|l| l.starts_with("cpu "))
            .context("no cpu line in /proc/stat")?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        anyhow::ensure!(v.len() >= 7, "short cpu line in /proc/stat");
        // user nice system idle iowait irq softirq steal (guest time is
        // already inside user).
        Ok(CpuTimes {
            user: v[0] + v[1],
            system: v[2],
            idle: v[3] + v[4],
            irq: v[5],
            softirq: v[6],
            total: v.iter().take(8).sum(),
        })
    }

    pub fn since(&self, before: &CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user - before.user,
            system: self.system - before.system,
            idle: self.idle - before.idle,
            irq: self.irq - before.irq,
            softirq: self.softirq - before.softirq,
            total: self.total - before.total,
        }
    }
}

/// A namespace's SNMP and netstat counters (`/proc/net/snmp` and
/// `/proc/net/netstat` as seen from inside it), keyed `TcpExt:TCPSynRetrans`.
pub fn net_counters(ns: &Netns) -> anyhow::Result<BTreeMap<String, i64>> {
    let out = ns.exec("cat", &["/proc/net/snmp", "/proc/net/netstat"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut map = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    // Pairs of lines: "Tcp: Name1 Name2 …" then "Tcp: 1 2 …".
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((p1, names)), Some((p2, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if p1 != p2 {
            continue;
        }
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = v.parse::<i64>() {
                map.insert(format!("{p1}:{n}"), v);
            }
        }
    }
    Ok(map)
}

/// `after - before`, key by key.
pub fn delta(
    before: &BTreeMap<String, i64>,
    after: &BTreeMap<String, i64>,
) -> BTreeMap<String, i64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .collect()
}

/// Waits (bounded by `limit`, polling every 50 ms) until `cond` holds.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    for _ in 0..(limit.as_millis() / 50 + 2) {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Whether something listens on TCP `port` in `ns` (`ss -Hltn`).
pub fn listening(ns: &Netns, port: u16) -> bool {
    ns.exec("ss", &["-Hltn", &format!("sport = :{port}")])
        .is_ok_and(|o| !o.stdout.is_empty())
}

/// Packets the kernel dropped because a CPU's input backlog was full
/// (`/proc/net/softnet_stat`, second column, summed over CPUs; machine-wide).
pub fn backlog_drops() -> i64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|v| i64::from_str_radix(v, 16).ok())
        .sum()
}

/// TCP sockets in TIME_WAIT in `ns` (`ss -s`).
pub fn time_wait(ns: &Netns) -> Option<u64> {
    let out = ns.exec("ss", &["-s"]).ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // "TCP:   14145 (estab 0, closed 14145, orphaned 1, timewait 14129)"
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let after = line.split("timewait").nth(1)?;
    after
        .trim()
        .trim_end_matches(')')
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}
