//! Showing a plugin's events on stderr as a call runs.

use std::io::Write as _;

use crate::caps::events::{Event, EventSink, Level};

/// Prints steps, warnings and errors (and info lines and output when verbose) to stderr.
pub struct StderrSink {
    verbose: bool,
}

impl StderrSink {
    /// Info lines and output show only with `-v` or `PIER_LOG`.
    pub fn new() -> Self {
        StderrSink { verbose: tracing::enabled!(tracing::Level::DEBUG) }
    }
}

impl Default for StderrSink {
    fn default() -> Self {
        Self::new()
    }
}

/// One event as a line for a person.
pub fn render(event: &Event) -> String {
    match event {
        Event::Step { title } => format!("→ {title}"),
        Event::Log { level, message } => match level {
            Level::Error => format!("  error: {message}"),
            Level::Warn => format!("  warning: {message}"),
            Level::Info | Level::Debug => format!("  {message}"),
        },
        Event::Output { line } => format!("  │ {line}"),
    }
}

impl EventSink for StderrSink {
    fn emit(&self, event: Event) {
        let show = match &event {
            Event::Step { .. } => true,
            Event::Log { level, .. } => *level >= Level::Warn || self.verbose,
            Event::Output { .. } => self.verbose,
        };
        if show {
            let _ = writeln!(std::io::stderr(), "{}", render(&event));
        }
    }
}
