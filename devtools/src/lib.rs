//! Shopeezy's developer tools, apart from the services: the demo that
//! `cargo xtask run` starts, and the benchmarks of `cargo xtask bench`
//! (load generator, PostgreSQL ceiling, soak, plugin micro-benchmarks).
//!
//! The library holds only the plugin benchmarks' fixtures, which the
//! `shopeezy-devtools` binary and criterion's `benches/plugins.rs` share;
//! the services' own libraries carry no benchmark code.

pub mod fixtures;
