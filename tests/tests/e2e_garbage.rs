//! End to end: thousands of garbage frames at the VIP leave the daemon
//! alive and connections through the VIP working. What a client observes,
//! plus the datapath's and the kernel's counters.
//!
//! Its tests take [`serial`]'s lock, like the other e2e tests that load
//! the machine or use 100 ms check timeouts: one at a time.

use kube_xdp_tests::{
    e2e_util::{
        Service, alive, backend, connect_many, daemon_pid, serial, states, tcp_servers, vip,
        wait_all_up,
    },
    fuzz::{GARBAGE_KINDS, GarbageAim, Rng, garbage_frame},
    observe::{counters, delta, mac_of, moved, nstat, stats},
    require_root,
    servers::UdpServer,
    topology::{CLIENT_ADDR, Cluster, VIP},
};
use std::{
    net::{Ipv4Addr, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

/// An AF_PACKET socket that sends frames out of `dev` in the calling
/// thread's namespace (it receives nothing: protocol 0).
fn packet_socket(dev: &str) -> anyhow::Result<OwnedFd> {
    // SAFETY: plain socket call; the fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    anyhow::ensure!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(dev)?;
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    anyhow::ensure!(ifindex != 0, "no interface {dev}");
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: a valid fd and a sockaddr_ll of the size given.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    anyhow::ensure!(
        r == 0,
        "binding to {dev}: {}",
        std::io::Error::last_os_error()
    );
    Ok(fd)
}

#[test]
fn garbage_at_the_vip_leaves_the_daemon_alive_and_connections_working() {
    require_root();
    let _serial = serial();
    const FRAMES: usize = 5_000;
    const SEED: u64 = 0x6b75_6265_2d78_6470; // "kube-xdp"
    let c = Cluster::new(3).unwrap();
    let _api = tcp_servers(&c, 6443);
    let _dns: Vec<UdpServer> = (0..3)
        .map(|i| UdpServer::start(&c.backends[i], backend(i, 5353), &format!("cp{i}")).unwrap())
        .collect();
    // TCP 6443 and a UDP service on 5353 (checked on 6443), so that both
    // transport parsers see the garbage.
    let mut dns = Service::apiserver(3).with("protocol = \"udp\"");
    dns.name = "dns".into();
    dns.ports = "port = 5353".into();
    dns = dns.check("port", "6443");
    c.write_config(&format!("{}\n{}", Service::apiserver(3).toml(), dns.toml()))
        .unwrap();
    let daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 3);
    let pid = daemon_pid(&c).expect("the daemon writes its pid file");
    assert!(alive(pid));
    connect_many(&c, vip(6443), 5, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));

    let aim = GarbageAim {
        lb_mac: mac_of(&c.lb, "eth0"),
        client_mac: mac_of(&c.client, "eth0"),
        client: CLIENT_ADDR.parse::<Ipv4Addr>().unwrap().octets(),
        vip: VIP.parse::<Ipv4Addr>().unwrap().octets(),
        tcp_port: 6443,
        udp_port: 5353,
    };
    let backend_names = [
        "IpInHdrErrors",
        "IpExtInCsumErrors",
        "TcpInCsumErrors",
        "UdpInCsumErrors",
    ];
    let backends_before: Vec<_> = c
        .backends
        .iter()
        .map(|b| nstat(b, &backend_names))
        .collect();
    let before = counters(&stats(&c));

    let start = Instant::now();
    let (sent, refused, per_kind) = c
        .client
        .run(move || {
            let fd = packet_socket("eth0")?;
            let mut rng = Rng(SEED);
            let (mut sent, mut refused) = (0usize, 0usize);
            let mut per_kind = [0usize; GARBAGE_KINDS.len()];
            for i in 0..FRAMES {
                let kind = rng.below(GARBAGE_KINDS.len() as u64) as usize;
                let frame = garbage_frame(&mut rng, kind, &aim);
                // SAFETY: a valid fd and buffer of that length.
                let r =
                    unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
                if r == frame.len() as isize {
                    sent += 1;
                    per_kind[kind] += 1;
                } else {
                    refused += 1;
                }
                // Bursts of 250, so the veth queue does not just drop them.
                if i % 250 == 249 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Ok((sent, refused, per_kind))
        })
        .unwrap();
    eprintln!(
        "sent {sent} garbage frames (seed {SEED:#x}) in {:?}; {refused} refused by the local kernel",
        start.elapsed()
    );
    for (kind, n) in GARBAGE_KINDS.iter().zip(per_kind) {
        eprintln!("  {n:>5} {kind}");
    }
    assert!(sent >= FRAMES * 9 / 10, "most frames were sent: {sent}");
    // Let the last frames (and the replies they caused) pass.
    std::thread::sleep(Duration::from_millis(500));

    assert!(
        alive(pid),
        "the daemon died under garbage:\n{}",
        daemon.log()
    );
    let after = counters(&stats(&c));
    eprintln!("datapath counters moved: {}", moved(&before, &after));
    let malformed = after["malformed"] - before["malformed"];
    assert!(
        malformed > 0,
        "the malformed counter did not move: {}",
        moved(&before, &after)
    );
    for (i, b) in c.backends.iter().enumerate() {
        let now = nstat(b, &backend_names);
        let d: Vec<String> = backend_names
            .iter()
            .map(|n| format!("{n} +{}", delta(&backends_before[i], &now, n)))
            .collect();
        eprintln!("backend cp{i} kernel: {}", d.join(", "));
    }

    // Health checks still run, and clients still get through.
    assert_eq!(states(&c), ["UP", "UP", "UP"], "{}", daemon.log());
    let seen = connect_many(&c, vip(6443), 30, Duration::from_secs(3)).unwrap_or_else(|e| {
        panic!(
            "a connection failed after the garbage: {e:#}\n{}",
            daemon.log()
        )
    });
    assert_eq!(seen.values().sum::<usize>(), 30);
    let replies = c
        .client
        .run(|| {
            let sock = UdpSocket::bind(format!("{CLIENT_ADDR}:0"))?;
            sock.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut buf = [0u8; 128];
            let mut replies = Vec::new();
            for _ in 0..5 {
                sock.send_to(b"after the garbage", vip(5353))?;
                let (n, from) = sock.recv_from(&mut buf)?;
                replies.push((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
            }
            Ok(replies)
        })
        .unwrap_or_else(|e| panic!("UDP after the garbage: {e:#}\n{}", daemon.log()));
    for (text, from) in &replies {
        assert_eq!(*from, vip(5353), "{replies:?}");
        assert!(text.ends_with(" 17"), "{replies:?}");
    }
    assert!(alive(pid), "the daemon is still alive at the end");
    let log = daemon.log();
    assert!(!log.contains("panicked"), "{log}");
}
