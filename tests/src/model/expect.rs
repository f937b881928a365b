//! The frames the model expects out: a forwarded packet rewritten either
//! way, the RST that answers a segment, with the holes left to the program
//! (SNAT port, timestamp offset) filled from its output.

use kube_xdp_common::{
    maps::{PROTO_TCP, PROTO_UDP},
    stats::Counter,
};

use crate::{
    checksum,
    harness::{XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX},
    packet::{ACK, FIN, RST, SYN},
};

use super::parse::{be32, l4_checksum};
use super::{
    Decision, ETH, ETHERTYPE_IPV4, Effect, Expect, L4, L4Sum, Out, Parsed, Rewrite, Tcp, TsEdit,
};

impl Expect {
    /// Fills the holes from `actual`, recomputes the checksums.
    pub(super) fn filled(&self, actual: &[u8]) -> Vec<u8> {
        let mut b = self.bytes.clone();
        for hole in &self.holes {
            if hole.end <= actual.len() {
                b[hole.clone()].copy_from_slice(&actual[hole.clone()]);
            }
        }
        if self.ip_sum {
            checksum::set_ipv4(&mut b);
        }
        match self.l4_sum {
            L4Sum::Tcp { at, len } => {
                let sum = l4_checksum(&b, at, len, PROTO_TCP);
                b[at + 16..at + 18].copy_from_slice(&sum.to_be_bytes());
            }
            L4Sum::Udp { at, len } => {
                let sum = l4_checksum(&b, at, len, PROTO_UDP);
                b[at + 6..at + 8].copy_from_slice(&sum.to_be_bytes());
            }
            L4Sum::Keep => {}
        }
        b
    }
}

pub(super) fn forward_frame(f: &[u8], p: &Parsed, rw: &Rewrite) -> Expect {
    let mut b = f.to_vec();
    let mut holes = Vec::new();
    b[0..6].copy_from_slice(&rw.eth_dst);
    b[6..12].copy_from_slice(&f[0..6]);
    b[ETH + 8] = p.ttl - 1;
    b[ETH + 12..ETH + 16].copy_from_slice(&rw.src);
    b[ETH + 16..ETH + 20].copy_from_slice(&rw.dst);
    if !p.ip_sum_ok {
        holes.push(ETH + 10..ETH + 12);
    }
    let t = p.t;
    match rw.sport {
        Some(port) => b[t..t + 2].copy_from_slice(&port.to_be_bytes()),
        None => holes.push(t..t + 2),
    }
    b[t + 2..t + 4].copy_from_slice(&rw.dport.to_be_bytes());
    let (l4_sum, valid) = match &p.l4 {
        L4::Tcp(tcp) => {
            if let Some(at) = tcp.ts_at {
                match rw.ts {
                    TsEdit::None => {}
                    TsEdit::AddVal(off) => {
                        let v = be32(f, at).wrapping_add(off);
                        b[at..at + 4].copy_from_slice(&v.to_be_bytes());
                    }
                    TsEdit::ChooseVal => holes.push(at..at + 4),
                    TsEdit::SubEcr(off) => {
                        let v = be32(f, at + 4).wrapping_sub(off);
                        b[at + 4..at + 8].copy_from_slice(&v.to_be_bytes());
                    }
                }
            }
            if tcp.sum_ok {
                (L4Sum::Tcp { at: t, len: p.plen }, true)
            } else {
                holes.push(t + 16..t + 18);
                (L4Sum::Keep, false)
            }
        }
        L4::Udp(udp) => {
            if udp.sum == 0 {
                (L4Sum::Keep, true)
            } else if udp.sum_ok {
                (
                    L4Sum::Udp {
                        at: t,
                        len: udp.ulen,
                    },
                    true,
                )
            } else {
                holes.push(t + 6..t + 8);
                (L4Sum::Keep, false)
            }
        }
    };
    // `Seen::parse` (etherparse) checks a UDP checksum over the whole IP
    // payload: it cannot read a datagram shorter than its IP payload (the
    // byte comparison still checks such a frame's checksum).
    let whole = !matches!(&p.l4, L4::Udp(udp) if udp.ulen != p.plen);
    Expect {
        bytes: b,
        holes,
        ip_sum: true,
        l4_sum,
        checksums_valid: valid && p.ip_sum_ok && whole,
    }
}

/// The RST that answers TCP segment `tcp` (sent back from where it went).
pub(super) fn rst_answer(f: &[u8], p: &Parsed, tcp: &Tcp) -> Expect {
    let mut b = vec![0u8; ETH + 40];
    b[0..6].copy_from_slice(&f[6..12]);
    b[6..12].copy_from_slice(&f[0..6]);
    b[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    b[ETH] = 0x45;
    b[ETH + 2..ETH + 4].copy_from_slice(&40u16.to_be_bytes());
    b[ETH + 6] = 0x40; // DF
    b[ETH + 8] = 64;
    b[ETH + 9] = PROTO_TCP;
    b[ETH + 12..ETH + 16].copy_from_slice(&p.dst);
    b[ETH + 16..ETH + 20].copy_from_slice(&p.src);
    let t = ETH + 20;
    b[t..t + 2].copy_from_slice(&tcp.dport.to_be_bytes());
    b[t + 2..t + 4].copy_from_slice(&tcp.sport.to_be_bytes());
    // Left to the program: TOS, identification, window, urgent pointer,
    // and the acknowledgment field of a RST without ACK.
    let mut holes = vec![
        ETH + 1..ETH + 2,
        ETH + 4..ETH + 6,
        t + 14..t + 16,
        t + 18..t + 20,
    ];
    if tcp.flags & ACK != 0 {
        b[t + 4..t + 8].copy_from_slice(&tcp.ack.to_be_bytes());
        holes.push(t + 8..t + 12);
        b[t + 13] = RST;
    } else {
        let payload = p.plen - tcp.doff;
        let ack = tcp
            .seq
            .wrapping_add(payload as u32)
            .wrapping_add(u32::from(tcp.flags & SYN != 0))
            .wrapping_add(u32::from(tcp.flags & FIN != 0));
        b[t + 8..t + 12].copy_from_slice(&ack.to_be_bytes());
        b[t + 13] = RST | ACK;
    }
    b[t + 12] = 5 << 4;
    Expect {
        bytes: b,
        holes,
        ip_sum: true,
        l4_sum: L4Sum::Tcp { at: t, len: 20 },
        checksums_valid: true,
    }
}

pub(super) fn decision(verdict: u32, reason: Counter, note: impl Into<String>) -> Decision {
    Decision {
        verdict,
        reason,
        out: Out::Unchanged,
        effect: Effect::None,
        note: note.into(),
    }
}

pub(super) fn verdict_counter(v: u32) -> Counter {
    match v {
        XDP_ABORTED => Counter::VerdictAborted,
        XDP_DROP => Counter::VerdictDrop,
        XDP_PASS => Counter::VerdictPass,
        XDP_TX => Counter::VerdictTx,
        _ => Counter::VerdictRedirect,
    }
}
