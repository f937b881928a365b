//! The kube-xdp XDP program: maps and entry points only; each stage of the
//! packet's path lives in its own module.
#![no_std]
#![no_main]

mod parse;
mod stats;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};
use kube_xdp_common::stats::{COUNTER_SLOTS, Counter};

/// Global verdict/reason counters (`kube_xdp_common::map_name::STATS`).
#[map(name = "KXDP_STATS")]
static KXDP_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// The load balancer's entry point.
#[xdp]
pub fn kube_xdp(ctx: XdpContext) -> u32 {
    let (verdict, reason) = process(&ctx);
    stats::count(&KXDP_STATS, verdict, reason);
    verdict
}

fn process(ctx: &XdpContext) -> (u32, Counter) {
    match parse::parse(ctx) {
        Err(reason) => (xdp_action::XDP_PASS, reason),
        Ok(parse::Parsed::NotIpv4) => (xdp_action::XDP_PASS, Counter::PassNotIpv4),
        Ok(parse::Parsed::Ipv4Other) => (xdp_action::XDP_PASS, Counter::PassOtherProtocol),
        // No service table yet: every TCP/UDP packet is for the kernel.
        Ok(parse::Parsed::Ipv4L4(_)) => (xdp_action::XDP_PASS, Counter::PassNoService),
    }
}

/// Returns `XDP_PASS`. Attached to the peer of a veth whose other end sends
/// with `XDP_TX`: without an XDP program there, the peer drops such frames
/// (kernel 6.18, see TOOLCHAIN.md).
#[xdp]
pub fn kube_xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The benchmark floor: swap the Ethernet addresses and send the frame back.
#[xdp]
pub fn kube_xdp_floor(ctx: XdpContext) -> u32 {
    match parse::swap_macs(&ctx) {
        Some(()) => xdp_action::XDP_TX,
        None => xdp_action::XDP_DROP,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
