//! Password hashing with argon2id, off the async runtime and bounded in
//! concurrency (each hash works in ~19 MiB for tens of milliseconds).
//!
//! The working memory is reused: one buffer per concurrent hash, kept
//! resident. Allocating it per hash made glibc keep a freed 19–38 MiB chunk
//! in every thread arena a hash had run on: `cargo xtask bench` saw the
//! account service at 858 MiB resident after four clients logged in for five
//! seconds (34 MiB idle). Reuse also spares each hash ~4,800 page faults.

use std::sync::{Arc, Mutex, PoisonError};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

use crate::domain::Password;
use crate::error::{Error, Result};

/// Hashes and verifies passwords.
#[derive(Clone)]
pub struct Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    memory: Arc<Memory>,
    /// A hash of a random password, verified against when the user is
    /// unknown, so that both failures take the same time.
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Hasher {
    /// A hasher with the given argon2id memory (KiB) and iterations.
    pub fn new(memory_kib: u32, iterations: u32) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let memory = Arc::new(Memory::default());
        let random = SaltString::generate(&mut OsRng);
        let dummy_hash = hash_with(&params, random.as_str(), &memory)?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(cores * 2)),
            memory,
            dummy_hash: dummy_hash.into(),
        })
    }

    /// The PHC string of a new password.
    pub async fn hash(&self, password: &Password) -> Result<String> {
        let (params, memory) = (self.params.clone(), self.memory.clone());
        let password = password.expose().to_owned();
        self.blocking(move || hash_with(&params, &password, &memory))
            .await?
            .map_err(Error::Internal)
    }

    /// Whether `password` matches `hash`; with no hash (unknown user) checks
    /// against a dummy so the answer takes as long and is `false`.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool> {
        let known = hash.is_some();
        let hash = hash.map_or_else(|| self.dummy_hash.to_string(), str::to_owned);
        let password = password.to_owned();
        let memory = self.memory.clone();
        let matches = self
            .blocking(move || verify_with(password.as_bytes(), &hash, &memory))
            .await?;
        Ok(known && matches)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| Error::Internal(e.into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| Error::Internal(e.into()))
    }
}

/// argon2's working memory, one buffer per hash in progress, kept for the
/// next. Every block is written before it is read, so what a buffer held
/// before does not reach a result.
#[derive(Default)]
struct Memory(Mutex<Vec<Vec<Block>>>);

impl Memory {
    fn with<T>(&self, blocks: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
        let taken = self.0.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut buffer = taken.unwrap_or_default();
        if buffer.len() < blocks {
            buffer.resize(blocks, Block::default());
        }
        let out = work(&mut buffer[..blocks]);
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buffer);
        out
    }
}

/// The PHC string of `password` under `params` with a new random salt:
/// what `argon2`'s `PasswordHasher` gives, computed in reused memory.
fn hash_with(params: &Params, password: &str, memory: &Memory) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut raw = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut raw)
        .map_err(|e| anyhow::anyhow!("argon2 salt: {e}"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = memory
        .with(params.block_count(), |blocks| {
            Output::init_with(len, |out| {
                Ok(argon.hash_password_into_with_memory(
                    password.as_bytes(),
                    salt_bytes,
                    out,
                    blocks,
                )?)
            })
        })
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| anyhow::anyhow!("argon2: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `phc` (any argon2 variant,
/// version and parameters it names), as `argon2`'s `PasswordVerifier`
/// decides it (constant-time comparison), computed in reused memory.
fn verify_with(password: &[u8], phc: &str, memory: &Memory) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(version), Ok(params)) = (
        Algorithm::try_from(hash.algorithm),
        hash.version
            .map_or(Ok(Version::default()), Version::try_from),
        Params::try_from(&hash),
    ) else {
        return false;
    };
    let mut raw = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut raw) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params.clone());
    memory.with(params.block_count(), |blocks| {
        Output::init_with(expected.len(), |out| {
            Ok(argon.hash_password_into_with_memory(password, salt, out, blocks)?)
        })
        .is_ok_and(|computed| computed == expected)
    })
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    use super::*;

    fn params() -> Params {
        Params::new(256, 2, 1, None).expect("params")
    }

    #[test]
    fn hashes_agree_with_the_argon2_crate_both_ways() {
        let memory = Memory::default();
        let ours = hash_with(&params(), "correct horse", &memory).expect("hash");
        let parsed = PasswordHash::new(&ours).expect("a PHC string");
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
        assert!(argon.verify_password(b"correct horse", &parsed).is_ok());
        assert!(argon.verify_password(b"correct horsE", &parsed).is_err());

        let salt = SaltString::generate(&mut OsRng);
        let theirs = argon
            .hash_password(b"battery staple", &salt)
            .expect("hash")
            .to_string();
        assert!(verify_with(b"battery staple", &theirs, &memory));
        assert!(!verify_with(b"battery stapl", &theirs, &memory));
        assert!(!verify_with(
            b"battery staple",
            "$argon2id$not-a-hash",
            &memory
        ));
    }

    #[test]
    fn reused_memory_gives_the_same_answers() {
        let memory = Memory::default();
        let a = hash_with(&params(), "first", &memory).expect("hash");
        // A larger hash in between leaves other data in the buffer.
        let big = Params::new(1024, 1, 1, None).expect("params");
        let b = hash_with(&big, "second", &memory).expect("hash");
        assert!(verify_with(b"first", &a, &memory));
        assert!(verify_with(b"second", &b, &memory));
        assert!(!verify_with(b"second", &a, &memory));
        assert_eq!(
            memory.0.lock().expect("lock").len(),
            1,
            "one buffer, reused"
        );
    }
}
