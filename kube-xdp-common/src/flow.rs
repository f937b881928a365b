//! The flow rules both sides apply to the flow table: which reverse entry a
//! flow owns, when it has been idle too long, and whether a forward and a
//! reverse entry belong together.
//!
//! A flow is a forward entry (`FLOWS`: client 5-tuple → [`Flow`]) and a
//! reverse entry (`REVERSE`: the backend's reply 5-tuple → client 5-tuple).
//! Nothing deletes either when a flow ends: the datapath judges an entry
//! when it finds one (so expiry needs no daemon), and the daemon's
//! inspection judges it the same way. Plain functions over the map types,
//! with no map access, so the XDP program and userspace share them; the
//! caller does the lookups.
//!
//! The reference model in `tests/src/model.rs` writes these rules again
//! on purpose, from the design, and does not call them.

use crate::maps::{Flow, FlowKey, ReverseFlow, Settings};

/// The key of `flow`'s reverse entry: the 5-tuple of the backend's replies
/// (backend → SNAT address and port). `client` is the flow's forward key.
#[inline(always)]
pub fn reverse_key(client: &FlowKey, flow: &Flow) -> FlowKey {
    // Padding from `Default` rather than a `[0; 3]` literal: the XDP
    // program then zeroes the key with two stores instead of a call to
    // `memset`.
    FlowKey {
        src_addr: flow.backend_addr,
        dst_addr: flow.snat_addr,
        src_port: flow.backend_port,
        dst_port: flow.snat_port,
        protocol: client.protocol,
        ..FlowKey::default()
    }
}

/// Whether `flow` has been idle longer than the timeout of its state (see
/// [`Settings::idle_timeout_ns`]) at `now` (the datapath's clock,
/// `CLOCK_MONOTONIC` in ns).
#[inline(always)]
pub fn expired(settings: &Settings, flow: &Flow, now: u64) -> bool {
    now.saturating_sub(flow.last_seen_ns) > settings.idle_timeout_ns(flow.state)
}

/// Whether the reverse entry `reverse`, found under the flow's
/// [`reverse_key`], points back at the forward key `client`. It does not
/// once the SNAT port went to another flow.
#[inline(always)]
pub fn reverse_agrees(client: &FlowKey, reverse: &ReverseFlow) -> bool {
    reverse.client == *client
}

/// Whether the forward entry `flow`, found through the reverse entry under
/// `reverse_key` (a reply's 5-tuple), holds that reply's addresses and
/// ports. It does not once its client re-used the 5-tuple for a newer flow.
#[inline(always)]
pub fn forward_agrees(flow: &Flow, reverse_key: &FlowKey) -> bool {
    flow.snat_addr == reverse_key.dst_addr
        && flow.snat_port == reverse_key.dst_port
        && flow.backend_addr == reverse_key.src_addr
        && flow.backend_port == reverse_key.src_port
}

/// Whether the forward entry `flow` of `client` is a live flow at `now`:
/// not [`expired`], and its reverse entry (the value under
/// [`reverse_key`], `None` when there is none) [`reverse_agrees`].
#[inline(always)]
pub fn live(
    settings: &Settings,
    client: &FlowKey,
    flow: &Flow,
    reverse: Option<&ReverseFlow>,
    now: u64,
) -> bool {
    !expired(settings, flow, now) && reverse.is_some_and(|r| reverse_agrees(client, r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::{FLOW_CLOSING, FLOW_ESTABLISHED, PROTO_TCP};

    const SECOND: u64 = 1_000_000_000;

    fn settings() -> Settings {
        Settings {
            tcp_established_ns: 3600 * SECOND,
            tcp_closing_ns: 10 * SECOND,
            ..Settings::default()
        }
    }

    fn client() -> FlowKey {
        FlowKey {
            src_addr: 0x0a00_0001,
            dst_addr: 0x0a00_0064,
            src_port: 40000,
            dst_port: 6443,
            protocol: PROTO_TCP,
            _pad: [0; 3],
        }
    }

    fn flow(state: u8, last_seen_ns: u64) -> Flow {
        Flow {
            backend_addr: 0x0a00_0102,
            snat_addr: 0x0a00_0002,
            backend_port: 6443,
            snat_port: 20001,
            state,
            last_seen_ns,
            ..Flow::default()
        }
    }

    #[test]
    fn reverse_key_is_the_backends_reply_tuple() {
        let rkey = reverse_key(&client(), &flow(FLOW_ESTABLISHED, 0));
        assert_eq!(
            (rkey.src_addr, rkey.src_port, rkey.dst_addr, rkey.dst_port),
            (0x0a00_0102, 6443, 0x0a00_0002, 20001)
        );
        assert_eq!(rkey.protocol, PROTO_TCP);
        assert!(forward_agrees(&flow(FLOW_ESTABLISHED, 0), &rkey));
    }

    #[test]
    fn expiry_follows_the_timeout_of_the_state() {
        let s = settings();
        let f = flow(FLOW_CLOSING, 5 * SECOND);
        assert!(!expired(&s, &f, 15 * SECOND));
        assert!(expired(&s, &f, 15 * SECOND + 1));
        assert!(!expired(
            &s,
            &flow(FLOW_ESTABLISHED, 5 * SECOND),
            15 * SECOND + 1
        ));
        // A clock behind the entry (another CPU's newer packet) is not idle.
        assert!(!expired(&s, &f, 0));
    }

    #[test]
    fn live_needs_a_reverse_entry_pointing_back() {
        let s = settings();
        let c = client();
        let f = flow(FLOW_ESTABLISHED, SECOND);
        let mine = ReverseFlow {
            client: c,
            claimed_ns: 0,
        };
        let other = ReverseFlow {
            client: FlowKey {
                src_port: 40001,
                ..c
            },
            claimed_ns: 0,
        };
        assert!(live(&s, &c, &f, Some(&mine), 2 * SECOND));
        assert!(!live(&s, &c, &f, Some(&other), 2 * SECOND));
        assert!(!live(&s, &c, &f, None, 2 * SECOND));
        assert!(!live(&s, &c, &f, Some(&mine), 3601 * SECOND + 1));
    }

    #[test]
    fn forward_entry_of_a_reused_client_tuple_disagrees() {
        let rkey = reverse_key(&client(), &flow(FLOW_ESTABLISHED, 0));
        let newer = Flow {
            snat_port: 20002,
            ..flow(FLOW_ESTABLISHED, 0)
        };
        assert!(!forward_agrees(&newer, &rkey));
    }
}
