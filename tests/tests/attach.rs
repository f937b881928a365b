//! End to end: the real `kube-xdp run` attaches to a veth in a namespace,
//! counts real traffic, and the CLI reads the counters from the pins.

use kube_xdp_tests::{
    daemon::cli,
    require_root,
    topology::{LB_ADDR, TwoHosts},
};

fn counter(json: &serde_json::Value, name: &str) -> u64 {
    json["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("counter {name} missing in {json}"))
}

fn stats(hosts: &TwoHosts) -> serde_json::Value {
    let pin = hosts.pins.path().to_str().unwrap();
    let out = cli(&hosts.lb, &["stats", "--json", "--pin-path", pin]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn daemon_attaches_counts_pings_and_detach_removes_pins() {
    require_root();
    let hosts = TwoHosts::new().unwrap();
    let mut daemon = hosts.start_daemon().unwrap();

    let link = hosts.lb.ip(&["link", "show", &hosts.lb_if]).unwrap();
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "the program is attached: {}",
        String::from_utf8_lossy(&link.stdout)
    );

    let before = stats(&hosts);
    hosts
        .client
        .exec("ping", &["-c", "5", "-i", "0.05", "-W", "2", LB_ADDR])
        .expect("pings through the XDP program are answered");
    let after = stats(&hosts);
    // Five echo requests (ICMP: left to the kernel), plus the ARP exchange.
    let icmp = counter(&after, "pass_other_protocol") - counter(&before, "pass_other_protocol");
    assert!(icmp >= 5, "ICMP echo counted: {icmp}");
    assert!(counter(&after, "verdict_pass") >= counter(&before, "verdict_pass") + 5);
    assert_eq!(counter(&after, "verdict_drop"), 0);

    let status = daemon.stop().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {}", daemon.log());
    // Stopping the daemon leaves the program attached (hitless restarts)
    // and the counters in the pins.
    let link = hosts.lb.ip(&["link", "show", &hosts.lb_if]).unwrap();
    assert!(String::from_utf8_lossy(&link.stdout).contains("xdp"));
    hosts
        .client
        .exec("ping", &["-c", "2", "-i", "0.05", "-W", "2", LB_ADDR])
        .expect("still answered with the daemon stopped");
    assert!(counter(&stats(&hosts), "pass_other_protocol") >= 7);

    let pin = hosts.pins.path().to_str().unwrap();
    let out = cli(&hosts.lb, &["detach", "--pin-path", pin]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!hosts.pins.path().exists(), "detach removed the pins");
    let link = hosts.lb.ip(&["link", "show", &hosts.lb_if]).unwrap();
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "detach removed the program from the interface"
    );
    let out = cli(&hosts.lb, &["stats", "--pin-path", pin]).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing is pinned"), "{err}");
}

#[test]
fn run_refuses_an_interface_that_does_not_exist() {
    require_root();
    let hosts = TwoHosts::new().unwrap();
    std::fs::write(&hosts.config, "[daemon]\ninterfaces = [\"kxnosuchif0\"]\n").unwrap();
    let out = cli(
        &hosts.lb,
        &["run", "--config", hosts.config.to_str().unwrap()],
    )
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kube-xdp.toml:2:")
            && err.contains("interfaces")
            && err.contains("no interface \"kxnosuchif0\""),
        "{err}"
    );
}

#[test]
fn program_passes_the_verifier_in_native_mode_on_a_veth() {
    require_root();
    let hosts = TwoHosts::new().unwrap();
    let text = std::fs::read_to_string(&hosts.config).unwrap();
    std::fs::write(&hosts.config, format!("{text}xdp_mode = \"native\"\n")).unwrap();
    let mut daemon = hosts.start_daemon().unwrap();
    let link = hosts.lb.ip(&["-d", "link", "show", &hosts.lb_if]).unwrap();
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(link.contains("prog/xdp"), "attached: {link}");
    assert!(!link.contains("xdpgeneric"), "native, not generic: {link}");
    assert!(daemon.log().contains("mode=\"native\""), "{}", daemon.log());
    daemon.stop().unwrap();
}

#[test]
fn check_config_prints_the_plan_or_every_error_with_its_line() {
    require_root();
    let hosts = TwoHosts::new().unwrap();
    let text = std::fs::read_to_string(&hosts.config).unwrap();
    // The VIP is not the LB's only address (198.18.0.2): that file would
    // leave nothing to translate flows to, and check-config refuses what
    // run refuses.
    let good = format!(
        "{text}\n[[service]]\nname = \"kube-apiserver\"\nvip = \"198.18.0.10\"\nport = 6443\n\n\
         [[service.backend]]\nname = \"cp1\"\naddress = \"198.18.0.1\"\n"
    );
    std::fs::write(&hosts.config, &good).unwrap();
    let config = hosts.config.to_str().unwrap();
    let out = cli(&hosts.lb, &["check-config", "--config", config]).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("kube-apiserver") && stdout.contains("cp1"),
        "{stdout}"
    );

    let bad = good
        .replace("port = 6443", "ports = \"32767-30000\"")
        .replace(
            "address = \"198.18.0.1\"",
            "address = \"198.18.0.1\"\nweight = 300",
        );
    std::fs::write(&hosts.config, &bad).unwrap();
    let out = cli(&hosts.lb, &["check-config", "--config", config]).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line_of = |needle: &str| bad.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert!(
        err.contains(&format!("kube-xdp.toml:{}:", line_of("ports ="))) && err.contains("ports"),
        "{err}"
    );
    assert!(
        err.contains(&format!("kube-xdp.toml:{}:", line_of("weight ="))) && err.contains("weight"),
        "both errors are reported: {err}"
    );
}
