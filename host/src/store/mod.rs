//! The host's data. Queries that read the same on PostgreSQL and SQLite are
//! written once and compiled for both with `with_db!`; the checkout
//! transaction, which differs in how it starts, is in `checkout.rs`.

pub mod carts;
pub mod orders;
pub mod products;
pub mod usage;

use shopeezy_common::db::unique_violation;

use crate::error::Error;

/// Turns a unique-constraint violation on `column` into `taken` (a 409);
/// any other failure stays a database error.
pub(crate) fn conflict_on(e: sqlx::Error, column: &str, taken: Error) -> Error {
    match unique_violation(&e) {
        Some(c) if c.contains(column) => taken,
        _ => Error::Database(e),
    }
}
