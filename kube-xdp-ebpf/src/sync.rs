//! Flow sync: each new flow, and each change of a flow's state or flags,
//! goes to the daemon through the `SYNC_EVENTS` ring buffer, for the
//! pair's other box. Never per packet: an established flow's packets
//! change neither.

use kube_xdp_common::{
    maps::{Flow, FlowKey, SyncEvent},
    stats::Counter,
};

use crate::{SETTINGS, SYNC_EVENTS, stats};

/// Reports `flow` of `client` as it now stands, when sync is on (the
/// settings are looked up again here: a report is rare, and the callers'
/// argument lists are long enough).
#[inline(always)]
pub fn report(client: &FlowKey, flow: &Flow) {
    if SETTINGS.get(0).is_none_or(|s| s.sync == 0) {
        return;
    }
    // Written straight into the ring (no copy of the event on the stack,
    // which the main path has little of).
    let Some(mut entry) = SYNC_EVENTS.reserve::<SyncEvent>(0) else {
        stats::event(Counter::SyncLost);
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points into the reserved record, which is ours until
    // submitted.
    unsafe {
        (*event).client = *client;
        (*event).flow = *flow;
    }
    entry.submit(0);
}
