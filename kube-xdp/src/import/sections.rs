//! The sections of haproxy.cfg and each proxy's settings as HAProxy
//! sees them: a `frontend`, `backend` or `listen` starts from the last
//! `defaults` section before it (or the one its `from NAME` names), and
//! its own lines override that.

use super::lex::Line;

/// What a section is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Global,
    Defaults,
    Frontend,
    Backend,
    Listen,
    /// `userlist`, `resolvers`, `peers`, `mailers`, `program`, … : nothing
    /// kube-xdp has.
    Other,
}

impl Kind {
    fn of(keyword: &str) -> Option<Kind> {
        Some(match keyword {
            "global" => Kind::Global,
            "defaults" => Kind::Defaults,
            "frontend" => Kind::Frontend,
            "backend" => Kind::Backend,
            "listen" => Kind::Listen,
            "userlist" | "peers" | "resolvers" | "mailers" | "program" | "http-errors" | "ring"
            | "cache" | "log-forward" | "crt-store" | "traces" | "acme" => Kind::Other,
            _ => return None,
        })
    }
}

/// One section: its header line and the lines under it.
#[derive(Debug, Clone)]
pub struct Section {
    pub kind: Kind,
    pub header: Line,
    pub name: String,
    pub lines: Vec<Line>,
}

/// Groups `lines` into sections; lines before the first header are
/// returned apart.
pub fn sections(lines: Vec<Line>) -> (Vec<Line>, Vec<Section>) {
    let mut before = Vec::new();
    let mut out: Vec<Section> = Vec::new();
    for line in lines {
        if let Some(kind) = Kind::of(line.keyword()) {
            out.push(Section {
                kind,
                name: line.word(1).to_owned(),
                header: line,
                lines: Vec::new(),
            });
        } else if let Some(section) = out.last_mut() {
            section.lines.push(line);
        } else {
            before.push(line);
        }
    }
    (before, out)
}

/// A proxy's settings that the translation reads, with the line each
/// came from. Later lines override earlier ones, as in HAProxy.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub mode: Option<Line>,
    pub balance: Option<Line>,
    /// The check type: the last of `option httpchk`, `option tcp-check`,
    /// `option ssl-hello-chk`, `option mysql-check`, … (HAProxy keeps
    /// one).
    pub check_type: Option<Line>,
    /// Check types a later one replaced.
    pub overridden_checks: Vec<Line>,
    pub http_check_expect: Option<Line>,
    pub http_check_send: Option<Line>,
    /// `http-check connect [ssl] …` (HAProxy 2.2+).
    pub http_check_connect: Option<Line>,
    pub tcp_check_rules: Vec<Line>,
    pub default_server: Vec<Line>,
    pub default_backend: Option<Line>,
    pub timeouts: Vec<Line>,
    pub stats: Vec<Line>,
    pub binds: Vec<Line>,
    pub servers: Vec<Line>,
    pub use_backend: Vec<Line>,
    /// Lines of the proxy itself that nothing translates.
    pub left_out: Vec<Line>,
}

impl Settings {
    /// Reads `line` into the settings. `own` is false for lines inherited
    /// from `defaults`, whose untranslated lines are reported once, with
    /// the defaults section.
    pub fn apply(&mut self, line: &Line, own: bool) {
        let l = || Some(line.clone());
        match (line.keyword(), line.word(1)) {
            ("mode", _) => self.mode = l(),
            ("balance", _) => self.balance = l(),
            (
                "option",
                "httpchk" | "tcp-check" | "ssl-hello-chk" | "mysql-check" | "pgsql-check"
                | "redis-check" | "smtpchk" | "ldap-check" | "spop-check" | "external-check",
            ) => {
                if let Some(previous) = self.check_type.replace(line.clone()) {
                    self.overridden_checks.push(previous);
                }
            }
            ("http-check", "expect") => self.http_check_expect = l(),
            ("http-check", "send") => self.http_check_send = l(),
            ("http-check", "connect") => self.http_check_connect = l(),
            ("tcp-check", _) => self.tcp_check_rules.push(line.clone()),
            ("default-server", _) => self.default_server.push(line.clone()),
            ("default_backend", _) => self.default_backend = l(),
            ("timeout", _) => {
                self.timeouts.retain(|t| t.word(1) != line.word(1));
                self.timeouts.push(line.clone());
            }
            ("stats", "socket" | "timeout" | "maxconn") if own => self.left_out.push(line.clone()),
            ("stats", "socket" | "timeout" | "maxconn") => {}
            ("stats", _) => self.stats.push(line.clone()),
            ("bind", _) if own => self.binds.push(line.clone()),
            ("server", _) if own => self.servers.push(line.clone()),
            ("use_backend", _) if own => self.use_backend.push(line.clone()),
            _ if own => self.left_out.push(line.clone()),
            _ => {}
        }
    }

    /// `mode http` (HAProxy's default mode is tcp).
    pub fn is_http(&self) -> bool {
        self.mode.as_ref().is_some_and(|m| m.word(1) == "http")
    }

    /// A `timeout NAME` value, with its line.
    pub fn timeout(&self, name: &str) -> Option<&Line> {
        self.timeouts.iter().find(|t| t.word(1) == name)
    }

    /// Whether these settings make a stats page (`stats enable` or
    /// `stats uri`).
    pub fn is_stats(&self) -> bool {
        self.stats
            .iter()
            .any(|s| matches!(s.word(1), "enable" | "uri"))
    }
}

/// A `frontend`, `backend` or `listen` with its effective settings.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub kind: Kind,
    pub name: String,
    pub header: Line,
    pub settings: Settings,
}

impl Proxy {
    /// `frontend apiserver (line 12)`.
    pub fn label(&self) -> String {
        format!(
            "{} {} (line {})",
            self.header.keyword(),
            self.name,
            self.header.number
        )
    }
}

/// The proxies of `sections`, each with its defaults applied.
pub fn proxies(sections: &[Section]) -> Vec<Proxy> {
    let mut out = Vec::new();
    let mut last_defaults: Option<&Section> = None;
    for section in sections {
        match section.kind {
            Kind::Defaults => last_defaults = Some(section),
            Kind::Frontend | Kind::Backend | Kind::Listen => {
                let named = (section.header.word(2) == "from")
                    .then(|| section.header.word(3))
                    .and_then(|name| {
                        sections
                            .iter()
                            .find(|s| s.kind == Kind::Defaults && s.name == name)
                    });
                let mut settings = Settings::default();
                if let Some(defaults) = named.or(last_defaults) {
                    for line in &defaults.lines {
                        settings.apply(line, false);
                    }
                }
                for line in &section.lines {
                    settings.apply(line, true);
                }
                out.push(Proxy {
                    kind: section.kind,
                    name: section.name.clone(),
                    header: section.header.clone(),
                    settings,
                });
            }
            Kind::Global | Kind::Other => {}
        }
    }
    out
}
