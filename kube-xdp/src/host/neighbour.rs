//! Next hops: which MAC and interface a backend's frames go to, from the
//! kernel's IPv4 routing table (`/proc/net/route`) and neighbour table
//! (`/proc/net/arp`) of the daemon's network namespace. The health checks
//! connect to every backend from this host, so the kernel resolves their
//! neighbours by itself; the daemon only reads the result.

use std::{collections::HashMap, net::Ipv4Addr};

/// A resolved next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    pub mac: [u8; 6],
    pub ifindex: u32,
}

/// A route: destination/mask (host-order numbers) → gateway (0 = on
/// link) via interface.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    dest: u32,
    mask: u32,
    gateway: Ipv4Addr,
    iface: String,
    metric: u32,
}

/// `/proc/net/route` prints each address as the kernel's `__be32` read as
/// a native integer, in hex.
fn hex_addr(s: &str) -> Option<Ipv4Addr> {
    u32::from_str_radix(s, 16)
        .ok()
        .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
}

fn parse_routes(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let flags = u32::from_str_radix(f[3], 16).ok()?;
            if flags & 0x1 == 0 {
                return None; // not RTF_UP
            }
            Some(Route {
                iface: f[0].to_owned(),
                dest: u32::from(hex_addr(f[1])?),
                gateway: hex_addr(f[2])?,
                metric: f[6].parse().ok()?,
                mask: u32::from(hex_addr(f[7])?),
            })
        })
        .collect()
}

fn parse_arp(text: &str) -> HashMap<(Ipv4Addr, String), [u8; 6]> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6 {
                return None;
            }
            let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).ok()?;
            if flags & 0x2 == 0 {
                return None; // not ATF_COM: incomplete
            }
            let mut mac = [0u8; 6];
            let parts: Vec<&str> = f[3].split(':').collect();
            if parts.len() != 6 {
                return None;
            }
            for (m, p) in mac.iter_mut().zip(parts) {
                *m = u8::from_str_radix(p, 16).ok()?;
            }
            Some(((f[0].parse().ok()?, f[5].to_owned()), mac))
        })
        .collect()
}

/// The gateway (or the address itself, when on link) and interface the
/// kernel would send `addr` through: the longest matching prefix, then the
/// lowest metric.
fn route(routes: &[Route], addr: Ipv4Addr) -> Option<(Ipv4Addr, String)> {
    let a = u32::from(addr);
    routes
        .iter()
        .filter(|r| a & r.mask == r.dest & r.mask)
        .max_by_key(|r| (r.mask.count_ones(), u32::MAX - r.metric))
        .map(|r| {
            let hop = if r.gateway.is_unspecified() {
                addr
            } else {
                r.gateway
            };
            (hop, r.iface.clone())
        })
}

fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// A snapshot of the kernel's tables, to resolve many backends at once.
pub struct Tables {
    routes: Vec<Route>,
    arp: HashMap<(Ipv4Addr, String), [u8; 6]>,
}

impl Tables {
    /// Reads the tables of the current network namespace.
    pub fn read() -> std::io::Result<Self> {
        Ok(Self::parse(
            &std::fs::read_to_string("/proc/net/route")?,
            &std::fs::read_to_string("/proc/net/arp")?,
        ))
    }

    fn parse(routes: &str, arp: &str) -> Self {
        Tables {
            routes: parse_routes(routes),
            arp: parse_arp(arp),
        }
    }

    /// The next hop of `addr`, if the kernel has resolved it.
    pub fn next_hop(&self, addr: Ipv4Addr) -> Option<NextHop> {
        let (hop, iface) = route(&self.routes, addr)?;
        let mac = *self.arp.get(&(hop, iface.clone()))?;
        Some(NextHop {
            mac,
            ifindex: ifindex(&iface)?,
        })
    }

    /// The next-hop address and interface name (for log lines).
    pub fn hop_of(&self, addr: Ipv4Addr) -> Option<(Ipv4Addr, String)> {
        route(&self.routes, addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010012C6\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000012C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";
    const ARP: &str =
        "IP address       HW type     Flags       HW address            Mask     Device
198.18.0.11      0x1         0x2         02:00:00:00:00:0b     *        eth0
198.18.0.12      0x1         0x0         00:00:00:00:00:00     *        eth0
198.18.0.1       0x1         0x2         02:00:00:00:00:01     *        eth0
";

    #[test]
    fn on_link_backend_resolves_to_its_own_mac() {
        let t = Tables::parse(ROUTES, ARP);
        assert_eq!(
            t.hop_of(Ipv4Addr::new(198, 18, 0, 11)),
            Some((Ipv4Addr::new(198, 18, 0, 11), "eth0".into()))
        );
        let routes = parse_routes(ROUTES);
        assert_eq!(routes.len(), 2);
        assert_eq!(
            t.arp.get(&(Ipv4Addr::new(198, 18, 0, 11), "eth0".into())),
            Some(&[2, 0, 0, 0, 0, 0x0b])
        );
    }

    #[test]
    fn incomplete_neighbour_is_not_resolved() {
        let t = Tables::parse(ROUTES, ARP);
        assert!(
            !t.arp
                .contains_key(&(Ipv4Addr::new(198, 18, 0, 12), "eth0".into()))
        );
    }

    #[test]
    fn off_link_backend_goes_through_the_gateway() {
        let t = Tables::parse(ROUTES, ARP);
        assert_eq!(
            t.hop_of(Ipv4Addr::new(203, 0, 113, 5)),
            Some((Ipv4Addr::new(198, 18, 0, 1), "eth0".into()))
        );
    }
}
