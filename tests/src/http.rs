//! One HTTP/1.1 request from inside a namespace, for the daemon's own
//! endpoints (metrics, the stats page) on the LB's loopback.

use crate::netns::Netns;
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

/// `METHOD path` to `addr` from `ns`, with `extra` header lines (each
/// `Name: value`); returns (status line and headers, body). Panics when
/// the request fails: the endpoint is part of what is tested.
pub fn request(
    ns: &Netns,
    addr: &str,
    method: &str,
    path: &str,
    extra: &[String],
) -> (String, String) {
    let (addr_s, method, path) = (addr.to_owned(), method.to_owned(), path.to_owned());
    let headers: String = extra.iter().map(|h| format!("{h}\r\n")).collect();
    ns.run(move || {
        let to: SocketAddr = addr_s.parse()?;
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {addr_s}\r\n{headers}Connection: close\r\n\r\n"
        )?;
        let mut raw = String::new();
        s.read_to_string(&mut raw)?;
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow::anyhow!("no end of headers in {raw:?}"))?;
        Ok((head.to_owned(), body.to_owned()))
    })
    .unwrap()
}
