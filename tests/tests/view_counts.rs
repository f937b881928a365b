//! The scrape's count of the flow table (one walk, nothing copied) agrees
//! with the full read that `kube-xdp flows` and the sync use: live flows by
//! backend, expired entries and orphaned ones left out.

use kube_xdp::view::{Snapshot, live_flows};
use kube_xdp_common::maps::FlowKey;
use kube_xdp_tests::harness::{apiserver, open};

#[test]
fn the_scrapes_count_agrees_with_the_full_read() {
    let mut h = apiserver();
    for sport in 41_000..41_030 {
        open(&h, sport);
    }
    // Two expired (idle since the clock's start), one whose port went to
    // another client.
    let (_, all) = live_flows(&h.dp).unwrap();
    for (key, flow) in all.iter().take(2) {
        let mut stale = *flow;
        stale.last_seen_ns = 0;
        h.set_flow(key, &stale);
    }
    let (key, flow) = all[2];
    let other = FlowKey {
        src_port: 1u16.to_be(),
        ..key
    };
    h.set_reverse(
        &kube_xdp_common::flow::reverse_key(&key, &flow),
        &kube_xdp_common::maps::ReverseFlow {
            client: other,
            claimed_ns: 0,
        },
    );
    let snapshot = Snapshot::read(&h.dp, None).unwrap();
    let (_, live) = live_flows(&h.dp).unwrap();
    assert_eq!(live.len(), 27);
    assert_eq!(snapshot.live_flows, 27);
    assert_eq!(snapshot.flow_entries, 30);
    let per_backend: u64 = snapshot
        .services
        .iter()
        .flat_map(|s| &s.backends)
        .map(|b| b.active_flows)
        .sum();
    assert_eq!(per_backend, 27);
}
