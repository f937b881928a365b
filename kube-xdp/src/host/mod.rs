//! The one module that asks the machine: its interfaces and addresses,
//! the kernel's local port range, DNS, readable files, small secret files,
//! the monotonic clock, next hops. Everything above it (the plan, the daemon) goes
//! through the [`Host`] trait or the functions here, so the plan can be
//! built and tested without a machine (a fake `Host`), and two callers
//! never read the same fact two ways.

pub mod neighbour;

use std::{
    ffi::CStr,
    io,
    net::{Ipv4Addr, ToSocketAddrs},
    path::Path,
};

use thiserror::Error;

use crate::config::PortRange;

/// One network interface of the current network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// The kernel's ifindex (0 when the interface has no link-layer entry,
    /// which `getifaddrs` gives every netdev).
    pub index: u32,
    /// IPv4 addresses in the kernel's order: the primary address first.
    pub ipv4: Vec<Ipv4Addr>,
    /// Those of them that are a /32 (as a pair's virtual addresses are).
    pub host_routes: Vec<Ipv4Addr>,
    pub mac: Option<[u8; 6]>,
}

/// A small regular file read whole, with its permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmallFile {
    /// `st_mode & 0o7777`: the permission bits (with setuid, setgid,
    /// sticky).
    pub mode: u32,
    /// Its contents.
    pub bytes: Vec<u8>,
}

/// Why a small file was not read.
#[derive(Debug, Error)]
pub enum ReadFileError {
    /// It could not be opened (it does not exist, say).
    #[error("cannot open it: {0}")]
    Open(io::Error),
    /// A directory, a link, a FIFO, a socket or a device.
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    /// Longer than the caller takes.
    #[error("is longer than {max} bytes")]
    TooLarge {
        /// The most the caller takes.
        max: usize,
    },
    /// Opened, but reading it failed.
    #[error("cannot read it: {0}")]
    Read(io::Error),
}

/// What the plan asks of the host.
pub trait Host {
    /// Every interface of the current network namespace, in the kernel's
    /// order.
    ///
    /// # Errors
    ///
    /// When the interfaces cannot be listed.
    fn interfaces(&self) -> io::Result<Vec<Interface>>;
    /// `net.ipv4.ip_local_port_range`, if readable.
    fn local_port_range(&self) -> Option<PortRange>;
    /// The IPv4 addresses `name` resolves to, in the resolver's order.
    ///
    /// # Errors
    ///
    /// When the name does not resolve, or only to IPv6 addresses.
    fn resolve(&self, name: &str) -> io::Result<Vec<Ipv4Addr>>;
    /// Whether someone other than root could write in the directory at
    /// `path` (not owned by root, or group- or world-writable). A path
    /// that does not exist yet is not. Fakes that do not model it: no.
    fn writable_by_others(&self, _path: &Path) -> bool {
        false
    }
    /// Whether the file at `path` can be opened for reading.
    ///
    /// # Errors
    ///
    /// Why it cannot.
    fn readable(&self, path: &Path) -> io::Result<()>;
    /// The regular file at `path`, if it holds at most `max_len` bytes,
    /// with its permission bits: for secrets such as the pair's sync key.
    /// A link at `path` is not followed, and nothing but a regular file is
    /// read, so a FIFO never hangs the caller.
    ///
    /// # Errors
    ///
    /// [`ReadFileError`] saying why not.
    fn read_small_file(&self, path: &Path, max_len: usize) -> Result<SmallFile, ReadFileError>;
}

/// This machine (this network namespace).
#[derive(Debug, Clone, Copy, Default)]
pub struct RealHost;

impl Host for RealHost {
    fn interfaces(&self) -> io::Result<Vec<Interface>> {
        interfaces()
    }

    fn local_port_range(&self) -> Option<PortRange> {
        let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
        parse_local_port_range(&text)
    }

    fn resolve(&self, name: &str) -> io::Result<Vec<Ipv4Addr>> {
        let mut out = Vec::new();
        for addr in (name, 0).to_socket_addrs()? {
            if let std::net::IpAddr::V4(ip) = addr.ip()
                && !out.contains(&ip)
            {
                out.push(ip);
            }
        }
        if out.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no IPv4 address (IPv6 backends are not supported yet)",
            ));
        }
        Ok(out)
    }

    fn readable(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path).map(drop)
    }

    fn writable_by_others(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok_and(|m| others_can_write(&m))
    }

    fn read_small_file(&self, path: &Path, max_len: usize) -> Result<SmallFile, ReadFileError> {
        read_small_file(path, max_len)
    }
}

/// [`Host::read_small_file`] on this machine.
///
/// # Errors
///
/// [`ReadFileError`] saying why not.
pub fn read_small_file(path: &Path, max_len: usize) -> Result<SmallFile, ReadFileError> {
    use std::io::Read as _;
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};

    // What is at the name, before opening it: opening a FIFO for reading
    // waits for a writer, and opening a device may do something.
    let meta = std::fs::symlink_metadata(path).map_err(ReadFileError::Open)?;
    if !meta.file_type().is_file() {
        return Err(ReadFileError::NotRegular(file_kind(&meta.file_type())));
    }
    // The name may be swapped between the look and the open: O_NOFOLLOW
    // refuses a link (ELOOP), O_NONBLOCK keeps a FIFO from blocking the
    // open (open(2)), and the opened file is looked at again.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => ReadFileError::NotRegular("a symbolic link"),
            _ => ReadFileError::Open(e),
        })?;
    let meta = file.metadata().map_err(ReadFileError::Read)?;
    if !meta.file_type().is_file() {
        return Err(ReadFileError::NotRegular(file_kind(&meta.file_type())));
    }
    let mut bytes = Vec::new();
    file.take(max_len as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadFileError::Read)?;
    if bytes.len() > max_len {
        return Err(ReadFileError::TooLarge { max: max_len });
    }
    Ok(SmallFile {
        mode: meta.mode() & 0o7777,
        bytes,
    })
}

/// "a directory", "a FIFO", … for a file that is not a regular one.
fn file_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_char_device() {
        "a character device"
    } else {
        "something else"
    }
}

/// The rule for kube-xdp's own directories: anyone but root may write in
/// it (not owned by root, or group- or world-writable).
pub fn others_can_write(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    meta.uid() != 0 || meta.mode() & 0o022 != 0
}

/// "32768\t60999\n" → 32768-60999.
pub fn parse_local_port_range(text: &str) -> Option<PortRange> {
    let mut numbers = text.split_whitespace().map(str::parse::<u16>);
    let first = numbers.next()?.ok()?;
    let last = numbers.next()?.ok()?;
    PortRange::new(first, last).ok()
}

/// Every interface with its index, MAC and IPv4 addresses, from one
/// `getifaddrs(3)` walk (netlink underneath, so they are the current
/// network namespace's — `/sys` would show the mount namespace's).
///
/// # Errors
///
/// When `getifaddrs` fails.
pub fn interfaces() -> io::Result<Vec<Interface>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out: Vec<Interface> = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` walks the list getifaddrs returned, not freed yet;
        // its pointers are NULL or valid for the list's life.
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
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
                let addr = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                out[idx].ipv4.push(addr);
                // SAFETY: an AF_INET address's netmask, when present, is a
                // sockaddr_in too.
                let all_ones = !ifa.ifa_netmask.is_null()
                    && unsafe {
                        (*ifa.ifa_netmask.cast::<libc::sockaddr_in>())
                            .sin_addr
                            .s_addr
                    } == u32::MAX;
                if all_ones {
                    out[idx].host_routes.push(addr);
                }
            }
            libc::AF_PACKET => {
                // SAFETY: an AF_PACKET address is a sockaddr_ll.
                let sll = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_ll>() };
                out[idx].index = u32::try_from(sll.sll_ifindex).unwrap_or(0);
                if sll.sll_halen == 6 {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(&sll.sll_addr[..6]);
                    out[idx].mac = Some(mac);
                }
            }
            _ => {}
        }
    }
    // SAFETY: frees the list getifaddrs allocated, once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// `CLOCK_MONOTONIC` in ns: the clock of `bpf_ktime_get_ns()`, which the
/// flow table's timestamps use.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_its_index_and_address() {
        let all = interfaces().unwrap();
        let lo = all.iter().find(|i| i.name == "lo").expect("lo exists");
        assert!(lo.ipv4.contains(&Ipv4Addr::LOCALHOST), "{lo:?}");
        assert_eq!(lo.index, 1, "{lo:?}");
    }

    #[test]
    fn the_real_host_resolves_localhost_and_reads_the_port_range() {
        let host = RealHost;
        assert!(
            host.resolve("localhost")
                .unwrap()
                .contains(&Ipv4Addr::LOCALHOST)
        );
        assert!(host.local_port_range().is_some());
        assert!(host.readable(Path::new("/proc/self/status")).is_ok());
        assert!(host.readable(Path::new("/nonexistent/kxdp")).is_err());
    }

    #[test]
    fn a_small_file_is_read_with_its_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync.key");
        std::fs::write(&path, b"0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let file = read_small_file(&path, 17).unwrap();
        assert_eq!(file.bytes, b"0123456789abcdef\n");
        assert_eq!(file.mode, 0o640);
        assert!(matches!(
            read_small_file(&path, 16),
            Err(ReadFileError::TooLarge { max: 16 })
        ));
        assert!(matches!(
            read_small_file(&dir.path().join("missing"), 16),
            Err(ReadFileError::Open(e)) if e.kind() == io::ErrorKind::NotFound
        ));
    }

    #[test]
    fn only_a_regular_file_is_read_and_a_fifo_never_hangs() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let link = dir.path().join("link");
        std::fs::write(dir.path().join("target"), b"0123456789abcdef").unwrap();
        std::os::unix::fs::symlink(dir.path().join("target"), &link).unwrap();
        let kind = |p: &Path| match read_small_file(p, 4096) {
            Err(ReadFileError::NotRegular(kind)) => kind,
            other => panic!("{p:?}: {other:?}"),
        };
        assert_eq!(kind(&fifo), "a FIFO");
        assert_eq!(kind(&link), "a symbolic link");
        assert_eq!(kind(dir.path()), "a directory");
        assert_eq!(kind(Path::new("/dev/null")), "a character device");
        let shown = read_small_file(&fifo, 1).unwrap_err().to_string();
        assert_eq!(shown, "is a FIFO, not a regular file");
    }

    #[test]
    fn local_port_range_parses_the_sysctl_text() {
        assert_eq!(
            parse_local_port_range("32768\t60999\n"),
            Some(PortRange {
                first: 32768,
                last: 60999
            })
        );
        assert_eq!(parse_local_port_range("garbage"), None);
    }
}
