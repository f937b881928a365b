//! What `kube-xdp check-config` prints: the plan.

use super::*;

#[test]
fn summary_prints_daemon_settings_services_checks_and_backends_aligned() {
    let out = plan(TWO_SERVICES, &FakeHost::lb()).summary();
    for needle in [
        "kube-xdp plan from test.toml",
        "interfaces       eth0, eth1 (xdp_mode native)",
        "pin_path         /sys/fs/bpf/kube-xdp",
        "metrics_listen   off",
        "stats_listen     off",
        "flow_table_size  1048576 flows",
        "snat_addresses   10.4.0.9, 10.4.0.8",
        "snat_ports       10000-32767 (22768 ports)",
        "tcp_established 24h  tcp_closing 10s  tcp_syn 5s  udp 2m (unanswered 30s)  tcp_time_wait 1m",
        "check https GET /readyz expect 200, ca_file /etc/kubernetes/pki/ca.crt, server_name kubernetes; \
         interval 2s, timeout 1s, fall 3, rise 2, init down",
        "check http GET /healthz expect 200 on port 10256;",
        "backends keep the client's destination port",
        "(drain)",
    ] {
        assert!(out.contains(needle), "{needle:?} not in:\n{out}");
    }
    // Names line up under the header's "Service" column, service and
    // backend rows alike.
    let column = |needle: &str| {
        let row = out.lines().find(|l| l.contains(needle)).unwrap();
        row.find(needle).unwrap()
    };
    let names = [
        column("Service"),
        column("kube-apiserver"),
        column("bettley"),
        column("chenoweth"),
        column("nodeports"),
        column("worker-1"),
    ];
    assert!(names.iter().all(|c| *c == names[0]), "{names:?}\n{out}");
    let mode = column("Mode");
    let row = out.lines().find(|l| l.contains("kube-apiserver")).unwrap();
    assert_eq!(row.find("nat "), Some(mode), "{out}");
    let row = out.lines().find(|l| l.contains("nodeports")).unwrap();
    assert!(row.starts_with("TCP  10.4.0.10:30000-32767"), "{row}");
    assert!(out.contains("  -> 10.4.0.21:*"), "{out}");
    assert!(out.contains("  -> cp2.example.internal:16443"), "{out}");
}

#[test]
fn summary_of_a_file_without_services_says_so() {
    let out = plan(
        &format!("{DAEMON}metrics_listen = \"127.0.0.1:9437\"\n"),
        &FakeHost::lb(),
    )
    .summary();
    assert!(out.contains("metrics_listen   127.0.0.1:9437"), "{out}");
    // The default SNAT address as run applies it, not a description.
    assert!(
        out.contains(
            "snat_addresses   10.4.0.9 (the first IPv4 address of eth0 that is not a VIP)"
        ),
        "{out}"
    );
    assert!(out.contains("No services."), "{out}");
}

#[test]
fn summary_says_where_the_stats_page_is_and_how_it_is_served() {
    let hash = crate::config::tests::stats_keys::SECRET_SHA512;
    let out = plan(
        &format!(
            "{DAEMON}stats_listen = \"8404\"\nstats_refresh = \"5s\"\n\
             stats_auth = 'admin:{hash}'\nstats_hide_version = true\n"
        ),
        &FakeHost::lb(),
    )
    .summary();
    assert!(
        out.contains(
            "stats_listen     http://127.0.0.1:8404/stats (JSON /stats.json), refresh 5s, \
             basic auth as admin, version hidden"
        ),
        "{out}"
    );
    assert!(
        !out.contains("kubexdpstats"),
        "the hash is not printed:\n{out}"
    );
}

#[test]
fn summary_shows_the_kubernetes_settings_and_pools() {
    let text = format!(
        "{DAEMON}\n[kubernetes]\nkubeconfig = \"/etc/kube-xdp/kubeconfig\"\nnode_selector = \"role=lb\"\n\n\
         [[kubernetes.address_pool]]\nname = \"public\"\naddresses = [\"10.4.0.96/28\"]\n\n\
         [[kubernetes.address_pool]]\nname = \"team-a\"\naddresses = [\"10.4.0.120-10.4.0.121\"]\n\
         namespaces = [\"team-a\"]\nauto_assign = false\n"
    );
    let out = plan(&text, &FakeHost::lb()).summary();
    for needle in [
        "Kubernetes (Services of type LoadBalancer)",
        "api              /etc/kube-xdp/kubeconfig",
        "class            kube-xdp.io/lb",
        "nodes            Ready, not excluded, matching role=lb",
        "node check       http GET /healthz expect 200 on port 10256;",
        "pool public      10.4.0.96-10.4.0.111 (16 addresses)",
        "pool team-a      10.4.0.120-10.4.0.121 (2 addresses), namespaces team-a, only when asked for",
    ] {
        assert!(out.contains(needle), "{needle:?} not in:\n{out}");
    }
}

#[test]
fn a_kubeconfig_that_cannot_be_read_is_a_warning_not_an_error() {
    let text = format!(
        "{DAEMON}\n[kubernetes]\nkubeconfig = \"/etc/kube-xdp/kubeconfig\"\n\n\
         [[kubernetes.address_pool]]\nname = \"p\"\naddresses = [\"10.4.0.96/28\"]\n"
    );
    let plan = plan(&text, &FakeHost::lb());
    let w = plan
        .warnings
        .iter()
        .find(|w| w.key == "kubeconfig")
        .unwrap_or_else(|| panic!("no warning: {:?}", plan.warnings));
    assert_eq!(w.line, Some(line(&text, "kubeconfig =")), "{w}");
    assert!(
        w.to_string()
            .contains("are not served until it can be read"),
        "{w}"
    );
}
