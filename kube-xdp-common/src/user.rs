//! Userspace-only impls.

use crate::maps::*;

// SAFETY: every type below is `#[repr(C)]`, `Copy`, made of integers and
// byte arrays only, with explicit padding fields, so any bit pattern is a
// valid value and there are no implicit padding bytes.
unsafe impl aya::Pod for ServiceKey {}
unsafe impl aya::Pod for Service {}
unsafe impl aya::Pod for Pool {}
unsafe impl aya::Pod for Backend {}
unsafe impl aya::Pod for FlowKey {}
unsafe impl aya::Pod for Flow {}
unsafe impl aya::Pod for ReverseFlow {}
unsafe impl aya::Pod for FragmentKey {}
unsafe impl aya::Pod for Fragment {}
unsafe impl aya::Pod for Settings {}
unsafe impl aya::Pod for Interface {}
unsafe impl aya::Pod for Traffic {}
unsafe impl aya::Pod for RstBudget {}
unsafe impl aya::Pod for Meta {}
unsafe impl aya::Pod for SyncEvent {}
unsafe impl aya::Pod for HalfOpenBudget {}
unsafe impl aya::Pod for CookieClock {}
