//! Maglev's properties: shares follow weights, few slots move when the pool
//! changes, every instance builds the same table, edge cases terminate.

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
