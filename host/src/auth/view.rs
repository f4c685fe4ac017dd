//! The host's view of the revocation state: revoked token ids, per-user
//! cutoffs and role changes, as the account service streams them
//! (`WatchRevocations`), each kept until it can refuse nothing more.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use shopeezy_proto::auth::v1 as pb;
use uuid::Uuid;

use crate::domain::Role;

/// A role change: tokens issued at or before `at_ms` get `role`.
#[derive(Debug, Clone, Copy)]
struct RoleChange {
    seq: u64,
    role: Role,
    at_ms: i64,
    expires_at: i64,
}

#[derive(Debug, Default)]
struct State {
    /// Revoked token ids → expiry (seconds).
    tokens: HashMap<Uuid, i64>,
    /// User → (cutoff in ms, expiry in seconds).
    cutoffs: HashMap<Uuid, (i64, i64)>,
    /// User → its latest role change.
    roles: HashMap<Uuid, RoleChange>,
    /// Every entry up to this has been applied.
    cursor: u64,
    /// Whether a complete view has ever been received.
    synced: bool,
    /// When the account service last said the view was complete (a
    /// `synced` marker or a heartbeat).
    last_contact: Option<Instant>,
    /// Whether a stream is open and synced now.
    streaming: bool,
}

/// Why a token is refused by the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The token itself was revoked (sign-out).
    Revoked,
    /// Every token of the user up to a time was revoked (password change,
    /// deletion).
    UserCutoff,
}

/// Whether the view may answer, and for how long more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// Never received a complete view: every token check fails closed.
    NeverSynced,
    /// A stream is open and synced.
    Live,
    /// The stream dropped this long ago; the view is trusted still.
    Stale(Duration),
    /// The stream dropped longer ago than the view is trusted.
    Expired(Duration),
}

/// The revocation view; shared by the request handlers (reads) and the
/// stream task (writes).
#[derive(Debug, Default)]
pub struct View {
    state: RwLock<State>,
}

impl View {
    /// Whether `claims` may pass: `Err` when revoked, else the caller's role
    /// (a role change after the token was issued wins over its claim).
    pub fn check(
        &self,
        jti: Uuid,
        user: Uuid,
        issued_at_ms: i64,
        claimed: Role,
    ) -> Result<Role, Refusal> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        if state.tokens.contains_key(&jti) {
            return Err(Refusal::Revoked);
        }
        if let Some(&(cutoff_ms, _)) = state.cutoffs.get(&user)
            && issued_at_ms <= cutoff_ms
        {
            return Err(Refusal::UserCutoff);
        }
        Ok(match state.roles.get(&user) {
            Some(change) if issued_at_ms <= change.at_ms => change.role,
            _ => claimed,
        })
    }

    /// How fresh the view is, given how long a dropped stream's view is
    /// trusted.
    pub fn freshness(&self, trusted_for: Duration) -> Freshness {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        match (state.synced, state.streaming, state.last_contact) {
            (false, ..) | (true, _, None) => Freshness::NeverSynced,
            (true, true, Some(at)) if at.elapsed() <= trusted_for => Freshness::Live,
            (true, _, Some(at)) => {
                let age = at.elapsed();
                if age <= trusted_for {
                    Freshness::Stale(age)
                } else {
                    Freshness::Expired(age)
                }
            }
        }
    }

    /// The cursor to resume from.
    pub fn cursor(&self) -> u64 {
        self.state.read().unwrap_or_else(|e| e.into_inner()).cursor
    }

    /// How many entries the view holds.
    pub fn len(&self) -> usize {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.tokens.len() + state.cutoffs.len() + state.roles.len()
    }

    /// Whether the view holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies one event of the stream; `Err` for one that makes no sense
    /// (the stream is then dropped and resumed).
    pub fn apply(&self, event: pb::RevocationEvent) -> Result<(), String> {
        use pb::revocation::What;
        use pb::revocation_event::Event;
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        match event.event {
            Some(Event::Revocation(entry)) => {
                let expires_at = entry.expires_at;
                match entry.what {
                    Some(What::TokenId(jti)) => {
                        state.tokens.insert(parse(&jti)?, expires_at);
                    }
                    Some(What::UserCutoff(cutoff)) => {
                        let user = parse(&cutoff.user_id)?;
                        let slot = state.cutoffs.entry(user).or_insert((i64::MIN, 0));
                        slot.0 = slot.0.max(cutoff.at_ms);
                        slot.1 = slot.1.max(expires_at);
                    }
                    Some(What::RoleChange(change)) => {
                        let user = parse(&change.user_id)?;
                        let new = RoleChange {
                            seq: entry.seq,
                            role: Role::from_account(&change.role),
                            at_ms: change.at_ms,
                            expires_at,
                        };
                        // The later change (in log order) wins, whichever
                        // arrives first.
                        let slot = state.roles.entry(user).or_insert(new);
                        if new.seq >= slot.seq {
                            *slot = new;
                        }
                    }
                    None => return Err("a revocation without content".into()),
                }
            }
            Some(Event::Synced(cursor)) => {
                state.cursor = state.cursor.max(cursor.cursor);
                state.synced = true;
                state.streaming = true;
                state.last_contact = Some(Instant::now());
            }
            Some(Event::Heartbeat(cursor)) => {
                if !state.streaming {
                    return Err("a heartbeat before the stream was synced".into());
                }
                state.cursor = state.cursor.max(cursor.cursor);
                state.last_contact = Some(Instant::now());
            }
            None => return Err("an empty event".into()),
        }
        Ok(())
    }

    /// The stream ended: the view is stale from its last contact on.
    pub fn disconnected(&self) {
        self.state
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .streaming = false;
    }

    /// Forgets the entries that can refuse nothing any more (`now` in
    /// seconds since the epoch).
    pub fn prune(&self, now: i64) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.tokens.retain(|_, expires_at| *expires_at > now);
        state.cutoffs.retain(|_, (_, expires_at)| *expires_at > now);
        state.roles.retain(|_, change| change.expires_at > now);
    }
}

fn parse(id: &str) -> Result<Uuid, String> {
    Uuid::parse_str(id).map_err(|_| format!("{id:?} is not a UUID"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use pb::revocation::What;
    use pb::revocation_event::Event;

    fn entry(seq: u64, what: What) -> pb::RevocationEvent {
        pb::RevocationEvent {
            event: Some(Event::Revocation(pb::Revocation {
                seq,
                expires_at: i64::MAX,
                what: Some(what),
            })),
        }
    }

    fn role(seq: u64, user: Uuid, role: &str, at_ms: i64) -> pb::RevocationEvent {
        entry(
            seq,
            What::RoleChange(pb::RoleChange {
                user_id: user.to_string(),
                role: role.into(),
                at_ms,
            }),
        )
    }

    #[test]
    fn role_changes_apply_to_older_tokens_and_the_later_change_wins() {
        let view = View::default();
        let user = Uuid::now_v7();
        let jti = Uuid::now_v7();
        // Demoted at 2000, then (a later entry arriving first) made admin at 3000.
        view.apply(role(8, user, "admin", 3000)).unwrap();
        view.apply(role(7, user, "customer", 2000)).unwrap();
        assert_eq!(view.check(jti, user, 1000, Role::Seller), Ok(Role::Admin));
        // A token issued after the change carries its role itself.
        assert_eq!(
            view.check(jti, user, 4000, Role::Customer),
            Ok(Role::Customer)
        );
    }

    #[test]
    fn cutoffs_and_revoked_tokens_refuse() {
        let view = View::default();
        let user = Uuid::now_v7();
        let jti = Uuid::now_v7();
        view.apply(entry(1, What::TokenId(jti.to_string())))
            .unwrap();
        assert_eq!(
            view.check(jti, user, 0, Role::Customer),
            Err(Refusal::Revoked)
        );
        let other = Uuid::now_v7();
        view.apply(entry(
            2,
            What::UserCutoff(pb::UserCutoff {
                user_id: user.to_string(),
                at_ms: 5000,
            }),
        ))
        .unwrap();
        assert_eq!(
            view.check(other, user, 5000, Role::Customer),
            Err(Refusal::UserCutoff)
        );
        assert_eq!(
            view.check(other, user, 5001, Role::Customer),
            Ok(Role::Customer)
        );
    }

    #[test]
    fn the_view_is_trusted_only_for_a_while_after_the_stream_drops() {
        let view = View::default();
        assert_eq!(
            view.freshness(Duration::from_secs(60)),
            Freshness::NeverSynced
        );
        view.apply(pb::RevocationEvent {
            event: Some(Event::Synced(pb::Cursor { cursor: 3 })),
        })
        .unwrap();
        assert_eq!(view.freshness(Duration::from_secs(60)), Freshness::Live);
        assert_eq!(view.cursor(), 3);
        view.disconnected();
        assert!(matches!(
            view.freshness(Duration::from_secs(60)),
            Freshness::Stale(_)
        ));
        assert!(matches!(
            view.freshness(Duration::ZERO),
            Freshness::Expired(_)
        ));
    }
}
