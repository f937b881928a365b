//! `cargo xtask demo`: kube-xdp on a real veth in throw-away namespaces,
//! real traffic, the counters it moved; everything is removed at the end.

use kube_xdp_tests::{
    daemon::cli,
    require_root,
    topology::{LB_ADDR, TwoHosts},
};
use std::{
    net::{SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

fn main() -> anyhow::Result<()> {
    require_root();
    println!("== kube-xdp demo ==");
    let hosts = TwoHosts::new()?;
    println!(
        "topology: namespace {} (client, {}) --veth-- namespace {} (load balancer, {LB_ADDR}, interface {})",
        hosts.client.name(),
        kube_xdp_tests::topology::CLIENT_ADDR,
        hosts.lb.name(),
        hosts.lb_if
    );
    println!("\n$ kube-xdp run --config {}", hosts.config.display());
    let mut daemon = hosts.start_daemon()?;
    print!("{}", daemon.log());

    println!("\ntraffic from the client: 10 pings, 20 TCP connects to port 6443, 30 UDP datagrams");
    hosts
        .client
        .exec("ping", &["-c", "10", "-i", "0.02", "-q", LB_ADDR])?;
    hosts.client.run(|| {
        let lb: std::net::Ipv4Addr = LB_ADDR.parse()?;
        for _ in 0..20 {
            // Nothing listens there: the kernel answers RST, which is the
            // point — no service is configured yet, so XDP passes it on.
            let _ = TcpStream::connect_timeout(
                &SocketAddr::from((lb, 6443)),
                Duration::from_millis(500),
            );
        }
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        for i in 0..30u8 {
            socket.send_to(&[i; 64], (lb, 9999))?;
        }
        Ok(())
    })?;

    let pin = hosts.pins.path().to_str().unwrap().to_owned();
    println!(
        "\n$ kube-xdp stats --pin-path {pin}   (read from the pinned maps, from a second process)"
    );
    let out = cli(&hosts.lb, &["stats", "--pin-path", &pin])?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    println!(
        "\npass_other_protocol = the ICMP echoes; pass_no_service = the TCP and UDP packets (no service configured yet);\npass_not_ipv4 = ARP. Every packet got the XDP_PASS verdict, so the kernel answered as usual."
    );

    println!("\nstopping the daemon (SIGTERM) and removing the pins");
    daemon.stop()?;
    let out = cli(&hosts.lb, &["detach", "--pin-path", &pin])?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    drop(hosts);
    println!("namespaces removed. done.");
    Ok(())
}
