//! Weighted Maglev consistent hashing: builds the lookup table that maps a
//! flow's hash to a backend (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI 2016, section 3.4).
//!
//! # How the table is built
//!
//! Every backend gets a permutation of the table's slots, derived from two
//! hashes of its address and port: `offset = h1 % size` and
//! `skip = h2 % (size - 1) + 1`, so `permutation[j] = (offset + j * skip) % size`.
//! Because `size` is prime and `skip` is in `1..size`, each permutation visits
//! every slot exactly once. Backends then take turns: on its turn a backend
//! walks its permutation to the first slot nobody holds yet and claims it,
//! until all `size` slots are held. Removing or adding one backend of `N`
//! changes only a little more than `1/N` of the slots, so most existing flows
//! keep their backend even without connection tracking.
//!
//! # Why backends are ordered by a hash of their address
//!
//! The order of turns decides who wins a contested slot, so it is part of the
//! table's definition. Several load-balancer instances serve the same virtual
//! address and an upstream router (ECMP) may move a flow from one to another
//! at any time; the flow only keeps its backend if both instances built the
//! *same* table. They do not talk to each other, and the order in which each
//! learnt its backends (from a config file, from the Kubernetes API) is
//! arbitrary. So the turn order comes from the backends themselves: a fixed
//! hash of (address, port), ties broken by id. The hash is written out here,
//! never `std`'s `DefaultHasher`, whose algorithm may change between Rust
//! releases and would make two builds of this program disagree.
//!
//! # How weights work
//!
//! Weights are honoured as ratios of slots: a backend of weight 2 holds twice
//! as many slots as one of weight 1. Each round every backend adds its weight
//! to a credit; it takes a turn only while its credit reaches the largest
//! weight in the pool, which then is subtracted. The heaviest backends take a
//! turn every round, a backend of half that weight every other round, and so
//! on. A backend whose weight is tiny next to the others' (say 1 against
//! 1 000 000) may therefore get no slot at all: that is its true share.

use std::net::Ipv4Addr;

/// One usable backend of a pool (callers pass only backends that may take new
/// flows: up, weight > 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevBackend {
    pub id: u32,
    pub addr: Ipv4Addr,
    pub port: u16,
    pub weight: u32,
}

/// Default table size (prime). Much larger than any pool, so that weights and
/// equal shares come out within a fraction of a percent.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

// Seeds of the endpoint hash. They are part of the table's definition: every
// load-balancer instance must use the same ones, and changing any of them
// reshuffles every table.
const SEED_ORDER: u64 = 0x6b75_6265_2d78_6470; // "kube-xdp"
const SEED_OFFSET: u64 = 0x9e37_79b9_7f4a_7c15;
const SEED_SKIP: u64 = 0xc2b2_ae3d_27d4_eb4f;

/// True if n is prime.
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    // u64 so that `d * d` cannot overflow near u32::MAX.
    let n = u64::from(n);
    (3..)
        .step_by(2)
        .take_while(|d: &u64| d * d <= n)
        .all(|d| !n.is_multiple_of(d))
}

/// Builds the lookup table: `size` slots, each holding the `id` of a backend.
/// Returns an empty Vec when `backends` is empty or every weight is 0.
///
/// # Panics
///
/// If `size` is not prime (the permutations would not cover every slot) or
/// is smaller than the number of backends.
pub fn build_table(backends: &[MaglevBackend], size: u32) -> Vec<u32> {
    assert!(is_prime(size), "Maglev table size {size} is not prime");
    assert!(
        backends.len() <= size as usize,
        "Maglev table size {size} is smaller than the {} backends",
        backends.len()
    );
    let mut candidates = ordered_candidates(backends, size);
    let Some(max_weight) = candidates.iter().map(|c| c.weight).max() else {
        return Vec::new();
    };
    populate(&mut candidates, max_weight, size)
}

/// A backend during population: where it is in its permutation and how much
/// turn credit it has saved.
#[derive(Debug)]
struct Candidate {
    id: u32,
    weight: u64,
    skip: u64,
    /// The slot its permutation visits next.
    cursor: u64,
    credit: u64,
}

impl Candidate {
    fn new(backend: &MaglevBackend, size: u32) -> Self {
        let size = u64::from(size);
        let offset = endpoint_hash(backend.addr, backend.port, SEED_OFFSET) % size;
        let skip = endpoint_hash(backend.addr, backend.port, SEED_SKIP) % (size - 1) + 1;
        Self {
            id: backend.id,
            weight: u64::from(backend.weight),
            skip,
            cursor: offset,
            credit: 0,
        }
    }

    /// Claims the first free slot left in this backend's permutation.
    ///
    /// Walking the cursor forward by `skip` is `(offset + j * skip) % size`
    /// for `j = 0, 1, 2, ...`; the sum stays below `2 * size`, so u64 cannot
    /// overflow. The caller guarantees a free slot exists, and it lies ahead
    /// of the cursor: every slot behind it was already held when passed, and
    /// held slots are never freed.
    fn claim_next_free(&mut self, table: &mut [Option<u32>]) {
        let size = table.len() as u64;
        loop {
            let slot = self.cursor as usize;
            self.cursor = (self.cursor + self.skip) % size;
            if table[slot].is_none() {
                table[slot] = Some(self.id);
                return;
            }
        }
    }
}

/// The backends that get slots, in turn order: by hash of (address, port),
/// never by their order in the slice, so every instance agrees.
fn ordered_candidates(backends: &[MaglevBackend], size: u32) -> Vec<Candidate> {
    let mut usable: Vec<&MaglevBackend> = backends.iter().filter(|b| b.weight > 0).collect();
    // The address, port and weight after the hash only break ties (a hash
    // collision, or the same endpoint listed twice) so that the order is
    // total and does not depend on the input order either.
    usable.sort_unstable_by_key(|b| {
        (
            endpoint_hash(b.addr, b.port, SEED_ORDER),
            u32::from(b.addr),
            b.port,
            b.id,
            b.weight,
        )
    });
    usable
        .into_iter()
        .map(|b| Candidate::new(b, size))
        .collect()
}

/// Maglev's population loop with weighted turns.
///
/// Every round each candidate earns its weight in credit and takes a turn when
/// the credit reaches `max_weight`. Weights never exceed `max_weight`, so at
/// most one turn per round, and the heaviest candidate takes one every round:
/// the loop ends after at most `size` rounds, whatever the weights.
fn populate(candidates: &mut [Candidate], max_weight: u64, size: u32) -> Vec<u32> {
    let size = size as usize;
    let mut table = vec![None; size];
    let mut filled = 0;
    while filled < size {
        for candidate in candidates.iter_mut() {
            candidate.credit += candidate.weight;
            if candidate.credit < max_weight {
                continue;
            }
            candidate.credit -= max_weight;
            candidate.claim_next_free(&mut table);
            filled += 1;
            if filled == size {
                break;
            }
        }
    }
    table
        .into_iter()
        .map(|slot| slot.expect("the population loop fills every slot"))
        .collect()
}

/// A fixed hash of an endpoint: FNV-1a 64 over the address octets and the
/// port's big-endian bytes, started from a seeded basis, then murmur3's
/// 64-bit finaliser. FNV alone mixes six bytes poorly into the low bits that
/// `% size` keeps; the finaliser spreads every input bit over the whole word.
fn endpoint_hash(addr: Ipv4Addr, port: u16, seed: u64) -> u64 {
    const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let fnv = addr
        .octets()
        .into_iter()
        .chain(port.to_be_bytes())
        .fold(FNV_OFFSET_BASIS ^ seed, |h, byte| {
            (h ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
        });
    fmix64(fnv)
}

/// murmur3's 64-bit finaliser: full avalanche of every input bit.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests;
