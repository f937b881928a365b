//! The one API that programs and reads the datapath's maps. The daemon,
//! the CLI and the tests all go through it; nothing else touches a map
//! (but the test harness, which writes flow entries as they are).

use aya::{
    Ebpf,
    maps::{Array, DevMapHash, HashMap, Map, MapData, MapError, PerCpuArray},
};
use kube_xdp_common::{
    map_name,
    maps::{
        Backend, Flow, FlowKey, Interface, MAX_BACKENDS, MAX_MAGLEV_TABLE, MAX_SERVICES,
        MaglevTable, Meta, POOL_REMOVED, Pool, ReverseFlow, SERVICE_RESET_ON_DOWN, Service,
        ServiceKey, Settings, Traffic, maglev_index,
    },
};
use std::{
    net::Ipv4Addr,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("nothing is pinned at {path}: start `kube-xdp run` (or pass the --pin-path it uses)")]
    NotPinned { path: PathBuf },
    #[error("the eBPF object has no map {0}")]
    MissingMap(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: MapError,
    },
    #[error("service id {0} is out of range (0..{MAX_SERVICES})")]
    ServiceId(u32),
    #[error("backend id {0} is out of range (0..{MAX_BACKENDS})")]
    BackendId(u32),
    #[error("{0}: {1}")]
    Syscall(&'static str, std::io::Error),
    #[error("devmap KXDP_TX_PORTS: {0}")]
    TxPort(String),
    #[error("a Maglev table of {0} slots is larger than the datapath's {MAX_MAGLEV_TABLE}")]
    TableSize(usize),
}

type Result<T> = std::result::Result<T, DatapathError>;

/// `BPF_MAP_LOOKUP_ELEM` into a caller's buffer, which must be exactly the
/// map's value size.
fn lookup_into(fd: BorrowedFd<'_>, key: &u32, out: &mut [u32]) -> std::io::Result<()> {
    /// The `BPF_MAP_*_ELEM` part of `union bpf_attr`.
    #[repr(C)]
    struct ElemAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
    let attr = ElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        _pad: 0,
        key: key as *const u32 as u64,
        value: out.as_mut_ptr() as u64,
        flags: 0,
    };
    // SAFETY: `attr` is a valid BPF_MAP_LOOKUP_ELEM request whose key and
    // value pointers outlive the call; `out` holds the whole value.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_ELEM,
            &attr as *const ElemAttr,
            std::mem::size_of::<ElemAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

mod read;
mod specs;

pub use read::GlobalStats;
pub use specs::{BackendSpec, BackendState, ServiceSpec, addr_from_be, be_addr, be_port};

/// Every map of the datapath.
pub struct Datapath {
    stats: PerCpuArray<MapData, u64>,
    services: HashMap<MapData, ServiceKey, Service>,
    vips: HashMap<MapData, u32, u32>,
    pools: Array<MapData, Pool>,
    maglev: Array<MapData, MaglevTable>,
    /// The same map, for reading a table into the heap (aya's `get`
    /// returns the 256 KiB value on the stack).
    maglev_fd: OwnedFd,
    backends: Array<MapData, Backend>,
    flows: HashMap<MapData, FlowKey, Flow>,
    reverse: HashMap<MapData, FlowKey, ReverseFlow>,
    settings: Array<MapData, Settings>,
    interfaces: HashMap<MapData, u32, Interface>,
    tx_ports: DevMapHash<MapData>,
    service_stats: PerCpuArray<MapData, Traffic>,
    backend_stats: PerCpuArray<MapData, Traffic>,
    meta: Array<MapData, Meta>,
}

/// Opens every map through `open(name) -> Result<Map>`.
macro_rules! open_all {
    ($open:expr) => {{
        let open = &mut $open;
        let maglev = open(map_name::MAGLEV)?;
        let maglev_fd = match &maglev {
            Map::Array(data) => data
                .fd()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| DatapathError::Syscall("dup", e))?,
            _ => return Err(DatapathError::MissingMap(map_name::MAGLEV)),
        };
        Datapath {
            maglev_fd,
            stats: typed(map_name::STATS, open(map_name::STATS)?)?,
            services: typed(map_name::SERVICES, open(map_name::SERVICES)?)?,
            vips: typed(map_name::VIPS, open(map_name::VIPS)?)?,
            pools: typed(map_name::POOLS, open(map_name::POOLS)?)?,
            maglev: typed(map_name::MAGLEV, maglev)?,
            backends: typed(map_name::BACKENDS, open(map_name::BACKENDS)?)?,
            flows: typed(map_name::FLOWS, open(map_name::FLOWS)?)?,
            reverse: typed(map_name::REVERSE, open(map_name::REVERSE)?)?,
            settings: typed(map_name::SETTINGS, open(map_name::SETTINGS)?)?,
            interfaces: typed(map_name::INTERFACES, open(map_name::INTERFACES)?)?,
            tx_ports: typed(map_name::TX_PORTS, open(map_name::TX_PORTS)?)?,
            service_stats: typed(map_name::SERVICE_STATS, open(map_name::SERVICE_STATS)?)?,
            backend_stats: typed(map_name::BACKEND_STATS, open(map_name::BACKEND_STATS)?)?,
            meta: typed(map_name::META, open(map_name::META)?)?,
        }
    }};
}

fn typed<T: TryFrom<Map, Error = MapError>>(name: &'static str, map: Map) -> Result<T> {
    T::try_from(map).map_err(map_err(name))
}

impl Datapath {
    /// Takes the maps out of a loaded object (the program keeps its own
    /// references to them).
    ///
    /// # Errors
    ///
    /// When a map is missing or of another type.
    pub fn from_ebpf(bpf: &mut Ebpf) -> Result<Self> {
        Ok(open_all!(|name: &'static str| {
            bpf.take_map(name).ok_or(DatapathError::MissingMap(name))
        }))
    }

    /// Opens the maps pinned under `pin_path`.
    ///
    /// # Errors
    ///
    /// [`DatapathError::NotPinned`] when no daemon pinned its maps there.
    pub fn open_pinned(pin_path: &Path) -> Result<Self> {
        if !pin_path.join(map_name::STATS).exists() {
            return Err(DatapathError::NotPinned {
                path: pin_path.to_owned(),
            });
        }
        Ok(open_all!(|name: &'static str| {
            let data = MapData::from_pin(pin_path.join(name)).map_err(map_err(name))?;
            Map::from_map_data(data).map_err(map_err(name))
        }))
    }

    pub fn set_settings(&mut self, settings: &Settings) -> Result<()> {
        self.settings
            .set(0, settings, 0)
            .map_err(map_err(map_name::SETTINGS))
    }

    pub fn settings(&self) -> Result<Settings> {
        self.settings
            .get(&0, 0)
            .map_err(map_err(map_name::SETTINGS))
    }

    /// Writes a flow the pair's other box made: its forward entry, then
    /// its reverse entry (claimed when the flow opened), so that the
    /// backend's replies find a forward entry as soon as they find the
    /// reverse one.
    pub fn install_flow(&mut self, key: &FlowKey, flow: &Flow) -> Result<()> {
        self.flows
            .insert(key, flow, 0)
            .map_err(map_err(map_name::FLOWS))?;
        let reverse = ReverseFlow {
            client: *key,
            claimed_ns: flow.created_ns,
        };
        self.reverse
            .insert(kube_xdp_common::flow::reverse_key(key, flow), reverse, 0)
            .map_err(map_err(map_name::REVERSE))
    }

    pub fn set_meta(&mut self, meta: &Meta) -> Result<()> {
        self.meta.set(0, meta, 0).map_err(map_err(map_name::META))
    }

    pub fn meta(&self) -> Result<Meta> {
        self.meta.get(&0, 0).map_err(map_err(map_name::META))
    }

    /// Records an interface frames may be redirected to (its MAC, and its
    /// slot in the devmap).
    pub fn set_interface(&mut self, ifindex: u32, mac: [u8; 6]) -> Result<()> {
        let value = Interface { mac, _pad: [0; 2] };
        self.interfaces
            .insert(ifindex, value, 0)
            .map_err(map_err(map_name::INTERFACES))?;
        self.tx_ports
            .insert(ifindex, ifindex, None, 0)
            .map_err(|e| DatapathError::TxPort(e.to_string()))
    }

    /// The services in the maps, by id (a port range read back from its
    /// per-port entries).
    pub fn services(&self) -> Result<Vec<(u32, ServiceSpec)>> {
        let mut by_id: std::collections::BTreeMap<u32, ServiceSpec> = Default::default();
        for entry in self.services.iter() {
            let (key, value) = entry.map_err(map_err(map_name::SERVICES))?;
            let port = u16::from_be(key.port);
            let spec = by_id.entry(value.id).or_insert_with(|| ServiceSpec {
                vip: addr_from_be(key.vip),
                ports: port..=port,
                protocol: key.protocol,
                reset_on_down: value.flags & SERVICE_RESET_ON_DOWN != 0,
            });
            let (lo, hi) = (*spec.ports.start(), *spec.ports.end());
            spec.ports = lo.min(port)..=hi.max(port);
        }
        Ok(by_id.into_iter().collect())
    }

    /// The backend slots in use.
    pub fn backends(&self) -> Result<Vec<(u32, BackendSpec)>> {
        let mut out = Vec::new();
        for id in 0..MAX_BACKENDS {
            if let Some(spec) = self.backend(id)? {
                out.push((id, spec));
            }
        }
        Ok(out)
    }

    fn check_service(id: u32) -> Result<()> {
        if id >= MAX_SERVICES {
            return Err(DatapathError::ServiceId(id));
        }
        Ok(())
    }

    fn service_keys(spec: &ServiceSpec) -> impl Iterator<Item = ServiceKey> + '_ {
        spec.ports.clone().map(|port| ServiceKey {
            vip: be_addr(spec.vip),
            port: be_port(port),
            protocol: spec.protocol,
            _pad: 0,
        })
    }

    /// Adds or updates a service under `id` (one entry per port).
    pub fn set_service(&mut self, id: u32, spec: &ServiceSpec) -> Result<()> {
        Self::check_service(id)?;
        let value = Service {
            id,
            flags: if spec.reset_on_down {
                SERVICE_RESET_ON_DOWN
            } else {
                0
            },
        };
        for key in Self::service_keys(spec) {
            self.services
                .insert(key, value, 0)
                .map_err(map_err(map_name::SERVICES))?;
        }
        self.set_pool_flags(id, value.flags)?;
        self.refresh_vip(spec.vip)
    }

    fn set_pool_flags(&mut self, id: u32, flags: u32) -> Result<()> {
        let mut pool = self.pools.get(&id, 0).map_err(map_err(map_name::POOLS))?;
        pool.flags = flags;
        self.pools
            .set(id, pool, 0)
            .map_err(map_err(map_name::POOLS))
    }

    /// Removes a service's entries; its established flows stop too.
    pub fn remove_service(&mut self, spec: &ServiceSpec) -> Result<()> {
        let first = Self::service_keys(spec).next();
        if let Some(Ok(service)) = first.map(|k| self.services.get(&k, 0)) {
            self.set_pool_flags(service.id, POOL_REMOVED)?;
        }
        for key in Self::service_keys(spec) {
            match self.services.remove(&key) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(map_name::SERVICES)(e)),
            }
        }
        self.refresh_vip(spec.vip)
    }

    /// Keeps `VIPS` in step with `SERVICES` for one address.
    fn refresh_vip(&mut self, vip: Ipv4Addr) -> Result<()> {
        let addr = be_addr(vip);
        let mut count = 0u32;
        for key in self.services.keys() {
            let key = key.map_err(map_err(map_name::SERVICES))?;
            count += u32::from(key.vip == addr);
        }
        let result = if count == 0 {
            match self.vips.remove(&addr) {
                Err(MapError::KeyNotFound) => Ok(()),
                other => other,
            }
        } else {
            self.vips.insert(addr, count, 0)
        };
        result.map_err(map_err(map_name::VIPS))
    }

    fn check_backend(id: u32) -> Result<()> {
        if id >= MAX_BACKENDS {
            return Err(DatapathError::BackendId(id));
        }
        Ok(())
    }

    /// Adds or updates the backend `id`.
    pub fn set_backend(&mut self, id: u32, spec: &BackendSpec) -> Result<()> {
        Self::check_backend(id)?;
        self.backends
            .set(id, spec.raw(), 0)
            .map_err(map_err(map_name::BACKENDS))
    }

    /// Frees the backend slot `id`: flows still pointing at it end (their
    /// next packet is answered with a RST).
    pub fn remove_backend(&mut self, id: u32) -> Result<()> {
        Self::check_backend(id)?;
        self.backends
            .set(id, Backend::default(), 0)
            .map_err(map_err(map_name::BACKENDS))
    }

    pub fn backend(&self, id: u32) -> Result<Option<BackendSpec>> {
        Self::check_backend(id)?;
        let raw = self
            .backends
            .get(&id, 0)
            .map_err(map_err(map_name::BACKENDS))?;
        Ok(BackendSpec::from_raw(&raw))
    }

    /// Replaces a pool's Maglev table (backend ids; empty = no usable
    /// backend). The idle half is written whole, then one update of the
    /// pool flips the datapath over to it.
    #[expect(
        clippy::needless_borrows_for_generic_args,
        reason = "passing the 256 KiB table by value would copy it onto the stack"
    )]
    pub fn set_pool_table(&mut self, service_id: u32, table: &[u32]) -> Result<()> {
        Self::check_service(service_id)?;
        if table.len() > MAX_MAGLEV_TABLE as usize {
            return Err(DatapathError::TableSize(table.len()));
        }
        let pool = self
            .pools
            .get(&service_id, 0)
            .map_err(map_err(map_name::POOLS))?;
        let idle = (pool.active & 1) ^ 1;
        // 256 KiB: on the heap, not the stack.
        let mut whole: Box<MaglevTable> = vec![0u32; MAX_MAGLEV_TABLE as usize]
            .into_boxed_slice()
            .try_into()
            .expect("MAX_MAGLEV_TABLE slots");
        whole[..table.len()].copy_from_slice(table);
        self.maglev
            .set(maglev_index(service_id, idle), &*whole, 0)
            .map_err(map_err(map_name::MAGLEV))?;
        let flipped = Pool {
            active: idle,
            table_size: table.len() as u32,
            ..pool
        };
        self.pools
            .set(service_id, flipped, 0)
            .map_err(map_err(map_name::POOLS))
    }

    /// The live Maglev table of a pool.
    pub fn pool_table(&self, service_id: u32) -> Result<Vec<u32>> {
        Self::check_service(service_id)?;
        let pool = self
            .pools
            .get(&service_id, 0)
            .map_err(map_err(map_name::POOLS))?;
        let mut whole = vec![0u32; MAX_MAGLEV_TABLE as usize];
        let key = maglev_index(service_id, pool.active & 1);
        lookup_into(self.maglev_fd.as_fd(), &key, &mut whole)
            .map_err(|e| DatapathError::Syscall("BPF_MAP_LOOKUP_ELEM", e))?;
        whole.truncate(pool.table_size as usize);
        Ok(whole)
    }
}
