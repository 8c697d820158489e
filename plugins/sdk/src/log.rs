//! Progress and log lines through the `events` capability.

use crate::events::{self, Level};

/// Logs an informational line.
pub fn info(message: &str) {
    events::log(Level::Info, message);
}

/// Logs a warning.
pub fn warn(message: &str) {
    events::log(Level::Warn, message);
}

/// Logs a debug line (shown with `--verbose`).
pub fn debug(message: &str) {
    events::log(Level::Debug, message);
}

/// Begins a progress step.
pub fn step(title: &str) {
    events::step(title);
}

/// Passes provider output on, one or more lines.
pub fn output(text: &str) {
    events::output(text);
}
