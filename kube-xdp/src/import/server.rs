//! `server` and `default-server` lines: the address and the options
//! kube-xdp has an equivalent for; the others are named so the summary
//! can say they were left out.

use std::time::Duration;

use super::addr::{self, AddrError, Target};
use super::lex::Line;

/// One server's options (after `default-server`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerOptions {
    pub check: bool,
    pub check_ssl: bool,
    /// `verify none|required`.
    pub verify: Option<String>,
    pub ca_file: Option<String>,
    pub check_sni: Option<String>,
    pub check_port: Option<u16>,
    pub inter: Option<Duration>,
    pub fall: Option<u32>,
    pub rise: Option<u32>,
    pub weight: Option<u32>,
    pub disabled: bool,
    pub backup: bool,
    /// `on-marked-down shutdown-sessions`.
    pub shutdown_sessions: bool,
    /// `send-proxy`, `send-proxy-v2`: the backend expects the PROXY
    /// protocol, which a NAT load balancer does not speak.
    pub send_proxy: bool,
    /// Options with no kube-xdp equivalent, as written.
    pub ignored: Vec<String>,
}

/// Server options that take one argument (so that the argument is not
/// read as an option).
const WITH_ARGUMENT: &[&str] = &[
    "addr",
    "agent-addr",
    "agent-inter",
    "agent-port",
    "agent-send",
    "alpn",
    "ca-file",
    "check-alpn",
    "check-proto",
    "check-sni",
    "ciphers",
    "ciphersuites",
    "cookie",
    "crl-file",
    "crt",
    "curves",
    "downinter",
    "error-limit",
    "fall",
    "fastinter",
    "hash-key",
    "id",
    "init-addr",
    "inter",
    "log-proto",
    "max-reuse",
    "maxconn",
    "maxqueue",
    "minconn",
    "namespace",
    "observe",
    "on-error",
    "on-marked-down",
    "on-marked-up",
    "pool-low-conn",
    "pool-max-conn",
    "pool-purge-delay",
    "port",
    "proto",
    "redir",
    "resolve-net",
    "resolve-opts",
    "resolve-prefer",
    "resolvers",
    "rise",
    "shard",
    "sigalgs",
    "slowstart",
    "sni",
    "source",
    "ssl-max-ver",
    "ssl-min-ver",
    "tcp-ut",
    "track",
    "verify",
    "verifyhost",
    "weight",
    "ws",
];

impl ServerOptions {
    /// Applies the option words `words` (a `default-server` line's, then
    /// a `server` line's after its address). Values that do not parse are
    /// kept in `ignored` with their argument.
    pub fn apply(&mut self, words: &[String]) {
        let mut i = 0;
        while i < words.len() {
            let option = words[i].as_str();
            let takes_arg = WITH_ARGUMENT.contains(&option);
            let arg = if takes_arg { words.get(i + 1) } else { None };
            i += if takes_arg { 2 } else { 1 };
            let arg_str = arg.map_or("", String::as_str);
            let ok = match option {
                "check" => set(&mut self.check, true),
                "no-check" => set(&mut self.check, false),
                "check-ssl" => set(&mut self.check_ssl, true),
                "no-check-ssl" => set(&mut self.check_ssl, false),
                "disabled" => set(&mut self.disabled, true),
                "enabled" => set(&mut self.disabled, false),
                "backup" => set(&mut self.backup, true),
                "no-backup" => set(&mut self.backup, false),
                "send-proxy" | "send-proxy-v2" | "send-proxy-v2-ssl" | "send-proxy-v2-ssl-cn" => {
                    set(&mut self.send_proxy, true)
                }
                "no-send-proxy" | "no-send-proxy-v2" => set(&mut self.send_proxy, false),
                "verify" => {
                    self.verify = arg.cloned();
                    arg.is_some()
                }
                "ca-file" => {
                    self.ca_file = arg.cloned();
                    arg.is_some()
                }
                "check-sni" => {
                    self.check_sni = arg.cloned();
                    arg.is_some()
                }
                "port" => parsed(
                    &mut self.check_port,
                    arg_str.parse().ok().filter(|p| *p > 0),
                ),
                "inter" => parsed(&mut self.inter, addr::duration(arg_str)),
                "fall" => parsed(&mut self.fall, arg_str.parse().ok()),
                "rise" => parsed(&mut self.rise, arg_str.parse().ok()),
                "weight" => parsed(&mut self.weight, arg_str.parse().ok().filter(|w| *w <= 256)),
                "on-marked-down" => {
                    set(&mut self.shutdown_sessions, arg_str == "shutdown-sessions")
                }
                _ => false,
            };
            if !ok {
                let mut text = option.to_owned();
                if let Some(arg) = arg {
                    text = format!("{text} {arg}");
                }
                self.ignored.push(text);
            }
        }
    }
}

fn set(field: &mut bool, value: bool) -> bool {
    *field = value;
    true
}

fn parsed<T>(field: &mut Option<T>, value: Option<T>) -> bool {
    match value {
        Some(v) => {
            *field = Some(v);
            true
        }
        None => false,
    }
}

/// One `server` line.
#[derive(Debug, Clone)]
pub struct Server {
    pub line: Line,
    pub name: String,
    pub target: Result<Target, AddrError>,
    pub options: ServerOptions,
}

/// Reads `line` (`server NAME ADDR[:PORT] OPTIONS…`) on top of the
/// `default-server` lines before it.
pub fn server(line: &Line, defaults: &[Line]) -> Server {
    let mut options = ServerOptions::default();
    for d in defaults {
        options.apply(&d.words[1..]);
    }
    // Only the server's own options count as ignored: the defaults' are
    // reported once.
    options.ignored.clear();
    options.apply(line.words.get(3..).unwrap_or_default());
    Server {
        line: line.clone(),
        name: line.word(1).to_owned(),
        target: addr::server_address(line.word(2)),
        options,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Line {
        Line {
            number: 1,
            words: text.split_whitespace().map(str::to_owned).collect(),
        }
    }

    #[test]
    fn server_options_override_default_server() {
        let s = server(
            &line("server cp1 198.18.0.11:6443 check fall 5 weight 10 maxconn 100 backup"),
            &[line(
                "default-server inter 3s fall 2 rise 4 check-ssl verify none",
            )],
        );
        let o = s.options;
        assert!(o.check && o.check_ssl && o.backup);
        assert_eq!(o.verify.as_deref(), Some("none"));
        assert_eq!(
            (o.inter, o.fall, o.rise, o.weight),
            (Some(Duration::from_secs(3)), Some(5), Some(4), Some(10))
        );
        assert_eq!(o.ignored, vec!["maxconn 100"]);
    }
}
