//! gRPC `GetKeys` and `WatchRevocations`, as a service that verifies tokens
//! itself uses them: the keys; then the live revocation state, a `synced`
//! marker, new entries as they happen (also those another replica records),
//! heartbeats, and a resume from the cursor that misses nothing.

use std::time::{Duration, Instant};

use serde_json::json;
use shopeezy_proto::auth::v1 as pb;
use shopeezy_proto::auth::v1::revocation::What;
use shopeezy_proto::auth::v1::revocation_event::Event;
use tonic::Streaming;

use crate::helpers::{Backend, TestApp, spawn_app};

every_backend!(
    get_keys_answers_the_key_that_signs_tokens,
    the_stream_sends_the_state_a_marker_then_live_entries_and_resumes_from_its_cursor,
);

/// On PostgreSQL a log row's `seq` is taken before its transaction commits:
/// a row committed after one with a higher `seq` still reaches the stream,
/// and the cursor does not pass it while it may still come.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_entry_committed_late_with_a_lower_seq_is_not_skipped() {
    let Some(app) = spawn_app(Backend::Production).await else {
        return;
    };
    let mut stream = watch(&app, 0).await;
    let (_, _) = until_synced(&mut stream).await;

    // A writer takes a seq and holds its transaction open…
    let pool = sqlx::PgPool::connect(&app.config.database_url)
        .await
        .unwrap();
    let mut late = pool.begin().await.unwrap();
    let late_jti = uuid::Uuid::now_v7();
    let late_seq: i64 = sqlx::query_scalar(
        "INSERT INTO revocation_log (kind, subject, expires_at, created_ms)
         VALUES ('token', $1, $2, $3) RETURNING seq",
    )
    .bind(late_jti)
    .bind(chrono::Utc::now().timestamp() + 600)
    .bind(chrono::Utc::now().timestamp_millis())
    .fetch_one(&mut *late)
    .await
    .unwrap();

    // …while a sign-out with a higher seq commits and is streamed.
    let ann = app.register_user("ann").await;
    let token = app.login_as(&ann).await;
    let ann_jti = jti(&app, &token).await;
    assert_eq!(app.logout(&token).await.status(), 204);
    let (seen, _) = live_until(&mut stream, Duration::from_secs(1), |seen| {
        revokes_token(seen, &ann_jti)
    })
    .await;
    assert!(seen.iter().all(|e| e.seq as i64 > late_seq));

    // Heartbeats meanwhile never hand out a cursor past the open one.
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        match next(&mut stream, Duration::from_secs(3)).await {
            Event::Heartbeat(c) => assert!(
                (c.cursor as i64) < late_seq,
                "the cursor {} passed the uncommitted {late_seq}",
                c.cursor
            ),
            Event::Revocation(e) => panic!("nothing else was revoked: {e:?}"),
            Event::Synced(_) => panic!("a second marker"),
        }
    }

    // It commits, late: the stream still sends it, within a second.
    late.commit().await.unwrap();
    let since = Instant::now();
    live_until(&mut stream, Duration::from_secs(1), |seen| {
        revokes_token(seen, &late_jti.to_string())
    })
    .await;
    assert!(since.elapsed() < Duration::from_secs(1));
    pool.close().await;
}

async fn get_keys_answers_the_key_that_signs_tokens(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let keys = app
        .grpc
        .clone()
        .get_keys(pb::GetKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    let jwks = app.jwks().await;
    assert_eq!(keys.keys.len(), 1);
    let key = &keys.keys[0];
    assert_eq!(key.alg, "EdDSA");
    assert_eq!(key.kid, jwks["keys"][0]["kid"].as_str().unwrap());
    use base64::Engine;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    assert_eq!(key.ed25519, x);
    assert_eq!(keys.issuer, "shopeezy-account");
    assert_eq!(keys.audience, "shopeezy");
}

/// The token id (`jti`) of a token.
async fn jti(app: &TestApp, token: &str) -> String {
    app.validate_token(token).await.unwrap().token_id
}

async fn watch(app: &TestApp, after: u64) -> Streaming<pb::RevocationEvent> {
    app.grpc
        .clone()
        .watch_revocations(pb::WatchRevocationsRequest { after })
        .await
        .unwrap()
        .into_inner()
}

/// The next event, within `within`.
async fn next(stream: &mut Streaming<pb::RevocationEvent>, within: Duration) -> Event {
    tokio::time::timeout(within, stream.message())
        .await
        .expect("an event in time")
        .expect("the stream is fine")
        .expect("the stream goes on")
        .event
        .expect("an event")
}

/// The entries up to the `synced` marker, and its cursor.
async fn until_synced(stream: &mut Streaming<pb::RevocationEvent>) -> (Vec<pb::Revocation>, u64) {
    let mut entries = Vec::new();
    loop {
        match next(stream, Duration::from_secs(5)).await {
            Event::Revocation(entry) => entries.push(entry),
            Event::Synced(cursor) => return (entries, cursor.cursor),
            Event::Heartbeat(_) => panic!("a heartbeat before the marker"),
        }
    }
}

/// Reads live events until `wanted` holds for the entries seen, for at most
/// `within`; the entries seen and the last heartbeat cursor.
async fn live_until(
    stream: &mut Streaming<pb::RevocationEvent>,
    within: Duration,
    wanted: impl Fn(&[pb::Revocation]) -> bool,
) -> (Vec<pb::Revocation>, Option<u64>) {
    let deadline = Instant::now() + within;
    let mut entries = Vec::new();
    let mut cursor = None;
    while !wanted(&entries) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "not seen in time; saw {entries:?}");
        match next(stream, left).await {
            Event::Revocation(entry) => entries.push(entry),
            Event::Heartbeat(c) => cursor = Some(c.cursor),
            Event::Synced(_) => panic!("a second marker"),
        }
    }
    (entries, cursor)
}

fn revokes_token(entries: &[pb::Revocation], jti: &str) -> bool {
    entries
        .iter()
        .any(|e| matches!(&e.what, Some(What::TokenId(id)) if id == jti))
}

fn cuts_off(entries: &[pb::Revocation], user: &str) -> bool {
    entries
        .iter()
        .any(|e| matches!(&e.what, Some(What::UserCutoff(c)) if c.user_id == user))
}

fn changes_role(entries: &[pb::Revocation], user: &str, role: &str) -> bool {
    entries.iter().any(
        |e| matches!(&e.what, Some(What::RoleChange(c)) if c.user_id == user && c.role == role),
    )
}

async fn the_stream_sends_the_state_a_marker_then_live_entries_and_resumes_from_its_cursor(
    backend: Backend,
) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.login_as_admin().await;
    let ann = app.register_user("ann").await;
    let bob = app.register_user("bob").await;
    let cara = app.register_user("cara").await;
    let dan = app.register_user("dan").await;
    let ann_token = app.login_as(&ann).await;
    let ann_jti = jti(&app, &ann_token).await;
    let bob_token = app.login_as(&bob).await;

    // Before anyone watches: Ann signs out, Bob changes his password.
    assert_eq!(app.logout(&ann_token).await.status(), 204);
    let changed = app
        .update_me(
            &bob_token,
            &json!({"password": "bob-new-password-2", "current_password": bob.password}),
        )
        .await;
    assert_eq!(changed.status(), 200);

    // The state, then the marker.
    let mut stream = watch(&app, 0).await;
    let (state, first_cursor) = until_synced(&mut stream).await;
    assert!(revokes_token(&state, &ann_jti), "{state:?}");
    assert!(cuts_off(&state, &bob.id), "{state:?}");
    assert!(
        state.windows(2).all(|w| w[0].seq < w[1].seq),
        "the state comes in log order"
    );
    assert!(
        state
            .iter()
            .all(|e| e.expires_at > chrono::Utc::now().timestamp())
    );

    // Live: a role change and a sign-out, each within a second — the
    // sign-out recorded by another replica, which this one sees in the log.
    let other = app.replica().await;
    assert_eq!(
        app.change_role(&admin, &cara.id, &json!({"role": "seller"}))
            .await
            .status(),
        200
    );
    let dan_token = other.login_as(&dan).await;
    let dan_jti = jti(&other, &dan_token).await;
    let since = Instant::now();
    assert_eq!(other.logout(&dan_token).await.status(), 204);
    let (live, _) = live_until(&mut stream, Duration::from_secs(1), |seen| {
        changes_role(seen, &cara.id, "seller") && revokes_token(seen, &dan_jti)
    })
    .await;
    assert!(since.elapsed() < Duration::from_secs(1));
    let dan_seq = live
        .iter()
        .find(|e| matches!(&e.what, Some(What::TokenId(id)) if id == &dan_jti))
        .unwrap()
        .seq;

    // Heartbeats come every second; the cursor passes an entry only once
    // the entry is older than the re-read window (10 s).
    let mut cursor = first_cursor;
    let deadline = Instant::now() + Duration::from_secs(20);
    while cursor < dan_seq {
        assert!(
            Instant::now() < deadline,
            "the cursor never passed {dan_seq}"
        );
        if let Event::Heartbeat(c) = next(&mut stream, Duration::from_secs(3)).await {
            assert!(c.cursor >= cursor, "the cursor never goes back");
            cursor = c.cursor;
        }
    }
    drop(stream);

    // Disconnected: Cara signs out. Resuming from the cursor sends what is
    // new, and nothing the cursor covers.
    let cara_token = app.login_as(&cara).await;
    let cara_jti = jti(&app, &cara_token).await;
    assert_eq!(app.logout(&cara_token).await.status(), 204);
    let mut resumed = watch(&other, cursor).await;
    let (backlog, resumed_cursor) = until_synced(&mut resumed).await;
    assert!(revokes_token(&backlog, &cara_jti), "{backlog:?}");
    assert!(
        backlog.iter().all(|e| e.seq > cursor),
        "nothing at or below the cursor is sent again: {backlog:?}"
    );
    assert!(!revokes_token(&backlog, &ann_jti));
    assert!(resumed_cursor >= cursor);

    // A cursor the log never reached (another database) starts over.
    let mut fresh = watch(&app, u64::MAX / 2).await;
    let (everything, _) = until_synced(&mut fresh).await;
    assert!(revokes_token(&everything, &ann_jti));
    assert!(revokes_token(&everything, &cara_jti));
}
