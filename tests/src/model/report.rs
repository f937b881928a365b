//! Names and descriptions of frames, verdicts and flags, for failure
//! reports: a frame in one line, the fields where two frames differ.

use std::{fmt::Write as _, net::Ipv4Addr};

use kube_xdp_common::maps::{PROTO_TCP, PROTO_UDP};

use crate::{
    harness::{XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX},
    packet::{ACK, FIN, PSH, RST, SYN},
};

use super::parse::{addr, be16, be32, find_timestamp};
use super::{ETH, ETHERTYPE_IPV4, PROTO_ICMP};

pub fn verdict_name(v: u32) -> &'static str {
    match v {
        XDP_ABORTED => "ABORTED",
        XDP_DROP => "DROP",
        XDP_PASS => "PASS",
        XDP_TX => "TX",
        4 => "REDIRECT",
        _ => "?",
    }
}

pub(super) fn proto_name(p: u8) -> String {
    match p {
        PROTO_TCP => "TCP".into(),
        PROTO_UDP => "UDP".into(),
        PROTO_ICMP => "ICMP".into(),
        p => format!("proto {p}"),
    }
}

pub fn flags_name(flags: u8) -> String {
    let names = [
        (SYN, "SYN"),
        (ACK, "ACK"),
        (PSH, "PSH"),
        (FIN, "FIN"),
        (RST, "RST"),
    ];
    let set: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    if set.is_empty() {
        "none".into()
    } else {
        set.join("|")
    }
}

/// A one-line summary of a frame, for failure reports.
pub fn describe(f: &[u8]) -> String {
    if f.len() < ETH {
        return format!("runt frame of {} bytes", f.len());
    }
    let ethertype = be16(f, 12);
    let macs = format!("{:02x?} -> {:02x?}", &f[6..12], &f[0..6]);
    if ethertype != ETHERTYPE_IPV4 {
        return format!("{macs} ethertype {ethertype:#06x}, {} bytes", f.len());
    }
    if f.len() < ETH + 20 {
        return format!("{macs} IPv4 cut at {} bytes", f.len());
    }
    let ihl = usize::from(f[ETH] & 0xf) * 4;
    let mut s = format!(
        "{macs} IPv4 vihl {:#04x} len {} ttl {} id {:#06x} {} -> {} {}",
        f[ETH],
        be16(f, ETH + 2),
        f[ETH + 8],
        be16(f, ETH + 4),
        Ipv4Addr::from(addr(f, ETH + 12)),
        Ipv4Addr::from(addr(f, ETH + 16)),
        proto_name(f[ETH + 9]),
    );
    let t = ETH + ihl;
    if ihl >= 20 && f.len() >= t + 8 {
        let _ = write!(s, " {} -> {}", be16(f, t), be16(f, t + 2));
        if f[ETH + 9] == PROTO_TCP && f.len() >= t + 20 {
            let doff = usize::from(f[t + 12] >> 4) * 4;
            let _ = write!(
                s,
                " [{}] seq {} ack {} doff {}",
                flags_name(f[t + 13]),
                be32(f, t + 4),
                be32(f, t + 8),
                doff
            );
            if doff > 20
                && f.len() >= t + doff
                && let Some(at) = find_timestamp(&f[t + 20..t + doff])
            {
                let at = t + 20 + at;
                let _ = write!(s, " ts ({}, {})", be32(f, at), be32(f, at + 4));
            }
        } else if f[ETH + 9] == PROTO_UDP {
            let _ = write!(s, " ulen {} sum {:#06x}", be16(f, t + 4), be16(f, t + 6));
        }
    }
    let _ = write!(s, ", {} bytes", f.len());
    s
}

/// Names the field at byte `i` of a frame whose transport header starts at
/// `t`, for failure reports.
fn field_at(f: &[u8], i: usize) -> String {
    let name = match i {
        0..6 => "eth dst",
        6..12 => "eth src",
        12..14 => "ethertype",
        14 => "ip version/ihl",
        15 => "ip tos",
        16..18 => "ip total length",
        18..20 => "ip id",
        20..22 => "ip flags/fragment",
        22 => "ip ttl",
        23 => "ip protocol",
        24..26 => "ip checksum",
        26..30 => "ip src",
        30..34 => "ip dst",
        _ => "",
    };
    if !name.is_empty() || f.len() < ETH + 20 {
        return name.to_string();
    }
    let t = ETH + usize::from(f[ETH] & 0xf) * 4;
    if i < t {
        return "ip options".into();
    }
    let o = i - t;
    let tcp = f[ETH + 9] == PROTO_TCP;
    let name = match (tcp, o) {
        (_, 0..2) => "sport",
        (_, 2..4) => "dport",
        (true, 4..8) => "tcp seq",
        (true, 8..12) => "tcp ack",
        (true, 12) => "tcp data offset",
        (true, 13) => "tcp flags",
        (true, 14..16) => "tcp window",
        (true, 16..18) => "tcp checksum",
        (true, 18..20) => "tcp urgent",
        (true, _) => {
            let doff = f.get(t + 12).map_or(20, |b| usize::from(b >> 4) * 4);
            if o < doff { "tcp options" } else { "payload" }
        }
        (false, 4..6) => "udp length",
        (false, 6..8) => "udp checksum",
        (false, _) => "payload",
    };
    name.to_string()
}

/// Compares two frames byte by byte; describes the differences.
pub(super) fn frame_diff(expected: &[u8], actual: &[u8]) -> Option<String> {
    if expected == actual {
        return None;
    }
    let mut s = String::new();
    if expected.len() != actual.len() {
        let _ = writeln!(
            s,
            "    length: expected {} got {}",
            expected.len(),
            actual.len()
        );
    }
    let mut last = String::new();
    for i in 0..expected.len().min(actual.len()) {
        if expected[i] != actual[i] {
            let field = field_at(expected, i);
            if field != last {
                let _ = writeln!(s, "    differs in {field} (from byte {i})");
                last = field;
            }
        }
    }
    let _ = writeln!(s, "    expected {}", describe(expected));
    let _ = writeln!(s, "    actual   {}", describe(actual));
    let _ = writeln!(s, "    expected {}", hex(expected));
    let _ = write!(s, "    actual   {}", hex(actual));
    Some(s)
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
