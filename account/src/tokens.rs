//! Access tokens: JWTs signed with Ed25519 (`EdDSA`), carrying `sub`, `jti`,
//! `iat`, `exp`, `iss`, `aud` and `role`. The public key is published as a
//! JWKS so other services can verify tokens offline (revocation excepted).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::store::User;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user's id.
    pub sub: Uuid,
    /// The token's id, a UUIDv7: its timestamp is the issue time in milliseconds.
    pub jti: Uuid,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
    /// The issuer.
    pub iss: String,
    /// The audience.
    pub aud: String,
    /// The user's role when the token was issued (the account service always
    /// answers the current role; this is for offline verifiers).
    pub role: String,
}

impl Claims {
    /// When the token was issued, in milliseconds since the epoch.
    pub fn issued_at_ms(&self) -> u64 {
        self.jti.get_timestamp().map_or(self.iat * 1000, |ts| {
            let (secs, nanos) = ts.to_unix();
            secs * 1000 + u64::from(nanos) / 1_000_000
        })
    }
}

/// The signing key and what checks a token.
#[derive(Clone)]
pub struct Keys {
    kid: String,
    public_x: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    /// Lifetime of a new token, in seconds.
    pub ttl_secs: u64,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// What the keys are made from: where the signing key is, and what every
/// token says and how long it lives.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The Ed25519 PKCS#8 PEM itself.
    pub private_key: Option<String>,
    /// A file holding it, read when `private_key` is not given.
    pub private_key_file: Option<PathBuf>,
    /// Where a key is generated (the first time) and kept when neither is
    /// given.
    pub generated_key_file: PathBuf,
    /// The tokens' `iss`.
    pub issuer: String,
    /// The tokens' `aud`.
    pub audience: String,
    /// Lifetime of a new token, in seconds.
    pub ttl_secs: u64,
}

impl Keys {
    /// Loads the key from `settings`: the PEM given, the file given, or
    /// (generated the first time) `generated_key_file`.
    pub fn load(settings: &Settings) -> anyhow::Result<Self> {
        let pem = match (&settings.private_key, &settings.private_key_file) {
            (Some(pem), _) => pem.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)?,
            (None, None) => generated_key(&settings.generated_key_file)?,
        };
        Self::from_pem(&pem, settings)
    }

    fn from_pem(pem: &str, settings: &Settings) -> anyhow::Result<Self> {
        let signing = SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| anyhow::anyhow!("the JWT key is not an Ed25519 PKCS#8 PEM: {e}"))?;
        let public_x = URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
        // RFC 7638 thumbprint: members in lexicographic order, no spaces.
        let thumbprint = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{public_x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint.as_bytes()));
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        // A token carrying `nbf` (this service's own do not) is refused
        // before that time, with the same leeway as `exp`.
        validation.validate_nbf = true;
        validation.leeway = 0;
        Ok(Self {
            kid,
            encoding: EncodingKey::from_ed_pem(pem.as_bytes())?,
            decoding: DecodingKey::from_ed_components(&public_x)?,
            public_x,
            validation,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            ttl_secs: settings.ttl_secs,
        })
    }

    /// A new signed token for `user`, and its claims.
    pub fn issue(&self, user: &User) -> Result<(String, Claims)> {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let claims = Claims {
            sub: user.id,
            jti: Uuid::now_v7(),
            iat: now,
            exp: now + self.ttl_secs,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            role: user.role.as_str().to_owned(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| Error::Internal(e.into()))?;
        Ok((token, claims))
    }

    /// The claims of a token whose algorithm, signature, issuer, audience,
    /// expiry and not-before time are all right. Revocation is checked
    /// elsewhere.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Error::Unauthenticated("the token is malformed"))?;
        if header.alg != Algorithm::EdDSA
            || header.kid.as_deref().is_some_and(|kid| kid != self.kid)
        {
            return Err(Error::Unauthenticated(
                "the token is not signed by this service",
            ));
        }
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                Error::Unauthenticated(match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet",
                    ErrorKind::InvalidSignature => "the token's signature is invalid",
                    ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => {
                        "the token is not for this service"
                    }
                    _ => "the token is invalid",
                })
            })
    }

    /// The public keys that verify tokens, as `(kid, Ed25519 public key)`.
    pub fn public_keys(&self) -> Vec<(String, Vec<u8>)> {
        let raw = URL_SAFE_NO_PAD.decode(&self.public_x).unwrap_or_default();
        vec![(self.kid.clone(), raw)]
    }

    /// The tokens' `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The tokens' `aud`.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The public keys as a JSON Web Key Set.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "x": self.public_x,
                "kid": self.kid,
                "alg": "EdDSA",
                "use": "sig",
            }]
        })
    }
}

/// The PEM in `path`, generating and saving a new key there (readable by the
/// owner only) the first time.
fn generated_key(path: &Path) -> anyhow::Result<String> {
    if let Ok(pem) = std::fs::read_to_string(path) {
        return Ok(pem);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the JWT key: {e}"))?;
    write_private(path, pem.as_bytes())?;
    tracing::info!(path = %path.display(), "generated a new token signing key");
    Ok(pem.to_string())
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
