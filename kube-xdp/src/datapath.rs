//! The one API that programs and reads the datapath's maps.

use aya::maps::{Map, MapData, PerCpuArray};
use kube_xdp_common::{map_name, stats::Counter};
use std::{
    borrow::Borrow,
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("nothing is pinned at {path}: start `kube-xdp run` (or pass the --pin-path it uses)")]
    NotPinned { path: PathBuf },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
}

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

/// Reads the global counters from a per-CPU array map.
///
/// # Errors
///
/// When the map cannot be read.
pub fn read_global_stats<T: Borrow<MapData>>(
    map: &PerCpuArray<T, u64>,
) -> Result<GlobalStats, DatapathError> {
    let err = |source| DatapathError::Map {
        name: map_name::STATS,
        source,
    };
    let mut counters = Vec::with_capacity(Counter::ALL.len());
    for counter in Counter::ALL {
        let values = map.get(&(counter as u32), 0).map_err(err)?;
        counters.push((counter, values.iter().sum()));
    }
    Ok(GlobalStats { counters })
}

/// Opens the global counter map pinned under `pin_path`.
///
/// # Errors
///
/// [`DatapathError::NotPinned`] when no daemon has pinned its maps there.
pub fn open_pinned_stats(pin_path: &Path) -> Result<PerCpuArray<MapData, u64>, DatapathError> {
    let path = pin_path.join(map_name::STATS);
    if !path.exists() {
        return Err(DatapathError::NotPinned {
            path: pin_path.to_owned(),
        });
    }
    let err = |source| DatapathError::Map {
        name: map_name::STATS,
        source,
    };
    let data = MapData::from_pin(&path).map_err(err)?;
    let map = Map::from_map_data(data).map_err(err)?;
    PerCpuArray::try_from(map).map_err(err)
}
