//! How a peer's record of a flow merges with the same flow held here.
//! Plain Rust; the task decides whether the two are the same flow.

use kube_xdp_common::maps::{FLOW_COOKIE, FLOW_COOKIE_WAIT, FLOW_UDP, Flow};

/// The peer's `flow` merged with `local`, the same flow here: its state
/// only moves forward, flags add up, the latest time wins, so a record
/// that comes back late, or from the peer's refresh of what we sent it,
/// never undoes a FIN. A SYN-cookie flow's translation (`seq_delta`,
/// `ts_peer_offset`, the window scales) is final once its backend
/// answered (`FLOW_COOKIE_WAIT` cleared): it comes from a side that has
/// it final, the peer's first, and the flow waits only if neither does —
/// a late record of the wait never puts the cookie back in `seq_delta`.
pub fn same_flow(mut flow: Flow, local: &Flow) -> Flow {
    if local.state != FLOW_UDP {
        flow.state = flow.state.max(local.state);
    }
    let answered = |f: &Flow| f.flags & (FLOW_COOKIE | FLOW_COOKIE_WAIT) == FLOW_COOKIE;
    if !answered(&flow) && answered(local) {
        flow.seq_delta = local.seq_delta;
        flow.ts_peer_offset = local.ts_peer_offset;
        flow.win_scale_backend = local.win_scale_backend;
        flow.win_scale_client_view = local.win_scale_client_view;
    }
    let waits = !answered(&flow) && !answered(local);
    flow.flags |= local.flags;
    if !waits {
        flow.flags &= !FLOW_COOKIE_WAIT;
    }
    flow.last_seen_ns = flow.last_seen_ns.max(local.last_seen_ns);
    flow.created_ns = flow.created_ns.min(local.created_ns);
    flow
}

#[cfg(test)]
mod tests {
    use kube_xdp_common::maps::{
        FLOW_CLOSING, FLOW_ESTABLISHED, FLOW_FIN_CLIENT, FLOW_SYN_SENT, FLOW_TS_REWRITE,
    };

    use super::*;

    fn flow(state: u8, flags: u8, seq_delta: u32, seen: u64) -> Flow {
        Flow {
            state,
            flags,
            seq_delta,
            ts_peer_offset: seq_delta / 2,
            win_scale_backend: (seq_delta % 15) as u8,
            win_scale_client_view: 7,
            created_ns: 1_000,
            last_seen_ns: seen,
            ..Flow::default()
        }
    }

    #[test]
    fn state_moves_forward_flags_add_up_latest_time_wins() {
        let peer = flow(FLOW_ESTABLISHED, FLOW_TS_REWRITE, 0, 5_000);
        let here = Flow {
            created_ns: 900,
            ..flow(FLOW_CLOSING, FLOW_FIN_CLIENT, 0, 7_000)
        };
        let got = same_flow(peer, &here);
        assert_eq!(got.state, FLOW_CLOSING, "a late record never undoes a FIN");
        assert_eq!(got.flags, FLOW_TS_REWRITE | FLOW_FIN_CLIENT);
        assert_eq!((got.created_ns, got.last_seen_ns), (900, 7_000));
        assert_eq!(same_flow(here, &peer).state, FLOW_CLOSING);
    }

    #[test]
    fn a_cookie_flows_translation_is_taken_once_its_backend_answered() {
        const COOKIE: u32 = 0xc00c_1e00;
        const DELTA: u32 = 0x1234_5678;
        let waiting = flow(
            FLOW_ESTABLISHED,
            FLOW_COOKIE | FLOW_COOKIE_WAIT,
            COOKIE,
            5_000,
        );
        let answered = flow(FLOW_ESTABLISHED, FLOW_COOKIE, DELTA, 6_000);
        // The peer's backend answered: its translation, no more waiting.
        let got = same_flow(answered, &waiting);
        assert_eq!((got.flags, got.seq_delta), (FLOW_COOKIE, DELTA));
        assert_eq!(
            (got.ts_peer_offset, got.win_scale_backend),
            (answered.ts_peer_offset, answered.win_scale_backend)
        );
        // A late record of the wait: ours stays.
        let got = same_flow(waiting, &answered);
        assert_eq!((got.flags, got.seq_delta), (FLOW_COOKIE, DELTA));
        assert_eq!(got.ts_peer_offset, answered.ts_peer_offset);
        // Both wait: still waiting, on the cookie.
        let got = same_flow(waiting, &waiting);
        assert_eq!(
            (got.flags, got.seq_delta),
            (FLOW_COOKIE | FLOW_COOKIE_WAIT, COOKIE)
        );
        // A cookie flow here, a plain one there (a SYN the peer opened
        // itself is no cookie flow): the cookie flow's translation stays.
        let plain = flow(FLOW_SYN_SENT, FLOW_TS_REWRITE, 0, 4_000);
        let got = same_flow(plain, &answered);
        assert_eq!(
            (got.flags, got.seq_delta),
            (FLOW_TS_REWRITE | FLOW_COOKIE, DELTA)
        );
    }
}
