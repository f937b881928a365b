//! What the pair does on the wire and to the interface: the VRRP socket
//! (IP protocol 112, to the group 224.0.0.18 or to unicast peers), the
//! virtual addresses (netlink), and gratuitous ARPs (a packet socket).

use std::{
    io,
    mem::MaybeUninit,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    os::fd::AsRawFd,
};

use futures_util::TryStreamExt;
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::vrrp::{Advert, IPPROTO_VRRP, MULTICAST_GROUP, Rejected, TTL};

/// A received packet, read or refused.
pub type Received = (Ipv4Addr, Result<Advert, Rejected>);

/// The VRRP socket of one interface.
pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    local: Ipv4Addr,
    /// Empty: multicast.
    peers: Vec<Ipv4Addr>,
}

impl VrrpSocket {
    /// Opens the socket on `interface` (index `ifindex`), sending from
    /// `local`, to `peers` or, without peers, to the group (joined).
    ///
    /// # Errors
    ///
    /// When the socket cannot be made (not root), bound to the interface
    /// or the group cannot be joined.
    pub fn open(
        interface: &str,
        ifindex: u32,
        local: Ipv4Addr,
        peers: Vec<Ipv4Addr>,
    ) -> io::Result<Self> {
        let s = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(i32::from(IPPROTO_VRRP))),
        )?;
        s.bind_device(Some(interface.as_bytes()))?;
        // RFC 5798 §5.1.1.3: sent with TTL 255, so a receiver knows it
        // came from the link.
        s.set_ttl_v4(u32::from(TTL))?;
        s.set_multicast_ttl_v4(u32::from(TTL))?;
        s.set_multicast_loop_v4(false)?;
        s.set_multicast_if_v4(&local)?;
        if peers.is_empty() {
            s.join_multicast_v4_n(&MULTICAST_GROUP, &InterfaceIndexOrAddress::Index(ifindex))?;
        }
        s.set_nonblocking(true)?;
        // SAFETY: the AsyncFd owns the socket, so its fd stays open and the
        // same for the AsyncFd's whole life.
        let fd = unsafe { AsyncFd::register(s) }?;
        Ok(VrrpSocket { fd, local, peers })
    }

    /// Sends `advert` to every peer (or the group).
    ///
    /// # Errors
    ///
    /// The first send that failed (the others are still tried).
    pub async fn send(&self, advert: &Advert) -> io::Result<()> {
        let group = [MULTICAST_GROUP];
        let targets: &[Ipv4Addr] = if self.peers.is_empty() {
            &group
        } else {
            &self.peers
        };
        let mut first_error = None;
        for dst in targets {
            let bytes = advert.encode(self.local, *dst);
            let to = socket2::SockAddr::from(SocketAddr::new(IpAddr::V4(*dst), 0));
            let sent = loop {
                let mut guard = self.fd.writable().await?;
                match guard.try_io(|fd| fd.get_ref().send_to(&bytes, &to)) {
                    Ok(result) => break result,
                    Err(_would_block) => continue,
                }
            };
            if let Err(e) = sent {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The next VRRP packet: its source and the advertisement, or why it
    /// was refused. Packets from outside the unicast peers are refused
    /// too (as keepalived does).
    ///
    /// # Errors
    ///
    /// When the socket fails.
    pub async fn recv(&self) -> io::Result<Received> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
        let n = loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| fd.get_ref().recv(&mut buf)) {
                Ok(result) => break result?,
                Err(_would_block) => continue,
            }
        };
        // SAFETY: `recv` initialised the first `n` bytes.
        let packet: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        Ok(parse_ip(&packet, &self.peers))
    }
}

/// Reads a raw IPv4 socket's packet (header included) into its source
/// and the advertisement it carries.
pub fn parse_ip(packet: &[u8], peers: &[Ipv4Addr]) -> Received {
    let unknown = Ipv4Addr::UNSPECIFIED;
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return (unknown, Err(Rejected::Truncated));
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    if ihl < 20 || packet.len() < ihl {
        return (unknown, Err(Rejected::Truncated));
    }
    let ttl = packet[8];
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]])).clamp(ihl, packet.len());
    if !peers.is_empty() && !peers.contains(&src) {
        return (src, Err(Rejected::Peer));
    }
    (src, Advert::decode(&packet[ihl..total], src, dst, ttl))
}

/// The virtual addresses on one interface, through rtnetlink.
pub struct Addresses {
    handle: rtnetlink::Handle,
    ifindex: u32,
}

impl Addresses {
    /// A netlink connection for the interface with index `ifindex` (its
    /// task runs on the current tokio runtime).
    ///
    /// # Errors
    ///
    /// When the netlink socket cannot be opened.
    pub fn new(ifindex: u32) -> io::Result<Self> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Addresses { handle, ifindex })
    }

    /// Adds `addr/32` (already there is fine): whether this call added
    /// it (`false`: it was there), so that a caller gives up only what it
    /// added.
    ///
    /// # Errors
    ///
    /// What the kernel said.
    pub async fn add(&self, addr: Ipv4Addr) -> Result<bool, rtnetlink::Error> {
        match self
            .handle
            .address()
            .add(self.ifindex, IpAddr::V4(addr), 32)
            .execute()
            .await
        {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes `addr/32` if it is there.
    ///
    /// # Errors
    ///
    /// What the kernel said.
    pub async fn remove(&self, addr: Ipv4Addr) -> Result<(), rtnetlink::Error> {
        let mut found = self
            .handle
            .address()
            .get()
            .set_link_index_filter(self.ifindex)
            .set_address_filter(IpAddr::V4(addr))
            .set_prefix_length_filter(32)
            .execute();
        while let Some(message) = found.try_next().await? {
            self.handle.address().del(message).execute().await?;
        }
        Ok(())
    }
}

/// `ETH_P_ARP`.
const ETH_P_ARP: u16 = 0x0806;

/// The gratuitous ARP request announcing `addr` at `mac` (RFC 5227 §3's
/// ARP Announcement: sender and target address both `addr`), broadcast.
pub fn garp_frame(mac: [u8; 6], addr: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&addr.octets());
    // Target hardware address: zero; target protocol address: `addr`.
    f[38..42].copy_from_slice(&addr.octets());
    f
}

/// Sends one gratuitous ARP for each of `addrs` out of `ifindex`.
///
/// # Errors
///
/// When the packet socket cannot be made or a frame not sent.
pub fn announce(ifindex: u32, mac: [u8; 6], addrs: &[Ipv4Addr]) -> io::Result<()> {
    // SAFETY: plain socket(2); the fd is owned below.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ARP.to_be()),
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new, valid fd that nothing else owns.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    // SAFETY: an all-zero sockaddr_ll is valid; the fields are set below.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_ARP.to_be();
    to.sll_ifindex = ifindex as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    for addr in addrs {
        let frame = garp_frame(mac, *addr);
        // SAFETY: `frame` and `to` are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const to).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip_packet(ttl: u8, src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, ttl, IPPROTO_VRRP, 0, 0];
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        let total = (20 + payload.len()) as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn raw_packets_are_read_through_their_ip_header() {
        let src = Ipv4Addr::new(198, 18, 0, 3);
        let advert = Advert {
            vrid: 51,
            priority: 100,
            interval: Duration::from_secs(1),
            addresses: vec![Ipv4Addr::new(198, 18, 0, 10)],
        };
        let payload = advert.encode(src, MULTICAST_GROUP);
        let p = ip_packet(255, src, MULTICAST_GROUP, &payload);
        assert_eq!(parse_ip(&p, &[]), (src, Ok(advert.clone())));
        let low = ip_packet(1, src, MULTICAST_GROUP, &payload);
        assert_eq!(parse_ip(&low, &[]).1, Err(Rejected::Ttl(1)));
        let stranger = parse_ip(&p, &[Ipv4Addr::new(198, 18, 0, 4)]);
        assert_eq!(stranger.1, Err(Rejected::Peer));
        assert_eq!(parse_ip(&p[..19], &[]).1, Err(Rejected::Truncated));
        // Padding past the IP total length is not VRRP's.
        let mut padded = p.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(parse_ip(&padded, &[]).1, Ok(advert));
    }

    #[test]
    fn a_gratuitous_arp_announces_the_address_as_its_own_target() {
        let f = garp_frame([2, 0, 0, 0, 0, 1], Ipv4Addr::new(198, 18, 0, 10));
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[28..32], &f[38..42]);
        assert_eq!(&f[32..38], &[0; 6]);
    }
}
