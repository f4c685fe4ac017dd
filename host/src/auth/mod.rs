//! Who is calling: the host verifies every bearer token itself (the
//! extractors that ask are in `http::auth`), with no call per request.
//!
//! - [`keys`]: the account service's Ed25519 public keys by `kid` (gRPC
//!   `GetKeys`), and the checks the account service makes: signature,
//!   `alg` pinned to EdDSA, issuer, audience, expiry, not-before.
//! - [`view`]: revoked tokens, per-user cutoffs and role changes, fed by the
//!   gRPC stream `WatchRevocations` on a background task ([`AuthClient::spawn`])
//!   that reconnects with backoff and resumes from its cursor.
//!
//! Until the view has been complete once, every token is answered 503
//! `auth_unavailable` (fail closed). When the stream drops, the view is
//! trusted for `SHOPEEZY_AUTH_STALE_SECS` after the account service last
//! vouched for it, then token checks fail closed again; see the README's
//! "Security argument".

pub mod keys;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use sha2::Digest;
use shopeezy_proto::auth::v1 as pb;
use shopeezy_proto::auth::v1::auth_service_client::AuthServiceClient;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

use crate::domain::{Caller, Role};
use crate::error::{Error, Result};
use keys::{KeyRing, Lookup};
use view::{Freshness, Refusal, View};

/// A stream that says nothing (no heartbeat) for this long is dropped and
/// opened again.
const SILENCE_LIMIT: Duration = Duration::from_secs(5);

/// The first wait before reconnecting, doubled up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);

/// The longest wait between two connection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How often expired entries leave the view.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The claims the host reads from an access token.
#[derive(Debug, Clone, Deserialize)]
struct Claims {
    sub: Uuid,
    jti: Uuid,
    iat: u64,
    exp: u64,
    nbf: Option<u64>,
    role: String,
}

/// Tokens whose signature, issuer and audience were checked, by their
/// SHA-256, so a shopper's next request costs a hash, not an Ed25519
/// verification. Expiry, not-before, the key still being known and the
/// revocation view are checked on every request, hit or not.
#[derive(Debug, Default)]
struct Verified {
    tokens: std::sync::Mutex<std::collections::HashMap<[u8; 32], (String, Claims)>>,
}

/// Most tokens [`Verified`] keeps; when full it starts again empty.
const VERIFIED_MAX: usize = 65_536;

impl Verified {
    fn get(&self, digest: &[u8; 32]) -> Option<(String, Claims)> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.get(digest).cloned()
    }

    fn insert(&self, digest: [u8; 32], kid: String, claims: Claims) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= VERIFIED_MAX {
            tokens.clear();
        }
        tokens.insert(digest, (kid, claims));
    }
}

/// Whether `claims` are within their validity now (no leeway, as the
/// account service checks them): not expired, not before their `nbf`.
fn in_force(claims: &Claims) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    claims.exp >= now && claims.nbf.is_none_or(|nbf| nbf <= now)
}

impl Claims {
    /// When the token was issued, in ms: the jti (a UUIDv7) carries it to
    /// the millisecond, `iat` to the second.
    fn issued_at_ms(&self) -> i64 {
        let ms = self.jti.get_timestamp().map_or(self.iat * 1000, |ts| {
            let (secs, nanos) = ts.to_unix();
            secs * 1000 + u64::from(nanos) / 1_000_000
        });
        i64::try_from(ms).unwrap_or(i64::MAX)
    }
}

#[derive(Debug)]
struct Inner {
    client: AuthServiceClient<Channel>,
    timeout: Duration,
    trusted_for: Duration,
    keys: KeyRing,
    verified: Verified,
    view: View,
    /// Flipped when the view is first complete.
    synced: tokio::sync::watch::Sender<bool>,
}

/// Token verification with the account service's keys and revocations; one
/// shared gRPC channel.
#[derive(Debug, Clone)]
pub struct AuthClient {
    inner: Arc<Inner>,
}

impl AuthClient {
    /// A client of the account service at `url` (`http://host:port`); it
    /// connects lazily and reconnects by itself. `timeout` bounds a
    /// connection attempt and a key fetch; `trusted_for` is how long the
    /// revocation view is trusted after the stream drops.
    pub fn new(url: &str, timeout: Duration, trusted_for: Duration) -> anyhow::Result<Self> {
        // No per-request timeout on the channel: the revocation stream is
        // one long request. Unary calls are bounded one by one.
        let channel = Endpoint::from_shared(url.to_owned())?
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy();
        let client = AuthServiceClient::new(channel);
        Ok(Self {
            inner: Arc::new(Inner {
                keys: KeyRing::new(client.clone(), timeout),
                verified: Verified::default(),
                client,
                timeout,
                trusted_for,
                view: View::default(),
                synced: tokio::sync::watch::channel(false).0,
            }),
        })
    }

    /// The caller a token belongs to: 401 for a token that is invalid,
    /// expired or revoked, 503 `auth_unavailable` while the host has no
    /// trustworthy view of the revocations (never synced — a request waits
    /// up to the auth timeout for the first view after a start — or the
    /// stream has been down longer than it is trusted).
    pub async fn validate(&self, token: &str) -> Result<Caller> {
        let started = std::time::Instant::now();
        let result = self.verify(token).await;
        let outcome = match &result {
            Ok(_) => "valid",
            Err(Error::AuthUnavailable) => "unavailable",
            Err(_) => "invalid",
        };
        metrics::histogram!("host_auth_validate_seconds", "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn verify(&self, token: &str) -> Result<Caller> {
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let claims = match self.inner.verified.get(&digest) {
            Some((kid, claims)) if self.inner.keys.known(&kid).is_some() && in_force(&claims) => {
                self.fresh_enough().await?;
                claims
            }
            _ => {
                let (kid, claims) = self.verify_signed(token).await?;
                self.inner.verified.insert(digest, kid, claims.clone());
                claims
            }
        };
        let inner = &self.inner;
        let role = inner
            .view
            .check(
                claims.jti,
                claims.sub,
                claims.issued_at_ms(),
                Role::from_account(&claims.role),
            )
            .map_err(|refusal| {
                Error::Unauthenticated(
                    match refusal {
                        Refusal::Revoked => "the token has been revoked",
                        Refusal::UserCutoff => "the token has been revoked (the user signed out everywhere, changed password or was deleted)",
                    }
                    .into(),
                )
            })?;
        Ok(Caller {
            id: claims.sub,
            role,
        })
    }

    /// Fails closed while there is no revocation view to trust (waiting a
    /// moment for the first one right after a start).
    async fn fresh_enough(&self) -> Result<()> {
        let inner = &self.inner;
        match inner.view.freshness(inner.trusted_for) {
            Freshness::Live | Freshness::Stale(_) => Ok(()),
            Freshness::Expired(_) => Err(Error::AuthUnavailable),
            Freshness::NeverSynced => {
                let mut synced = inner.synced.subscribe();
                let waited =
                    tokio::time::timeout(inner.timeout, synced.wait_for(|synced| *synced)).await;
                if matches!(waited, Ok(Ok(_))) {
                    Ok(())
                } else {
                    Err(Error::AuthUnavailable)
                }
            }
        }
    }

    /// Checks the token's header, signature, issuer, audience and times;
    /// its key id and claims.
    async fn verify_signed(&self, token: &str) -> Result<(String, Claims)> {
        let inner = &self.inner;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Error::Unauthenticated("the token is malformed".into()))?;
        let not_ours = || Error::Unauthenticated("the token is not signed by this service".into());
        if header.alg != Algorithm::EdDSA {
            return Err(not_ours());
        }
        let kid = header.kid.ok_or_else(not_ours)?;
        // No view to trust, no token to accept (and no key fetch per request).
        self.fresh_enough().await?;
        let key = match inner.keys.get(&kid).await {
            Lookup::Found(key) => key,
            Lookup::Unknown => return Err(not_ours()),
            Lookup::Unavailable(why) => {
                tracing::warn!(reason = %why, "no token key is known");
                return Err(Error::AuthUnavailable);
            }
        };
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &key.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                Error::Unauthenticated(
                    match e.kind() {
                        ErrorKind::ExpiredSignature => "the token has expired",
                        ErrorKind::ImmatureSignature => "the token is not valid yet",
                        ErrorKind::InvalidSignature => "the token's signature is invalid",
                        ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => {
                            "the token is not for this service"
                        }
                        _ => "the token is invalid",
                    }
                    .into(),
                )
            })?;
        Ok((kid, claims))
    }

    /// Whether tokens can be checked (`/readyz`): `Ok` with what the view
    /// rests on, `Err` when every token check answers 503.
    pub fn status(&self) -> std::result::Result<String, String> {
        let inner = &self.inner;
        let held = inner.view.len();
        match inner.view.freshness(inner.trusted_for) {
            Freshness::Live => Ok(format!(
                "revocations streamed ({held} held, cursor {})",
                inner.view.cursor()
            )),
            Freshness::Stale(age) => Ok(format!(
                "revocation stream down; the view of {:.0} s ago is trusted for {:.0} s more",
                age.as_secs_f64(),
                inner.trusted_for.saturating_sub(age).as_secs_f64()
            )),
            Freshness::NeverSynced => {
                Err("no revocation view received from the account service yet".into())
            }
            Freshness::Expired(age) => Err(format!(
                "revocation stream down for {:.0} s, longer than the view is trusted",
                age.as_secs_f64()
            )),
        }
    }

    /// Follows the revocation stream until `stopped`, reconnecting with
    /// backoff and resuming from the view's cursor.
    pub fn spawn(
        &self,
        stopped: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::pin!(stopped);
            let mut backoff = BACKOFF_MIN;
            let mut pruned = tokio::time::Instant::now();
            loop {
                let run = tokio::select! {
                    () = &mut stopped => return,
                    run = this.follow(&mut pruned) => run,
                };
                this.inner.view.disconnected();
                let synced = match run {
                    Ok(synced) => {
                        tracing::info!("the revocation stream ended; reconnecting");
                        synced
                    }
                    Err((synced, why)) => {
                        tracing::warn!(reason = %why, "the revocation stream failed; reconnecting");
                        synced
                    }
                };
                metrics::counter!("host_auth_stream_reconnects_total").increment(1);
                if synced {
                    backoff = BACKOFF_MIN;
                }
                // Full jitter over the upper half, so replicas do not
                // reconnect in step.
                let wait = backoff.mul_f64(0.5 + rand::random::<f64>() / 2.0);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                tokio::select! {
                    () = &mut stopped => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        })
    }

    /// One connection: fetches the keys, opens the stream from the cursor
    /// and applies it until it ends. Whether it got synced, and why it ended
    /// when it failed.
    async fn follow(
        &self,
        pruned: &mut tokio::time::Instant,
    ) -> std::result::Result<bool, (bool, String)> {
        let inner = &self.inner;
        inner.keys.fetch().await.map_err(|why| (false, why))?;
        let request = pb::WatchRevocationsRequest {
            after: inner.view.cursor(),
        };
        let mut stream = tokio::time::timeout(
            inner.timeout.max(Duration::from_secs(5)),
            inner.client.clone().watch_revocations(request),
        )
        .await
        .map_err(|_| (false, "WatchRevocations did not answer".to_owned()))?
        .map_err(|status| {
            (
                false,
                format!(
                    "WatchRevocations: {:?}: {}",
                    status.code(),
                    status.message()
                ),
            )
        })?
        .into_inner();
        let mut synced = false;
        loop {
            let message = tokio::time::timeout(SILENCE_LIMIT, stream.message())
                .await
                .map_err(|_| (synced, "the revocation stream fell silent".to_owned()))?
                .map_err(|status| (synced, format!("{:?}: {}", status.code(), status.message())))?;
            let Some(event) = message else {
                return Ok(synced);
            };
            if matches!(event.event, Some(pb::revocation_event::Event::Synced(_))) {
                synced = true;
                tracing::info!(
                    entries = inner.view.len(),
                    "revocation view synced with the account service"
                );
            }
            inner.view.apply(event).map_err(|why| (synced, why))?;
            if synced {
                inner
                    .synced
                    .send_if_modified(|was| !std::mem::replace(was, true));
            }
            if pruned.elapsed() >= PRUNE_EVERY {
                inner.view.prune(chrono::Utc::now().timestamp());
                *pruned = tokio::time::Instant::now();
            }
        }
    }
}
