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
mod tests {
    use super::*;
    use std::{collections::HashMap, time::Instant};

    /// Backend `i` at 10.0.<i/256>.<i%256>:6443 with id `i`.
    fn backend(i: u32, weight: u32) -> MaglevBackend {
        let [_, _, hi, lo] = i.to_be_bytes();
        MaglevBackend {
            id: i,
            addr: Ipv4Addr::new(10, 0, hi, lo),
            port: 6443,
            weight,
        }
    }

    fn equal_pool(n: u32) -> Vec<MaglevBackend> {
        (0..n).map(|i| backend(i, 1)).collect()
    }

    fn slot_counts(table: &[u32]) -> HashMap<u32, usize> {
        let mut counts = HashMap::new();
        for &id in table {
            *counts.entry(id).or_default() += 1;
        }
        counts
    }

    /// Number of slots whose backend differs between two tables.
    fn moved_count(before: &[u32], after: &[u32]) -> usize {
        assert_eq!(before.len(), after.len());
        before.iter().zip(after).filter(|(b, a)| b != a).count()
    }

    /// Fraction of slots whose backend differs between two tables.
    fn moved_fraction(before: &[u32], after: &[u32]) -> f64 {
        moved_count(before, after) as f64 / before.len() as f64
    }

    /// A deterministic Fisher-Yates shuffle driven by a 64-bit LCG.
    fn shuffled(mut items: Vec<MaglevBackend>, mut state: u64) -> Vec<MaglevBackend> {
        for i in (1..items.len()).rev() {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let j = (state >> 33) as usize % (i + 1);
            items.swap(i, j);
        }
        items
    }

    fn assert_shares_match_weights(weights: &[u32]) {
        let pool: Vec<_> = (0..).zip(weights).map(|(i, &w)| backend(i, w)).collect();
        let table = build_table(&pool, DEFAULT_TABLE_SIZE);
        let counts = slot_counts(&table);
        let total_weight: u32 = weights.iter().sum();
        for b in &pool {
            let share = counts.get(&b.id).copied().unwrap_or(0) as f64 / table.len() as f64;
            let expected = f64::from(b.weight) / f64::from(total_weight);
            assert!(
                (share - expected).abs() <= 0.01,
                "weights {weights:?}: backend {} holds {share:.4} of slots, expected {expected:.4}",
                b.id
            );
        }
    }

    #[test]
    fn slot_shares_match_weights_within_one_percent() {
        assert_shares_match_weights(&[1, 1, 1]);
        assert_shares_match_weights(&[1, 2, 3, 4]);
        assert_shares_match_weights(&[100, 1, 50]);
    }

    #[test]
    fn removing_one_of_n_backends_moves_about_one_nth_of_slots() {
        let pool = equal_pool(10);
        let removed = pool[3].id;
        let remaining: Vec<_> = pool.iter().copied().filter(|b| b.id != removed).collect();
        let before = build_table(&pool, DEFAULT_TABLE_SIZE);
        let after = build_table(&remaining, DEFAULT_TABLE_SIZE);

        // The removed backend's ~10% must move; a modulo rehash would move ~90%.
        let moved = moved_fraction(&before, &after);
        assert!(moved <= 0.15, "moved {moved:.4} of slots");

        // And almost all of what moved was the removed backend's: slots held by
        // survivors stay put.
        let survivor_slots: Vec<_> = (0..before.len())
            .filter(|&s| before[s] != removed)
            .collect();
        let survivors_kept = survivor_slots
            .iter()
            .filter(|&&s| before[s] == after[s])
            .count();
        let kept = survivors_kept as f64 / survivor_slots.len() as f64;
        assert!(kept >= 0.95, "survivors kept only {kept:.4} of their slots");
        assert!(after.iter().all(|&id| id != removed));
    }

    #[test]
    fn adding_a_backend_moves_about_one_nth() {
        let pool = equal_pool(10);
        let mut grown = pool.clone();
        grown.push(backend(10, 1));
        let before = build_table(&pool, DEFAULT_TABLE_SIZE);
        let after = build_table(&grown, DEFAULT_TABLE_SIZE);

        // The newcomer's ~1/11 of the slots must move; a modulo rehash would
        // move ~10/11.
        let moved = moved_fraction(&before, &after);
        assert!(moved <= 0.15, "moved {moved:.4} of slots");

        // And most of what moved went to the newcomer rather than being
        // reshuffled among the old backends.
        let to_newcomer = after.iter().filter(|&&id| id == 10).count();
        let reshuffled = moved_count(&before, &after) - to_newcomer;
        let reshuffled = reshuffled as f64 / before.len() as f64;
        assert!(
            reshuffled <= 0.05,
            "{reshuffled:.4} of slots reshuffled among old backends"
        );
    }

    #[test]
    fn same_backends_in_any_order_give_the_same_table() {
        let pool: Vec<_> = (0..50).map(|i| backend(i, 1 + i % 4)).collect();
        let reversed: Vec<_> = pool.iter().rev().copied().collect();
        let mixed = shuffled(pool.clone(), 42);
        assert_ne!(mixed, pool, "the shuffle must change the order");

        let table = build_table(&pool, DEFAULT_TABLE_SIZE);
        assert_eq!(table, build_table(&reversed, DEFAULT_TABLE_SIZE));
        assert_eq!(table, build_table(&mixed, DEFAULT_TABLE_SIZE));
    }

    #[test]
    fn empty_or_all_zero_weight_gives_empty_table() {
        assert!(build_table(&[], DEFAULT_TABLE_SIZE).is_empty());
        let all_zero = [backend(1, 0), backend(2, 0)];
        assert!(build_table(&all_zero, DEFAULT_TABLE_SIZE).is_empty());
    }

    #[test]
    fn zero_weight_backend_gets_no_slots() {
        let table = build_table(&[backend(1, 0), backend(2, 3)], 13);
        assert_eq!(table, vec![2; 13]);
    }

    #[test]
    fn is_prime_recognises_primes_and_non_primes() {
        for n in [2, 3, 5, 13, 65_537, 4_294_967_291] {
            assert!(is_prime(n), "{n} is prime");
        }
        for n in [0, 1, 4, 9, 65_535, 65_536, u32::MAX] {
            assert!(!is_prime(n), "{n} is not prime");
        }
    }

    #[test]
    fn every_slot_holds_a_valid_backend_id() {
        let pool: Vec<_> = (0..7).map(|i| backend(i * 3 + 100, 1 + i)).collect();
        let table = build_table(&pool, 251);
        assert_eq!(table.len(), 251);
        assert!(table.iter().all(|id| pool.iter().any(|b| b.id == *id)));
        // Every backend gets at least one slot.
        assert_eq!(slot_counts(&table).len(), pool.len());
    }

    #[test]
    fn single_backend_fills_every_slot() {
        let table = build_table(&[backend(7, 5)], DEFAULT_TABLE_SIZE);
        assert_eq!(table, vec![7; DEFAULT_TABLE_SIZE as usize]);
    }

    #[test]
    fn extreme_weights_terminate_and_fill_the_table() {
        let pool = [
            backend(1, 1),
            backend(2, u32::MAX),
            backend(3, u32::MAX / 2),
        ];
        let table = build_table(&pool, 1_009);
        assert_eq!(table.len(), 1_009);
        let counts = slot_counts(&table);
        assert!(counts[&2] > counts[&3], "the heavier backend holds more");
    }

    #[test]
    fn as_many_backends_as_slots_each_get_one() {
        let table = build_table(&equal_pool(13), 13);
        let counts = slot_counts(&table);
        assert_eq!(counts.len(), 13);
        assert!(counts.values().all(|&c| c == 1));
    }

    #[test]
    #[should_panic(expected = "not prime")]
    fn non_prime_size_panics() {
        build_table(&equal_pool(3), 65_536);
    }

    #[test]
    #[should_panic(expected = "smaller than")]
    fn size_below_backend_count_panics() {
        build_table(&equal_pool(13), 11);
    }

    #[test]
    fn builds_1000_weighted_backends_at_default_size_quickly() {
        let pool: Vec<_> = (0..1000).map(|i| backend(i, 1 + i % 7)).collect();
        let start = Instant::now();
        let table = build_table(&pool, DEFAULT_TABLE_SIZE);
        let elapsed = start.elapsed();
        println!("maglev: 1000 backends, {DEFAULT_TABLE_SIZE} slots built in {elapsed:?}");
        assert_eq!(table.len(), DEFAULT_TABLE_SIZE as usize);
        // Only meaningful with optimisations; debug builds are just reported.
        if !cfg!(debug_assertions) {
            assert!(elapsed.as_millis() < 1000, "took {elapsed:?}");
        }
    }
}
