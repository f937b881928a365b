//! The stats page's keys of `[daemon]`: `stats_listen`, `stats_uri`,
//! `stats_refresh`, `stats_auth`, `stats_hide_version` (HAProxy's `stats
//! enable`, `stats uri`, `stats refresh`, `stats auth`, `stats
//! hide-version`). The types, and the pure parsers validation uses.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// Default `stats_uri`.
pub const DEFAULT_STATS_URI: &str = "/stats";
/// Default `stats_refresh`.
pub const DEFAULT_STATS_REFRESH: Duration = Duration::from_secs(10);

/// The stats page settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsConfig {
    /// Where the page is served; `None` (key absent) = no page.
    pub listen: Option<SocketAddr>,
    /// Path of the HTML page; the JSON is at `<uri>.json`.
    pub uri: String,
    /// How often the page reloads itself.
    pub refresh: Duration,
    /// HTTP basic auth; `None` = the page is open to whoever reaches
    /// `listen`.
    pub auth: Option<StatsAuth>,
    /// Leave the daemon's version off the page and its JSON.
    pub hide_version: bool,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            listen: None,
            uri: DEFAULT_STATS_URI.to_owned(),
            refresh: DEFAULT_STATS_REFRESH,
            auth: None,
            hide_version: false,
        }
    }
}

impl StatsConfig {
    /// The path of the JSON document.
    pub fn json_uri(&self) -> String {
        format!("{}.json", self.uri)
    }
}

/// `stats_auth = "user:HASH"`: one user and the crypt(3) hash of its
/// password, SHA-512 (`$6$`, from `mkpasswd -m sha-512` or `openssl passwd
/// -6`) or SHA-256 (`$5$`). The file never holds the password itself.
#[derive(Clone, PartialEq, Eq)]
pub struct StatsAuth {
    pub user: String,
    pub hash: String,
}

/// Not the hash: a log line or a `{:?}` of the config shows the user only.
impl fmt::Debug for StatsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatsAuth")
            .field("user", &self.user)
            .field("hash", &"<crypt hash>")
            .finish()
    }
}

const HOW_TO_HASH: &str = "make the hash with `mkpasswd -m sha-512` (Debian package whois) \
     or `openssl passwd -6` and write stats_auth = \"USER:$6$...\"";

impl StatsAuth {
    /// Reads `user:HASH`; refuses anything whose part after the colon is
    /// not a well-formed `$6$` or `$5$` crypt hash, and so a clear-text
    /// password.
    ///
    /// # Errors
    ///
    /// What is wrong, and how to make the hash (never echoing the value:
    /// it may be a password).
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some((user, hash)) = text.split_once(':') else {
            return Err(format!(
                "must be \"USER:HASH\" (no ':' found): {HOW_TO_HASH}"
            ));
        };
        if user.is_empty() || user.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "the user name before ':' must be non-empty, without spaces: {HOW_TO_HASH}"
            ));
        }
        let well_formed = match hash.get(..3) {
            Some("$6$") => crypt_shape(&hash[3..], 86),
            Some("$5$") => crypt_shape(&hash[3..], 43),
            _ => {
                return Err(format!(
                    "the part after ':' is not a password hash (it looks like a clear-text password, \
                     which the file must not hold): {HOW_TO_HASH}"
                ));
            }
        };
        if !well_formed {
            return Err(format!(
                "the part after ':' starts like a SHA-crypt hash but is not a valid one \
                 (copy it whole, e.g. in single quotes): {HOW_TO_HASH}"
            ));
        }
        Ok(StatsAuth {
            user: user.to_owned(),
            hash: hash.to_owned(),
        })
    }

    /// Whether `user` and `password` are this user and a password the hash
    /// was made from.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        if user != self.user {
            return false;
        }
        if self.hash.starts_with("$6$") {
            sha_crypt::sha512_check(password, &self.hash).is_ok()
        } else {
            sha_crypt::sha256_check(password, &self.hash).is_ok()
        }
    }
}

/// Whether `rest` (what follows `$6$` or `$5$`) is `[rounds=N$]SALT$HASH`
/// as crypt(3) writes it: a salt of at most 16 characters and a hash of
/// `hash_len` characters of crypt's base-64 alphabet.
fn crypt_shape(rest: &str, hash_len: usize) -> bool {
    let b64 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    };
    let mut parts: Vec<&str> = rest.split('$').collect();
    if parts.len() == 3 {
        let rounds = parts.remove(0);
        let ok = rounds
            .strip_prefix("rounds=")
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1000..=999_999_999).contains(&n));
        if !ok {
            return false;
        }
    }
    match parts[..] {
        [salt, hash] => {
            salt.len() <= 16
                && !salt.contains(|c: char| c.is_whitespace() || c == ':')
                && hash.len() == hash_len
                && b64(hash)
        }
        _ => false,
    }
}

/// `stats_listen`: `"ADDRESS:PORT"`, or a port alone (`"8404"` or
/// `":8404"`), which means loopback (`127.0.0.1:PORT`) — the page shows
/// the backends and their addresses, so reaching it from elsewhere is a
/// choice to write down.
///
/// # Errors
///
/// What to write instead.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let port_only = text.strip_prefix(':').unwrap_or(text);
    let addr = if !port_only.is_empty() && port_only.bytes().all(|b| b.is_ascii_digit()) {
        port_only
            .parse::<u16>()
            .ok()
            .map(|p| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, p)))
    } else {
        text.parse::<SocketAddr>().ok()
    };
    match addr {
        Some(a) if a.port() == 0 => Err(format!("{text:?}: the port must not be 0")),
        Some(a) => Ok(a),
        None => Err(format!(
            "{text:?} is not an address:port or a port: write e.g. \"127.0.0.1:8404\", \
             or \"8404\" for loopback, or remove the key to turn the stats page off"
        )),
    }
}

/// `stats_uri`: an absolute path the page is served at.
///
/// # Errors
///
/// What is wrong with it.
pub fn check_uri(text: &str) -> Result<(), String> {
    let problem = if !text.starts_with('/') {
        "must start with '/'"
    } else if text.len() < 2 || text.ends_with('/') {
        "must name a page: not \"/\", and no trailing '/'"
    } else if text.ends_with(".json") {
        "must not end in .json (the JSON is served at <stats_uri>.json)"
    } else if text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '%' | '"'))
    {
        "must be a plain path: no spaces, '?', '#', '%' or quotes"
    } else {
        return Ok(());
    };
    Err(format!("{text:?} {problem}, e.g. \"/stats\""))
}
