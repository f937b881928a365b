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
//! namespaces, driven by wrk and iperf3 against nginx), `bench pair`
//! (failover of a kube-xdp pair beside a keepalived + HAProxy pair, and
//! the pair's flow sync: connections kept, throughput) and `bench
//! synflood` (kube-xdp, HAProxy and nftables NAT under a spoofed SYN
//! flood). The Debian packages the last three parts drive are installed
//! here when missing.
//!
//! `cargo xtask bench PART` runs one part alone and replaces only its
//! block of BENCHMARKS.md (each part sits between `<!-- bench:PART -->`
//! comment lines).

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

/// A part of the benchmark, run by `cargo xtask bench PART` alone or with
/// the others by `cargo xtask bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// The XDP program's cost per packet (`BPF_PROG_TEST_RUN`), and flow
    /// sync's.
    Datapath,
    /// Maglev builds, map writes, the flow table filling up.
    Control,
    /// Reload and failover times through the daemon.
    Daemon,
    /// kube-xdp, HAProxy, nftables NAT (and IPVS) end to end.
    E2e,
    /// Failover of a pair, flow sync.
    Pair,
    /// kube-xdp, HAProxy and nftables NAT under a spoofed SYN flood.
    Synflood,
}

impl Part {
    const ALL: [Part; 6] = [
        Part::Datapath,
        Part::Control,
        Part::Daemon,
        Part::E2e,
        Part::Pair,
        Part::Synflood,
    ];

    fn key(self) -> &'static str {
        match self {
            Part::Datapath => "datapath",
            Part::Control => "control",
            Part::Daemon => "daemon",
            Part::E2e => "e2e",
            Part::Pair => "pair",
            Part::Synflood => "synflood",
        }
    }

    /// The `bench` subcommands whose Markdown makes up the part, and what
    /// the progress line says.
    fn commands(self) -> (&'static [&'static str], &'static str) {
        match self {
            Part::Datapath => (&["datapath"], "datapath"),
            Part::Control => (&["scale", "control"], "control plane and scale"),
            Part::Daemon => (
                &["daemon"],
                "reload and failover through the daemon (about 30 s)",
            ),
            Part::E2e => (&["e2e"], "end to end (about 6 minutes)"),
            Part::Pair => (
                &["pair"],
                "failover of a pair and flow sync (about 7 minutes)",
            ),
            Part::Synflood => (
                &["synflood"],
                "SYN floods (about 11 minutes with 60 s floods)",
            ),
        }
    }

    /// Whether it drives the Debian packages [`PACKAGES`].
    fn needs_packages(self) -> bool {
        matches!(self, Part::E2e | Part::Pair | Part::Synflood)
    }

    /// The comment lines that enclose the part in BENCHMARKS.md, so that a
    /// part run alone replaces its own block.
    fn markers(self) -> (String, String) {
        (
            format!("<!-- bench:{} -->", self.key()),
            format!("<!-- /bench:{} -->", self.key()),
        )
    }

    /// Its Markdown: the `bench` binary's stdout (progress goes to stderr).
    fn run(self, root: &Path, bin: &Path, flood_secs: Option<u32>) -> anyhow::Result<String> {
        let (commands, progress) = self.commands();
        eprintln!("bench: {progress}");
        let mut text = String::new();
        for sub in commands {
            let mut cmd = Command::new(bin);
            cmd.arg(sub)
                .env("KUBE_XDP_BIN", root.join("target/release/kube-xdp"))
                .env("SYNFLOOD_BIN", root.join("target/release/synflood"))
                .stderr(Stdio::inherit());
            if let Some(secs) = flood_secs {
                cmd.env("BENCH_SYNFLOOD_SECS", secs.to_string());
            }
            text.push_str(&output(&mut cmd)?);
            text.push('\n');
        }
        Ok(text)
    }
}

/// `text` with the paragraph `line` after its first heading (or first, if
/// it has none).
fn below_heading(text: &str, line: &str) -> String {
    let line = line.trim_end();
    match text.split_once('\n') {
        Some((heading, rest)) if heading.starts_with('#') => {
            format!("{heading}\n\n{line}\n\n{}", rest.trim_start_matches('\n'))
        }
        _ => format!("{line}\n\n{text}"),
    }
}

/// The part's text between its markers.
fn enclosed(part: Part, text: &str) -> String {
    let (open, close) = part.markers();
    format!("{open}\n{}\n{close}\n", text.trim_end())
}

/// BENCHMARKS.md with `part`'s block replaced by `text` (between its
/// markers); a part not there yet goes before the closing "took" line.
fn splice(report: &str, part: Part, text: &str) -> String {
    let (open, close) = part.markers();
    let block = enclosed(part, text);
    if let (Some(a), Some(b)) = (report.find(&open), report.find(&close))
        && a < b
    {
        let end = b + close.len();
        let end = end + usize::from(report[end..].starts_with('\n'));
        return format!("{}{block}{}", &report[..a], &report[end..]);
    }
    match report.rfind("\n`cargo xtask bench` took") {
        Some(i) => format!("{}{block}\n{}", &report[..i + 1], &report[i + 1..]),
        None => format!("{}\n{block}", report.trim_end()),
    }
}

/// `cargo xtask bench [PART]`: every part, writing BENCHMARKS.md anew; or
/// one part, replacing only its block there (`flood_secs`: the SYN-flood
/// part's flood length).
pub fn bench(root: &Path, only: Option<Part>, flood_secs: Option<u32>) -> anyhow::Result<()> {
    let started = started();
    let parts: Vec<Part> = match only {
        Some(p) => vec![p],
        None => Part::ALL.to_vec(),
    };
    if parts.iter().any(|p| p.needs_packages()) {
        install_packages()?;
    }
    // The daemon the end-to-end parts run, optimized like a deployed one;
    // it embeds the eBPF object `build-ebpf` just built.
    run(cargo(root).args(["build", "--release", "-p", "kube-xdp", "--bin", "kube-xdp"]))?;
    run(cargo(root).args([
        "build",
        "--release",
        "-p",
        "kube-xdp-tests",
        "--bin",
        "bench",
        "--bin",
        "synflood",
    ]))?;
    let bin = root.join("target/release/bench");
    let built = started.elapsed();
    let path = root.join("BENCHMARKS.md");
    if let Some(part) = only {
        let measured = machine()?.replace(
            "Measured ",
            &format!("Measured with `cargo xtask bench {}` alone, ", part.key()),
        );
        let text = below_heading(&part.run(root, &bin, flood_secs)?, &measured);
        let before = std::fs::read_to_string(&path).unwrap_or_default();
        std::fs::write(&path, splice(&before, part, &text))?;
        print!("{text}");
        println!(
            "\nreplaced the {} part of {} ({:.0} s in all)",
            part.key(),
            path.display(),
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let mut body = String::new();
    for part in parts {
        body.push_str(&enclosed(part, &part.run(root, &bin, flood_secs)?));
        body.push('\n');
    }
    let total = started.elapsed();
    let report = format!(
        "# kube-xdp benchmarks\n\nWritten by `cargo xtask bench`.\n\n{}\n{body}\
         `cargo xtask bench` took {:.0} s in all ({:.0} s of setup and builds, {:.0} s of measurements).\n",
        machine()?,
        total.as_secs_f64(),
        built.as_secs_f64(),
        (total - built).as_secs_f64()
    );
    std::fs::write(&path, &report)?;
    print!("{report}");
    println!("\nwrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Part, below_heading, splice};

    #[test]
    fn the_measured_line_goes_below_the_heading() {
        assert_eq!(
            below_heading("### T\n\nbody\n", "Measured x.\n"),
            "### T\n\nMeasured x.\n\nbody\n"
        );
        assert_eq!(
            below_heading("body\n", "Measured x.\n"),
            "Measured x.\n\nbody\n"
        );
    }

    #[test]
    fn a_part_replaces_its_own_block_only() {
        let report = "# t\n\n<!-- bench:e2e -->\nold e2e\n<!-- /bench:e2e -->\n\n<!-- bench:synflood -->\nold flood\nmore\n<!-- /bench:synflood -->\n\n`cargo xtask bench` took 1 s.\n";
        let out = splice(report, Part::Synflood, "new flood\n");
        assert_eq!(
            out,
            "# t\n\n<!-- bench:e2e -->\nold e2e\n<!-- /bench:e2e -->\n\n<!-- bench:synflood -->\nnew flood\n<!-- /bench:synflood -->\n\n`cargo xtask bench` took 1 s.\n"
        );
    }

    #[test]
    fn a_new_part_goes_before_the_closing_line() {
        let report = "# t\n\n<!-- bench:pair -->\npair\n<!-- /bench:pair -->\n\n`cargo xtask bench` took 1 s.\n";
        let out = splice(report, Part::Synflood, "flood");
        assert_eq!(
            out,
            "# t\n\n<!-- bench:pair -->\npair\n<!-- /bench:pair -->\n\n<!-- bench:synflood -->\nflood\n<!-- /bench:synflood -->\n\n`cargo xtask bench` took 1 s.\n"
        );
    }
}
