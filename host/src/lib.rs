//! Shopeezy's host service: catalog and inventory, carts, a checkout that
//! runs as one SERIALIZABLE transaction, orders, and the transactional outbox.
//!
//! The modules are layers; each imports only from the layers before it:
//!
//! 1. [`error`] and [`domain`]: the one error type, and the types every
//!    layer shares (roles and callers, products, carts, priced carts,
//!    orders, plugins; validated values). `domain` imports only `error`,
//!    `error` nothing.
//! 2. [`store`] (all SQL) and [`auth`] (token verification with the account
//!    service's keys and pushed revocations): the outside world, in domain
//!    types.
//! 3. [`plugins`] (registry, compiler, runtime) and then [`pricing`] (the
//!    pipeline that runs them).
//! 4. The use cases, orchestration only: [`cart`] and [`checkout`].
//! 5. [`state`]: what request handlers share.
//! 6. [`http`]: the REST API — parse, call a use case (or a plain read),
//!    render.
//! 7. [`startup`], with [`config`]: builds and wires everything.

pub mod auth;
pub mod cart;
pub mod checkout;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod plugins;
pub mod pricing;
pub mod startup;
pub mod state;
pub mod store;

pub use config::Config;
pub use startup::Application;
