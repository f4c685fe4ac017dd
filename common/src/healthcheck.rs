//! `<service> healthcheck`: the binary checks its own `/healthz` and exits 0
//! (200) or 1 (anything else, or no answer within 3 s).
//!
//! The container images are `FROM scratch`: no shell, no curl. Their
//! `HEALTHCHECK` (and compose's `healthcheck:`) runs the service's own
//! binary with this argument instead. It is handled before the service
//! parses its configuration or starts a runtime: the address is the
//! service's HTTP address variable (`SHOPEEZY_ACCOUNT_HTTP_ADDR`, …, as the
//! serving process sees it in the same container), or the one given after
//! the argument; an unspecified address (`0.0.0.0`, `::`) is reached on
//! loopback.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// The argument that asks for the check.
pub const ARG: &str = "healthcheck";

/// How long connecting, and then the whole answer, may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// When the process was started as `<binary> healthcheck [HOST:PORT]`,
/// checks `/healthz` at that address, or at `addr_var`'s (default
/// `default_addr`), and exits with the result; otherwise returns at once.
pub fn exit_if_requested(addr_var: &str, default_addr: &str) {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some(ARG) {
        return;
    }
    let addr = args
        .next()
        .or_else(|| std::env::var(addr_var).ok())
        .unwrap_or_else(|| default_addr.to_owned());
    let code = match check(&addr) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("healthcheck: http://{addr}/healthz: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// `GET /healthz` at `addr` (`host:port`); `Ok` on a 200 answer.
pub fn check(addr: &str) -> Result<(), String> {
    let mut target: SocketAddr = addr
        .parse()
        .map_err(|e| format!("not an address (ip:port): {e}"))?;
    if target.ip().is_unspecified() {
        target.set_ip(match target.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let mut stream = TcpStream::connect_timeout(&target, TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    // One write: the request whole.
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {target}\r\nUser-Agent: shopeezy-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    // The status line is all that is read.
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < head.len() && !head[..len].contains(&b'\n') {
        match stream.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) => return Err(e.to_string()),
        }
    }
    let line = String::from_utf8_lossy(&head[..len]);
    let line = line.lines().next().unwrap_or_default();
    match line.split(' ').nth(1) {
        Some("200") => Ok(()),
        _ if line.is_empty() => Err("no answer".into()),
        _ => Err(format!("answered {line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::check;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A server on loopback that answers one request with `answer`; its port.
    fn answering(answer: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = listener.local_addr().expect("bound").port();
        std::thread::spawn(move || {
            if let Ok((mut conn, _)) = listener.accept() {
                // The whole request (it ends with an empty line).
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&request).into_owned();
                let answer = if request.starts_with("GET /healthz HTTP/1.1\r\n") {
                    answer
                } else {
                    "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"
                };
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        port
    }

    #[test]
    fn a_200_is_healthy_and_anything_else_is_not() {
        let ok = answering("HTTP/1.1 200 OK\r\ncontent-length: 18\r\n\r\n{\"status\":\"alive\"}");
        assert_eq!(check(&format!("0.0.0.0:{ok}")), Ok(()));
        let failing = answering("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        let err = check(&format!("127.0.0.1:{failing}")).expect_err("a 503 is a failed check");
        assert!(err.contains("503"), "{err}");
        let silent = answering("");
        assert_eq!(
            check(&format!("127.0.0.1:{silent}")),
            Err("no answer".into())
        );
        // Nothing listens on a port that was just freed.
        let closed = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a port")
            .port();
        assert!(check(&format!("127.0.0.1:{closed}")).is_err());
        assert!(check("localhost").is_err());
    }
}
