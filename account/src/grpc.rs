//! The gRPC `shopeezy.auth.v1.AuthService` that other services call.

use std::time::Duration;

use prost_types::Timestamp;
use shopeezy_proto::auth::v1 as pb;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::auth::authenticate;
use crate::error::quote;
use crate::feed::LogEntry;
use crate::startup::AppState;
use crate::store::{self, User};

/// Most ids one `GetUsers` call may ask for.
const MAX_GET_USERS: usize = 1000;

/// The service's implementation.
#[derive(Debug, Clone)]
pub struct AuthGrpc {
    state: AppState,
}

impl AuthGrpc {
    /// The service over the app's state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn user_message(u: &User) -> pb::User {
    pb::User {
        id: u.id.to_string(),
        name: u.name.clone(),
        username: u.username.clone(),
        email: u.email.clone(),
        role: u.role.as_str().to_owned(),
        created_at: Some(timestamp(u.created_at)),
        updated_at: Some(timestamp(u.updated_at)),
    }
}

/// How often a `WatchRevocations` stream says it is still there.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// How long a new stream waits for this replica's first read of the log.
const FIRST_POLL_WAIT: Duration = Duration::from_secs(5);

/// A `WatchRevocations` stream.
pub type RevocationStream =
    tokio_stream::wrappers::ReceiverStream<Result<pb::RevocationEvent, Status>>;

/// A log entry as the stream sends it (`None`: an entry of a kind this
/// version does not know, which no client could apply).
fn revocation_message(entry: &LogEntry) -> Option<pb::RevocationEvent> {
    use pb::revocation::What;
    let what = match (entry.kind.as_str(), entry.at_ms, entry.role.as_deref()) {
        ("token", _, _) => What::TokenId(entry.subject.to_string()),
        ("user", Some(at_ms), _) => What::UserCutoff(pb::UserCutoff {
            user_id: entry.subject.to_string(),
            at_ms,
        }),
        ("role", Some(at_ms), Some(role)) => What::RoleChange(pb::RoleChange {
            user_id: entry.subject.to_string(),
            role: role.to_owned(),
            at_ms,
        }),
        _ => return None,
    };
    Some(pb::RevocationEvent {
        event: Some(pb::revocation_event::Event::Revocation(pb::Revocation {
            seq: u64::try_from(entry.seq).unwrap_or_default(),
            expires_at: entry.expires_at,
            what: Some(what),
        })),
    })
}

fn cursor_message(cursor: i64, synced: bool) -> pb::RevocationEvent {
    let cursor = pb::Cursor {
        cursor: u64::try_from(cursor).unwrap_or_default(),
    };
    pb::RevocationEvent {
        event: Some(if synced {
            pb::revocation_event::Event::Synced(cursor)
        } else {
            pb::revocation_event::Event::Heartbeat(cursor)
        }),
    }
}

fn parse_id(raw: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(raw)
        .map_err(|_| Status::invalid_argument(format!("{} is not a UUID", quote(raw))))
}

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for AuthGrpc {
    type WatchRevocationsStream = RevocationStream;

    async fn get_keys(
        &self,
        _request: Request<pb::GetKeysRequest>,
    ) -> Result<Response<pb::GetKeysResponse>, Status> {
        let keys = &self.state.keys;
        Ok(Response::new(pb::GetKeysResponse {
            keys: keys
                .public_keys()
                .into_iter()
                .map(|(kid, ed25519)| pb::PublicKey {
                    kid,
                    alg: "EdDSA".into(),
                    ed25519,
                })
                .collect(),
            issuer: keys.issuer().to_owned(),
            audience: keys.audience().to_owned(),
        }))
    }

    async fn watch_revocations(
        &self,
        request: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        let feed = self.state.feed.clone();
        // Subscribed before the backlog is read: an entry committed in
        // between comes live (perhaps twice), never not at all.
        let mut live = feed.subscribe();
        let position = feed
            .position(FIRST_POLL_WAIT)
            .await
            .ok_or_else(|| Status::unavailable("the revocation log cannot be read yet"))?;
        let mut after = i64::try_from(request.into_inner().after).unwrap_or(i64::MAX);
        if after > feed.max_seq().await? {
            // A cursor of another log (a database restored or replaced):
            // start over. (Compared with the database, not this replica's
            // tail, which may be a poll behind the replica that gave it.)
            after = 0;
        }
        let backlog = feed.since(after).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let stopped = feed.stopped();
        tokio::spawn(async move {
            tokio::pin!(stopped);
            for entry in &backlog {
                if let Some(message) = revocation_message(entry)
                    && tx.send(Ok(message)).await.is_err()
                {
                    return;
                }
            }
            let mut cursor = after.max(position.settled);
            if tx.send(Ok(cursor_message(cursor, true))).await.is_err() {
                return;
            }
            metrics::counter!("account_revocation_streams_total").increment(1);
            let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let messages = tokio::select! {
                    () = &mut stopped => return,
                    () = tx.closed() => return,
                    received = live.recv() => match received {
                        Ok(entry) => revocation_message(&entry).into_iter().map(Ok).collect(),
                        Err(RecvError::Lagged(_)) => {
                            // The client resumes from its cursor.
                            let _ = tx.send(Err(Status::aborted("the stream fell behind"))).await;
                            return;
                        }
                        Err(RecvError::Closed) => return,
                    },
                    _ = beat.tick() => {
                        // The position first, then what the tail broadcast
                        // before it: the cursor never passes an entry this
                        // stream has not sent.
                        let settled = feed.position_now().map_or(cursor, |now| now.settled);
                        let mut messages = Vec::new();
                        loop {
                            match live.try_recv() {
                                Ok(entry) => messages.extend(revocation_message(&entry).map(Ok)),
                                Err(TryRecvError::Empty) => break,
                                Err(TryRecvError::Lagged(_)) => {
                                    let _ = tx.send(Err(Status::aborted("the stream fell behind"))).await;
                                    return;
                                }
                                Err(TryRecvError::Closed) => return,
                            }
                        }
                        cursor = cursor.max(settled);
                        messages.push(Ok(cursor_message(cursor, false)));
                        messages
                    }
                };
                for message in messages {
                    if tx.send(message).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn validate_token(
        &self,
        request: Request<pb::ValidateTokenRequest>,
    ) -> Result<Response<pb::ValidateTokenResponse>, Status> {
        let started = std::time::Instant::now();
        let result = authenticate(&self.state, &request.into_inner().token).await;
        let outcome = match &result {
            Ok(_) => "valid",
            Err(crate::error::Error::RevocationUnavailable(_)) => "unavailable",
            Err(_) => "invalid",
        };
        metrics::histogram!("account_validate_token_seconds", "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        let caller = result?;
        Ok(Response::new(pb::ValidateTokenResponse {
            user_id: caller.user.id.to_string(),
            username: caller.user.username.clone(),
            email: caller.user.email.clone(),
            role: caller.user.role.as_str().to_owned(),
            expires_at: Some(Timestamp {
                seconds: caller.claims.exp as i64,
                nanos: 0,
            }),
            token_id: caller.claims.jti.to_string(),
        }))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let id = parse_id(&request.into_inner().user_id)?;
        let user = store::by_id(&self.state.db, id)
            .await?
            .ok_or_else(|| Status::not_found("no such user"))?;
        Ok(Response::new(user_message(&user)))
    }

    async fn get_users(
        &self,
        request: Request<pb::GetUsersRequest>,
    ) -> Result<Response<pb::GetUsersResponse>, Status> {
        let ids = request.into_inner().user_ids;
        if ids.len() > MAX_GET_USERS {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_GET_USERS} ids per call"
            )));
        }
        let ids = ids
            .iter()
            .map(|id| parse_id(id))
            .collect::<Result<Vec<_>, _>>()?;
        let users = store::by_ids(&self.state.db, &ids).await?;
        Ok(Response::new(pb::GetUsersResponse {
            users: users.iter().map(user_message).collect(),
        }))
    }
}
