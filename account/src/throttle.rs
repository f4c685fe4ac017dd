//! Login throttling, per account *and* client address, and per address.
//!
//! Failed sign-ins are counted twice, in a window that starts with the first
//! failure: for the pair (account, address) and for the address across all
//! accounts. A pair that reaches its limit is refused (429) for that account
//! only, from that address only, so guessing one password is stopped while
//! the owner, signing in from anywhere else, is not locked out; an address
//! that reaches its larger limit is refused for every account (credential
//! stuffing). A success forgets the pair's failures, not the address's: one
//! valid account must not reset an address's count of failures on others.
//!
//! IPv6 addresses count per /64, the block one subscriber usually holds.
//! The counters live in the same store as revocation's fast path (Redis or
//! in-process); they are not durable: a Redis restarted empty forgets them.

use std::net::IpAddr;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::Result;
use crate::kv::Kv;

/// Counts failed logins and says when one is throttled.
#[derive(Clone, Debug)]
pub struct Throttle {
    kv: Kv,
    prefix: String,
    limits: Limits,
}

/// The failures allowed in a window.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// For one account from one address.
    pub per_account_and_address: u32,
    /// From one address, across accounts.
    pub per_address: u32,
    /// The window's length, in seconds.
    pub window_secs: u64,
}

/// The counters one sign-in attempt is checked against.
#[derive(Clone, Debug)]
pub struct Attempt {
    pair_key: String,
    address_key: String,
}

impl Throttle {
    /// Throttling with `limits`, in `kv` under keys starting with `prefix`.
    pub fn new(kv: Kv, prefix: &str, limits: Limits) -> Self {
        Self {
            kv,
            prefix: prefix.to_owned(),
            limits,
        }
    }

    /// The counters of a sign-in from `address` to the account `user_id`,
    /// or, for an unknown user, to the (lower-cased) login text.
    pub fn attempt(&self, user_id: Option<Uuid>, login: &str, address: IpAddr) -> Attempt {
        // An unknown login is hashed: its text is the caller's, of any length.
        let account = user_id.map_or_else(
            || format!("login:{:x}", Sha256::digest(login.as_bytes())),
            |id| format!("user:{id}"),
        );
        let address = address_key(address);
        Attempt {
            pair_key: format!("{}login_failures:{account}:{address}", self.prefix),
            address_key: format!("{}login_failures:address:{address}", self.prefix),
        }
    }

    /// Counts the attempt for its pair *before* the password is checked, so
    /// that concurrent guesses cannot all pass a check made before any of
    /// them failed; then, when the attempt is throttled, the seconds until
    /// it is not. (A correct password then clears the pair's count.)
    pub async fn begin(&self, attempt: &Attempt) -> Result<Option<u64>> {
        self.kv
            .incr_in_window(
                std::slice::from_ref(&attempt.pair_key),
                self.limits.window_secs,
            )
            .await?;
        let counts = self
            .kv
            .get_many_with_ttl(&[attempt.pair_key.clone(), attempt.address_key.clone()])
            .await?;
        // The pair's count includes this attempt; the address's does not.
        let limits = [
            i64::from(self.limits.per_account_and_address) + 1,
            i64::from(self.limits.per_address),
        ];
        let retry_after = counts
            .iter()
            .zip(limits)
            .filter(|&(&(count, _), limit)| count >= limit)
            .map(|(&(_, ttl), _)| ttl.max(1))
            .max();
        Ok(retry_after)
    }

    /// Counts a failed login for the address (the pair was counted by
    /// [`Self::begin`]).
    pub async fn failed(&self, attempt: &Attempt) -> Result<()> {
        self.kv
            .incr_in_window(
                std::slice::from_ref(&attempt.address_key),
                self.limits.window_secs,
            )
            .await
    }

    /// Forgets the pair's count (the address keeps its failures).
    pub async fn succeeded(&self, attempt: &Attempt) -> Result<()> {
        self.kv.del(&attempt.pair_key).await
    }
}

/// The address as counted: IPv4 (also when mapped into IPv6) as it is,
/// other IPv6 addresses as their /64.
fn address_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_count_as_ipv4_or_ipv6_slash_64() {
        let key = |s: &str| address_key(s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])));
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), key("2001:db8:1:2:aaaa::1"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }
}
