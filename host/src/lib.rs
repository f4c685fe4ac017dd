//! Shopeezy's host service: catalog and inventory, carts, a checkout that
//! runs as one SERIALIZABLE transaction, orders, and the transactional outbox.

pub mod auth;
pub mod checkout;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod plugins;
pub mod pricing;
pub mod startup;
pub mod store;

pub use config::Config;
pub use startup::Application;
