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

use crate::error::Error;

/// The host's migrations, embedded (`migrations/host/`).
const MIGRATIONS: Migrations<'static> = Migrations {
    postgres: shopeezy_common::embed_migrations!(
        "host/postgres",
        [
            "0001_catalog_carts_orders",
            "0002_plugins",
            "0003_product_search",
            "0004_products_fillfactor",
            "0005_customer_order_counts"
        ]
    ),
    sqlite: shopeezy_common::embed_migrations!(
        "host/sqlite",
        [
            "0001_catalog_carts_orders",
            "0002_plugins",
            "0003_product_search",
            "0004_customer_order_counts"
        ]
    ),
    mysql: shopeezy_common::embed_migrations!("host/mysql", ["0001_schema"]),
};

/// The host's migrations, for both backends.
pub fn migrations() -> Migrations<'static> {
    MIGRATIONS
}

/// Turns a unique-constraint violation on `column` into `taken` (a 409);
/// any other failure stays a database error.
fn conflict_on(e: sqlx::Error, column: &str, taken: Error) -> Error {
    match unique_violation(&e) {
        Some(c) if c.contains(column) => taken,
        _ => Error::Database(e),
    }
}

#[cfg(test)]
mod migration_tests {
    #[test]
    fn every_migration_file_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let differ = super::MIGRATIONS
            .unembedded(&root, "host")
            .expect("the folders");
        assert!(differ.is_empty(), "host: {differ:?}");
    }
}
