//! Merchant plugins: the wasmtime runtime, its limits, the registry of
//! installed plugins and their call statistics.

pub mod compile;
pub mod io;
pub mod limits;
pub mod local;
pub mod registry;
pub mod runtime;
pub mod stats;
