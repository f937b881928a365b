//! `cargo xtask bench`: runs the measurements and writes BENCHMARKS.md.
//! Benchmarks report; they never fail on a threshold.
//!
//! Every part runs from the release `bench` binary: `bench datapath` (the
//! XDP program's cost per packet through `BPF_PROG_TEST_RUN`, with and
//! without flow sync's reports), `bench
//! control` and `bench scale` (Maglev builds and map writes; the flow
//! table filling up), `bench daemon` (reload and failover times through
//! the real daemon in network namespaces) and `bench e2e` (direct,
//! kube-xdp, HAProxy, nftables NAT and IPVS end to end in network
//! namespaces, driven by wrk and iperf3 against nginx) and `bench pair`
//! (failover of a kube-xdp pair beside a keepalived + HAProxy pair, and
//! the pair's flow sync: connections kept, throughput). The
//! Debian packages the last two parts drive are installed here when
//! missing.

use crate::{cargo, run};
use anyhow::{Context, bail};
use std::{
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

/// What `bench e2e` and `bench pair` run: the load balancers they compare
/// (and keepalived, HAProxy's pair), the web server in the backends and the
/// load generators.
const PACKAGES: &[&str] = &[
    "haproxy",
    "keepalived",
    "nftables",
    "nginx",
    "wrk",
    "iperf3",
];

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Installs the packages `bench e2e` needs, only those missing. IPVS's
/// `ipvsadm` only where the kernel has IPVS (`/proc/net/ip_vs`, possibly
/// after loading the module); elsewhere the IPVS row is reported as skipped.
fn install_packages() -> anyhow::Result<()> {
    let mut wanted: Vec<&str> = PACKAGES.to_vec();
    let _ = Command::new("modprobe")
        .arg("ip_vs")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if Path::new("/proc/net/ip_vs").exists() {
        wanted.push("ipvsadm");
    }
    let missing: Vec<&str> = wanted.into_iter().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("bench: installing {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("installing the benchmark's Debian packages (run as root)")
}

fn machine() -> anyhow::Result<String> {
    let date = output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))?;
    let kernel = output(Command::new("uname").arg("-r"))?;
    let cores = output(&mut Command::new("nproc"))?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    Ok(format!(
        "Measured {} on Linux {}, {} cores ({cpu}). Machines here are shared and noisy: compare ratios within one run, not absolute numbers across runs.\n",
        date.trim(),
        kernel.trim(),
        cores.trim()
    ))
}

/// Seconds since `pid` started (`/proc/PID/stat` field 22, in clock ticks
/// since boot, against `/proc/uptime`).
fn age_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses: field 3 first.
    let rest = stat.rsplit_once(')')?.1;
    let start_ticks: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // /proc counts in USER_HZ, which is 100 on every Linux architecture
    // this runs on.
    Some(uptime - start_ticks / 100.0)
}

/// When `cargo xtask bench` began: the start of the `cargo` that runs this
/// xtask (so the xtask's own build, setup and the eBPF build count), else
/// of this process.
fn started() -> Instant {
    let parent = std::os::unix::process::parent_id();
    let parent_is_cargo =
        std::fs::read_to_string(format!("/proc/{parent}/comm")).is_ok_and(|c| c.trim() == "cargo");
    let pid = if parent_is_cargo {
        parent
    } else {
        std::process::id()
    };
    let age = age_of(pid).unwrap_or(0.0).max(0.0);
    Instant::now() - std::time::Duration::from_secs_f64(age)
}

pub fn bench(root: &Path) -> anyhow::Result<()> {
    let started = started();
    install_packages()?;
    // The daemon the e2e part runs, optimized like a deployed one; it
    // embeds the eBPF object `build-ebpf` just built.
    run(cargo(root).args(["build", "--release", "-p", "kube-xdp", "--bin", "kube-xdp"]))?;
    run(cargo(root).args([
        "build",
        "--release",
        "-p",
        "kube-xdp-tests",
        "--bin",
        "bench",
    ]))?;
    let bin = root.join("target/release/bench");
    let built = started.elapsed();
    eprintln!("bench: datapath");
    let datapath = output(Command::new(&bin).arg("datapath"))?;
    eprintln!("bench: control plane and scale");
    let control = output(Command::new(&bin).arg("control"))?;
    let scale = output(Command::new(&bin).arg("scale"))?;
    eprintln!("bench: reload and failover through the daemon (about 30 s)");
    let daemon = output(
        Command::new(&bin)
            .arg("daemon")
            .env("KUBE_XDP_BIN", root.join("target/release/kube-xdp"))
            .stderr(Stdio::inherit()),
    )?;
    eprintln!("bench: end to end (about 6 minutes)");
    // Its progress goes to stderr (inherited), its Markdown to stdout.
    let e2e = output(
        Command::new(&bin)
            .arg("e2e")
            .env("KUBE_XDP_BIN", root.join("target/release/kube-xdp"))
            .stderr(Stdio::inherit()),
    )?;
    eprintln!("bench: failover of a pair and flow sync (about 7 minutes)");
    let pair = output(
        Command::new(&bin)
            .arg("pair")
            .env("KUBE_XDP_BIN", root.join("target/release/kube-xdp"))
            .stderr(Stdio::inherit()),
    )?;
    let total = started.elapsed();
    let report = format!(
        "# kube-xdp benchmarks\n\nWritten by `cargo xtask bench`.\n\n{}\n{datapath}\n{scale}\n{control}\n{daemon}\n{e2e}\n{pair}\n\
         `cargo xtask bench` took {:.0} s in all ({:.0} s of setup and builds, {:.0} s of measurements).\n",
        machine()?,
        total.as_secs_f64(),
        built.as_secs_f64(),
        (total - built).as_secs_f64()
    );
    std::fs::write(root.join("BENCHMARKS.md"), &report)?;
    print!("{report}");
    println!("\nwrote {}", root.join("BENCHMARKS.md").display());
    Ok(())
}
