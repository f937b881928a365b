//! Service lookup and the backend pick through the pool's Maglev table.

use kube_xdp_common::{
    maps::{BACKEND_UP, Backend, POOL_REMOVED, Service, ServiceKey, maglev_index},
    stats::Counter,
};

use crate::{BACKENDS, MAGLEV, POOLS, SERVICES, VIPS};

#[inline(always)]
pub fn lookup(vip: u32, port: u16, protocol: u8) -> Option<Service> {
    let key = ServiceKey {
        vip,
        port,
        protocol,
        _pad: 0,
    };
    // SAFETY: copied out at once.
    unsafe { SERVICES.get(key) }.copied()
}

/// Whether `addr` is the VIP of some service.
#[inline(always)]
pub fn is_vip(addr: u32) -> bool {
    // SAFETY: only tested for presence.
    unsafe { VIPS.get(addr) }.is_some()
}

#[inline(always)]
pub fn backend(id: u32) -> Option<Backend> {
    BACKENDS.get(id).copied().filter(|b| b.addr != 0)
}

/// The `SERVICE_*` flags of the service `id` as its pool holds them (an
/// array slot: cheaper than the service map for established flows);
/// `None` once the service was removed, which ends its flows.
#[inline(always)]
pub fn flags(id: u16) -> Option<u32> {
    POOLS
        .get(u32::from(id))
        .map(|p| p.flags)
        .filter(|flags| flags & POOL_REMOVED == 0)
}

/// Whether the service's pool has a usable backend.
#[inline(always)]
pub fn has_backends(service: &Service) -> bool {
    POOLS.get(service.id).is_some_and(|p| p.table_size != 0)
}

/// The backend for a new flow with this hash, from the live half of the
/// pool's table. `NoBackend` when the pool is empty.
#[inline(always)]
pub fn pick(service: &Service, hash: u32) -> Result<(u32, Backend), Counter> {
    let pool = POOLS.get(service.id).ok_or(Counter::NoBackend)?;
    if pool.table_size == 0 {
        return Err(Counter::NoBackend);
    }
    let slot = hash % pool.table_size;
    let table = MAGLEV
        .get(maglev_index(service.id, pool.active & 1))
        .ok_or(Counter::NoBackend)?;
    let id = *table.get(slot as usize).ok_or(Counter::NoBackend)?;
    match backend(id) {
        Some(b) if b.state == BACKEND_UP => Ok((id, b)),
        _ => Err(Counter::NoBackend),
    }
}
