//! The pieces of `synflood` (tests/src/bin/synflood.rs), the SYN-flood
//! generator of the SYN-flood end-to-end test: the address range it may
//! use, the SYN it crafts (`packet`), the AF_PACKET socket it sends with
//! (`afpacket`) and its pacing.
//!
//! Network safety: every address it sends from or to must lie in
//! 198.18.0.0/15 (RFC 2544's benchmarking range, the only range the tests
//! use), and it refuses to run in the host's network namespace
//! ([`ensure_private_netns`]): it is run only inside namespaces a test
//! created.

pub mod afpacket;
pub mod packet;

use anyhow::{Context, bail, ensure};
use std::{
    net::Ipv4Addr,
    os::unix::fs::MetadataExt,
    str::FromStr,
    time::{Duration, Instant},
};

/// An IPv4 prefix, `a.b.c.d/len`, with its host bits clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub len: u8,
}

/// The only range synflood sends from or to: 198.18.0.0/15 (RFC 2544).
pub const TEST_RANGE: Cidr = Cidr {
    network: Ipv4Addr::new(198, 18, 0, 0),
    len: 15,
};

impl Cidr {
    /// The mask of the network bits.
    pub fn mask(self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len))
        }
    }

    pub fn contains(self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.network)
    }

    /// Whether every address of `other` is in this prefix.
    pub fn covers(self, other: Cidr) -> bool {
        other.len >= self.len && self.contains(other.network)
    }

    /// The address whose host bits are `bits` (masked to the host part).
    pub fn host(self, bits: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | (bits & !self.mask()))
    }

    /// A host address picked by `random`: in a prefix of 4 addresses or
    /// more, never the network or broadcast address, which no real client
    /// sends from.
    pub fn random_host(self, random: u32) -> Ipv4Addr {
        let size = u64::from(!self.mask()) + 1;
        if size < 4 {
            return self.host(random);
        }
        self.host((u64::from(random) % (size - 2) + 1) as u32)
    }
}

impl FromStr for Cidr {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let (addr, len) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = addr
            .parse()
            .with_context(|| format!("{s:?}: not an IPv4 address/prefix"))?;
        let len: u8 = len
            .parse()
            .with_context(|| format!("{s:?}: not a prefix length"))?;
        ensure!(len <= 32, "{s:?}: a prefix length is at most 32");
        let cidr = Cidr { network: addr, len };
        ensure!(
            u32::from(addr) & !cidr.mask() == 0,
            "{s:?} has host bits set: write {}/{len}",
            Ipv4Addr::from(u32::from(addr) & cidr.mask())
        );
        Ok(cidr)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

/// Refuses a destination or source range outside [`TEST_RANGE`].
///
/// # Errors
///
/// When either lies (even partly) outside 198.18.0.0/15.
pub fn ensure_test_range(dst: Ipv4Addr, sources: Cidr) -> anyhow::Result<()> {
    ensure!(
        TEST_RANGE.contains(dst),
        "refusing destination {dst}: synflood sends only to {TEST_RANGE} (RFC 2544's benchmarking range)"
    );
    ensure!(
        TEST_RANGE.covers(sources),
        "refusing source range {sources}: synflood sends only from inside {TEST_RANGE} (RFC 2544's benchmarking range)"
    );
    Ok(())
}

/// Refuses to run anywhere but in a named network namespace (`ip netns
/// add`, which is how the tests make theirs: bound at /run/netns/NAME),
/// and in pid 1's where that can be read: synflood is only ever run
/// inside a namespace a test created, never in the host's.
///
/// # Errors
///
/// When this process's network namespace is not one of /run/netns, or is
/// pid 1's.
pub fn ensure_private_netns() -> anyhow::Result<()> {
    let id = |path: &str| std::fs::metadata(path).map(|m| (m.dev(), m.ino()));
    let ours = id("/proc/self/ns/net").context("reading /proc/self/ns/net")?;
    if id("/proc/1/ns/net").is_ok_and(|host| host == ours) {
        bail!("refusing to run in the host's network namespace (pid 1's)");
    }
    let named = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| std::fs::metadata(entry.path()).is_ok_and(|m| (m.dev(), m.ino()) == ours));
    ensure!(
        named,
        "refusing to run outside a test's network namespace: run synflood inside one made with \
         `ip netns add` (nsenter --net=/run/netns/NAME synflood …)"
    );
    Ok(())
}

/// A small, fast pseudo-random generator (SplitMix64): spoofed addresses,
/// ports and sequence numbers need variety, not secrecy.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A seed from the clock, the pid and `salt` (e.g. a thread number).
    pub fn seeded(salt: u64) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng(nanos
            ^ (u64::from(std::process::id()) << 32)
            ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
/// `rate` 0 means unpaced (every request granted in full).
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        TokenBucket {
            rate,
            burst: burst.max(1.0),
            tokens: 0.0,
            last: Instant::now(),
        }
    }

    /// Up to `want` tokens available at `now`, taken from the bucket, or
    /// how long to wait for the next one.
    pub fn take(&mut self, want: usize, now: Instant) -> Result<usize, Duration> {
        if self.rate <= 0.0 {
            return Ok(want);
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        let n = (self.tokens.floor() as usize).min(want);
        if n == 0 {
            // Wait for a batch's worth, or a millisecond's: no more than
            // about a thousand wake-ups a second whatever the rate.
            let target = (want as f64).min((self.rate / 1000.0).max(1.0));
            return Err(Duration::from_secs_f64((target - self.tokens) / self.rate));
        }
        self.tokens -= n as f64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_benchmarking_range_is_accepted() {
        let ok: Cidr = "198.19.0.0/17".parse().unwrap();
        ensure_test_range(Ipv4Addr::new(198, 18, 0, 10), ok).unwrap();
        ensure_test_range(
            Ipv4Addr::new(198, 19, 255, 255),
            "198.18.0.0/15".parse().unwrap(),
        )
        .unwrap();
        for dst in ["10.0.0.1", "198.17.255.255", "198.20.0.0", "8.8.8.8"] {
            assert!(
                ensure_test_range(dst.parse().unwrap(), ok).is_err(),
                "{dst}"
            );
        }
        for src in ["198.16.0.0/14", "0.0.0.0/0", "10.0.0.0/8", "198.20.0.0/24"] {
            let src: Cidr = src.parse().unwrap();
            assert!(
                ensure_test_range(Ipv4Addr::new(198, 18, 0, 10), src).is_err(),
                "{src}"
            );
        }
    }

    #[test]
    fn a_prefix_with_host_bits_is_refused() {
        assert!("198.19.0.1/17".parse::<Cidr>().is_err());
        assert!("198.19.0.0/33".parse::<Cidr>().is_err());
        assert_eq!(
            "198.19.0.7".parse::<Cidr>().unwrap(),
            Cidr {
                network: Ipv4Addr::new(198, 19, 0, 7),
                len: 32
            }
        );
    }

    #[test]
    fn random_hosts_stay_inside_their_prefix() {
        let cidr: Cidr = "198.19.0.0/17".parse().unwrap();
        let mut rng = Rng::new(1);
        for _ in 0..10_000 {
            let a = cidr.random_host(rng.next_u64() as u32);
            assert!(cidr.contains(a) && TEST_RANGE.contains(a), "{a}");
            assert!(
                a != cidr.network && a != Ipv4Addr::new(198, 19, 127, 255),
                "{a}"
            );
        }
        for bits in [0, u32::MAX, 1, 0x7fff, 0x8000] {
            let a = cidr.random_host(bits);
            assert!(cidr.contains(a) && a != cidr.network, "{a}");
        }
    }

    #[test]
    fn the_bucket_grants_its_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1000.0, 64.0);
        bucket.last = start;
        // 50 ms at 1000/s: 50 tokens, granted in batches of at most 16.
        let mut granted = 0;
        for ms in 1..=50 {
            let now = start + Duration::from_millis(ms);
            while let Ok(n) = bucket.take(16, now) {
                granted += n;
            }
        }
        // 50, give or take the float arithmetic's last token.
        assert!((49..=50).contains(&granted), "{granted}");
        let wait = bucket
            .take(1, start + Duration::from_millis(50))
            .unwrap_err();
        assert!(wait <= Duration::from_millis(1), "{wait:?}");
        assert_eq!(TokenBucket::new(0.0, 1.0).take(64, start), Ok(64));
    }
}
