//! The keyword keys: enums spelled as one lowercase word in the file.

use std::fmt;
use std::str::FromStr;

use kube_xdp_common::maps::{
    PROTO_TCP, PROTO_UDP, SYN_COOKIES_ALWAYS, SYN_COOKIES_AUTO, SYN_COOKIES_NEVER,
};

/// A word that is not one of a keyword key's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not one of {}", quote_list(.expected))]
pub struct UnknownKeyword {
    pub value: String,
    pub expected: &'static [&'static str],
}

pub(crate) fn quote_list(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("{w:?}")).collect();
    quoted.join(", ")
}

/// An enum spelled as a lowercase word in the file.
macro_rules! keyword_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every spelling, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The word as written in the file.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownKeyword;

            fn from_str(s: &str) -> Result<Self, UnknownKeyword> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err(UnknownKeyword {
                        value: s.to_owned(),
                        expected: Self::NAMES,
                    }),
                }
            }
        }
    };
}

keyword_enum! {
    /// How the program is attached.
    #[derive(Default)]
    pub enum XdpMode {
        /// Native, falling back to generic where the driver has no XDP
        /// support.
        #[default]
        Auto = "auto",
        Native = "native",
        Generic = "generic",
    }
}

keyword_enum! {
    /// A service's transport protocol.
    #[derive(Default, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Protocol {
        #[default]
        Tcp = "tcp",
        Udp = "udp",
    }
}

impl Protocol {
    /// The IP protocol number (`IPPROTO_TCP`, `IPPROTO_UDP`).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
        }
    }

    /// The protocol of an IP protocol number, if it is one of ours.
    pub fn from_number(number: u8) -> Option<Self> {
        match number {
            PROTO_TCP => Some(Protocol::Tcp),
            PROTO_UDP => Some(Protocol::Udp),
            _ => None,
        }
    }
}

keyword_enum! {
    /// How packets reach backends. (`dsr` is a later mode.)
    #[derive(Default)]
    pub enum ForwardingMode {
        /// DNAT to the backend, SNAT to the load balancer's address.
        #[default]
        Nat = "nat",
    }
}

keyword_enum! {
    /// What happens to established flows of a backend that goes DOWN.
    #[derive(Default)]
    pub enum OnBackendDown {
        /// They continue (HAProxy's and Cilium's default).
        #[default]
        Keep = "keep",
        /// Their next packet is answered with a RST to the client.
        Reset = "reset",
    }
}

keyword_enum! {
    /// Health check kinds.
    #[derive(Default)]
    pub enum CheckKind {
        /// TCP connect.
        #[default]
        Tcp = "tcp",
        /// `GET path`, expect a status.
        Http = "http",
        /// The same over TLS.
        Https = "https",
    }
}

keyword_enum! {
    /// A backend's state before its first checks on a fresh start.
    #[derive(Default)]
    pub enum InitState {
        /// DOWN until `rise` checks pass.
        #[default]
        Down = "down",
        /// UP until `fall` checks fail.
        Up = "up",
    }
}

keyword_enum! {
    /// `[syn_flood] syn_cookies`: when the datapath answers a SYN with a
    /// SYN cookie (no state kept) instead of opening a flow.
    #[derive(Default)]
    pub enum SynCookies {
        /// Over `half_open_limit` half-open flows: a cookie.
        #[default]
        Auto = "auto",
        /// Every SYN to a service.
        Always = "always",
        /// Never: over the limit a SYN is dropped.
        Never = "never",
    }
}

impl SynCookies {
    /// The datapath's value (`Settings::syn_cookies`).
    pub fn number(self) -> u32 {
        match self {
            SynCookies::Auto => SYN_COOKIES_AUTO,
            SynCookies::Always => SYN_COOKIES_ALWAYS,
            SynCookies::Never => SYN_COOKIES_NEVER,
        }
    }
}
