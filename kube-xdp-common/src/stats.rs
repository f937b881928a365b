//! Global verdict and reason counters (a per-CPU array indexed by
//! [`Counter`]).

macro_rules! counters {
    ($($(#[$doc:meta])* $variant:ident = $slot:literal => $name:literal,)*) => {
        /// One slot of the global per-CPU counter array.
        ///
        /// The first five slots count packets by XDP verdict and share its
        /// numeric value (`XDP_ABORTED` = 0 … `XDP_REDIRECT` = 4); the rest
        /// count why a packet got its verdict. A packet bumps one verdict
        /// slot and one reason slot.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Counter {
            $($(#[$doc])* $variant = $slot,)*
        }

        impl Counter {
            /// Every counter, in slot order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];

            /// The name used by `kube-xdp stats`, metrics and logs.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)*
                }
            }

            /// For a verdict slot, the verdict (`verdict_tx` → `tx`: the
            /// metrics' `verdict` label); `None` for a reason.
            pub fn verdict(self) -> Option<&'static str> {
                self.name().strip_prefix("verdict_")
            }
        }
    };
}

counters! {
    VerdictAborted = 0 => "verdict_aborted",
    VerdictDrop = 1 => "verdict_drop",
    VerdictPass = 2 => "verdict_pass",
    VerdictTx = 3 => "verdict_tx",
    VerdictRedirect = 4 => "verdict_redirect",
    /// Not IPv4 (ARP, IPv6, …): left to the kernel.
    PassNotIpv4 = 5 => "pass_not_ipv4",
    /// IPv4 but neither TCP nor UDP nor an ICMP error about a flow.
    PassOtherProtocol = 6 => "pass_other_protocol",
    /// TCP or UDP to no service.
    PassNoService = 7 => "pass_no_service",
    /// Truncated headers, IHL < 5, TCP data offset < 5, a bad UDP length:
    /// dropped when sent to a VIP, left to the kernel otherwise.
    Malformed = 8 => "malformed",
    /// A packet of an established flow sent on to its backend.
    ToBackend = 9 => "to_backend",
    /// A SYN (or first UDP datagram) that opened a flow.
    NewFlow = 10 => "new_flow",
    /// A backend's reply sent back to the client.
    ToClient = 11 => "to_client",
    /// No usable backend: a SYN is answered with a RST, the rest dropped.
    NoBackend = 12 => "no_backend",
    /// A TCP segment without SYN that matches no flow: answered with a RST
    /// so the client reconnects at once.
    NoFlow = 13 => "no_flow",
    /// No free SNAT port: the SYN is answered with a RST.
    SnatExhausted = 14 => "snat_exhausted",
    /// The backend's next hop is not resolved: dropped.
    NeighbourMiss = 15 => "neighbour_miss",
    /// The flow table refused a new entry: the SYN is answered with a RST.
    FlowTableFull = 16 => "flow_table_full",
    /// A packet of a flow whose backend is down, under
    /// `on_backend_down = "reset"`: answered with a RST.
    BackendDownReset = 17 => "backend_down_reset",
    /// An ICMP error from the backend side, translated to the client.
    IcmpToClient = 18 => "icmp_to_client",
    /// An ICMP error from the client side, translated to the backend.
    IcmpToBackend = 19 => "icmp_to_backend",
    /// A later fragment translated like its first.
    FragmentTranslated = 20 => "fragment_translated",
    /// A later fragment to a VIP whose first was not seen: dropped.
    FragmentOrphan = 21 => "fragment_orphan",
    /// A packet to a service whose TTL ran out here: dropped.
    TtlExceeded = 22 => "ttl_exceeded",
    /// Not a packet's reason: a flow change the datapath could not report
    /// for the pair's flow sync (the ring buffer was full).
    SyncLost = 23 => "sync_lost",
    /// A frame that would be service traffic but is not addressed to the
    /// receiving interface's MAC (another host's, or a broadcast or
    /// multicast address): left to the kernel, which drops what is not for
    /// this host (`PACKET_OTHERHOST`). The backup of a pair sees the frames
    /// a switch floods towards the master here.
    PassNotForUs = 24 => "pass_not_for_us",
    /// A packet that would have been answered with a RST (no flow, no
    /// backend, …) over the RST rate limit (`maps::RST_RATE_PER_CPU`):
    /// dropped, so a flood from spoofed sources gets no answers.
    RstLimited = 25 => "rst_limited",
    /// An ICMP "fragmentation needed" about a flow's packets to its client,
    /// sent from the client's own address — which a host never sends about
    /// packets addressed to itself, only a router on the path (with another
    /// address) does: dropped, rather than lowering the backend's path MTU
    /// towards the SNAT address that every client shares.
    IcmpSpoofed = 26 => "icmp_spoofed",
    /// A SYN over the half-open limit with `syn_cookies = "never"`:
    /// dropped, so half-open flows never crowd out established ones.
    HalfOpenLimited = 27 => "half_open_limited",
    /// A SYN answered with a SYN cookie (over the half-open limit, or
    /// `syn_cookies = "always"`): no state kept.
    CookieSent = 28 => "syn_cookie_sent",
    /// A client's ACK of a valid SYN cookie: the flow opened, and the ACK
    /// went to the backend as the client's SYN.
    CookieValid = 29 => "syn_cookie_valid",
    /// An ACK with no flow while cookies are in use, whose cookie is not
    /// valid (forged, or older than two cookie periods): answered with a
    /// RST like any segment of no flow.
    CookieInvalid = 30 => "syn_cookie_invalid",
    /// The backend's SYN-ACK of a cookie flow, turned into the ACK that
    /// opens the client's window.
    CookieBackendAnswered = 31 => "syn_cookie_backend_answered",
    /// The backend's SYN-ACK of a cookie flow again (the client sent
    /// nothing yet to complete the backend's handshake): answered with the
    /// ACK the backend waits for.
    CookieBackendAck = 32 => "syn_cookie_backend_ack",
    /// A client's segment of a cookie flow before its backend answered
    /// (the client was told a zero window): dropped; the client sends it
    /// again.
    CookieEarly = 33 => "syn_cookie_early",
    /// A packet for the SYN-cookie program whose tail call failed (the
    /// program is not in `KXDP_PROGRAMS`): dropped. Never seen when the
    /// daemon loaded the program.
    CookieProgramMissing = 34 => "cookie_program_missing",
    /// A UDP datagram that would open a flow while `half_open_limit` UDP
    /// flows wait for their backend's first answer (spoofed or scanning
    /// datagrams): dropped, so they never crowd out answered flows or TCP.
    UdpUnansweredLimited = 35 => "udp_unanswered_limited",
    /// A client's segment of a cookie flow whose backend has not answered
    /// for `COOKIE_SYN_AGAIN_NS` (its SYN, or the backend's SYN-ACK, was
    /// lost): the client's SYN went to the backend again, from the flow's
    /// own port. The client's zero-window probes pace these as its
    /// retransmission timer does.
    CookieSynAgain = 36 => "syn_cookie_syn_again",
}

/// Number of slots in the counter array.
pub const COUNTER_SLOTS: u32 = 37;

impl Counter {
    /// Whether the slot counts packets (by verdict or reason); the others
    /// count events of the datapath.
    pub const fn is_packet(self) -> bool {
        !matches!(self, Counter::SyncLost)
    }
}

const _: () = assert!(Counter::ALL.len() == COUNTER_SLOTS as usize);
