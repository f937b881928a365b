//! Host settings applied to the topology, the same for every row.
//!
//! The LB's bridge port (`plb`) runs an XDP_PASS program (XDP_TX on the
//! LB's veth needs one there), which puts that veth in NAPI mode. Its NAPI
//! runs in softirq on whichever CPU last scheduled it; the bridge then hands
//! each frame to the destination host's veth, which queues it on that CPU's
//! backlog (`netif_rx`). When the NAPI moves between CPUs, segments of one
//! flow wait in two CPUs' backlogs and can be delivered out of order:
//! measured here, the client saw about one connection in fifty with an
//! out-of-order segment (TcpExt:TCPOFOQueue) and the backends a spurious
//! fast retransmit for each (TcpExt:TCPFastRetrans), through kube-xdp and
//! nftables alike, never direct. Threaded NAPI (`/sys/class/net/plb/
//! threaded`, a standard per-device setting) runs the poll in one kernel
//! thread that processes the backlog it fills right after each poll, and
//! the reordering is gone, at no measured cost to any row. RPS on the
//! receiving veths (flow-hash steering to one CPU's backlog) fixed it too,
//! but its cross-CPU interrupts cost the direct row 28 % of its rate.
//!
//! `BENCH_E2E_HOST` (comma-separated) replaces the default `threaded`, to
//! reproduce those measurements: `none` (softirq NAPI, the reordering),
//! `rps` (RPS over every CPU on every host's eth0), `rpsclient` (the
//! client's eth0 only).

use kube_xdp_tests::{netns::Netns, topology::Cluster};

/// The settings in force (`BENCH_E2E_HOST`, default `threaded`).
pub fn settings() -> Vec<String> {
    match std::env::var("BENCH_E2E_HOST") {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "none")
            .map(str::to_owned)
            .collect(),
        _ => vec!["threaded".into()],
    }
}

/// The CPU bitmap of every CPU, as `rps_cpus` takes it: hexadecimal,
/// comma-separated 32-bit groups.
fn all_cpus_mask() -> String {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (0..n.div_ceil(32))
        .rev()
        .map(|g| {
            let bits = (n - g * 32).min(32);
            format!("{:08x}", (1u64 << bits) - 1)
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Writes `value` to `path` under `/sys` as `ns` sees it, and reads it
/// back. `ip netns exec` mounts the namespace's own sysfs: a thread that
/// only joined the network namespace would still see the host's devices
/// there.
pub(crate) fn write_sys(ns: &Netns, path: &str, value: &str) -> anyhow::Result<()> {
    let out = kube_xdp_tests::netns::cmd(
        "ip",
        &[
            "netns",
            "exec",
            ns.name(),
            "sh",
            "-c",
            &format!("echo {value} > {path} && cat {path}"),
        ],
    )?;
    let got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    anyhow::ensure!(
        got.trim_start_matches('0') == value.trim_start_matches('0')
            || got.replace(',', "").trim_start_matches('0')
                == value.replace(',', "").trim_start_matches('0'),
        "{path} in {} reads {got:?} after writing {value:?}",
        ns.name()
    );
    Ok(())
}

/// Applies the settings to a freshly built topology, before any load
/// balancer starts.
pub fn apply(c: &Cluster) -> anyhow::Result<()> {
    for knob in settings() {
        match knob.as_str() {
            // The one bridge-side veth with a NAPI instance in every row.
            "threaded" => write_sys(&c.bridge, "/sys/class/net/plb/threaded", "1")?,
            "rps" => {
                let mask = all_cpus_mask();
                for ns in std::iter::once(&c.client)
                    .chain(std::iter::once(&c.lb))
                    .chain(&c.backends)
                {
                    write_sys(ns, "/sys/class/net/eth0/queues/rx-0/rps_cpus", &mask)?;
                }
            }
            "rpsclient" => write_sys(
                &c.client,
                "/sys/class/net/eth0/queues/rx-0/rps_cpus",
                &all_cpus_mask(),
            )?,
            other => anyhow::bail!("unknown BENCH_E2E_HOST setting {other:?}"),
        }
    }
    Ok(())
}
