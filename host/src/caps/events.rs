//! Capability `events`: progress steps and log lines from a plugin.
//!
//! Policy: every line is cleaned of terminal escape sequences and control characters,
//! redacted of every known secret, cut to [`MAX_LINE`] bytes, and passed on at no more
//! than [`RATE_PER_SECOND`] lines a second (bursts up to [`BURST`]) and [`MAX_LINES`]
//! lines a call. Excess lines are dropped and counted, never buffered without bound.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::caps::secrets::redact;
use crate::runtime::bindings::pier::deploy::events;

/// Longest line passed on, in bytes; longer lines are cut.
pub const MAX_LINE: usize = 4096;
/// Lines a plugin may emit in one call.
pub const MAX_LINES: u64 = 100_000;
/// Sustained lines per second.
pub const RATE_PER_SECOND: f64 = 1_000.0;
/// Lines that may arrive at once before the rate applies.
pub const BURST: f64 = 5_000.0;

/// How important a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// Something a plugin (or the host on its behalf) reports during a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    /// A log line.
    Log { level: Level, message: String },
    /// A new progress step.
    Step { title: String },
    /// A line of provider or program output.
    Output { line: String },
}

/// Where events go: the terminal, a deploy log, a test's recorder.
pub trait EventSink: Send + Sync {
    /// Receives one cleaned, redacted event.
    fn emit(&self, event: Event);
}

/// A sink that drops everything.
#[derive(Debug, Default)]
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _: Event) {}
}

/// A sink that keeps every event, for tests and for collecting a call's log.
#[derive(Debug, Default)]
pub struct MemorySink {
    events: std::sync::Mutex<Vec<Event>>,
}

impl MemorySink {
    /// The events received so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl EventSink for MemorySink {
    fn emit(&self, event: Event) {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }
}

/// Removes terminal escape sequences and control characters from one line; a tab becomes
/// four spaces.
pub fn clean_line(text: &str) -> String {
    let mut out = strip(&text.replace('\t', "    "));
    if out.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str(" [cut]");
    }
    out
}

/// Plugin text made inert for a terminal, a prompt or a file: escape sequences, control
/// characters (a tab becomes a space) and the invisible characters that reorder or hide
/// text (bidirectional overrides and isolates, zero-width characters) are removed. Every
/// string a plugin hands the host passes through this before it is printed or stored.
pub fn inert(text: &str) -> String {
    strip(&text.replace('\t', " "))
}

/// Escape sequences, control characters and invisible characters removed.
fn strip(text: &str) -> String {
    strip_ansi_escapes::strip_str(text).chars().filter(|c| !c.is_control() && !invisible(*c)).collect()
}

fn invisible(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// The per-call state of the `events` capability.
pub struct EventsCap {
    sink: Arc<dyn EventSink>,
    audit: Option<Arc<crate::caps::Audit>>,
    lines: u64,
    dropped: u64,
    tokens: f64,
    refilled: Instant,
    partial: String,
}

impl EventsCap {
    /// Events go to `sink`; what the plugin writes is also recorded in `audit`, if set.
    pub fn new(sink: Arc<dyn EventSink>, audit: Option<Arc<crate::caps::Audit>>) -> Self {
        EventsCap { sink, audit, lines: 0, dropped: 0, tokens: BURST, refilled: Instant::now(), partial: String::new() }
    }

    fn audit(&self, text: &str) {
        if let Some(audit) = &self.audit {
            audit.record(crate::caps::AuditRecord::Event { text: text.to_string() });
        }
    }

    /// Whether one more line may pass now.
    fn admit(&mut self) -> bool {
        if self.lines >= MAX_LINES {
            if self.dropped == 0 {
                self.sink.emit(Event::Log {
                    level: Level::Warn,
                    message: format!("plugin output cut: it reached the limit of {MAX_LINES} lines for one call"),
                });
            }
            self.dropped += 1;
            return false;
        }
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * RATE_PER_SECOND).min(BURST);
        self.refilled = now;
        if self.tokens < 1.0 {
            self.dropped += 1;
            return false;
        }
        self.tokens -= 1.0;
        if self.dropped > 0 && self.lines < MAX_LINES {
            let n = std::mem::take(&mut self.dropped);
            self.sink.emit(Event::Log {
                level: Level::Warn,
                message: format!("{n} plugin lines dropped: more than {RATE_PER_SECOND} lines a second"),
            });
        }
        self.lines += 1;
        true
    }

    fn pass(&mut self, make: impl FnOnce(String) -> Event, text: &str) {
        if self.admit() {
            let line = clean_line(&redact(text));
            self.sink.emit(make(line));
        }
    }

    /// Emits a log line on the host's behalf, under the same policy.
    pub fn log(&mut self, level: Level, message: &str) {
        self.pass(|message| Event::Log { level, message }, message);
    }

    /// Emits output text, split into lines; a trailing partial line waits for more.
    pub fn output(&mut self, text: &str) {
        self.partial.push_str(text);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']).to_string();
            self.pass(|line| Event::Output { line }, &line);
        }
        if self.partial.len() > MAX_LINE * 4 {
            let line = std::mem::take(&mut self.partial);
            self.pass(|line| Event::Output { line }, &line);
        }
    }

    /// Passes on any partial output line; called when the call ends.
    pub fn flush(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.pass(|line| Event::Output { line }, &line);
        }
    }

    /// Where events go, for capabilities that stream program output.
    pub fn sink(&self) -> Arc<dyn EventSink> {
        self.sink.clone()
    }
}

impl Drop for EventsCap {
    fn drop(&mut self) {
        self.flush();
    }
}

impl events::Host for EventsCap {
    async fn log(&mut self, level: events::Level, message: String) -> wasmtime::Result<()> {
        self.audit(&message);
        let level = match level {
            events::Level::Debug => Level::Debug,
            events::Level::Info => Level::Info,
            events::Level::Warn => Level::Warn,
            events::Level::Error => Level::Error,
        };
        self.log(level, &message);
        Ok(())
    }

    async fn step(&mut self, title: String) -> wasmtime::Result<()> {
        self.audit(&title);
        self.flush();
        self.pass(|title| Event::Step { title }, &title);
        Ok(())
    }

    async fn output(&mut self, text: String) -> wasmtime::Result<()> {
        self.audit(&text);
        self.output(&text);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_controls_are_removed() {
        assert_eq!(clean_line("\x1b[31mred\x1b[0m\x07 bell\ttab"), "red bell    tab");
        assert_eq!(clean_line("\x1b]0;title\x07text"), "text");
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let line = "é".repeat(MAX_LINE);
        let cleaned = clean_line(&line);
        assert!(cleaned.len() <= MAX_LINE + " [cut]".len());
        assert!(cleaned.ends_with(" [cut]"));
    }

    #[test]
    fn output_is_split_into_lines_and_partials_wait() {
        let sink = Arc::new(MemorySink::default());
        let mut cap = EventsCap::new(sink.clone(), None);
        cap.output("one\ntw");
        cap.output("o\r\nthree");
        assert_eq!(sink.events().len(), 2);
        cap.flush();
        let lines: Vec<_> = sink
            .events()
            .into_iter()
            .map(|e| match e {
                Event::Output { line } => line,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(lines, ["one", "two", "three"]);
    }

    #[test]
    fn a_flood_is_bounded() {
        let sink = Arc::new(MemorySink::default());
        let mut cap = EventsCap::new(sink.clone(), None);
        for i in 0..(BURST as usize * 2) {
            cap.log(Level::Info, &format!("line {i}"));
        }
        let n = sink.events().len();
        assert!(n >= BURST as usize && n < BURST as usize * 2, "{n} lines passed");
    }
}
