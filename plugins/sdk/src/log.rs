//! Logging through the host's only import. The host keeps a bounded number
//! of lines and bytes per call, tagged with the plugin: log what explains a
//! decision, not every step.

pub use crate::pricing::shopeezy::plugin::log::Level;

/// Records `message` at `level`. Outside WebAssembly (a plugin's native unit
/// tests) it goes to standard error instead.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::pricing::shopeezy::plugin::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

/// Records a debug message.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Records an informational message.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Records a warning.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Records an error.
pub fn error(message: &str) {
    log(Level::Error, message);
}
