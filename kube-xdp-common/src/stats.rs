//! Global verdict and reason counters (a per-CPU array indexed by
//! [`Counter`]).

/// One slot of the global per-CPU counter array.
///
/// The first five slots count packets by XDP verdict and share its numeric
/// value (`XDP_ABORTED` = 0 … `XDP_REDIRECT` = 4); the rest count why a
/// packet got its verdict. A packet bumps one verdict slot and one reason
/// slot.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    VerdictAborted = 0,
    VerdictDrop = 1,
    VerdictPass = 2,
    VerdictTx = 3,
    VerdictRedirect = 4,
    /// Not IPv4 (ARP, IPv6, …): left to the kernel.
    PassNotIpv4 = 5,
    /// IPv4 but not TCP or UDP (ICMP, …) and not about a flow.
    PassOtherProtocol = 6,
    /// TCP or UDP to no service.
    PassNoService = 7,
    /// A frame too short for the header it announces (Ethernet, IPv4, TCP
    /// or UDP), or an IPv4 header with IHL < 5.
    Malformed = 8,
}

/// Number of slots in the counter array.
pub const COUNTER_SLOTS: u32 = 9;

impl Counter {
    /// Every counter, in slot order.
    pub const ALL: [Counter; COUNTER_SLOTS as usize] = [
        Counter::VerdictAborted,
        Counter::VerdictDrop,
        Counter::VerdictPass,
        Counter::VerdictTx,
        Counter::VerdictRedirect,
        Counter::PassNotIpv4,
        Counter::PassOtherProtocol,
        Counter::PassNoService,
        Counter::Malformed,
    ];

    /// The name used by `kube-xdp stats`, metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::VerdictAborted => "verdict_aborted",
            Counter::VerdictDrop => "verdict_drop",
            Counter::VerdictPass => "verdict_pass",
            Counter::VerdictTx => "verdict_tx",
            Counter::VerdictRedirect => "verdict_redirect",
            Counter::PassNotIpv4 => "pass_not_ipv4",
            Counter::PassOtherProtocol => "pass_other_protocol",
            Counter::PassNoService => "pass_no_service",
            Counter::Malformed => "malformed",
        }
    }

    /// The counter for an XDP verdict (`xdp_action`), if it is one.
    pub const fn for_verdict(verdict: u32) -> Option<Counter> {
        match verdict {
            0 => Some(Counter::VerdictAborted),
            1 => Some(Counter::VerdictDrop),
            2 => Some(Counter::VerdictPass),
            3 => Some(Counter::VerdictTx),
            4 => Some(Counter::VerdictRedirect),
            _ => None,
        }
    }
}
