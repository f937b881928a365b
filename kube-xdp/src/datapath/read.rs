//! What the datapath counted and holds: the global counters, traffic per
//! service and backend (per-CPU values summed), the flow table.

use aya::maps::{MapError, PerCpuValues};
use kube_xdp_common::{
    map_name,
    maps::{Flow, FlowKey, ReverseFlow, Traffic},
    stats::Counter,
};

use super::{Datapath, Result, map_err};

/// The global counters, summed over CPUs, in [`Counter::ALL`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalStats {
    pub counters: Vec<(Counter, u64)>,
}

impl GlobalStats {
    /// The value of one counter.
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters
            .iter()
            .find(|(c, _)| *c == counter)
            .map_or(0, |(_, v)| *v)
    }
}

impl Datapath {
    /// One global counter, summed over CPUs (what a once-a-second watch
    /// reads instead of every slot).
    pub fn counter(&self, counter: Counter) -> Result<u64> {
        let values = self
            .stats
            .get(&(counter as u32), 0)
            .map_err(map_err(map_name::STATS))?;
        Ok(values.iter().sum())
    }

    /// The global counters, summed over CPUs.
    pub fn global_stats(&self) -> Result<GlobalStats> {
        let counters = Counter::ALL
            .iter()
            .map(|c| {
                let values = self
                    .stats
                    .get(&(*c as u32), 0)
                    .map_err(map_err(map_name::STATS))?;
                Ok((*c, values.iter().sum()))
            })
            .collect::<Result<_>>()?;
        Ok(GlobalStats { counters })
    }

    fn sum_traffic(values: &PerCpuValues<Traffic>) -> Traffic {
        values.iter().fold(Traffic::default(), |a, t| Traffic {
            packets: a.packets + t.packets,
            bytes: a.bytes + t.bytes,
            new_flows: a.new_flows + t.new_flows,
        })
    }

    pub fn service_traffic(&self, id: u32) -> Result<Traffic> {
        Self::check_service(id)?;
        let v = self
            .service_stats
            .get(&id, 0)
            .map_err(map_err(map_name::SERVICE_STATS))?;
        Ok(Self::sum_traffic(&v))
    }

    pub fn backend_traffic(&self, id: u32) -> Result<Traffic> {
        Self::check_backend(id)?;
        let v = self
            .backend_stats
            .get(&id, 0)
            .map_err(map_err(map_name::BACKEND_STATS))?;
        Ok(Self::sum_traffic(&v))
    }

    /// Calls `f` with each forward entry of the flow table (live or not),
    /// one at a time: nothing of the table is held in memory.
    pub fn for_each_flow(&self, mut f: impl FnMut(&FlowKey, &Flow)) -> Result<()> {
        for entry in self.flows.iter() {
            let (key, flow) = entry.map_err(map_err(map_name::FLOWS))?;
            f(&key, &flow);
        }
        Ok(())
    }

    /// Every forward entry of the flow table (live or not).
    pub fn flows(&self) -> Result<Vec<(FlowKey, Flow)>> {
        self.flows
            .iter()
            .map(|r| r.map_err(map_err(map_name::FLOWS)))
            .collect()
    }

    /// Every reverse entry of the flow table (backend-side 5-tuple → the
    /// client's), live or not.
    pub fn reverse_flows(&self) -> Result<Vec<(FlowKey, ReverseFlow)>> {
        self.reverse
            .iter()
            .map(|r| r.map_err(map_err(map_name::REVERSE)))
            .collect()
    }

    /// The forward entry of a client 5-tuple.
    pub fn flow(&self, key: &FlowKey) -> Result<Option<Flow>> {
        match self.flows.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(map_name::FLOWS)(e)),
        }
    }

    /// The reverse entry of a backend-side 5-tuple.
    pub fn reverse(&self, key: &FlowKey) -> Result<Option<ReverseFlow>> {
        match self.reverse.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(map_name::REVERSE)(e)),
        }
    }
}
