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
    sync::{Mutex, PoisonError},
    time::Duration,
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
    /// Its MTU (`None` when the kernel did not say).
    pub mtu: Option<u32>,
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
    /// Every IPv4 address of the host's interfaces (none when they cannot
    /// be listed).
    fn local_addresses(&self) -> Vec<Ipv4Addr> {
        self.interfaces()
            .map(|all| all.into_iter().flat_map(|i| i.ipv4).collect())
            .unwrap_or_default()
    }
    /// Whether someone other than root could write in the directory at
    /// `path` (not owned by root, or group- or world-writable). A path
    /// that does not exist yet is not. Fakes that do not model it: no.
    fn writable_by_others(&self, _path: &Path) -> bool {
        false
    }
    /// Whether someone other than root could write the file at `path`
    /// (the configuration file): it is not owned by root, or is group- or
    /// world-writable. A link is judged by what it points to. Fakes that
    /// do not model it: no.
    fn file_writable_by_others(&self, _path: &Path) -> bool {
        false
    }
    /// The contents of the regular file at `path` (a CA file), at most
    /// [`MAX_FILE_BYTES`] of it.
    ///
    /// # Errors
    ///
    /// Why it cannot be read, and any file that is not a regular one or
    /// is larger (see [`read_regular_file`]).
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The number of CPUs the kernel may ever bring up
    /// (`/sys/devices/system/cpu/possible`): the number of slots of a
    /// per-CPU map. Fakes that do not model it: 1.
    ///
    /// # Errors
    ///
    /// When the kernel's list cannot be read.
    fn possible_cpus(&self) -> io::Result<u32> {
        Ok(1)
    }
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

/// The most kube-xdp reads of a file the configuration names (a CA
/// bundle is a few KiB; the system's whole trust store is about 200 KiB).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

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
        resolve_bounded(name, RESOLVE_TIMEOUT, resolve_now)
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        read_regular_file(path, MAX_FILE_BYTES)
    }

    fn writable_by_others(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok_and(|m| others_can_write(&m))
    }

    fn file_writable_by_others(&self, path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| others_can_write(&m))
    }

    fn read_small_file(&self, path: &Path, max_len: usize) -> Result<SmallFile, ReadFileError> {
        read_small_file(path, max_len)
    }

    fn possible_cpus(&self) -> io::Result<u32> {
        // aya's own count, the one its per-CPU maps are read with.
        let n = aya::util::nr_cpus()
            .map_err(|(what, e)| io::Error::new(e.kind(), format!("{what}: {e}")))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
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

/// How long one name's lookup may take. glibc's resolver alone may take
/// 5 s × 2 attempts per name server; past this bound, the name counts as
/// not resolving now (a running daemon keeps its address).
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// `lookup(name)` on a thread of its own, waited for at most `timeout`:
/// `getaddrinfo` cannot be interrupted, and a dead resolver (or an
/// `/etc/hosts` that blocks) must not hold its caller. A lookup that
/// times out goes on in its thread; until it returns, a new lookup of the
/// same name fails at once rather than piling up threads.
///
/// # Errors
///
/// The lookup's own error, or [`io::ErrorKind::TimedOut`].
pub fn resolve_bounded(
    name: &str,
    timeout: Duration,
    lookup: fn(&str) -> io::Result<Vec<Ipv4Addr>>,
) -> io::Result<Vec<Ipv4Addr>> {
    static IN_FLIGHT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let in_flight = || IN_FLIGHT.lock().unwrap_or_else(PoisonError::into_inner);
    {
        let mut busy = in_flight();
        if busy.iter().any(|n| n == name) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "its previous lookup has not returned yet: the resolver does not answer",
            ));
        }
        busy.push(name.to_owned());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = name.to_owned();
    let spawned = std::thread::Builder::new()
        .name("kube-xdp-dns".into())
        .spawn(move || {
            let result = lookup(&owned);
            in_flight().retain(|n| n != &owned);
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        in_flight().retain(|n| n != name);
        return Err(e);
    }
    rx.recv_timeout(timeout).unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {} s", timeout.as_secs_f32()),
        ))
    })
}

/// `getaddrinfo(3)`: the IPv4 addresses of `name`, each once, in the
/// resolver's order.
fn resolve_now(name: &str) -> io::Result<Vec<Ipv4Addr>> {
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

/// The rule for kube-xdp's own directories: anyone but root may write in
/// it (not owned by root, or group- or world-writable).
pub fn others_can_write(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    meta.uid() != 0 || meta.mode() & 0o022 != 0
}

/// The contents of the regular file at `path`, refusing anything else
/// before reading a byte: the file is opened with `O_NONBLOCK`, so a FIFO
/// with no writer cannot hang the open (fifo(7)), then judged by `fstat`
/// on the open descriptor, so what is read is what was judged. A device
/// (`/dev/zero` never ends), a directory or a socket is refused, and so is
/// a file larger than `limit`; the read itself stops at `limit` too (a
/// file that grows meanwhile, or a `/proc` file whose size reads 0).
///
/// # Errors
///
/// Why it cannot be opened or read, or what it is instead of a regular
/// file of at most `limit` bytes.
pub fn read_regular_file(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    let what = if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    };
    if let Some(what) = what {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {what}, not a regular file"),
        ));
    }
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is larger than {}", human_bytes(limit)),
        )
    };
    if meta.len() > limit {
        return Err(too_big());
    }
    let mut out = Vec::new();
    file.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(out)
}

/// 1048576 → "1 MiB".
fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// "32768\t60999\n" → 32768-60999.
pub fn parse_local_port_range(text: &str) -> Option<PortRange> {
    let mut numbers = text.split_whitespace().map(str::parse::<u16>);
    let first = numbers.next()?.ok()?;
    let last = numbers.next()?.ok()?;
    PortRange::new(first, last).ok()
}

/// Every interface with its index, MAC, MTU and IPv4 addresses, from one
/// `getifaddrs(3)` walk (netlink underneath, so they are the current
/// network namespace's — `/sys` would show the mount namespace's) and a
/// `SIOCGIFMTU` each.
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
    // Any socket of the namespace answers for its interfaces
    // (netdevice(7)); without one, the MTUs stay unknown.
    if let Ok(socket) = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None) {
        for iface in &mut out {
            iface.mtu = mtu(&socket, &iface.name);
        }
    }
    Ok(out)
}

/// `SIOCGIFMTU` (netdevice(7)): the MTU of the interface `name`.
fn mtu(socket: &socket2::Socket, name: &str) -> Option<u32> {
    use std::os::fd::AsRawFd as _;
    let bytes = name.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return None;
    }
    // SAFETY: `ifreq` is plain data; all zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads the NUL-terminated name and writes
    // `ifr_mtu` of the `ifreq` it is given, which lives across the call.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFMTU, &mut req) };
    if rc != 0 {
        return None;
    }
    // SAFETY: the kernel filled the union's `ifru_mtu`.
    u32::try_from(unsafe { req.ifr_ifru.ifru_mtu }).ok()
}

/// How far `CLOCK_REALTIME` is ahead of `CLOCK_MONOTONIC`, in ns: the
/// SYN cookies' clock is the monotonic one plus this, so that both boxes
/// of a pair (whose realtime clocks NTP keeps together) count the same
/// cookie periods. The monotonic clock is read on both sides of the
/// realtime one and their middle taken.
pub fn realtime_offset_ns() -> u64 {
    let before = monotonic_ns();
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    let after = monotonic_ns();
    let realtime = (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64);
    realtime.saturating_sub(before + (after - before) / 2)
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
    fn loopback_has_its_index_address_and_mtu() {
        let all = interfaces().unwrap();
        let lo = all.iter().find(|i| i.name == "lo").expect("lo exists");
        assert!(lo.ipv4.contains(&Ipv4Addr::LOCALHOST), "{lo:?}");
        assert_eq!(lo.index, 1, "{lo:?}");
        // 65536 since Linux 3.6.
        assert!(lo.mtu.is_some_and(|m| m >= 1500), "{lo:?}");
        assert_eq!(
            mtu(
                &socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap(),
                "nonexistent0"
            ),
            None
        );
    }

    #[test]
    fn the_realtime_offset_is_stable_and_the_real_time() {
        let a = realtime_offset_ns();
        let b = realtime_offset_ns();
        // Two reads agree to far less than a cookie period (~68 s).
        assert!(a.abs_diff(b) < 10_000_000, "{a} {b}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(
            (a + monotonic_ns()).abs_diff(now) < 1_000_000_000,
            "{a} {now}"
        );
        assert!(RealHost.possible_cpus().unwrap() >= 1);
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
        let status = host.read_file(Path::new("/proc/self/status")).unwrap();
        assert!(status.starts_with(b"Name:"), "{status:?}");
        assert!(host.read_file(Path::new("/nonexistent/kxdp")).is_err());
    }

    /// A resolver that never answers in time.
    fn stuck(_name: &str) -> io::Result<Vec<Ipv4Addr>> {
        std::thread::sleep(Duration::from_millis(600));
        Ok(vec![Ipv4Addr::new(198, 18, 0, 1)])
    }

    #[test]
    fn a_lookup_that_hangs_times_out_and_is_not_started_twice() {
        let timeout = Duration::from_millis(100);
        let started = std::time::Instant::now();
        let err = resolve_bounded("stuck.test", timeout, stuck).unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(400));
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(err.to_string(), "no answer within 0.1 s");
        // Still stuck: refused at once, no second thread.
        let started = std::time::Instant::now();
        let err = resolve_bounded("stuck.test", timeout, stuck).unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(50));
        assert!(
            err.to_string()
                .contains("previous lookup has not returned yet"),
            "{err}"
        );
        // Once it returned, the name is looked up again.
        std::thread::sleep(Duration::from_millis(700));
        let answer = resolve_bounded("stuck.test", Duration::from_secs(2), stuck).unwrap();
        assert_eq!(answer, [Ipv4Addr::new(198, 18, 0, 1)]);
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
