//! Merchant plugins: the wasmtime runtime, its limits, and the registry of
//! installed plugins.

#[doc(hidden)]
pub mod bench;
pub mod compile;
pub mod io;
pub mod limits;
pub mod registry;
pub mod runtime;
