//! What the SYN-flood section adds to the end-to-end topology: the flood
//! host, the LB's route back to the spoofed sources, and the LB's receive
//! queue as one kernel thread whose CPU time can be read.

use crate::bench_e2e::host::write_sys;
use anyhow::{Context, bail};
use kube_xdp_tests::{
    netns::Netns,
    topology::{Cluster, LB_ADDR},
};
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

/// The flood host's own address on the segment.
pub const FLOOD_ADDR: &str = "198.18.0.30";
/// The spoofed sources: inside 198.18.0.0/15, outside the segment's /24.
pub const FLOOD_SOURCES: &str = "198.19.0.0/17";
/// Where the LB routes them (the flood host stands for its router).
const FLOOD_ROUTE: &str = "198.19.0.0/16";
/// The port the receive-queue probe connects to on the LB's own address
/// (no load balancer listens there).
const PROBE_PORT: u16 = 9;

/// The flood host on the segment, and the LB's route to the spoofed
/// sources through it. A deployed LB has a default route, so its kernel
/// sends a SYN-ACK (or a SYN cookie) for each spoofed SYN that it answers;
/// without a route it would drop each one before queueing it, which no
/// real LB does. The flood host does not forward, so what it receives for
/// the spoofed addresses ends there (no ICMP: forwarding is off).
///
/// # Errors
///
/// When the namespace, link or route cannot be made.
pub fn flood_host(c: &Cluster) -> anyhow::Result<Netns> {
    let ns = c.add_host("flood", "pflood", &format!("{FLOOD_ADDR}/24"))?;
    c.lb.ip(&["route", "add", FLOOD_ROUTE, "via", FLOOD_ADDR])?;
    Ok(ns)
}

/// Gives the LB's `eth0` a NAPI receive queue polled by its own kernel
/// thread, before any load balancer starts, for every row alike: GRO on
/// (a veth has a NAPI queue only with GRO on or an XDP program attached;
/// kube-xdp's program then uses the same queue), threaded. Everything the
/// LB's kernel does with a received frame — an XDP program, netfilter and
/// conntrack, the TCP stack and its SYN cookies, forwarding — runs in that
/// thread, as it would in a NIC's receive softirq, and is counted there.
///
/// # Errors
///
/// When a setting cannot be applied.
pub fn threaded_receive_queue(c: &Cluster) -> anyhow::Result<()> {
    c.lb.exec("ethtool", &["-K", "eth0", "gro", "on"])?;
    // A veth hands its peer's frames to that queue only when the sending
    // end has no TSO (else they take the host's input backlog); an XDP
    // program on the LB's eth0 (kube-xdp's) turns it off by itself.
    c.bridge.exec("ethtool", &["-K", "plb", "tso", "off"])?;
    write_sys(&c.lb, "/sys/class/net/eth0/threaded", "1")
}

/// The pid of the kernel thread polling the LB's `eth0` (`napi/eth0-ID`),
/// found from a connection the client makes to the LB's own address: the
/// accepted socket's `SO_INCOMING_NAPI_ID` is the queue's NAPI id.
///
/// # Errors
///
/// When no connection arrives within 3 s or no such thread exists.
pub fn receive_thread(c: &Cluster) -> anyhow::Result<u32> {
    let addr: SocketAddr = format!("{LB_ADDR}:{PROBE_PORT}").parse()?;
    let listener = c.lb.run(move || {
        let l = TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        Ok(l)
    })?;
    let mut client = c.client.run(move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        s.write_all(b"n")?;
        Ok(s)
    })?;
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut server = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    bail!("no connection to {addr} within 3 s");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    };
    server.set_nonblocking(false)?;
    server.set_read_timeout(Some(Duration::from_secs(3)))?;
    // A data segment marks the socket with the queue it came through.
    let mut byte = [0u8; 1];
    server.read_exact(&mut byte)?;
    let mut id: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid socket and a live c_int of the size given.
    let r = unsafe {
        libc::getsockopt(
            server.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_INCOMING_NAPI_ID,
            (&raw mut id).cast(),
            &raw mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).context("SO_INCOMING_NAPI_ID");
    }
    let _ = client.write_all(b"x");
    let name = format!("napi/eth0-{id}");
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
            continue;
        };
        if std::fs::read_to_string(entry.path().join("comm")).is_ok_and(|c| c.trim() == name) {
            return Ok(pid);
        }
    }
    bail!("no kernel thread {name} (NAPI id {id} of the LB's eth0)")
}

/// Nanoseconds `pid` has run on a CPU, all its threads
/// (`/proc/PID/task/*/schedstat`, first field).
pub fn runtime_ns(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("reading /proc/{pid}/task"))?
    {
        let stat = std::fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// A link's packet counters (`ip -s -j link show DEV` in `ns`):
/// (rx packets, tx packets, tx dropped).
pub fn link_packets(ns: &Netns, dev: &str) -> anyhow::Result<(u64, u64, u64)> {
    let out = ns.ip(&["-s", "-j", "link", "show", dev])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let s = &v[0]["stats64"];
    let n = |x: &serde_json::Value| x.as_u64().unwrap_or(0);
    Ok((
        n(&s["rx"]["packets"]),
        n(&s["tx"]["packets"]),
        n(&s["tx"]["dropped"]),
    ))
}
