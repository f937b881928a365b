//! `cargo xtask bench`: runs the measurements and writes BENCHMARKS.md.
//! Benchmarks report; they never fail on a threshold.

use crate::{cargo, run};
use anyhow::{Context, bail};
use std::{path::Path, process::Command};

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

pub fn bench(root: &Path) -> anyhow::Result<()> {
    run(cargo(root).args([
        "build",
        "--release",
        "-p",
        "kube-xdp-tests",
        "--bin",
        "bench",
    ]))?;
    let bin = root.join("target/release/bench");
    let datapath = output(Command::new(&bin).arg("datapath"))?;
    let report = format!(
        "# kube-xdp benchmarks\n\nWritten by `cargo xtask bench`.\n\n{}\n{datapath}",
        machine()?
    );
    std::fs::write(root.join("BENCHMARKS.md"), &report)?;
    print!("{report}");
    println!("\nwrote {}", root.join("BENCHMARKS.md").display());
    Ok(())
}
