//! The gRPC `AuthService` that other services call, and its health service.

use std::collections::BTreeSet;

use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{Backend, spawn_app};

every_backend!(
    get_user_and_get_users_return_the_users,
    the_auth_service_reports_serving,
    errors_quote_at_most_a_short_prefix_of_the_input,
);

async fn get_user_and_get_users_return_the_users(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ann = app.register_user("ann").await;
    let bob = app.register_user("bob").await;
    let ann_token = app.login_as(&ann).await;
    let rest = app.me_json(&ann_token).await;

    let user = app.grpc_get_user(&ann.id).await.expect("GetUser finds Ann");
    assert_eq!(user.id, ann.id);
    assert_eq!(user.name, ann.name);
    assert_eq!(user.username, ann.username);
    assert_eq!(user.email, ann.email);
    assert_eq!(user.role, "customer");
    let created_at = user.created_at.expect("created_at is set");
    let rest_created_at: chrono::DateTime<chrono::Utc> =
        rest["created_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(created_at.seconds, rest_created_at.timestamp());
    assert!(user.updated_at.is_some());

    let unknown = uuid::Uuid::now_v7().to_string();
    let users = app
        .grpc_get_users(&[&ann.id, &bob.id, &unknown])
        .await
        .expect("GetUsers answers");
    let ids: BTreeSet<String> = users.iter().map(|u| u.id.clone()).collect();
    assert_eq!(ids, BTreeSet::from([ann.id.clone(), bob.id.clone()]));
    assert!(app.grpc_get_users(&[]).await.unwrap().is_empty());
    // At most 1000 ids per call.
    let many: Vec<String> = (0..1000)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let mut many: Vec<&str> = many.iter().map(String::as_str).collect();
    many[999] = &ann.id;
    assert_eq!(app.grpc_get_users(&many).await.unwrap().len(), 1);
    many.push(&bob.id);
    let status = app.grpc_get_users(&many).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    let status = app.grpc_get_user(&unknown).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    for bad in ["not-a-uuid", ""] {
        let status = app.grpc_get_user(bad).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}: {status:?}");
        let status = app.grpc_get_users(&[&ann.id, bad]).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}: {status:?}");
    }
}

async fn the_auth_service_reports_serving(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let response = app
        .health
        .clone()
        .check(HealthCheckRequest {
            service: "shopeezy.auth.v1.AuthService".to_owned(),
        })
        .await
        .expect("the health service answers")
        .into_inner();
    assert_eq!(response.status(), ServingStatus::Serving);

    let status = app
        .health
        .clone()
        .check(HealthCheckRequest {
            service: "no.such.Service".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

/// An error built from the caller's input quotes a short prefix of it, so a
/// huge input gets a short INVALID_ARGUMENT, not an answer too large to send.
async fn errors_quote_at_most_a_short_prefix_of_the_input(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ann = app.register_user("ann").await;
    for huge in [
        "x".repeat(100_000),
        "é".repeat(50_000),
        "\u{0}".repeat(100_000),
    ] {
        let status = app.grpc_get_user(&huge).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{:.200}",
            status.message()
        );
        assert!(
            status.message().len() < 1000,
            "{} bytes: {:.200}",
            status.message().len(),
            status.message()
        );
        assert!(
            status.message().contains("not a UUID"),
            "{}",
            status.message()
        );
        let status = app.grpc_get_users(&[&ann.id, &huge]).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{:.200}",
            status.message()
        );
        assert!(status.message().len() < 1000, "{:.200}", status.message());
    }
    let status = app.grpc_get_user(&"y".repeat(100)).await.unwrap_err();
    let quoted = format!("\"{}\"…", "y".repeat(64));
    assert!(
        status.message().starts_with(&quoted),
        "{}",
        status.message()
    );
}
