//! Counting: one verdict slot and one reason slot per packet.

use aya_ebpf::maps::PerCpuArray;
use kube_xdp_common::stats::Counter;

#[inline(always)]
fn bump(map: &PerCpuArray<u64>, slot: u32) {
    if let Some(ptr) = map.get_ptr_mut(slot) {
        // SAFETY: the pointer comes from the per-CPU array lookup and is
        // only touched by this CPU while the program runs.
        unsafe { *ptr += 1 };
    }
}

/// Counts a packet under its verdict (`xdp_action` value) and its reason.
#[inline(always)]
pub fn count(map: &PerCpuArray<u64>, verdict: u32, reason: Counter) {
    bump(map, verdict);
    bump(map, reason as u32);
}
