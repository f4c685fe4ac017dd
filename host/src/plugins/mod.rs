//! Merchant plugins: the wasmtime runtime, its limits, and the registry of
//! installed plugins.

pub mod limits;
pub mod runtime;
