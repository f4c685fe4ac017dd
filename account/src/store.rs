//! Users in the database. Every query here reads the same on PostgreSQL and
//! SQLite, so each is written once and compiled for both with `with_db!`.

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use shopeezy_common::db::{Db, unique_violation};
use shopeezy_common::outbox::Event;
use shopeezy_common::sql;
use shopeezy_common::{insert_event, with_db};
use uuid::Uuid;

use crate::domain::{Email, Name, Role, Username};
use crate::error::{Error, Result};

/// A user as stored (the hash never leaves the service: see [`UserView`]).
#[derive(Debug, Clone)]
pub struct User {
    /// The user's id (UUIDv7, so ids sort by creation).
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Unique, lower-case.
    pub username: String,
    /// Unique, lower-case.
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// What the user may do.
    pub role: Role,
    /// When the user registered (UTC).
    pub created_at: DateTime<Utc>,
    /// When the user last changed (UTC).
    pub updated_at: DateTime<Utc>,
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserView {
    /// The user's id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Unique, lower-case.
    pub username: String,
    /// Unique, lower-case.
    pub email: String,
    /// `customer`, `seller` or `admin`.
    pub role: Role,
    /// When the user registered (UTC).
    pub created_at: DateTime<Utc>,
    /// When the user last changed (UTC).
    pub updated_at: DateTime<Utc>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            name: u.name.clone(),
            username: u.username.clone(),
            email: u.email.clone(),
            role: u.role,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    name: String,
    username: String,
    email: String,
    password_hash: String,
    role: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<Row> for User {
    type Error = Error;

    fn try_from(r: Row) -> Result<Self> {
        Ok(Self {
            id: r.id,
            name: r.name,
            username: r.username,
            email: r.email,
            password_hash: r.password_hash,
            role: Role::parse(&r.role).map_err(|_| {
                Error::Internal(anyhow::anyhow!("stored role {:?} is unknown", r.role))
            })?,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// The columns of [`Row`], as a literal for `concat!`.
macro_rules! columns {
    () => {
        "id, name, username, email, password_hash, role, created_at, updated_at"
    };
}

fn users(rows: Vec<Row>) -> Result<Vec<User>> {
    rows.into_iter().map(User::try_from).collect()
}

/// A validated registration.
#[derive(Debug)]
pub struct NewUser {
    /// Display name.
    pub name: Name,
    /// Username.
    pub username: Username,
    /// Email.
    pub email: Email,
    /// argon2id hash of the password.
    pub password_hash: String,
    /// Initial role.
    pub role: Role,
}

/// Validated changes to a user; `None` keeps a field as it is.
#[derive(Debug, Default)]
pub struct Changes {
    /// New display name.
    pub name: Option<Name>,
    /// New username.
    pub username: Option<Username>,
    /// New email.
    pub email: Option<Email>,
    /// New password hash.
    pub password_hash: Option<String>,
    /// New role.
    pub role: Option<Role>,
}

/// Turns a unique-constraint violation into 409 `email_taken`/`username_taken`.
fn conflict(e: sqlx::Error) -> Error {
    match unique_violation(&e) {
        Some(c) if c.contains("email") => {
            Error::Conflict("email_taken", "that email is already registered")
        }
        Some(c) if c.contains("username") => {
            Error::Conflict("username_taken", "that username is taken")
        }
        _ => Error::Database(e),
    }
}

/// Registers a user and, in the same transaction, its `user.registered` event.
pub async fn create(db: &Db, new: NewUser) -> Result<User> {
    // PostgreSQL keeps microseconds: the answer must show what is stored.
    let now = Utc::now().trunc_subsecs(6);
    let user = User {
        id: Uuid::now_v7(),
        name: new.name.as_str().to_owned(),
        username: new.username.as_str().to_owned(),
        email: new.email.as_str().to_owned(),
        password_hash: new.password_hash,
        role: new.role,
        created_at: now,
        updated_at: now,
    };
    let event = registered_event(&user);
    with_db!(db, pool => {
        let mut tx = pool.begin().await?;
        sqlx::query(sql!(pool, concat!("INSERT INTO users (", columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")))
            .bind(user.id)
            .bind(&user.name)
            .bind(&user.username)
            .bind(&user.email)
            .bind(&user.password_hash)
            .bind(user.role.as_str())
            .bind(user.created_at)
            .bind(user.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(conflict)?;
        insert_event!(&mut *tx, &event)?;
        tx.commit().await?;
    });
    Ok(user)
}

/// The event announcing a registration.
fn registered_event(user: &User) -> Event {
    let data = serde_json::json!({
        "user_id": user.id,
        "name": user.name,
        "username": user.username,
        "email": user.email,
        "role": user.role,
    });
    Event::new(
        "/shopeezy/account",
        "user.registered",
        format!("users/{}", user.id),
        data,
    )
}

const BY_ID_SQL: &str = concat!("SELECT ", columns!(), " FROM users WHERE id = $1");

/// The user with this id.
pub async fn by_id(db: &Db, id: Uuid) -> Result<Option<User>> {
    let row: Option<Row> = with_db!(db, pool => sqlx::query_as(sql!(pool, BY_ID_SQL)).bind(id).fetch_optional(pool).await?);
    row.map(User::try_from).transpose()
}

/// The user whose email or username is `login` (compared lower-cased).
pub async fn by_login(db: &Db, login: &str) -> Result<Option<User>> {
    const SQL: &str = concat!(
        "SELECT ",
        columns!(),
        " FROM users WHERE email = $1 OR username = $2"
    );
    let login = login.trim().to_lowercase();
    let row: Option<Row> = with_db!(db, pool => sqlx::query_as(sql!(pool, SQL)).bind(&login).bind(&login).fetch_optional(pool).await?);
    row.map(User::try_from).transpose()
}

/// The users among `ids` that exist.
pub async fn by_ids(db: &Db, ids: &[Uuid]) -> Result<Vec<User>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Row> = with_db!(db, pool => {
        let mut q = sqlx::QueryBuilder::new(concat!("SELECT ", columns!(), " FROM users WHERE id IN ("));
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        q.push(")");
        q.build_query_as().fetch_all(pool).await?
    });
    users(rows)
}

/// Up to `limit` users after the user `after` (in id, so registration, order),
/// optionally of one role.
pub async fn list(
    db: &Db,
    after: Option<Uuid>,
    role: Option<Role>,
    limit: u32,
) -> Result<Vec<User>> {
    const SQL: &str = concat!(
        "SELECT ",
        columns!(),
        " FROM users WHERE ($1 IS NULL OR id > $2) AND ($3 IS NULL OR role = $4) ORDER BY id LIMIT $5"
    );
    let role = role.map(Role::as_str);
    let rows: Vec<Row> = with_db!(db, pool => sqlx::query_as(sql!(pool, SQL)).bind(after).bind(after).bind(role).bind(role).bind(i64::from(limit)).fetch_all(pool).await?);
    users(rows)
}

/// Applies `changes` to the user; `None` when there is no such user.
pub async fn update(db: &Db, id: Uuid, changes: Changes) -> Result<Option<User>> {
    // MariaDB's UPDATE returns no rows: there, the row is read back in the
    // same transaction.
    macro_rules! set {
        () => {
            "UPDATE users SET name = COALESCE($1, name), username = COALESCE($2, username), email = COALESCE($3, email),
             password_hash = COALESCE($4, password_hash), role = COALESCE($5, role), updated_at = $6
             WHERE id = $7"
        };
    }
    let returning = !db.is_mysql();
    let row: Option<Row> = with_db!(db, pool => {
        let update = if returning {
            sql!(pool, concat!(set!(), " RETURNING ", columns!()))
        } else {
            sql!(pool, set!())
        };
        let query = sqlx::query_as(update)
            .bind(changes.name.as_ref().map(Name::as_str))
            .bind(changes.username.as_ref().map(Username::as_str))
            .bind(changes.email.as_ref().map(Email::as_str))
            .bind(changes.password_hash.as_deref())
            .bind(changes.role.map(Role::as_str))
            .bind(Utc::now())
            .bind(id);
        if returning {
            // One statement: no transaction round trips.
            query.fetch_optional(pool).await.map_err(conflict)?
        } else {
            let mut tx = pool.begin().await?;
            query.fetch_optional(&mut *tx).await.map_err(conflict)?;
            let row = sqlx::query_as(sql!(pool, BY_ID_SQL)).bind(id).fetch_optional(&mut *tx).await?;
            tx.commit().await?;
            row
        }
    });
    row.map(User::try_from).transpose()
}

/// Deletes the user; whether there was one.
pub async fn delete(db: &Db, id: Uuid) -> Result<bool> {
    let done = with_db!(db, pool => sqlx::query(sql!(pool, "DELETE FROM users WHERE id = $1")).bind(id).execute(pool).await?.rows_affected());
    Ok(done > 0)
}

/// Gives the user `role` and, in the same transaction, logs the change in
/// `revocation_log` (so services that verify tokens themselves apply the new
/// role to the user's existing tokens); `None` when there is no such user.
///
/// The entry's `at_ms` is [`ROLE_CHANGE_GRACE_MS`] past now: a sign-in that
/// read the old role just before this commit may sign its token a moment
/// after, and that token must get the new role too. The entry is kept until
/// every token issued up to `at_ms` has expired (`token_ttl_secs`).
pub async fn change_role(
    db: &Db,
    id: Uuid,
    role: Role,
    token_ttl_secs: u64,
) -> Result<Option<User>> {
    macro_rules! set {
        () => {
            "UPDATE users SET role = $1, updated_at = $2 WHERE id = $3"
        };
    }
    let returning = !db.is_mysql();
    let now_ms = crate::revocation::now_ms();
    let at_ms = now_ms + ROLE_CHANGE_GRACE_MS;
    let expires_at = at_ms / 1000 + i64::try_from(token_ttl_secs).unwrap_or(i64::MAX / 2) + 60;
    let row: Option<Row> = with_db!(db, pool => {
        let mut tx = pool.begin().await?;
        // The row lock taken here orders concurrent changes of one user: the
        // later one's log entry gets the higher sequence number.
        let update = if returning {
            sql!(pool, concat!(set!(), " RETURNING ", columns!()))
        } else {
            sql!(pool, set!())
        };
        let query = sqlx::query_as(update).bind(role.as_str()).bind(Utc::now()).bind(id);
        let row: Option<Row> = if returning {
            query.fetch_optional(&mut *tx).await?
        } else {
            query.fetch_optional(&mut *tx).await?;
            sqlx::query_as(sql!(pool, BY_ID_SQL)).bind(id).fetch_optional(&mut *tx).await?
        };
        if row.is_some() {
            sqlx::query(sql!(pool, crate::revocation::LOG_INSERT))
                .bind("role")
                .bind(id)
                .bind(Some(at_ms))
                .bind(Some(role.as_str()))
                .bind(expires_at)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        row
    });
    row.map(User::try_from).transpose()
}

/// How far past a role change its log entry reaches (see [`change_role`]).
pub const ROLE_CHANGE_GRACE_MS: i64 = 5_000;
