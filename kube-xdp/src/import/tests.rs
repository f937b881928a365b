//! The corpus (`tests/data/haproxy/NAME.cfg`, each with its expected
//! `NAME.toml`): every file imports to exactly its expected TOML, and that
//! TOML passes `check-config`'s checks (`Plan::build`) on a host that has
//! the file's interface and addresses — or, where the file binds every
//! address and gives no `--vip`, is refused for its placeholder VIP.
//!
//! A file's first `# import-haproxy: ARGS` comment holds the options it is
//! imported with (`--vip`, `--interface`); `NAME.env` (KEY=VALUE lines)
//! the environment its `${VARIABLES}` come from.
//!
//! After a deliberate change of the output, rewrite the expectations with
//! `KUBE_XDP_BLESS=1 cargo test -p kube-xdp --lib import` and review the
//! diff.

use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::{ImportError, Options, import};
use crate::config::{Config, IMPORT_VIP_PLACEHOLDER, PortRange};
use crate::host::{Host, Interface};
use crate::plan::Plan;

const SALT: &str = "corpuscorpuscorp";
/// The load balancer's own address in every corpus host.
const LB: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/haproxy")
}

/// The host a corpus file runs on: its interface with the LB's address
/// and every VIP, Linux's default local port range, every name resolving.
struct CorpusHost {
    interface: String,
    addresses: Vec<Ipv4Addr>,
}

impl Host for CorpusHost {
    fn interfaces(&self) -> io::Result<Vec<Interface>> {
        Ok(vec![
            Interface {
                name: "lo".into(),
                index: 1,
                ipv4: vec![Ipv4Addr::LOCALHOST],
                host_routes: Vec::new(),
                mac: None,
                mtu: Some(65536),
            },
            Interface {
                name: self.interface.clone(),
                index: 2,
                ipv4: self.addresses.clone(),
                host_routes: Vec::new(),
                mac: Some([2, 0, 0, 0, 0, 2]),
                mtu: Some(1500),
            },
        ])
    }

    fn local_port_range(&self) -> Option<PortRange> {
        PortRange::new(32768, 60999).ok()
    }

    fn resolve(&self, _name: &str) -> io::Result<Vec<Ipv4Addr>> {
        Ok(vec![Ipv4Addr::new(198, 18, 1, 1)])
    }

    fn read_file(&self, _path: &Path) -> io::Result<Vec<u8>> {
        Ok(crate::plan::tests::test_ca_pem().into_bytes())
    }

    fn read_small_file(
        &self,
        _path: &Path,
        _max_len: usize,
    ) -> Result<crate::host::SmallFile, crate::host::ReadFileError> {
        Err(crate::host::ReadFileError::Open(
            io::ErrorKind::NotFound.into(),
        ))
    }
}

/// The options in the file's `# import-haproxy:` comment.
fn options_of(text: &str) -> Options {
    let mut options = Options::default();
    let Some(args) = text
        .lines()
        .find_map(|l| l.strip_prefix("# import-haproxy:"))
    else {
        return options;
    };
    let words: Vec<&str> = args.split_whitespace().collect();
    for pair in words.chunks(2) {
        match pair {
            ["--vip", vip] => options.vip = Some(vip.parse().expect("--vip takes an address")),
            ["--interface", name] => {
                options.interface = (*name).to_owned();
                options.interface_given = true;
            }
            other => panic!("unknown import-haproxy option {other:?}"),
        }
    }
    options
}

fn env_of(cfg: &Path) -> HashMap<String, String> {
    let Ok(text) = std::fs::read_to_string(cfg.with_extension("env")) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn import_file(cfg: &Path) -> Result<super::Import, ImportError> {
    let text = std::fs::read_to_string(cfg).expect("reading a corpus file");
    let env = env_of(cfg);
    let name = cfg.file_name().unwrap().to_string_lossy().into_owned();
    import(
        &name,
        &text,
        &options_of(&text),
        &|v| env.get(v).cloned(),
        &|| SALT.to_owned(),
    )
}

#[test]
fn corpus_imports_as_checked_in_and_passes_check_config() {
    let bless = std::env::var_os("KUBE_XDP_BLESS").is_some_and(|v| v == "1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/data/haproxy")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cfg"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the corpus holds {} files", files.len());
    let mut failures = Vec::new();
    for cfg in &files {
        let expected_path = cfg.with_extension("toml");
        let imported = import_file(cfg).unwrap_or_else(|e| panic!("{}: {e}", cfg.display()));
        if bless {
            std::fs::write(&expected_path, &imported.toml).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if imported.toml != expected {
            failures.push(format!(
                "{}: differs from {} (KUBE_XDP_BLESS=1 rewrites it); got:\n{}",
                cfg.display(),
                expected_path.display(),
                imported.toml
            ));
            continue;
        }
        // check-config's own checks, on a host with the file's addresses.
        let parsed = Config::parse(&expected_path, &imported.toml);
        if imported
            .toml
            .contains(&format!("vip = {IMPORT_VIP_PLACEHOLDER:?}"))
        {
            let err = parsed
                .expect_err("a placeholder VIP must be refused")
                .to_string();
            assert!(
                err.contains("placeholder") && err.contains("--vip"),
                "{}: {err}",
                cfg.display()
            );
            continue;
        }
        let config = parsed.unwrap_or_else(|e| panic!("{}: {e}", cfg.display()));
        let mut addresses = vec![LB];
        for s in &config.services {
            if !addresses.contains(&s.vip) {
                addresses.push(s.vip);
            }
        }
        let host = CorpusHost {
            interface: config.daemon.interfaces[0].clone(),
            addresses,
        };
        if let Err(e) = Plan::build(&config, &host) {
            failures.push(format!("{}: check-config refuses it: {e}", cfg.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn import_text(text: &str) -> Result<super::Import, ImportError> {
    import("haproxy.cfg", text, &Options::default(), &|_| None, &|| {
        SALT.to_owned()
    })
}

#[test]
fn only_http_frontends_is_nothing_usable() {
    let err = import_text(
        "frontend www\n  bind 198.18.0.10:80\n  mode http\n  default_backend web\n\
         backend web\n  mode http\n  server a 198.18.0.20:80 check\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("mode http"), "{err}");
}

#[test]
fn stats_keys_written_as_comments_exactly_while_the_schema_refuses_them() {
    let probe = "[daemon]\ninterfaces = [\"eth0\"]\nstats_listen = \"127.0.0.1:8404\"\n";
    let accepted = Config::parse(Path::new("probe.toml"), probe).is_ok();
    assert_eq!(
        accepted,
        super::STATS_KEYS_ACCEPTED,
        "[daemon] stats_listen is now {}accepted: set emit::STATS_KEYS_ACCEPTED = {accepted} \
         and re-bless the corpus (KUBE_XDP_BLESS=1)",
        if accepted { "" } else { "not " }
    );
}

#[test]
fn backup_servers_are_commented_out_and_disabled_ones_drained() {
    let out = import_text(
        "listen api\n  bind 198.18.0.10:6443\n  server a 198.18.0.11:6443 check\n\
         server b 198.18.0.12:6443 check disabled\n  server c 198.18.0.13:6443 check backup\n",
    )
    .unwrap();
    assert!(
        out.toml
            .contains("name = \"b\"\naddress = \"198.18.0.12\"\nport = 6443\nweight = 0\n")
    );
    assert!(out.toml.contains("# [[service.backend]]\n# name = \"c\"\n"));
    assert_eq!(out.backends, 2);
}
