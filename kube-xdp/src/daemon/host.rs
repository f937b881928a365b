//! Facts about this host's interfaces, read with `getifaddrs` (netlink, so
//! they are the current network namespace's — /sys would show the mount
//! namespace's).

use std::{ffi::CStr, net::Ipv4Addr};

/// One interface's addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub ipv4: Vec<Ipv4Addr>,
    pub mac: Option<[u8; 6]>,
}

/// Every interface of the current network namespace.
pub fn interfaces() -> std::io::Result<Vec<Interface>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out: Vec<Interface> = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` walks the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a NUL-terminated name owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let idx = match out.iter().position(|i| i.name == name) {
            Some(i) => i,
            None => {
                out.push(Interface {
                    name,
                    ..Interface::default()
                });
                out.len() - 1
            }
        };
        // SAFETY: `ifa_addr` is non-null; its family says which sockaddr
        // it is.
        match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
            libc::AF_INET => {
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out[idx]
                    .ipv4
                    .push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
            libc::AF_PACKET => {
                let sll = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_ll) };
                if sll.sll_halen == 6 {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(&sll.sll_addr[..6]);
                    out[idx].mac = Some(mac);
                }
            }
            _ => {}
        }
    }
    // SAFETY: frees the list getifaddrs allocated.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// The interface named `name`.
pub fn interface(name: &str) -> std::io::Result<Option<Interface>> {
    Ok(interfaces()?.into_iter().find(|i| i.name == name))
}

pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_its_address() {
        let lo = interface("lo").unwrap().expect("lo exists");
        assert!(lo.ipv4.contains(&Ipv4Addr::LOCALHOST), "{lo:?}");
        assert!(ifindex("lo").is_some());
    }
}
