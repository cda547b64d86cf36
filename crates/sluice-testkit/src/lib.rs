//! Test harness shared by Sluice's tests and benchmarks: starts real peers
//! (etcd) and test upstreams ([`upstream`]) on free loopback ports with temporary data directories, and
//! stops them when the handle is dropped — also when a test fails.
//!
//! Everything here panics with a message saying what to do, because it only runs
//! inside tests and benchmarks.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod etcd;
pub mod upstream;

pub use etcd::{EtcdCluster, EtcdMember};
pub use upstream::{controlled_upstream, counting_upstream, echo_upstream, UpstreamControl};

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("cannot bind a loopback port")
}

/// Polls `ready` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a plain HTTP/1.0 GET to 127.0.0.1:`port` and returns the whole response.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    http_request(port, "GET", path, "")
}

/// Sends a plain HTTP/1.0 request with a JSON body and returns the whole response.
pub fn http_request(port: u16, method: &str, path: &str, body: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// Finds a program on `PATH` or in /usr/bin and /usr/sbin.
pub fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
