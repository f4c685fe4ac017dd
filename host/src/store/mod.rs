//! The host's data: all of its SQL, and its schema's migrations. Queries
//! that read the same on PostgreSQL and SQLite are written once and compiled
//! for both with `with_db!`; the checkout transaction, which differs in how
//! it starts, is in `checkout.rs` here, its orchestration in the crate's
//! `checkout.rs`.
//!
//! Above `domain` and `error`, and imports nothing else from the crate.

pub mod carts;
pub mod checkout;
pub mod orders;
pub mod plugins;
pub mod products;
pub mod usage;

use shopeezy_common::db::{Migrations, unique_violation};
use sqlx::migrate::Migrator;

use crate::error::Error;

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/host/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/host/sqlite");

/// The host's migrations, for both backends.
pub fn migrations() -> Migrations<'static> {
    Migrations {
        postgres: &POSTGRES_MIGRATIONS,
        sqlite: &SQLITE_MIGRATIONS,
    }
}

/// Turns a unique-constraint violation on `column` into `taken` (a 409);
/// any other failure stays a database error.
fn conflict_on(e: sqlx::Error, column: &str, taken: Error) -> Error {
    match unique_violation(&e) {
        Some(c) if c.contains(column) => taken,
        _ => Error::Database(e),
    }
}
