//! Administration of users, and the admin that configuration makes exist.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Backend, assert_problem, assert_token_accepted, spawn_app,
};

every_backend!(
    a_customer_may_not_administer_users,
    an_admin_lists_users_page_by_page,
    an_admin_reads_a_user,
    an_admin_makes_a_seller_and_existing_tokens_follow,
    an_admin_cannot_change_its_own_role,
    the_configured_admin_exists_and_survives_restarts,
);

async fn a_customer_may_not_administer_users(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ann = app.register_user("ann").await;
    let bob = app.register_user("bob").await;
    let token = app.login_as(&ann).await;

    assert_problem(
        app.list_users(&token, "").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        app.get_user(&token, &bob.id).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    for target in [&ann.id, &bob.id] {
        let response = app
            .change_role(&token, target, &json!({"role": "admin"}))
            .await;
        assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // Without a token at all, it is 401 rather than 403.
    let response = app.get("/v1/admin/users").await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;

    assert_token_accepted(&app, &token, &ann.id, "customer").await;
    let bob_token = app.login_as(&bob).await;
    assert_token_accepted(&app, &bob_token, &bob.id, "customer").await;
}

async fn an_admin_lists_users_page_by_page(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut expected = vec![ADMIN_EMAIL.to_owned()];
    for name in ["ann", "bob", "cy"] {
        expected.push(app.register_user(&format!("{name}-user")).await.email);
    }
    let admin = app.login_as_admin().await;

    let first = app.list_users(&admin, "limit=2").await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 2, "{first}");
    let cursor = first["next_cursor"].as_str().expect("a next_cursor");
    let second = app
        .list_users(&admin, &format!("limit=2&cursor={cursor}"))
        .await;
    assert_eq!(second.status(), StatusCode::OK);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["items"].as_array().unwrap().len(), 2, "{second}");
    assert!(second["next_cursor"].is_null(), "the last page: {second}");

    // Every user once, in registration order, with no secret in any item.
    let listed: Vec<&Value> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .collect();
    let emails: Vec<&str> = listed
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, expected);
    for user in &listed {
        assert!(user.get("password_hash").is_none() && user.get("password").is_none());
    }

    // The default page holds them all; a role filter narrows it.
    let all: Value = app.list_users(&admin, "").await.json().await.unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 4);
    assert!(all["next_cursor"].is_null());
    let admins: Value = app
        .list_users(&admin, "role=admin")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(admins["items"].as_array().unwrap().len(), 1);
    assert_eq!(admins["items"][0]["email"], ADMIN_EMAIL);

    for query in ["limit=0", "limit=101", "limit=-1", "limit=many"] {
        let response = app.list_users(&admin, query).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_problem(response, StatusCode::BAD_REQUEST, "invalid_query").await;
    }
    for cursor in ["garbage!", "bm90LWpzb24", "InNvbWV0aGluZyI"] {
        let response = app.list_users(&admin, &format!("cursor={cursor}")).await;
        assert_problem(response, StatusCode::BAD_REQUEST, "invalid_cursor").await;
    }
}

async fn an_admin_reads_a_user(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ann = app.register_user("ann").await;
    let ann_token = app.login_as(&ann).await;
    let admin = app.login_as_admin().await;

    let response = app.get_user(&admin, &ann.id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user, app.me_json(&ann_token).await);

    let unknown = uuid::Uuid::now_v7().to_string();
    assert_problem(
        app.get_user(&admin, &unknown).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_problem(
        app.get_user(&admin, "not-a-uuid").await,
        StatusCode::BAD_REQUEST,
        "invalid_path",
    )
    .await;
    let response = app
        .change_role(&admin, &unknown, &json!({"role": "seller"}))
        .await;
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app
        .change_role(&admin, "not-a-uuid", &json!({"role": "seller"}))
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid_path").await;
}

async fn an_admin_makes_a_seller_and_existing_tokens_follow(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ann = app.register_user("ann").await;
    let ann_token = app.login_as(&ann).await;
    let admin = app.login_as_admin().await;

    // Unknown roles are refused, and change nothing.
    let response = app
        .change_role(&admin, &ann.id, &json!({"role": "superuser"}))
        .await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert_token_accepted(&app, &ann_token, &ann.id, "customer").await;

    let response = app
        .change_role(&admin, &ann.id, &json!({"role": "seller"}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let changed: Value = response.json().await.unwrap();
    assert_eq!(changed["id"], ann.id.as_str());
    assert_eq!(changed["role"], "seller");

    // Her token from before the change answers with the new role at once.
    assert_token_accepted(&app, &ann_token, &ann.id, "seller").await;
    let fresh: Value = app
        .login(&json!({"email": ann.email, "password": ann.password}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fresh["user"]["role"], "seller");

    // A seller is still not an admin.
    assert_problem(
        app.list_users(&ann_token, "").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

async fn an_admin_cannot_change_its_own_role(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.login_as_admin().await;
    let me = app.me_json(&admin).await;
    let admin_id = me["id"].as_str().unwrap();

    for role in ["customer", "seller", "admin"] {
        let response = app
            .change_role(&admin, admin_id, &json!({"role": role}))
            .await;
        assert_problem(response, StatusCode::CONFLICT, "cannot_change_own_role").await;
    }
    assert_token_accepted(&app, &admin, admin_id, "admin").await;
}

async fn the_configured_admin_exists_and_survives_restarts(backend: Backend) {
    let Some(mut app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.login_as_admin().await;
    let me = app.me_json(&admin).await;
    assert_eq!(me["email"], ADMIN_EMAIL);
    assert_eq!(me["role"], "admin");
    let valid = app.validate_token(&admin).await.unwrap();
    assert_eq!(valid.role, "admin");
    let ann = app.register_user("ann").await;

    // Restarted on the same database: still one admin, the same one, and a
    // token from before the restart still works.
    app.restart_with(|_| {}).await;
    let admins: Value = app
        .list_users(&admin, "role=admin")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(admins["items"].as_array().unwrap().len(), 1, "{admins}");
    assert_eq!(admins["items"][0]["id"], me["id"]);
    app.login_with(ADMIN_EMAIL, ADMIN_PASSWORD).await;

    // Naming an existing customer as the admin makes that customer an admin,
    // keeping its password.
    let ann_token = app.login_as(&ann).await;
    let ann_email = ann.email.clone();
    app.restart_with(|config| {
        config.admin_email = Some(ann_email);
        config.admin_password = Some("ignored-for-an-existing-user".to_owned());
    })
    .await;
    assert_token_accepted(&app, &ann_token, &ann.id, "admin").await;
    app.login_as(&ann).await;
    let admins: Value = app
        .list_users(&ann_token, "role=admin")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(admins["items"].as_array().unwrap().len(), 2, "{admins}");
}
