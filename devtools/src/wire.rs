//! A counting TCP proxy for the PostgreSQL and the MySQL protocols: the
//! bench routes the host's database connections through it for a
//! calibration pass and reads how many statements the host sent.
//!
//! Bytes are forwarded unchanged in both directions. The client's side is
//! read as the protocol frames it.
//!
//! PostgreSQL: after the untyped start-up exchange
//! (`SSLRequest` / `GSSENCRequest`, answered by one byte from the server,
//! then the `StartupMessage` or a `CancelRequest`), every frontend message
//! is a type byte and a 32-bit length that counts itself. Counted: simple
//! `Query` ('Q', one per simple-protocol statement string), extended
//! `Execute` ('E', one per execution of a prepared statement) and `Parse`
//! ('P', one per statement prepared on the server). The host's URL must ask
//! for no TLS (`sslmode=disable`): an encrypted stream cannot be read.
//!
//! MySQL/MariaDB: every packet is a 3-byte little-endian length, a sequence
//! byte and the payload; a command is the client's packet of sequence 0,
//! its first payload byte the command (the hand-shake's packets and a long
//! payload's continuations have higher sequence numbers, so no start-up
//! state is needed). Counted: `COM_QUERY` (0x03, a text statement string:
//! sqlx's `BEGIN`, `COMMIT`, statements without arguments; a string of
//! several statements counts once), `COM_STMT_EXECUTE` (0x17, one per
//! execution of a prepared statement), `COM_STMT_PREPARE` (0x16) and
//! `COM_PING` (0x0e: sqlx checks a pooled connection with it before handing
//! it out; PostgreSQL's check is a `Sync`, not counted). The host's URL must
//! ask for no TLS (`ssl-mode=disabled`).
//!
//! Why a proxy and not the server's counters (`SHOW GLOBAL STATUS`
//! `Questions`, `Com_stmt_execute`): the server is shared (the tests of
//! other work use it during a run), and its counters are global; the proxy
//! sees the host's connections and nothing else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `SSLRequest` and `GSSENCRequest` codes: the server answers one byte.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// The wire protocol a proxy reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Postgres,
    MySql,
}

/// What the clients of one proxy sent, so far.
#[derive(Debug, Default)]
pub struct Counts {
    query: AtomicU64,
    execute: AtomicU64,
    parse: AtomicU64,
    ping: AtomicU64,
}

/// A reading of [`Counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    /// Simple-protocol `Query` messages.
    pub query: u64,
    /// Extended-protocol `Execute` messages.
    pub execute: u64,
    /// `Parse` messages (statements prepared on the server).
    pub parse: u64,
    /// MySQL's `COM_PING` (a round trip, not a statement); 0 on PostgreSQL.
    pub ping: u64,
}

impl Reading {
    /// Statements executed: `Query` plus `Execute`.
    pub fn statements(&self) -> u64 {
        self.query + self.execute
    }

    /// What was sent between `earlier` and this reading.
    pub fn since(&self, earlier: Reading) -> Reading {
        Reading {
            query: self.query - earlier.query,
            execute: self.execute - earlier.execute,
            parse: self.parse - earlier.parse,
            ping: self.ping - earlier.ping,
        }
    }

    /// This reading and `other` added.
    pub fn plus(&self, other: Reading) -> Reading {
        Reading {
            query: self.query + other.query,
            execute: self.execute + other.execute,
            parse: self.parse + other.parse,
            ping: self.ping + other.ping,
        }
    }

    /// The counts divided by `per` (e.g. orders), as JSON, two decimals.
    pub fn per(&self, per: u64) -> Value {
        let ratio = |n: u64| {
            if per == 0 {
                0.0
            } else {
                (n as f64 / per as f64 * 100.0).round() / 100.0
            }
        };
        json!({
            "statements": ratio(self.statements()),
            "query": ratio(self.query),
            "execute": ratio(self.execute),
            "parse": ratio(self.parse),
            "ping": ratio(self.ping),
        })
    }
}

impl Counts {
    /// The counts now.
    pub fn read(&self) -> Reading {
        Reading {
            query: self.query.load(Ordering::Relaxed),
            execute: self.execute.load(Ordering::Relaxed),
            parse: self.parse.load(Ordering::Relaxed),
            ping: self.ping.load(Ordering::Relaxed),
        }
    }

    /// A PostgreSQL frontend message of type `kind`.
    fn count(&self, kind: u8) {
        let counter = match kind {
            b'Q' => &self.query,
            b'E' => &self.execute,
            b'P' => &self.parse,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A MySQL command packet whose first byte is `command`.
    fn count_mysql(&self, command: u8) {
        let counter = match command {
            COM_QUERY => &self.query,
            COM_STMT_EXECUTE => &self.execute,
            COM_STMT_PREPARE => &self.parse,
            COM_PING => &self.ping,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// MySQL's commands counted.
const COM_QUERY: u8 = 0x03;
const COM_PING: u8 = 0x0e;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;

/// Starts a proxy on a free loopback port to `target` (`host:port`), reading
/// `protocol`: its `host:port` and its counts. It runs until the runtime
/// stops.
pub async fn start(target: String, protocol: Protocol) -> Result<(String, Arc<Counts>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let counts = Arc::new(Counts::default());
    let shared = counts.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (target, counts) = (target.clone(), shared.clone());
            tokio::spawn(async move {
                if let Ok(server) = TcpStream::connect(&target).await {
                    let _ = relay(client, server, protocol, &counts).await;
                }
            });
        }
    });
    Ok((addr, counts))
}

/// Forwards one connection, counting the client's messages.
async fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    protocol: Protocol,
    counts: &Counts,
) -> Result<()> {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // PostgreSQL's start-up: untyped messages, until the StartupMessage (or
    // a cancel). MySQL's server speaks first, and its hand-shake needs no
    // reading apart.
    if protocol == Protocol::Postgres {
        loop {
            let len = client.read_u32().await? as usize;
            let mut body = vec![0; len.saturating_sub(4)];
            client.read_exact(&mut body).await?;
            server.write_u32(len as u32).await?;
            server.write_all(&body).await?;
            let code = body
                .get(..4)
                .map_or(0, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
            if code == SSL_REQUEST || code == GSSENC_REQUEST {
                let answer = server.read_u8().await?;
                client.write_u8(answer).await?;
                if answer != b'N' {
                    // Encrypted from here on: forward without reading.
                    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
                    return Ok(());
                }
                continue;
            }
            break;
        }
    }
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    let (mut scan, mut scan_mysql) = (Scan::default(), MySqlScan::default());
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = client_read.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        match protocol {
            Protocol::Postgres => scan.feed(&buf[..n], counts),
            Protocol::MySql => scan_mysql.feed(&buf[..n], counts),
        }
        server_write.write_all(&buf[..n]).await?;
    }
    let _ = server_write.shutdown().await;
    let _ = down.await;
    Ok(())
}

/// Where the frontend's message stream is, across reads.
#[derive(Debug, Default)]
struct Scan {
    /// Bytes of the current message's body still to pass.
    skip: usize,
    /// The next message's type and length, as far as read.
    header: [u8; 5],
    have: usize,
}

impl Scan {
    fn feed(&mut self, mut buf: &[u8], counts: &Counts) {
        while !buf.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(buf.len());
                self.skip -= n;
                buf = &buf[n..];
                continue;
            }
            let n = (5 - self.have).min(buf.len());
            self.header[self.have..self.have + n].copy_from_slice(&buf[..n]);
            self.have += n;
            buf = &buf[n..];
            if self.have == 5 {
                counts.count(self.header[0]);
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]) as usize;
                self.skip = len.saturating_sub(4);
                self.have = 0;
            }
        }
    }
}

/// Where the MySQL client's packet stream is, across reads.
#[derive(Debug, Default)]
struct MySqlScan {
    /// Bytes of the current packet's payload still to pass.
    skip: usize,
    /// Whether the next payload byte is a command (a packet of sequence 0).
    command: bool,
    /// The next packet's length and sequence, as far as read.
    header: [u8; 4],
    have: usize,
}

impl MySqlScan {
    fn feed(&mut self, mut buf: &[u8], counts: &Counts) {
        while !buf.is_empty() {
            if self.skip > 0 {
                if self.command {
                    counts.count_mysql(buf[0]);
                    self.command = false;
                }
                let n = self.skip.min(buf.len());
                self.skip -= n;
                buf = &buf[n..];
                continue;
            }
            let n = (4 - self.have).min(buf.len());
            self.header[self.have..self.have + n].copy_from_slice(&buf[..n]);
            self.have += n;
            buf = &buf[n..];
            if self.have == 4 {
                let [a, b, c, sequence] = self.header;
                self.skip = u32::from_le_bytes([a, b, c, 0]) as usize;
                self.command = sequence == 0 && self.skip > 0;
                self.have = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn messages_are_counted_whatever_the_reads_cut() {
        let mut stream = Vec::new();
        stream.extend(message(b'P', b"\0SELECT 1\0\0\0"));
        stream.extend(message(b'B', b"\0\0\0\0\0\0\0\0"));
        stream.extend(message(b'E', b"\0\0\0\0\0"));
        stream.extend(message(b'S', b""));
        stream.extend(message(b'Q', b"BEGIN\0"));
        stream.extend(message(b'E', b"\0\0\0\0\0"));
        for cut in 1..stream.len() {
            let counts = Counts::default();
            let mut scan = Scan::default();
            for chunk in stream.chunks(cut) {
                scan.feed(chunk, &counts);
            }
            assert_eq!(
                counts.read(),
                Reading {
                    query: 1,
                    execute: 2,
                    parse: 1,
                    ping: 0
                },
                "cut every {cut} bytes"
            );
        }
    }

    fn packet(sequence: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        p.push(sequence);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn mysql_commands_are_counted_whatever_the_reads_cut() {
        let mut stream = Vec::new();
        // The hand-shake response and an auth-switch answer: not commands,
        // though their payloads start with a command's byte.
        stream.extend(packet(1, &[0x03, 0x17, 0, 0, 0]));
        stream.extend(packet(3, &[0x16; 20]));
        stream.extend(packet(
            0,
            b"\x03SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        ));
        stream.extend(packet(0, b"\x16SELECT 1"));
        stream.extend(packet(0, &[0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0]));
        stream.extend(packet(0, &[0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0]));
        stream.extend(packet(0, &[0x0e]));
        stream.extend(packet(0, &[0x19, 1, 0, 0, 0]));
        stream.extend(packet(0, b""));
        stream.extend(packet(0, b"\x03COMMIT"));
        for cut in 1..stream.len() {
            let counts = Counts::default();
            let mut scan = MySqlScan::default();
            for chunk in stream.chunks(cut) {
                scan.feed(chunk, &counts);
            }
            assert_eq!(
                counts.read(),
                Reading {
                    query: 2,
                    execute: 2,
                    parse: 1,
                    ping: 1
                },
                "cut every {cut} bytes"
            );
        }
    }
}
