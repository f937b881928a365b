//! Packet-by-packet fixtures of the half-open limit and SYN cookies
//! (issue #18), through `BPF_PROG_TEST_RUN`: the cookie SYN-ACK (bytes
//! and options), a valid and an invalid ACK, the SYN sent to the backend
//! on the client's behalf, the backend's SYN-ACK turned into the ACK that
//! opens the client's window (and a retransmitted one answered), the
//! segments of a cookie flow translated both ways (sequence numbers,
//! SACK blocks, timestamps, windows), a RST under translation, and the
//! half-open budget that decides when cookies are used.

use etherparse::{
    EtherType, Ethernet2Header, IpNumber, Ipv4Header, PacketHeaders, TcpHeader, TcpOptionElement,
    TransportHeader,
};
use kube_xdp_common::{
    cookie::{self, CookieOptions, CookieTuple},
    maps::{
        FLOW_COOKIE, FLOW_COOKIE_WAIT, FLOW_ESTABLISHED, SYN_COOKIES_ALWAYS, SYN_COOKIES_AUTO,
        SYN_COOKIES_NEVER, Settings,
    },
    stats::Counter,
};
use kube_xdp_tests::{
    harness::{COOKIE_KEY, Harness, apiserver, default_settings, pin_to_cpu0},
    packet::{
        ACK, BACKEND_IPS, CLIENT_IP, CLIENT_MAC, LB_IP, LB_MAC, PSH, RST, SYN, Seen, VIP,
        backend_mac,
    },
};

const XDP_DROP: u32 = 1;
const XDP_TX: u32 = 3;
const SPORT: u16 = 40_000;
const CLIENT_ISN: u32 = 1_000;
const CLIENT_TSVAL: u32 = 100_000;
const BACKEND_ISN: u32 = 777_000;
const BACKEND_TSVAL: u32 = 5_555;

/// A TCP segment as sent on the wire.
struct Seg {
    src_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: Vec<TcpOptionElement>,
    payload: Vec<u8>,
}

impl Seg {
    fn client(seq: u32, ack: u32, flags: u8) -> Seg {
        Seg {
            src_mac: CLIENT_MAC,
            src: CLIENT_IP,
            dst: VIP,
            sport: SPORT,
            dport: 6443,
            seq,
            ack,
            flags,
            window: 502,
            options: Vec::new(),
            payload: Vec::new(),
        }
    }

    fn backend(backend: [u8; 4], snat_port: u16, seq: u32, ack: u32, flags: u8) -> Seg {
        Seg {
            src_mac: backend_mac(backend),
            src: backend,
            dst: LB_IP,
            sport: 6443,
            dport: snat_port,
            seq,
            ack,
            flags,
            window: 1_000,
            options: Vec::new(),
            payload: Vec::new(),
        }
    }

    fn opts(mut self, options: &[TcpOptionElement]) -> Seg {
        self.options = options.to_vec();
        self
    }

    fn window(mut self, window: u16) -> Seg {
        self.window = window;
        self
    }

    fn payload(mut self, payload: &[u8]) -> Seg {
        self.payload = payload.to_vec();
        self
    }

    fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        Ethernet2Header {
            source: self.src_mac,
            destination: LB_MAC,
            ether_type: EtherType::IPV4,
        }
        .write(&mut out)
        .unwrap();
        let mut tcp = TcpHeader::new(self.sport, self.dport, self.seq, self.window);
        tcp.syn = self.flags & SYN != 0;
        tcp.ack = self.flags & ACK != 0;
        tcp.rst = self.flags & RST != 0;
        tcp.psh = self.flags & PSH != 0;
        tcp.acknowledgment_number = self.ack;
        tcp.set_options(&self.options).unwrap();
        let ip = Ipv4Header::new(
            (tcp.header_len() + self.payload.len()) as u16,
            64,
            IpNumber::TCP,
            self.src,
            self.dst,
        )
        .unwrap();
        tcp.checksum = tcp.calc_checksum_ipv4(&ip, &self.payload).unwrap();
        ip.write(&mut out).unwrap();
        tcp.write(&mut out).unwrap();
        out.extend_from_slice(&self.payload);
        out
    }
}

/// A segment the program sent out: every checksum checked (`Seen`), the
/// window and options read back.
struct Out {
    seen: Seen,
    seq: u32,
    ack: u32,
    window: u16,
    options: Vec<TcpOptionElement>,
    len: usize,
}

impl Out {
    fn parse(frame: &[u8]) -> Out {
        let seen = Seen::parse(frame);
        let headers = PacketHeaders::from_ethernet_slice(frame).unwrap();
        let Some(TransportHeader::Tcp(tcp)) = headers.transport else {
            panic!("not TCP");
        };
        Out {
            seen,
            seq: tcp.sequence_number,
            ack: tcp.acknowledgment_number,
            window: tcp.window_size,
            options: tcp.options_iterator().map(|o| o.unwrap()).collect(),
            len: frame.len(),
        }
    }

    fn ts(&self) -> Option<(u32, u32)> {
        self.seen.ts()
    }

    fn sack(&self) -> Option<Vec<(u32, u32)>> {
        self.options.iter().find_map(|o| match o {
            TcpOptionElement::SelectiveAcknowledgement(first, rest) => Some(
                std::iter::once(*first)
                    .chain(rest.iter().flatten().copied())
                    .collect(),
            ),
            _ => None,
        })
    }
}

fn run(h: &Harness, seg: &Seg) -> (u32, Vec<u8>) {
    h.run(&seg.build())
}

fn tx(h: &Harness, seg: &Seg) -> Out {
    let (verdict, out) = run(h, seg);
    assert_eq!(verdict, XDP_TX, "verdict");
    Out::parse(&out)
}

/// A Linux client's SYN options: MSS 1460, SACK permitted, timestamps,
/// window scale 7.
fn linux_syn_options() -> Vec<TcpOptionElement> {
    vec![
        TcpOptionElement::MaximumSegmentSize(1460),
        TcpOptionElement::SelectiveAcknowledgementPermitted,
        TcpOptionElement::Timestamp(CLIENT_TSVAL, 0),
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(7),
    ]
}

fn ts_opt(val: u32, ecr: u32) -> Vec<TcpOptionElement> {
    vec![
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
        TcpOptionElement::Timestamp(val, ecr),
    ]
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) },
        0
    );
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn client_tuple() -> CookieTuple {
    CookieTuple {
        src_addr: u32::from_ne_bytes(CLIENT_IP),
        dst_addr: u32::from_ne_bytes(VIP),
        src_port: SPORT.to_be(),
        dst_port: 6443u16.to_be(),
    }
}

/// The apiserver service with `syn_cookies` and a half-open cost.
fn with_cookies(mode: u32, half_open_cost_ns: u64) -> Harness {
    let mut h = apiserver();
    let settings = Settings {
        syn_cookies: mode,
        half_open_cost_ns,
        ..default_settings()
    };
    h.dp.set_settings(&settings).unwrap();
    h
}

fn counter(h: &Harness, c: Counter) -> u64 {
    h.dp.global_stats().unwrap().get(c)
}

/// Sends the client's SYN and returns the cookie SYN-ACK.
fn cookie_syn_ack(h: &Harness) -> Out {
    tx(
        h,
        &Seg::client(CLIENT_ISN, 0, SYN)
            .opts(&linux_syn_options())
            .window(64_240),
    )
}

#[test]
fn a_syn_gets_a_cookie_syn_ack_with_a_zero_window_and_the_clients_options() {
    let h = with_cookies(SYN_COOKIES_ALWAYS, 0);
    let out = cookie_syn_ack(&h);
    assert_eq!(out.seen.tcp_flags(), SYN | ACK);
    assert_eq!((out.seen.src, out.seen.dst), (VIP, CLIENT_IP));
    assert_eq!(out.seen.ports(), (6443, SPORT));
    assert_eq!((out.seen.src_mac, out.seen.dst_mac), (LB_MAC, CLIENT_MAC));
    assert_eq!(out.ack, CLIENT_ISN + 1);
    assert_eq!(out.window, 0, "a zero window until the backend answered");
    assert_eq!(out.len, 14 + 20 + 40, "20 option bytes");
    let offered = CookieOptions::of_syn(1460, Some(7), true);
    assert_eq!(
        cookie::check(
            &COOKIE_KEY,
            &client_tuple(),
            CLIENT_ISN,
            out.seq,
            cookie::period(monotonic_ns())
        ),
        Some(offered),
        "the sequence number is the cookie"
    );
    assert!(
        out.options
            .contains(&TcpOptionElement::MaximumSegmentSize(1460))
    );
    assert!(
        out.options
            .contains(&TcpOptionElement::SelectiveAcknowledgementPermitted)
    );
    assert!(out.options.contains(&TcpOptionElement::WindowScale(7)));
    assert_eq!(out.ts().unwrap().1, CLIENT_TSVAL, "TSecr echoes the client");
    assert!(h.dp.flows().unwrap().is_empty(), "nothing kept");
    assert_eq!(counter(&h, Counter::CookieSent), 1);
    assert_eq!(counter(&h, Counter::NewFlow), 0);
}

#[test]
fn a_syn_without_options_gets_a_cookie_with_the_smallest_mss_and_none_of_the_rest() {
    let h = with_cookies(SYN_COOKIES_ALWAYS, 0);
    let out = tx(&h, &Seg::client(CLIENT_ISN, 0, SYN).window(8_192));
    assert_eq!(out.seen.tcp_flags(), SYN | ACK);
    assert_eq!(out.ts(), None);
    assert!(
        !out.options
            .iter()
            .any(|o| matches!(o, TcpOptionElement::WindowScale(_)))
    );
    assert!(
        !out.options
            .contains(&TcpOptionElement::SelectiveAcknowledgementPermitted)
    );
    assert_eq!(
        cookie::check(
            &COOKIE_KEY,
            &client_tuple(),
            CLIENT_ISN,
            out.seq,
            cookie::period(monotonic_ns())
        ),
        Some(CookieOptions::of_syn(0, None, false))
    );
}

/// A cookie flow through its handshake: returns the cookie, the SYN the
/// backend got, and the cookie SYN-ACK's TSval.
fn handshake(h: &Harness) -> (u32, Out, u32) {
    let syn_ack = cookie_syn_ack(h);
    let cookie = syn_ack.seq;
    let our_tsval = syn_ack.ts().unwrap().0;
    let syn = tx(
        h,
        &Seg::client(CLIENT_ISN + 1, cookie.wrapping_add(1), ACK)
            .opts(&ts_opt(CLIENT_TSVAL + 50, our_tsval)),
    );
    (cookie, syn, our_tsval)
}

#[test]
fn the_clients_ack_of_a_valid_cookie_goes_to_the_backend_as_its_syn() {
    let h = with_cookies(SYN_COOKIES_ALWAYS, 0);
    let (_, syn, _) = handshake(&h);
    assert_eq!(syn.seen.tcp_flags(), SYN);
    assert!(BACKEND_IPS.contains(&syn.seen.dst));
    assert_eq!(syn.seen.dst_mac, backend_mac(syn.seen.dst));
    assert_eq!(syn.seen.src, LB_IP, "from the SNAT address");
    assert_eq!(syn.seen.ports().1, 6443);
    assert_eq!(syn.seq, CLIENT_ISN, "the client's ISN");
    assert_eq!(syn.ack, 0);
    assert_eq!(syn.window, 502 << 7, "the client's window in bytes");
    assert!(
        syn.options
            .contains(&TcpOptionElement::MaximumSegmentSize(1460))
    );
    assert!(
        syn.options
            .contains(&TcpOptionElement::SelectiveAcknowledgementPermitted)
    );
    assert!(syn.options.contains(&TcpOptionElement::WindowScale(7)));
    let (val, ecr) = syn.ts().unwrap();
    assert_eq!(ecr, 0);
    let flows = h.dp.flows().unwrap();
    assert_eq!(flows.len(), 1);
    let (key, flow) = flows[0];
    assert_eq!(key.src_port, SPORT.to_be());
    assert_eq!(
        flow.flags & (FLOW_COOKIE | FLOW_COOKIE_WAIT),
        FLOW_COOKIE | FLOW_COOKIE_WAIT
    );
    assert_eq!(
        val,
        (CLIENT_TSVAL + 50).wrapping_add(flow.ts_offset),
        "the client's TSval on the flow's clock"
    );
    assert_eq!(counter(&h, Counter::CookieValid), 1);
}

#[test]
fn an_ack_with_an_invalid_cookie_is_refused_and_opens_nothing() {
    let h = with_cookies(SYN_COOKIES_ALWAYS, 0);
    let cookie = cookie_syn_ack(&h).seq;
    for (seq, ack) in [
        (CLIENT_ISN + 1, cookie.wrapping_add(2)),
        (CLIENT_ISN + 2, cookie.wrapping_add(1)),
        (CLIENT_ISN + 1, cookie ^ 0x8000_0000),
    ] {
        let out = tx(&h, &Seg::client(seq, ack, ACK));
        assert_eq!(out.seen.tcp_flags(), RST, "refused");
    }
    assert!(h.dp.flows().unwrap().is_empty());
    assert_eq!(counter(&h, Counter::CookieInvalid), 3);
    assert_eq!(counter(&h, Counter::CookieValid), 0);
}

#[test]
fn an_ack_with_no_flow_is_no_cookie_while_none_was_sent() {
    let h = with_cookies(SYN_COOKIES_AUTO, 0);
    let out = tx(&h, &Seg::client(CLIENT_ISN + 1, 12_345, ACK));
    assert_eq!(out.seen.tcp_flags(), RST);
    assert_eq!(counter(&h, Counter::NoFlow), 1);
    assert_eq!(counter(&h, Counter::CookieInvalid), 0);
}

/// The backend's SYN-ACK to the flow's SYN, with window scale `ws`.
fn backend_syn_ack(syn: &Out, ws: u8) -> Seg {
    Seg::backend(
        syn.seen.dst,
        syn.seen.ports().0,
        BACKEND_ISN,
        CLIENT_ISN + 1,
        SYN | ACK,
    )
    .window(65_160)
    .opts(&[
        TcpOptionElement::MaximumSegmentSize(1460),
        TcpOptionElement::SelectiveAcknowledgementPermitted,
        TcpOptionElement::Timestamp(BACKEND_TSVAL, syn.ts().unwrap().0),
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(ws),
    ])
}

/// The backend's SYN-ACK to the SYN `syn` it got, with a timestamp only.
fn bare_syn_ack(syn: &Out) -> Seg {
    Seg::backend(
        syn.seen.dst,
        syn.seen.ports().0,
        BACKEND_ISN,
        CLIENT_ISN + 1,
        SYN | ACK,
    )
    .opts(&ts_opt(BACKEND_TSVAL, syn.ts().unwrap().0))
}

#[test]
fn the_backends_syn_ack_becomes_the_ack_that_opens_the_clients_window() {
    let h = with_cookies(SYN_COOKIES_ALWAYS, 0);
    let (cookie, syn, our_tsval) = handshake(&h);
    // Before the backend answers, the client's segments wait.
    let (verdict, _) = run(
        &h,
        &Seg::client(CLIENT_ISN + 1, cookie.wrapping_add(1), ACK | PSH)
            .opts(&ts_opt(CLIENT_TSVAL + 60, our_tsval))
            .payload(b"early"),
    );
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(counter(&h, Counter::CookieEarly), 1);

    let out = tx(&h, &backend_syn_ack(&syn, 7));
    assert_eq!(out.seen.tcp_flags(), ACK);
    assert_eq!((out.seen.src, out.seen.dst), (VIP, CLIENT_IP));
    assert_eq!(out.seen.ports(), (6443, SPORT));
    assert_eq!(out.seen.dst_mac, CLIENT_MAC);
    assert_eq!(
        (out.seq, out.seen.payload.as_slice()),
        (cookie, &[0u8][..]),
        "one byte again, just before what the client expects: it answers at once"
    );
    assert_eq!(out.ack, CLIENT_ISN + 1);
    assert_eq!(
        out.window,
        65_160 >> 7,
        "the backend's window, in the scale told"
    );
    assert_eq!(
        out.ts(),
        Some((our_tsval, CLIENT_TSVAL + 50)),
        "our TSval again; the client's echoed"
    );
    assert_eq!(counter(&h, Counter::CookieBackendAnswered), 1);
    let (_, flow) = h.dp.flows().unwrap()[0];
    assert_eq!(flow.flags & FLOW_COOKIE_WAIT, 0);
    assert_eq!(flow.seq_delta, cookie.wrapping_sub(BACKEND_ISN));
}

#[test]
fn a_cookie_flow_whose_backend_never_answered_sends_its_syn_again_on_the_clients_probe() {
    let h = with_cookies(SYN_COOKIES_ALWAYS, 0);
    let (cookie, syn, our_tsval) = handshake(&h);
    // A Linux client whose window stays shut sends zero-window probes: no
    // data, the sequence number before its next (its ISN here).
    let probe = |tsval: u32| {
        Seg::client(CLIENT_ISN, cookie.wrapping_add(1), ACK).opts(&ts_opt(tsval, our_tsval))
    };
    // At once: the backend may still answer, the probe waits.
    let (verdict, _) = run(&h, &probe(CLIENT_TSVAL + 55));
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(counter(&h, Counter::CookieEarly), 1);
    // The SYN (or the backend's SYN-ACK) was lost: nothing but the client
    // sends anything again, and its next probe comes at its retransmission
    // timeout (200 ms at least).
    std::thread::sleep(std::time::Duration::from_millis(250));
    let again = tx(&h, &probe(CLIENT_TSVAL + 300));
    assert_eq!(again.seen.tcp_flags(), SYN, "the client's SYN again");
    assert_eq!(
        (again.seen.src, again.seen.dst, again.seen.dst_mac),
        (syn.seen.src, syn.seen.dst, syn.seen.dst_mac),
        "to the same backend"
    );
    assert_eq!(
        again.seen.ports(),
        syn.seen.ports(),
        "from the same SNAT port: a retransmission of the same SYN"
    );
    assert_eq!((again.seq, again.ack), (CLIENT_ISN, 0));
    assert_eq!(again.window, syn.window);
    for option in [
        TcpOptionElement::MaximumSegmentSize(1460),
        TcpOptionElement::SelectiveAcknowledgementPermitted,
        TcpOptionElement::WindowScale(7),
    ] {
        assert!(again.options.contains(&option), "{option:?}");
    }
    let (_, flow) = h.dp.flows().unwrap()[0];
    assert_eq!(
        again.ts().unwrap(),
        ((CLIENT_TSVAL + 300).wrapping_add(flow.ts_offset), 0)
    );
    assert_eq!(counter(&h, Counter::CookieSynAgain), 1);
    assert_eq!(
        counter(&h, Counter::CookieValid),
        1,
        "one flow, opened once"
    );
    // Its next probe, at once: waits again.
    let (verdict, _) = run(&h, &probe(CLIENT_TSVAL + 301));
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(counter(&h, Counter::CookieSynAgain), 1);
    // One flow still, which the backend's answer to the SYN opens.
    let flows = h.dp.flows().unwrap();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].1.flags & FLOW_COOKIE_WAIT, FLOW_COOKIE_WAIT);
    let out = tx(&h, &backend_syn_ack(&again, 7));
    assert_eq!(out.seen.tcp_flags(), ACK);
    assert_eq!(out.seen.dst, CLIENT_IP);
    assert_eq!(
        (out.seq, out.seen.payload.as_slice()),
        (cookie, &[0u8][..]),
        "the window-opening ACK"
    );
    assert_eq!(counter(&h, Counter::CookieBackendAnswered), 1);
    // A probe with a forged cookie sends nothing to the backend.
    std::thread::sleep(std::time::Duration::from_millis(150));
    let h2 = with_cookies(SYN_COOKIES_ALWAYS, 0);
    let (cookie2, _, our_tsval2) = handshake(&h2);
    std::thread::sleep(std::time::Duration::from_millis(150));
    let (verdict, _) = run(
        &h2,
        &Seg::client(CLIENT_ISN, cookie2.wrapping_add(2), ACK).opts(&ts_opt(1, our_tsval2)),
    );
    assert_ne!(verdict, XDP_TX);
    assert_eq!(counter(&h2, Counter::CookieSynAgain), 0);
}

#[test]
fn a_retransmitted_syn_ack_is_answered_with_the_ack_the_backend_waits_for() {
    let h = with_cookies(SYN_COOKIES_ALWAYS, 0);
    let (_, syn, _) = handshake(&h);
    tx(&h, &backend_syn_ack(&syn, 7));
    let again = tx(&h, &backend_syn_ack(&syn, 7));
    assert_eq!(again.seen.tcp_flags(), ACK);
    assert_eq!((again.seen.src, again.seen.dst), (LB_IP, syn.seen.dst));
    assert_eq!(again.seen.ports(), (syn.seen.ports().0, 6443));
    assert_eq!(again.seen.dst_mac, backend_mac(syn.seen.dst));
    assert_eq!(again.seq, CLIENT_ISN + 1);
    assert_eq!(again.ack, BACKEND_ISN + 1);
    assert_eq!(
        again.ts(),
        Some((syn.ts().unwrap().0, BACKEND_TSVAL)),
        "the SYN's TSval again, the backend's echoed"
    );
    assert_eq!(counter(&h, Counter::CookieBackendAck), 1);
}

#[test]
fn a_cookie_flow_translates_sequence_numbers_sack_blocks_and_timestamps_both_ways() {
    let h = with_cookies(SYN_COOKIES_ALWAYS, 0);
    let (cookie, syn, our_tsval) = handshake(&h);
    tx(&h, &backend_syn_ack(&syn, 7));
    let (_, flow) = h.dp.flows().unwrap()[0];

    // The client's first data completes the backend's handshake.
    let data = tx(
        &h,
        &Seg::client(CLIENT_ISN + 1, cookie.wrapping_add(101), ACK | PSH)
            .window(600)
            .opts(&[
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::Timestamp(CLIENT_TSVAL + 70, our_tsval + 9),
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::SelectiveAcknowledgement(
                    (cookie.wrapping_add(201), cookie.wrapping_add(301)),
                    [None, None, None],
                ),
            ])
            .payload(b"GET /readyz"),
    );
    assert_eq!(data.seen.dst, syn.seen.dst);
    assert_eq!(
        data.seq,
        CLIENT_ISN + 1,
        "the client's numbers pass as they are"
    );
    assert_eq!(
        data.ack,
        BACKEND_ISN + 101,
        "the ACK number onto the backend's"
    );
    assert_eq!(data.window, 600);
    assert_eq!(
        data.sack(),
        Some(vec![(BACKEND_ISN + 201, BACKEND_ISN + 301)]),
        "SACK blocks onto the backend's numbers"
    );
    assert_eq!(
        data.ts(),
        Some((
            (CLIENT_TSVAL + 70).wrapping_add(flow.ts_offset),
            BACKEND_TSVAL + 9
        )),
        "TSval onto the flow's clock, TSecr back onto the backend's"
    );
    assert_eq!(data.seen.payload, b"GET /readyz");
    let (_, flow) = h.dp.flows().unwrap()[0];
    assert_eq!(flow.state, FLOW_ESTABLISHED);

    // The backend's answer: its numbers onto the cookie's.
    let answer = tx(
        &h,
        &Seg::backend(
            syn.seen.dst,
            syn.seen.ports().0,
            BACKEND_ISN + 1,
            CLIENT_ISN + 12,
            ACK | PSH,
        )
        .window(900)
        .opts(&ts_opt(
            BACKEND_TSVAL + 20,
            (CLIENT_TSVAL + 70).wrapping_add(flow.ts_offset),
        ))
        .payload(b"ok"),
    );
    assert_eq!((answer.seen.src, answer.seen.dst), (VIP, CLIENT_IP));
    assert_eq!(answer.seq, cookie.wrapping_add(1));
    assert_eq!(answer.ack, CLIENT_ISN + 12);
    assert_eq!(answer.window, 900, "same scale both sides: unchanged");
    assert_eq!(answer.ts(), Some((our_tsval + 20, CLIENT_TSVAL + 70)));
    assert_eq!(answer.seen.payload, b"ok");
}

#[test]
fn a_backend_with_another_window_scale_has_its_windows_rescaled() {
    let h = with_cookies(SYN_COOKIES_ALWAYS, 0);
    let (cookie, syn, _) = handshake(&h);
    // The backend scales by 2^9, the client was told 2^7.
    tx(&h, &backend_syn_ack(&syn, 9));
    let answer = tx(
        &h,
        &Seg::backend(
            syn.seen.dst,
            syn.seen.ports().0,
            BACKEND_ISN + 1,
            CLIENT_ISN + 1,
            ACK,
        )
        .window(1_000),
    );
    assert_eq!(answer.seq, cookie.wrapping_add(1));
    assert_eq!(answer.window, 4_000, "1000 × 2^9 bytes = 4000 × 2^7");
    let big = tx(
        &h,
        &Seg::backend(
            syn.seen.dst,
            syn.seen.ports().0,
            BACKEND_ISN + 1,
            CLIENT_ISN + 1,
            ACK,
        )
        .window(40_000),
    );
    assert_eq!(big.window, 65_535, "clamped");
}

#[test]
fn rsts_under_translation_carry_the_numbers_the_other_side_expects() {
    // The backend refuses the SYN: the client's RST has the sequence
    // number it expects after the cookie.
    let h = with_cookies(SYN_COOKIES_ALWAYS, 0);
    let (cookie, syn, _) = handshake(&h);
    let refused = tx(
        &h,
        &Seg::backend(
            syn.seen.dst,
            syn.seen.ports().0,
            0,
            CLIENT_ISN + 1,
            RST | ACK,
        ),
    );
    assert_eq!(refused.seen.tcp_flags(), RST | ACK);
    assert_eq!(refused.seen.dst, CLIENT_IP);
    assert_eq!(refused.seq, cookie.wrapping_add(1));

    // An established cookie flow: the client's RST reaches the backend
    // with the backend's numbers.
    let h = with_cookies(SYN_COOKIES_ALWAYS, 0);
    let (cookie, syn, _) = handshake(&h);
    tx(&h, &backend_syn_ack(&syn, 7));
    let rst = tx(
        &h,
        &Seg::client(CLIENT_ISN + 1, cookie.wrapping_add(1), RST | ACK),
    );
    assert_eq!(rst.seen.tcp_flags(), RST | ACK);
    assert_eq!(rst.seen.dst, syn.seen.dst);
    assert_eq!((rst.seq, rst.ack), (CLIENT_ISN + 1, BACKEND_ISN + 1));
}

#[test]
fn over_the_half_open_limit_a_syn_gets_a_cookie_and_a_finished_handshake_makes_room() {
    pin_to_cpu0();
    // Room for two half-open flows on this CPU.
    let syn_ns = default_settings().tcp_syn_ns;
    let h = with_cookies(SYN_COOKIES_AUTO, syn_ns / 2);
    let syn = |sport: u16| Seg {
        sport,
        ..Seg::client(CLIENT_ISN, 0, SYN).opts(&linux_syn_options())
    };
    let first = tx(&h, &syn(41_000));
    assert_eq!(first.seen.tcp_flags(), SYN, "a flow: on to a backend");
    assert_eq!(tx(&h, &syn(41_001)).seen.tcp_flags(), SYN);
    let third = tx(&h, &syn(41_002));
    assert_eq!(
        third.seen.tcp_flags(),
        SYN | ACK,
        "over the limit: a cookie"
    );
    assert_eq!(third.seen.dst, CLIENT_IP);
    assert_eq!(counter(&h, Counter::NewFlow), 2);
    assert_eq!(counter(&h, Counter::CookieSent), 1);

    // An ACK that acknowledges no SYN-ACK of the backend (a spoofed source
    // never saw one) frees nothing.
    let ack = |sport: u16, ack: u32| Seg {
        sport,
        ..Seg::client(CLIENT_ISN + 1, ack, ACK).opts(&ts_opt(CLIENT_TSVAL + 1, 1))
    };
    tx(&h, &ack(41_001, 1));
    assert_eq!(
        tx(&h, &syn(41_003)).seen.tcp_flags(),
        SYN | ACK,
        "still over the limit"
    );
    // The first flow's handshake ends (the ACK of the backend's ISN): its
    // place is free again.
    let synack = bare_syn_ack(&first);
    assert_eq!(tx(&h, &synack).seen.dst, CLIENT_IP);
    tx(&h, &ack(41_000, BACKEND_ISN + 1));
    assert_eq!(tx(&h, &syn(41_004)).seen.tcp_flags(), SYN);
    assert_eq!(counter(&h, Counter::NewFlow), 3);
}

#[test]
fn over_the_half_open_limit_without_cookies_a_syn_is_dropped() {
    pin_to_cpu0();
    let syn_ns = default_settings().tcp_syn_ns;
    let h = with_cookies(SYN_COOKIES_NEVER, syn_ns);
    let syn = |sport: u16| Seg {
        sport,
        ..Seg::client(CLIENT_ISN, 0, SYN).opts(&linux_syn_options())
    };
    assert_eq!(tx(&h, &syn(42_000)).seen.tcp_flags(), SYN);
    let (verdict, _) = run(&h, &syn(42_001));
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(counter(&h, Counter::HalfOpenLimited), 1);
    assert_eq!(
        h.dp.flows().unwrap().len(),
        1,
        "no state for the dropped SYN"
    );
}

#[test]
fn a_half_open_flow_is_not_kept_alive_by_the_backends_syn_ack_retransmits() {
    let mut h = apiserver();
    let settings = Settings {
        tcp_syn_ns: 300_000_000,
        ..default_settings()
    };
    h.dp.set_settings(&settings).unwrap();
    let syn = Seg::client(CLIENT_ISN, 0, SYN).opts(&linux_syn_options());
    let out = tx(&h, &syn);
    // The backend answers and retransmits to a client that never answers
    // (a spoofed source): each SYN-ACK goes to the client, none keeps the
    // flow.
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(150));
        let synack = bare_syn_ack(&out);
        let (verdict, _) = run(&h, &synack);
        if verdict != XDP_TX {
            break;
        }
    }
    // 450 ms after the client's SYN, past tcp_syn: the flow is gone, and
    // the backend's next SYN-ACK is the kernel's (it answers with a RST).
    let synack = bare_syn_ack(&out);
    let (verdict, _) = run(&h, &synack);
    assert_eq!(verdict, 2, "XDP_PASS: no flow any more");
    assert!(counter(&h, Counter::NoFlow) >= 1);
}

/// The apiserver service with one backend and one SNAT port, `tcp_syn`
/// 300 ms.
fn one_port() -> Harness {
    let mut h = apiserver();
    for id in 1..3 {
        h.dp.remove_backend(id).unwrap();
    }
    h.rebuild(0);
    let settings = Settings {
        snat_port_min: 20_000,
        snat_port_max: 20_000,
        tcp_syn_ns: 300_000_000,
        ..default_settings()
    };
    h.dp.set_settings(&settings).unwrap();
    h
}

#[test]
fn a_half_open_flows_port_waits_until_the_backend_let_go_of_its_syn_recv() {
    let h = one_port();
    // A spoofed SYN: the backend answers, the source never does.
    let syn = tx(
        &h,
        &Seg::client(CLIENT_ISN, 0, SYN).opts(&linux_syn_options()),
    );
    let (backend, port) = (syn.seen.dst, syn.seen.ports().0);
    assert_eq!(port, 20_000);
    let synack = Seg::backend(backend, port, BACKEND_ISN, CLIENT_ISN + 1, SYN | ACK)
        .opts(&ts_opt(BACKEND_TSVAL, syn.ts().unwrap().0));
    tx(&h, &synack);
    // ... and again: it keeps the connection in SYN-RECV.
    tx(&h, &synack);
    std::thread::sleep(std::time::Duration::from_millis(400));
    // Expired here, but the backend still holds the 4-tuple in SYN-RECV:
    // a new flow's SYN there would meet it. No port for another client.
    let other = |sport: u16| Seg {
        sport,
        ..Seg::client(CLIENT_ISN, 0, SYN).opts(&linux_syn_options())
    };
    let refused = tx(&h, &other(41_000));
    assert_eq!(refused.seen.tcp_flags(), RST | ACK, "no free port: refused");
    assert_eq!(counter(&h, Counter::SnatExhausted), 1);
    // The backend's next SYN-ACK finds the flow expired: the kernel
    // answers it with a RST, which ends the SYN-RECV.
    let (verdict, _) = run(&h, &synack);
    assert_eq!(verdict, 2, "XDP_PASS: the kernel's RST");
    // Past the closed flow's second of rest, the port is free.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let next = tx(&h, &other(41_001));
    assert_eq!(next.seen.tcp_flags(), SYN);
    assert_eq!(next.seen.ports().0, 20_000);
}

#[test]
fn a_half_open_flows_port_is_free_when_it_expires_if_its_backend_answered_once() {
    // A backend under a flood answers with a SYN cookie of its own: one
    // SYN-ACK, never again, no state kept. Nothing to wait for.
    let h = one_port();
    let syn = tx(
        &h,
        &Seg::client(CLIENT_ISN, 0, SYN).opts(&linux_syn_options()),
    );
    let synack = bare_syn_ack(&syn);
    tx(&h, &synack);
    std::thread::sleep(std::time::Duration::from_millis(400));
    let next = tx(
        &h,
        &Seg {
            sport: 41_000,
            ..Seg::client(CLIENT_ISN, 0, SYN).opts(&linux_syn_options())
        },
    );
    assert_eq!(next.seen.tcp_flags(), SYN, "the port is free");
    assert_eq!(next.seen.ports().0, 20_000);
}
