//! The embedded eBPF object and how it is loaded.

use aya::maps::{MapInfo, MapType};
use aya::{Ebpf, EbpfLoader};
use aya_obj::generated::bpf_map_type;
use kube_xdp_common::map_name;
use std::path::{Path, PathBuf};

/// The object built by `cargo xtask build-ebpf`, embedded at build time
/// (empty when it was missing then).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kube-xdp.bpf.o"));

#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error(
        "this kube-xdp binary was built without its eBPF object: run `cargo xtask build-ebpf`, then rebuild kube-xdp (`cargo build -p kube-xdp`)"
    )]
    MissingObject,
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("parsing the eBPF object: {0}")]
    Parse(#[from] aya_obj::ParseError),
    #[error(
        "{}: {problem}; refusing to adopt it. It was not pinned by this version of kube-xdp (or not by kube-xdp at all): \
         remove it (`kube-xdp detach` removes kube-xdp's pins, established flows are lost) and start again",
        path.display()
    )]
    PinnedMap { path: PathBuf, problem: String },
}

/// What a map must be: its type, key and value sizes and capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
struct MapShape {
    map_type: Option<MapType>,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

impl MapShape {
    /// The differences of `self` (pinned) from `want`, in words.
    fn differences(&self, want: &MapShape) -> Vec<String> {
        let mut out = Vec::new();
        if self.map_type != want.map_type {
            let name =
                |t: Option<MapType>| t.map_or_else(|| "unknown".to_owned(), |t| format!("{t:?}"));
            out.push(format!(
                "its type is {} where the program's is {}",
                name(self.map_type),
                name(want.map_type)
            ));
        }
        for (what, got, wanted) in [
            ("key size", self.key_size, want.key_size),
            ("value size", self.value_size, want.value_size),
            ("capacity (max_entries)", self.max_entries, want.max_entries),
        ] {
            if got != wanted {
                out.push(format!(
                    "its {what} is {got} where the program's is {wanted}"
                ));
            }
        }
        out
    }
}

/// The shape the program gives the map `name`, with the flow tables'
/// capacity set to `flow_table_size` as [`load_pinned`] does.
fn wanted_shape(object: &aya_obj::Object, name: &str, flow_table_size: u32) -> Option<MapShape> {
    let map = object.maps.get(name)?;
    let max_entries = if name == map_name::FLOWS || name == map_name::REVERSE {
        flow_table_size
    } else {
        map.max_entries()
    };
    Some(MapShape {
        map_type: bpf_map_type::try_from(map.map_type())
            .ok()
            .and_then(|t| MapType::try_from(t).ok()),
        key_size: map.key_size(),
        value_size: map.value_size(),
        max_entries,
    })
}

/// Checks every map already pinned in `pin_dir` against what the program
/// expects of it — type, key size, value size and capacity — before
/// [`load_pinned`] adopts it (aya takes whatever object it finds at a
/// map's pin path). A map of another shape would be misread by both the
/// program and the daemon. A symbolic link or anything but a pinned map at
/// a map's name is refused too. With `flow_table_size` `None`, the flow
/// tables' capacity is not compared (the metadata check that follows says
/// what to do when only `flow_table_size` changed).
///
/// # Errors
///
/// [`EbpfError::PinnedMap`] naming the first pin that does not fit.
pub fn check_pinned_maps(pin_dir: &Path, flow_table_size: Option<u32>) -> Result<(), EbpfError> {
    let object = aya_obj::Object::parse(object()?)?;
    for name in map_name::PINNED {
        let path = pin_dir.join(name);
        let refuse = |problem: String| EbpfError::PinnedMap {
            path: path.clone(),
            problem,
        };
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(refuse(format!("cannot look at it: {e}"))),
        };
        if !meta.file_type().is_file() {
            let what = if meta.file_type().is_symlink() {
                "a symbolic link"
            } else if meta.is_dir() {
                "a directory"
            } else {
                "not a pinned object"
            };
            return Err(refuse(format!("it is {what}, not a pinned map {name}")));
        }
        let info = MapInfo::from_pin(&path)
            .map_err(|e| refuse(format!("it is not a pinned map ({e})")))?;
        let Some(mut want) = wanted_shape(&object, name, flow_table_size.unwrap_or(0)) else {
            continue;
        };
        let got = MapShape {
            map_type: info.map_type().ok(),
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
        };
        if flow_table_size.is_none() && (*name == map_name::FLOWS || *name == map_name::REVERSE) {
            want.max_entries = got.max_entries;
        }
        // aya creates a devmap with a 4-byte value (the ifindex alone) on
        // kernels without devmap program ids (before 5.8): that is this
        // program's map too.
        if matches!(want.map_type, Some(MapType::DevMap | MapType::DevMapHash))
            && got.value_size == 4
        {
            want.value_size = 4;
        }
        let differences = got.differences(&want);
        if !differences.is_empty() {
            return Err(refuse(format!(
                "the map pinned as {name} does not fit the program: {}",
                differences.join(", ")
            )));
        }
    }
    Ok(())
}

/// The eBPF object's bytes.
///
/// # Errors
///
/// [`EbpfError::MissingObject`] when the binary was built before the object.
pub fn object() -> Result<&'static [u8], EbpfError> {
    if OBJECT.is_empty() {
        Err(EbpfError::MissingObject)
    } else {
        Ok(OBJECT)
    }
}

fn loader(flow_table_size: u32) -> EbpfLoader<'static> {
    let mut loader = EbpfLoader::new();
    // The verifier's whole log in load errors, for debugging a refused
    // program.
    if std::env::var_os("KXDP_VERIFIER_LOG").is_some() {
        loader.verifier_log_level(aya::VerifierLogLevel::VERBOSE | aya::VerifierLogLevel::STATS);
    }
    loader
        .map_max_entries(map_name::FLOWS, flow_table_size)
        .map_max_entries(map_name::REVERSE, flow_table_size);
    loader
}

/// Loads the object into the kernel, re-using the maps pinned in `pin_dir`
/// (a directory on a bpffs) and pinning there the ones that are not yet.
///
/// # Errors
///
/// When the object is missing or the kernel refuses a map or program.
pub fn load_pinned(pin_dir: &Path, flow_table_size: u32) -> Result<Ebpf, EbpfError> {
    let object = object()?;
    let mut loader = loader(flow_table_size);
    for name in map_name::PINNED {
        loader.map_pin_path(name, pin_dir.join(name));
    }
    Ok(loader.load(object)?)
}

/// Loads the object with private maps that nothing else sees (datapath
/// tests, benchmarks).
///
/// # Errors
///
/// When the object is missing or the kernel refuses a map or program.
pub fn load_private(flow_table_size: u32) -> Result<Ebpf, EbpfError> {
    Ok(loader(flow_table_size).load(object()?)?)
}

/// Loads the load balancer's program and the SYN-cookie program it hands
/// packets to by tail call, and puts the latter in `KXDP_PROGRAMS` (slot
/// 0). The load balancer's program then only needs attaching.
///
/// # Errors
///
/// When the verifier refuses a program, or the program array refuses it.
pub fn load_programs(bpf: &mut Ebpf) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use aya::{maps::ProgramArray, programs::Xdp};
    use kube_xdp_common::program_name;
    for name in [program_name::LB, program_name::COOKIE] {
        let program: &mut Xdp = bpf
            .program_mut(name)
            .with_context(|| format!("the eBPF object has no program {name}"))?
            .try_into()?;
        program
            .load()
            .with_context(|| format!("loading the XDP program {name}"))?;
    }
    let cookie: &Xdp = bpf
        .program(program_name::COOKIE)
        .context("the eBPF object has no SYN-cookie program")?
        .try_into()?;
    let fd = cookie.fd()?.try_clone()?;
    let map = bpf
        .map_mut(map_name::PROGRAMS)
        .context("the eBPF object has no program array")?;
    let mut programs = ProgramArray::try_from(map)?;
    programs
        .set(0, &fd, 0)
        .context("putting the SYN-cookie program in its slot")?;
    Ok(())
}
