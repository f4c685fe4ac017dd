//! Merchant plugins: the wasmtime runtime, its limits, and the registry of
//! installed plugins.

pub mod compile;
pub mod io;
pub mod limits;
pub mod local;
pub mod registry;
pub mod runtime;
