//! The account service's token keys, by `kid`, and what a token must say
//! (issuer, audience): fetched with gRPC `GetKeys` when the revocation stream
//! (re)connects, and again when a token names a key not known yet — at most
//! once per [`REFETCH_EVERY`], so tokens with made-up `kid`s cannot make the
//! host hammer the account service.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use shopeezy_proto::auth::v1 as pb;
use shopeezy_proto::auth::v1::auth_service_client::AuthServiceClient;
use tonic::transport::Channel;

/// The least time between two fetches for an unknown `kid`.
pub const REFETCH_EVERY: Duration = Duration::from_secs(10);

/// The least time between two fetches for a token while no key is known
/// (the stream's task fetches at each connect anyway).
pub const REFETCH_EMPTY_EVERY: Duration = Duration::from_secs(1);

/// One verification key and the checks that go with it.
#[derive(Clone)]
pub struct Key {
    /// The public key.
    pub decoding: DecodingKey,
    /// Algorithm (EdDSA only), issuer, audience, expiry, not-before.
    pub validation: Validation,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").finish_non_exhaustive()
    }
}

/// What looking a key up found.
#[derive(Debug)]
pub enum Lookup {
    /// The key.
    Found(Arc<Key>),
    /// No such key (after a fetch, or too soon after the last one).
    Unknown,
    /// No key is known and the account service could not be asked.
    Unavailable(String),
}

/// The keys, by `kid`.
#[derive(Debug)]
pub struct KeyRing {
    client: AuthServiceClient<Channel>,
    timeout: Duration,
    keys: RwLock<HashMap<String, Arc<Key>>>,
    /// Held while fetching; holds when the last fetch for a miss began.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

impl KeyRing {
    /// An empty ring that fetches with `client`, each call bounded by `timeout`.
    pub fn new(client: AuthServiceClient<Channel>, timeout: Duration) -> Self {
        Self {
            client,
            timeout,
            keys: RwLock::default(),
            fetching: tokio::sync::Mutex::new(None),
        }
    }

    /// How many keys are known.
    pub fn len(&self) -> usize {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no key is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn known(&self, kid: &str) -> Option<Arc<Key>> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(kid)
            .cloned()
    }

    /// The key `kid`, fetching the keys again when it is not known (rate
    /// limited; concurrent misses share one fetch).
    pub async fn get(&self, kid: &str) -> Lookup {
        if let Some(key) = self.known(kid) {
            return Lookup::Found(key);
        }
        let mut last = self.fetching.lock().await;
        // Another request may have fetched it meanwhile.
        if let Some(key) = self.known(kid) {
            return Lookup::Found(key);
        }
        let empty = self.is_empty();
        let since_last = last.map(|at| at.elapsed());
        if empty && since_last.is_some_and(|since| since < REFETCH_EMPTY_EVERY) {
            return Lookup::Unavailable("no token key fetched yet".into());
        }
        if !empty && since_last.is_some_and(|since| since < REFETCH_EVERY) {
            return Lookup::Unknown;
        }
        *last = Some(Instant::now());
        metrics::counter!("host_auth_key_fetches_total", "why" => "unknown_kid").increment(1);
        match self.fetch().await {
            Ok(()) => self.known(kid).map_or(Lookup::Unknown, Lookup::Found),
            Err(why) if self.is_empty() => Lookup::Unavailable(why),
            Err(why) => {
                tracing::warn!(reason = %why, "fetching the token keys failed");
                Lookup::Unknown
            }
        }
    }

    /// Fetches the keys (replacing the ring).
    pub async fn fetch(&self) -> Result<(), String> {
        let reply = tokio::time::timeout(
            self.timeout,
            self.client.clone().get_keys(pb::GetKeysRequest {}),
        )
        .await
        .map_err(|_| "GetKeys timed out".to_owned())?
        .map_err(|status| format!("GetKeys: {:?}: {}", status.code(), status.message()))?
        .into_inner();
        let mut keys = HashMap::new();
        for key in reply.keys {
            if key.alg != "EdDSA" {
                continue;
            }
            let Ok(raw) = <[u8; 32]>::try_from(key.ed25519.as_slice()) else {
                return Err(format!("key {:?} is not an Ed25519 public key", key.kid));
            };
            let mut validation = Validation::new(Algorithm::EdDSA);
            validation.set_issuer(&[&reply.issuer]);
            validation.set_audience(&[&reply.audience]);
            validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
            validation.validate_nbf = true;
            validation.leeway = 0;
            // As the account service builds its own: the JWK's `x`.
            let decoding = DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(raw))
                .map_err(|e| format!("key {:?}: {e}", key.kid))?;
            keys.insert(
                key.kid,
                Arc::new(Key {
                    decoding,
                    validation,
                }),
            );
        }
        if keys.is_empty() {
            return Err("GetKeys answered no Ed25519 key".into());
        }
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(())
    }
}
