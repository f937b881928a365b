//! Counting: one verdict slot and one reason slot per packet, and traffic
//! per service and backend.

use kube_xdp_common::{maps::Traffic, stats::Counter};

use crate::{BACKEND_STATS, SERVICE_STATS, STATS};

#[inline(always)]
fn bump(slot: u32) {
    if let Some(ptr) = STATS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot, touched only by this CPU while the
        // program runs.
        unsafe { *ptr += 1 };
    }
}

/// Counts a packet under its verdict (`xdp_action` value) and its reason.
#[inline(always)]
pub fn count(verdict: u32, reason: Counter) {
    bump(verdict);
    bump(reason as u32);
}

/// Counts an event that is not a packet's verdict (`Counter::is_packet`).
#[inline(always)]
pub fn event(counter: Counter) {
    bump(counter as u32);
}

#[inline(always)]
fn add(traffic: Option<*mut Traffic>, bytes: u64, new_flow: bool) {
    if let Some(t) = traffic {
        // SAFETY: as above.
        unsafe {
            (*t).packets += 1;
            (*t).bytes += bytes;
            (*t).new_flows += u64::from(new_flow);
        }
    }
}

/// Counts a forwarded packet for its service and backend.
#[inline(always)]
pub fn traffic(service_id: u32, backend_id: u32, bytes: u64, new_flow: bool) {
    add(SERVICE_STATS.get_ptr_mut(service_id), bytes, new_flow);
    add(BACKEND_STATS.get_ptr_mut(backend_id), bytes, new_flow);
}
