//! SYN cookies: the 32-bit initial sequence number with which the datapath
//! answers a SYN without keeping state, and its check when the client's
//! ACK comes back. Shared by the XDP program and the tests (fixtures compute
//! the cookie a SYN must get).
//!
//! Layout of a cookie (bit 0 lowest):
//!
//! | bits | what |
//! |---|---|
//! | 0-3 | the client's window scale, 15 = none |
//! | 4 | the client offered SACK |
//! | 5-6 | index into [`MSS_TABLE`] of the client's MSS (rounded down) |
//! | 7-8 | the cookie period, low two bits |
//! | 9-31 | 23 bits of SipHash-2-4 over the 5-tuple, the client's ISN, the whole period and bits 0-8 |
//!
//! Unlike the kernel's cookies, the key is the daemon's
//! (`Settings::cookie_key`), and the period is counted on the realtime
//! clock: the pair's two boxes share both, so either checks the other's
//! cookies after a failover. A cookie is valid in its period and the next
//! ([`COOKIE_PERIOD_SHIFT`]: 64 to 128 s in all). Window scale and SACK are
//! kept in the cookie itself, not in the TSval as the kernel does, so they
//! survive a client without timestamps; 23 bits of MAC mean a forged ACK
//! opens a flow about once in 8 million tries.

/// The MSS values a cookie can carry (the kernel's IPv4 table): the
/// client's MSS is rounded down to one of them.
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];
/// The cookie period: 2^36 ns, about 68.7 s.
pub const COOKIE_PERIOD_SHIFT: u32 = 36;
/// Window-scale value meaning "the client offered none".
pub const NO_WSCALE: u8 = 15;

/// What a SYN offered, as a cookie keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieOptions {
    /// Index into [`MSS_TABLE`].
    pub mss_index: u8,
    /// 0-14, or [`NO_WSCALE`].
    pub wscale: u8,
    pub sack: bool,
}

impl CookieOptions {
    /// The options of a SYN that offered `mss` (0: none), `wscale`
    /// (`None`: none; values above 14 count as 14, RFC 7323) and SACK.
    #[inline(always)]
    pub const fn of_syn(mss: u16, wscale: Option<u8>, sack: bool) -> CookieOptions {
        let mut mss_index = 0u8;
        let mut i = 1;
        while i < MSS_TABLE.len() {
            if mss >= MSS_TABLE[i] {
                mss_index = i as u8;
            }
            i += 1;
        }
        let wscale = match wscale {
            Some(w) if w > 14 => 14,
            Some(w) => w,
            None => NO_WSCALE,
        };
        CookieOptions {
            mss_index,
            wscale,
            sack,
        }
    }

    /// The MSS the SYN sent on the client's behalf announces.
    #[inline(always)]
    pub const fn mss(&self) -> u16 {
        MSS_TABLE[(self.mss_index & 3) as usize]
    }

    #[inline(always)]
    const fn bits(&self) -> u32 {
        (self.wscale as u32 & 0xf) | ((self.sack as u32) << 4) | ((self.mss_index as u32 & 3) << 5)
    }
}

/// The cookie period at `now_ns` of the cookies' clock.
#[inline(always)]
pub const fn period(now_ns: u64) -> u64 {
    now_ns >> COOKIE_PERIOD_SHIFT
}

/// The 5-tuple of a client's SYN, addresses and ports as in the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieTuple {
    pub src_addr: u32,
    pub dst_addr: u32,
    pub src_port: u16,
    pub dst_port: u16,
}

/// The cookie for a SYN of `tuple` with sequence number `client_isn` and
/// `options`, in `period`.
#[inline(always)]
pub fn make(
    key: &[u64; 2],
    tuple: &CookieTuple,
    client_isn: u32,
    options: &CookieOptions,
    period: u64,
) -> u32 {
    let low = options.bits() | ((period as u32 & 3) << 7);
    (mac(key, tuple, client_isn, period, low) << 9) | low
}

/// The options kept in `cookie` (the client's ACK number − 1) if it is a
/// valid cookie for `tuple` and `client_isn` (its sequence number − 1) at
/// `now_period`: made in this period or the one before.
#[inline(always)]
pub fn check(
    key: &[u64; 2],
    tuple: &CookieTuple,
    client_isn: u32,
    cookie: u32,
    now_period: u64,
) -> Option<CookieOptions> {
    let low = cookie & 0x1ff;
    let stamp = u64::from((low >> 7) & 3);
    // The period it was made in: this one or the one before, the one whose
    // low two bits it carries.
    let made = if now_period & 3 == stamp {
        now_period
    } else if now_period.wrapping_sub(1) & 3 == stamp {
        now_period.wrapping_sub(1)
    } else {
        return None;
    };
    if mac(key, tuple, client_isn, made, low) != cookie >> 9 {
        return None;
    }
    Some(CookieOptions {
        mss_index: ((low >> 5) & 3) as u8,
        wscale: (low & 0xf) as u8,
        sack: low & 0x10 != 0,
    })
}

/// 23 bits of SipHash-2-4 over everything the cookie vouches for.
#[inline(always)]
fn mac(key: &[u64; 2], tuple: &CookieTuple, client_isn: u32, period: u64, low: u32) -> u32 {
    let m0 = u64::from(tuple.src_addr) | (u64::from(tuple.dst_addr) << 32);
    let m1 = u64::from(tuple.src_port)
        | (u64::from(tuple.dst_port) << 16)
        | (u64::from(client_isn) << 32);
    let m2 = period ^ (u64::from(low) << 48);
    (siphash24(key, m0, m1, m2) & 0x7f_ffff) as u32
}

#[inline(always)]
fn sipround(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-2-4 of the 24-byte message `m0 m1 m2` (each word little-endian)
/// under `key` (k0, k1).
#[inline(always)]
pub fn siphash24(key: &[u64; 2], m0: u64, m1: u64, m2: u64) -> u64 {
    let mut v = [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ];
    // Three full words, then the last block: the length (24) in the top
    // byte.
    for m in [m0, m1, m2, 24u64 << 56] {
        v[3] ^= m;
        sipround(&mut v);
        sipround(&mut v);
        v[0] ^= m;
    }
    v[2] ^= 0xff;
    sipround(&mut v);
    sipround(&mut v);
    sipround(&mut v);
    sipround(&mut v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u64; 2] = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];

    #[test]
    fn siphash_matches_the_reference_vector() {
        // The reference implementation's vector for a 24-byte message:
        // key 00..0f, message 00..17 (vectors_sip64[24]).
        let m0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let m1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let m2 = u64::from_le_bytes([16, 17, 18, 19, 20, 21, 22, 23]);
        let expected = 0xb8ad_50c6_f649_af94;
        assert_eq!(siphash24(&KEY, m0, m1, m2), expected);
    }

    fn tuple() -> CookieTuple {
        CookieTuple {
            src_addr: 0x0100_12c6,
            dst_addr: 0x0a00_12c6,
            src_port: 40000u16.to_be(),
            dst_port: 6443u16.to_be(),
        }
    }

    #[test]
    fn a_cookie_checks_in_its_period_and_the_next_only() {
        let opts = CookieOptions::of_syn(1460, Some(7), true);
        let cookie = make(&KEY, &tuple(), 1234, &opts, 1000);
        assert_eq!(check(&KEY, &tuple(), 1234, cookie, 1000), Some(opts));
        assert_eq!(check(&KEY, &tuple(), 1234, cookie, 1001), Some(opts));
        assert_eq!(check(&KEY, &tuple(), 1234, cookie, 1002), None);
        assert_eq!(check(&KEY, &tuple(), 1234, cookie, 999), None);
        assert_eq!(check(&KEY, &tuple(), 1235, cookie, 1000), None);
        let other = CookieTuple {
            src_port: 40001u16.to_be(),
            ..tuple()
        };
        assert_eq!(check(&KEY, &other, 1234, cookie, 1000), None);
        assert_eq!(check(&[1, 2], &tuple(), 1234, cookie, 1000), None);
        // Any flipped bit of the cookie fails (options included).
        for bit in 0..32 {
            assert_eq!(
                check(&KEY, &tuple(), 1234, cookie ^ (1 << bit), 1000),
                None,
                "bit {bit}"
            );
        }
    }

    #[test]
    fn options_round_down_and_clamp() {
        assert_eq!(CookieOptions::of_syn(0, None, false).mss(), 536);
        assert_eq!(CookieOptions::of_syn(1459, None, false).mss(), 1440);
        assert_eq!(CookieOptions::of_syn(9000, None, false).mss(), 1460);
        assert_eq!(CookieOptions::of_syn(1460, Some(20), false).wscale, 14);
        assert_eq!(CookieOptions::of_syn(1460, None, false).wscale, NO_WSCALE);
    }
}
