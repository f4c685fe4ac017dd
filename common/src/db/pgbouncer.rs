//! PostgreSQL through PgBouncer in transaction pooling mode (`?pgbouncer=true`
//! on a `postgres://` URL).
//!
//! In that mode PgBouncer lends a server connection to a client for one
//! transaction only: outside a transaction block, for one exchange up to a
//! `ReadyForQuery` that says idle. PgBouncer before 1.21 (Debian 12 ships
//! 1.18) does not follow prepared statements from one server connection to
//! the next, and sqlx 0.8 cannot be told to avoid them:
//!
//! - every query it runs with arguments is prepared first (`Parse`,
//!   `Describe`, `Sync`) and executed in a second exchange (`Bind`,
//!   `Execute`, `Sync`). Outside a transaction the second exchange may reach
//!   another server connection, where the statement does not exist, or, for
//!   the unnamed statement, where another client's statement would run with
//!   these arguments;
//! - its statements are named (`sqlx_s_N`, per client connection), so two
//!   clients on one server connection collide. `statement_cache_capacity(0)`
//!   does not change that: the statements are still named, only never
//!   closed (sqlx-postgres 0.8.6, `connection/executor.rs`, `prepare`).
//!
//! So each connection of such a pool goes through a small relay in this
//! process, between sqlx and PgBouncer, that keeps every exchange
//! self-contained: it remembers the SQL of each statement sqlx prepares
//! (named, or its unnamed one) and sends PgBouncer only the unnamed
//! statement, parsed again in the same exchange that binds and executes it (`Parse`, `Bind`, `Execute`,
//! `Sync`, as libpq's `PQexecParams` does). sqlx keeps its statement cache
//! (it needs no second round trip to describe a statement it has seen); the
//! server parses each statement once per execution. The relay answers
//! nothing itself and drops only the `ParseComplete` of a `Parse` it added.
//!
//! The link from the relay to PgBouncer is not encrypted (PgBouncer runs
//! beside the service); a URL that requires TLS is refused.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// `SSLRequest`, `GSSENCRequest` and `CancelRequest` codes.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

/// Starts a relay on a free loopback port to PgBouncer at `target`
/// (`host:port`); its port. It runs as long as the runtime.
pub(crate) async fn start(target: String) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Err(e) = relay(client, &target).await {
                    tracing::debug!(error = %e, "a PgBouncer relay connection ended");
                }
            });
        }
    });
    Ok(port)
}

/// One connection: the start-up exchange, then both directions.
async fn relay(mut client: TcpStream, target: &str) -> std::io::Result<()> {
    let mut server = TcpStream::connect(target).await?;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    loop {
        let len = client.read_u32().await? as usize;
        if !(8..=10_000).contains(&len) {
            return Err(std::io::Error::other("bad start-up message"));
        }
        let mut body = vec![0; len - 4];
        client.read_exact(&mut body).await?;
        let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        if code == SSL_REQUEST || code == GSSENC_REQUEST {
            // No encryption between sqlx and the relay (loopback).
            client.write_u8(b'N').await?;
            continue;
        }
        server.write_u32(len as u32).await?;
        server.write_all(&body).await?;
        if code == CANCEL_REQUEST {
            tokio::io::copy_bidirectional(&mut client, &mut server).await?;
            return Ok(());
        }
        break;
    }
    let batches = Arc::new(Mutex::new(Batches::default()));
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let down = tokio::spawn(downstream(server_read, client_write, batches.clone()));
    let up = upstream(client_read, server_write, batches).await;
    down.abort();
    up
}

/// The `Parse` messages of the exchanges sent and not yet answered by a
/// `ReadyForQuery`, in order: for each, whether the relay added it (its
/// `ParseComplete` is not the client's).
#[derive(Debug, Default)]
struct Batches {
    sent: VecDeque<VecDeque<bool>>,
    /// Whether the last batch in `sent` is still being written.
    open: bool,
}

impl Batches {
    fn parse(&mut self, added: bool) {
        if !self.open {
            self.sent.push_back(VecDeque::new());
            self.open = true;
        }
        if let Some(batch) = self.sent.back_mut() {
            batch.push_back(added);
        }
    }

    /// A `Sync` or a simple `Query`: one `ReadyForQuery` will answer it.
    fn end(&mut self) {
        if !self.open {
            self.sent.push_back(VecDeque::new());
        }
        self.open = false;
    }
}

/// One frontend or backend message: its type and its body.
struct Message {
    kind: u8,
    body: Vec<u8>,
}

/// Reads whole messages (type, length, body) from `buf`, refilled from
/// `read`; `None` at the end of the stream.
async fn next(
    read: &mut OwnedReadHalf,
    buf: &mut Vec<u8>,
    start: &mut usize,
) -> std::io::Result<Option<Message>> {
    loop {
        let have = &buf[*start..];
        if have.len() >= 5 {
            let len = u32::from_be_bytes([have[1], have[2], have[3], have[4]]) as usize;
            if len < 4 {
                return Err(std::io::Error::other("bad message length"));
            }
            if have.len() > len {
                let message = Message {
                    kind: have[0],
                    body: have[5..=len].to_vec(),
                };
                *start += len + 1;
                return Ok(Some(message));
            }
        }
        buf.drain(..*start);
        *start = 0;
        let mut chunk = [0u8; 16 * 1024];
        let n = read.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether more whole messages wait in `buf` from `start`.
fn more(buf: &[u8], start: usize) -> bool {
    let have = &buf[start..];
    have.len() >= 5
        && have.len() > u32::from_be_bytes([have[1], have[2], have[3], have[4]]) as usize
}

fn put(out: &mut Vec<u8>, kind: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + 4;
    out.push(kind);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// The NUL-terminated string at the start of `body`, and what follows it.
fn cstr(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = body.iter().position(|b| *b == 0)?;
    Some((&body[..nul], &body[nul + 1..]))
}

/// What the relay knows of one client's statements.
#[derive(Debug, Default)]
struct Statements {
    /// Each statement the client prepared, by name (the client's unnamed
    /// statement under the empty name): its `Parse` after the name, the
    /// query and the parameter types.
    parses: HashMap<Vec<u8>, Vec<u8>>,
    /// The client's statement that the server's unnamed statement holds in
    /// this exchange.
    unnamed: Option<Vec<u8>>,
}

impl Statements {
    /// Makes the server's unnamed statement hold the client's `name` in
    /// this exchange, adding a `Parse` to `out` if it does not yet; whether
    /// it does now (not when `name` was never prepared).
    fn hold(&mut self, name: &[u8], batches: &mut Batches, out: &mut Vec<u8>) -> bool {
        if self.unnamed.as_deref() != Some(name) {
            let Some(parse) = self.parses.get(name) else {
                return false;
            };
            batches.parse(true);
            put(out, b'P', &[b"\0", parse]);
            self.unnamed = Some(name.to_vec());
        }
        true
    }

    /// Appends to `out` what PgBouncer is sent for the client's `message`.
    fn rewrite(&mut self, message: &Message, batches: &Mutex<Batches>, out: &mut Vec<u8>) {
        let mut batches = batches.lock().unwrap_or_else(|e| e.into_inner());
        let body = &message.body[..];
        match message.kind {
            b'P' => {
                batches.parse(false);
                match cstr(body) {
                    Some((name, rest)) => {
                        self.parses.insert(name.to_vec(), rest.to_vec());
                        self.unnamed = Some(name.to_vec());
                        put(out, b'P', &[b"\0", rest]);
                    }
                    None => put(out, b'P', &[body]),
                }
            }
            b'B' => {
                let parts = cstr(body).and_then(|(portal, rest)| {
                    let (statement, rest) = cstr(rest)?;
                    Some((portal, statement, rest))
                });
                match parts {
                    Some((portal, statement, rest)) if self.hold(statement, &mut batches, out) => {
                        put(out, b'B', &[portal, b"\0\0", rest]);
                    }
                    // Unknown here: as sent (the server answers).
                    _ => put(out, b'B', &[body]),
                }
            }
            b'D' if body.first() == Some(&b'S') => {
                let name = cstr(&body[1..]).map_or(&[][..], |(name, _)| name);
                if self.hold(name, &mut batches, out) {
                    put(out, b'D', &[b"S\0"]);
                } else {
                    put(out, b'D', &[body]);
                }
            }
            b'C' if body.first() == Some(&b'S') => {
                let name = cstr(&body[1..]).map_or(&[][..], |(name, _)| name);
                self.parses.remove(name);
                if self.unnamed.as_deref() == Some(name) {
                    self.unnamed = None;
                }
                // Closing the unnamed statement answers CloseComplete too.
                put(out, b'C', &[b"S\0"]);
            }
            b'S' | b'Q' => {
                // The exchange ends: the next may reach another server connection.
                self.unnamed = None;
                if message.kind == b'Q' {
                    // A simple query destroys the client's unnamed statement.
                    self.parses.remove(&[][..]);
                }
                batches.end();
                put(out, message.kind, &[body]);
            }
            kind => put(out, kind, &[body]),
        }
    }
}

/// sqlx to PgBouncer: named statements become the unnamed one, parsed again
/// in each exchange that uses it.
async fn upstream(
    mut read: OwnedReadHalf,
    mut write: OwnedWriteHalf,
    batches: Arc<Mutex<Batches>>,
) -> std::io::Result<()> {
    let mut statements = Statements::default();
    let (mut buf, mut start) = (Vec::new(), 0);
    let mut out = Vec::new();
    while let Some(message) = next(&mut read, &mut buf, &mut start).await? {
        statements.rewrite(&message, &batches, &mut out);
        if !more(&buf, start) {
            write.write_all(&out).await?;
            out.clear();
        }
    }
    let _ = write.shutdown().await;
    Ok(())
}

/// PgBouncer to sqlx: everything, but the `ParseComplete` of each `Parse`
/// the relay added.
async fn downstream(
    mut read: OwnedReadHalf,
    mut write: OwnedWriteHalf,
    batches: Arc<Mutex<Batches>>,
) -> std::io::Result<()> {
    let (mut buf, mut start) = (Vec::new(), 0);
    let mut out = Vec::new();
    while let Some(message) = next(&mut read, &mut buf, &mut start).await? {
        if forwarded(message.kind, &batches) {
            put(&mut out, message.kind, &[&message.body]);
        }
        if !more(&buf, start) {
            write.write_all(&out).await?;
            out.clear();
        }
    }
    let _ = write.shutdown().await;
    Ok(())
}

/// Whether a backend message of type `kind` goes on to the client.
fn forwarded(kind: u8, batches: &Mutex<Batches>) -> bool {
    let mut batches = batches.lock().unwrap_or_else(|e| e.into_inner());
    match kind {
        b'1' => !batches
            .sent
            .front_mut()
            .and_then(VecDeque::pop_front)
            .unwrap_or(false),
        b'Z' => {
            // Parses after an error were skipped: forget them too.
            batches.sent.pop_front();
            true
        }
        _ => true,
    }
}
