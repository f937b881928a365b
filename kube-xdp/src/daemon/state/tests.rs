//! Reload diffing: what `State::apply` writes, and what it leaves alone.

use super::*;
use crate::{config::InitState, plan::DesiredBackend};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    SetService(u32),
    RemoveService(Ipv4Addr),
    SetBackend(u32, BackendState),
    RemoveBackend(u32),
    SetPool(u32, usize),
}

/// The maps as a recording fake: what each key holds, and every write.
#[derive(Default, Clone)]
struct Fake {
    ops: Vec<Op>,
    /// (VIP, port, protocol) → (service id, reset_on_down), one entry per
    /// port like the VIPS map.
    services: HashMap<(Ipv4Addr, u16, u8), (u32, bool)>,
    backends: HashMap<u32, BackendSpec>,
    tables: HashMap<u32, Vec<u32>>,
    /// The write with this index (counted over `ops`) fails, as a map
    /// update the kernel refuses.
    fail_at: Option<usize>,
}

impl Fake {
    fn write(&mut self, op: Op) -> Result<(), DatapathError> {
        if self.fail_at == Some(self.ops.len()) {
            self.fail_at = None;
            return Err(DatapathError::BackendId(u32::MAX));
        }
        self.ops.push(op);
        Ok(())
    }

    /// What the maps hold, without the write log.
    fn image(&self) -> String {
        let mut services: Vec<_> = self.services.iter().collect();
        services.sort();
        let mut backends: Vec<_> = self
            .backends
            .iter()
            .map(|(k, v)| format!("{k}:{v:?}"))
            .collect();
        backends.sort();
        let mut tables: Vec<_> = self.tables.iter().filter(|(_, t)| !t.is_empty()).collect();
        tables.sort();
        format!("{services:?}\n{backends:?}\n{tables:?}")
    }
}

impl Programmer for Fake {
    fn set_service(&mut self, id: u32, spec: &ServiceSpec) -> Result<(), DatapathError> {
        self.write(Op::SetService(id))?;
        for port in spec.ports.clone() {
            self.services
                .insert((spec.vip, port, spec.protocol), (id, spec.reset_on_down));
        }
        Ok(())
    }
    fn remove_service(&mut self, spec: &ServiceSpec) -> Result<(), DatapathError> {
        self.write(Op::RemoveService(spec.vip))?;
        for port in spec.ports.clone() {
            self.services.remove(&(spec.vip, port, spec.protocol));
        }
        Ok(())
    }
    fn set_backend(&mut self, id: u32, spec: &BackendSpec) -> Result<(), DatapathError> {
        self.write(Op::SetBackend(id, spec.state))?;
        self.backends.insert(id, *spec);
        Ok(())
    }
    fn remove_backend(&mut self, id: u32) -> Result<(), DatapathError> {
        self.write(Op::RemoveBackend(id))?;
        self.backends.remove(&id);
        Ok(())
    }
    fn set_pool_table(&mut self, id: u32, table: &[u32]) -> Result<(), DatapathError> {
        self.write(Op::SetPool(id, table.len()))?;
        self.tables.insert(id, table.to_vec());
        Ok(())
    }
}

impl Fake {
    fn take(&mut self) -> Vec<Op> {
        std::mem::take(&mut self.ops)
    }
}

const SIZE: u32 = 251;

fn backend(name: &str, last: u8) -> DesiredBackend {
    DesiredBackend {
        name: name.into(),
        addr: Ipv4Addr::new(198, 18, 0, last),
        port: None,
        weight: 1,
    }
}

fn service(name: &str, port: u16, backends: Vec<DesiredBackend>) -> DesiredService {
    DesiredService {
        origin: None,
        name: name.into(),
        vip: Ipv4Addr::new(198, 18, 0, 10),
        ports: port..=port,
        protocol: 6,
        reset_on_down: false,
        table_size: SIZE,
        drain_timeout: Duration::from_secs(3600),
        init_state: InitState::Up,
        backends,
    }
}

fn two_services() -> Vec<DesiredService> {
    vec![
        service(
            "api",
            6443,
            vec![backend("a", 11), backend("b", 12), backend("c", 13)],
        ),
        service(
            "nodeport",
            30080,
            vec![backend("w1", 21), backend("w2", 22)],
        ),
    ]
}

fn applied() -> (State, Fake, Instant) {
    let mut state = State::default();
    let mut fake = Fake::default();
    let now = Instant::now();
    state.apply(&mut fake, &two_services(), now).unwrap();
    fake.take();
    (state, fake, now)
}

#[test]
fn first_apply_programs_services_backends_and_pools() {
    let mut state = State::default();
    let mut fake = Fake::default();
    let changes = state
        .apply(&mut fake, &two_services(), Instant::now())
        .unwrap();
    assert_eq!(changes.services_added, ["api", "nodeport"]);
    assert_eq!(changes.backends_added.len(), 5);
    assert_eq!(changes.pools_rebuilt, ["api", "nodeport"]);
    let api = state.services["api"].id;
    assert_eq!(fake.tables[&api].len(), SIZE as usize);
    assert!(fake.backends.values().all(|b| b.state == BackendState::Up));
}

#[test]
fn reapplying_the_same_config_writes_nothing() {
    let (mut state, mut fake, now) = applied();
    let changes = state.apply(&mut fake, &two_services(), now).unwrap();
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(fake.take(), []);
}

#[test]
fn adding_a_backend_rewrites_only_its_pool() {
    let (mut state, mut fake, now) = applied();
    let mut desired = two_services();
    desired[1].backends.push(backend("w3", 23));
    let changes = state.apply(&mut fake, &desired, now).unwrap();
    assert_eq!(changes.backends_added, ["nodeport/w3"]);
    assert_eq!(changes.pools_rebuilt, ["nodeport"]);
    let api = state.services["api"].id;
    assert!(
        !fake
            .take()
            .iter()
            .any(|op| matches!(op, Op::SetPool(id, _) if *id == api)),
        "the unchanged service's table is not touched"
    );
}

#[test]
fn removed_backend_drains_until_its_timeout() {
    let (mut state, mut fake, now) = applied();
    let mut desired = two_services();
    desired[0].backends.retain(|b| b.name != "b");
    let b_id = state.services["api"].backends["b"].id;
    let changes = state.apply(&mut fake, &desired, now).unwrap();
    assert_eq!(changes.backends_drained, ["api/b"]);
    let ops = fake.take();
    let api_id = state.services["api"].id;
    let pool_at = ops
        .iter()
        .position(|o| matches!(o, Op::SetPool(id, _) if *id == api_id));
    let drain_at = ops
        .iter()
        .position(|o| *o == Op::SetBackend(b_id, BackendState::Drain));
    assert!(
        pool_at.unwrap() < drain_at.unwrap(),
        "the table without it is written before it drains: {ops:?}"
    );
    assert!(
        !ops.contains(&Op::RemoveBackend(b_id)),
        "its flows may finish"
    );
    let api = state.services["api"].id;
    assert!(!fake.tables[&api].contains(&b_id), "no new flows");

    assert!(
        state
            .expire_drained(&mut fake, now + Duration::from_secs(10))
            .unwrap()
            .is_empty()
    );
    let expired = state
        .expire_drained(&mut fake, now + Duration::from_secs(3600))
        .unwrap();
    assert_eq!(expired, ["api/b"]);
    assert_eq!(fake.take(), [Op::RemoveBackend(b_id)]);
}

#[test]
fn weight_change_rewrites_the_backend_and_its_pool_shares() {
    let (mut state, mut fake, now) = applied();
    let mut desired = two_services();
    desired[0].backends[0].weight = 3;
    let changes = state.apply(&mut fake, &desired, now).unwrap();
    assert_eq!(changes.backends_changed, ["api/a"]);
    let api = &state.services["api"];
    let a = api.backends["a"].id;
    let share = fake.tables[&api.id].iter().filter(|id| **id == a).count();
    assert!(share > SIZE as usize * 55 / 100, "weight 3 of 5: {share}");
}

#[test]
fn health_change_rewrites_only_that_backend_and_pool() {
    let (mut state, mut fake, _) = applied();
    assert!(state.set_health(&mut fake, "api", "a", false).unwrap());
    let a = state.services["api"].backends["a"].id;
    let api = state.services["api"].id;
    assert_eq!(
        fake.take(),
        [
            Op::SetPool(api, SIZE as usize),
            Op::SetBackend(a, BackendState::Down)
        ],
        "the table without it first: the datapath never picks a DOWN backend"
    );
    assert!(state.set_health(&mut fake, "api", "a", true).unwrap());
    assert_eq!(
        fake.take(),
        [
            Op::SetBackend(a, BackendState::Up),
            Op::SetPool(api, SIZE as usize)
        ],
        "the backend first, then the table that names it"
    );
    assert!(state.set_health(&mut fake, "api", "a", false).unwrap());
    fake.take();
    assert!(!state.set_health(&mut fake, "api", "a", false).unwrap());
    assert_eq!(fake.take(), [], "no change, no write");
}

#[test]
fn pool_with_no_usable_backend_is_emptied() {
    let (mut state, mut fake, _) = applied();
    state
        .set_health(&mut fake, "nodeport", "w1", false)
        .unwrap();
    state
        .set_health(&mut fake, "nodeport", "w2", false)
        .unwrap();
    let id = state.services["nodeport"].id;
    assert_eq!(fake.tables[&id], Vec::<u32>::new());
}

#[test]
fn removed_service_is_unprogrammed() {
    let (mut state, mut fake, now) = applied();
    let desired = vec![two_services().remove(0)];
    let changes = state.apply(&mut fake, &desired, now).unwrap();
    assert_eq!(changes.services_removed, ["nodeport"]);
    let ops = fake.take();
    assert!(ops.contains(&Op::RemoveService(Ipv4Addr::new(198, 18, 0, 10))));
    assert_eq!(
        ops.iter()
            .filter(|o| matches!(o, Op::RemoveBackend(_)))
            .count(),
        2
    );
}

#[test]
fn restart_adopts_pinned_ids_and_health() {
    let (mut state, mut fake, now) = applied();
    state
        .set_next_hop(&mut fake, "api", "a", Some([2, 0, 0, 0, 0, 0x0b]), 7)
        .unwrap();
    let api = &state.services["api"];
    let pinned_services = state
        .services
        .values()
        .map(|s| (s.id, s.spec.clone()))
        .collect();
    let mut pinned: Vec<PinnedBackend> = fake
        .backends
        .iter()
        .map(|(id, spec)| PinnedBackend {
            id: *id,
            spec: *spec,
        })
        .collect();
    // "b" was DOWN when the daemon died; a stale backend is left over too.
    let b = api.backends["b"].id;
    pinned.iter_mut().find(|p| p.id == b).unwrap().spec.state = BackendState::Down;
    pinned.push(PinnedBackend {
        id: 99,
        spec: BackendSpec {
            service_id: api.id,
            addr: Ipv4Addr::new(198, 18, 0, 99),
            port: None,
            state: BackendState::Up,
            mac: None,
            ifindex: 0,
        },
    });

    let mut restarted = State::adopt(pinned_services, pinned);
    let mut fake2 = Fake::default();
    let mut desired = two_services();
    for s in &mut desired {
        s.init_state = InitState::Down;
    }
    restarted.apply(&mut fake2, &desired, now).unwrap();
    let api2 = &restarted.services["api"];
    assert_eq!(api2.id, api.id, "the service keeps its id");
    for name in ["a", "b", "c"] {
        assert_eq!(
            api2.backends[name].id, api.backends[name].id,
            "{name} keeps its id"
        );
    }
    assert!(api2.backends["a"].up, "adopted UP, not reset to init_state");
    assert_eq!(
        (api2.backends["a"].mac, api2.backends["a"].ifindex),
        (Some([2, 0, 0, 0, 0, 0x0b]), 7),
        "the next hop carries over"
    );
    assert!(!api2.backends["b"].up, "adopted DOWN");
    assert!(
        fake2.ops.contains(&Op::RemoveBackend(99)),
        "the stale one goes"
    );
    assert_eq!(
        fake2.tables[&api2.id].len(),
        SIZE as usize,
        "no pool goes empty"
    );
}

/// A reload that changes everything: a backend removed, one re-weighted,
/// one added, one with a new address, a service removed, one added.
fn everything_changed() -> Vec<DesiredService> {
    let mut b = backend("b", 12);
    b.weight = 3;
    let mut c = backend("c", 13);
    c.addr = Ipv4Addr::new(198, 18, 0, 113);
    let mut dns = service("dns", 53, vec![backend("d1", 31), backend("d2", 32)]);
    dns.protocol = 17;
    vec![service("api", 6443, vec![b, c, backend("d", 14)]), dns]
}

#[test]
fn an_apply_failing_at_any_write_leaves_the_maps_and_the_state_as_before() {
    let (before, maps, now) = applied();
    let mut done = before.clone();
    let mut after = maps.clone();
    done.apply(&mut after, &everything_changed(), now).unwrap();
    let writes = after.take().len();
    assert!(writes > 10, "{writes}");
    for n in 0..writes {
        let mut state = before.clone();
        let mut fake = maps.clone();
        fake.fail_at = Some(n);
        let err = state
            .apply_all_or_nothing(&mut fake, &everything_changed(), now)
            .unwrap_err();
        assert!(matches!(err, StateError::Datapath(_)), "write {n}: {err}");
        assert_eq!(
            fake.image(),
            maps.image(),
            "maps after a failure at write {n}"
        );
        assert_eq!(
            format!("{state:?}"),
            format!("{before:?}"),
            "state after a failure at write {n}"
        );
        // Nothing is left half-done: the same apply then succeeds and
        // gives what it gives from scratch.
        state
            .apply_all_or_nothing(&mut fake, &everything_changed(), now)
            .unwrap();
        assert_eq!(fake.image(), after.image(), "write {n}");
    }
}

#[test]
fn an_apply_running_out_of_ids_half_way_is_undone() {
    let (before, maps, now) = applied();
    // The first service changes, then the second needs more backend ids
    // than there are.
    let mut desired = everything_changed();
    desired[1].backends = (0..MAX_BACKENDS + 1)
        .map(|i| DesiredBackend {
            name: format!("w{i}"),
            addr: Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + i),
            port: None,
            weight: 1,
        })
        .collect();
    let mut state = before.clone();
    let mut fake = maps.clone();
    let err = state
        .apply_all_or_nothing(&mut fake, &desired, now)
        .unwrap_err();
    assert!(matches!(err, StateError::TooManyBackends), "{err}");
    assert!(
        fake.ops.iter().any(|op| matches!(op, Op::SetBackend(..))),
        "the first service was written before the second failed"
    );
    assert_eq!(fake.image(), maps.image());
    assert_eq!(format!("{state:?}"), format!("{before:?}"));
}

#[test]
fn an_address_flapping_back_and_forth_never_hands_a_draining_backend_on() {
    let (mut state, mut fake, now) = applied();
    let first = state.services["api"].backends["a"].id;
    let at = |last: u8| {
        let mut desired = two_services();
        desired[0].backends[0] = backend("a", last);
        desired
    };
    // A → B → A → B, as a resolver alternating two A records did before
    // hostname backends kept an address still among the answers. The
    // flows opened to the first .11 point at its id: until they have
    // drained, that id must stay .11's, and nothing may be lost track of.
    for (i, last) in [99, 11, 99].into_iter().enumerate() {
        state
            .apply(&mut fake, &at(last), now + Duration::from_secs(i as u64))
            .unwrap();
        let spec = fake.backends[&first];
        assert_eq!(
            (spec.addr, spec.state),
            (Ipv4Addr::new(198, 18, 0, 11), BackendState::Drain),
            "after the move to .{last}, the first .11's flows would go to another backend"
        );
        let known: Vec<u32> = state
            .services
            .values()
            .flat_map(|s| s.backends.values().map(|b| b.id))
            .collect();
        let orphans: Vec<&u32> = fake
            .backends
            .keys()
            .filter(|id| !known.contains(id))
            .collect();
        assert!(orphans.is_empty(), "ids {orphans:?} would never expire");
    }
    // Once drained, only the live backends are left.
    state
        .expire_drained(&mut fake, now + Duration::from_secs(7200))
        .unwrap();
    assert_eq!(fake.backends.len(), 5, "{:?}", fake.backends.keys());
}
