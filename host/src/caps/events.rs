//! Capability `events`: progress steps and log lines from a plugin.
//!
//! Policy: every line is cleaned of terminal escape sequences and control characters,
//! then redacted of every known secret, then cut to [`MAX_LINE`] bytes, and passed on at
//! no more than [`RATE_PER_SECOND`] lines a second (bursts up to [`BURST`]) and
//! [`MAX_LINES`] lines a call. Excess lines are dropped and counted, never buffered
//! without bound. Output (the plugin's, and programs' through [`OutputLines`]) is a
//! stream: it is redacted across writes and lines, so a secret split over two writes or
//! wrapped over lines is caught, and no line is passed on while it could still turn out
//! to hold part of a secret.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::caps::secrets::{self, Redactor};
use crate::runtime::bindings::pier::deploy::events;

/// Longest line passed on, in bytes; longer lines are cut.
pub const MAX_LINE: usize = 4096;
/// Longest run of output without a line break that is waited for; a longer one is
/// passed on as a line of its own (still redacted with what follows it).
pub const MAX_PARTIAL: usize = MAX_LINE * 4;
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

/// Removes terminal escape sequences and control characters from one line (a tab becomes
/// four spaces), and cuts it to [`MAX_LINE`] bytes. Does not redact: see [`safe_line`].
pub fn clean_line(text: &str) -> String {
    cut(clean(text))
}

/// One line as Pier shows or stores it: cleaned ([`clean`]), then redacted, then cut to
/// [`MAX_LINE`] bytes. Cleaning comes first, so an escape sequence cannot split a secret,
/// and cutting last, so a cut cannot leave half of one.
pub fn safe_line(text: &str) -> String {
    cut(secrets::redact(&clean(text)).into_owned())
}

/// Escape sequences, control and invisible characters removed from `text`; a tab becomes
/// four spaces.
pub fn clean(text: &str) -> String {
    strip(&text.replace('\t', "    "))
}

/// `line` cut to [`MAX_LINE`] bytes on a character boundary, with a note.
pub fn cut(mut line: String) -> String {
    if line.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str(" [cut]");
    }
    line
}

/// Plugin text made inert for a terminal, a prompt or a file: escape sequences, control
/// characters (a tab becomes a space) and the invisible characters that reorder or hide
/// text (bidirectional overrides and isolates, zero-width characters) are removed. Every
/// string a plugin hands the host passes through this before it is printed or stored.
pub fn inert(text: &str) -> String {
    strip(&text.replace('\t', " "))
}

/// `n` and `noun`, in the plural unless `n` is 1: "1 command", "2 commands".
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// Whether [`inert`] would keep `text` as it is: it has no control character (every
/// escape sequence begins with one, and a tab is one) and no invisible character.
pub fn is_inert(text: &str) -> bool {
    !text.chars().any(|c| c.is_control() || invisible(c))
}

/// Escape sequences, control characters and invisible characters removed.
fn strip(text: &str) -> String {
    if is_inert(text) {
        return text.to_string();
    }
    strip_ansi_escapes::strip_str(text).chars().filter(|c| !c.is_control() && !invisible(*c)).collect()
}

fn invisible(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// Output text turned into lines that are safe to show: the text is split into lines
/// (a run of [`MAX_PARTIAL`] bytes without a line break counts as one), each line is
/// cleaned, the cleaned lines are redacted as one stream ([`secrets::Stream`]), so a
/// secret split over writes or lines is caught, and each line passed on is cut to
/// [`MAX_LINE`] bytes. A line is passed on only once nothing that follows can make it
/// part of a secret's form; [`OutputLines::finish`] passes on the rest.
pub struct OutputLines<'r> {
    /// Raw text of a line not yet ended.
    partial: String,
    stream: secrets::Stream<'r>,
    /// Redacted text of a line not yet passed on whole.
    released: String,
}

impl Default for OutputLines<'static> {
    fn default() -> Self {
        OutputLines::new()
    }
}

impl OutputLines<'static> {
    /// Lines redacted by the process-wide redactor.
    pub fn new() -> Self {
        OutputLines::with(secrets::redactor())
    }
}

impl<'r> OutputLines<'r> {
    /// Lines redacted by `redactor`.
    pub fn with(redactor: &'r Redactor) -> Self {
        OutputLines { partial: String::new(), stream: redactor.stream(), released: String::new() }
    }

    /// Takes more output text; returns the lines that may be passed on now.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        self.partial.push_str(text);
        let mut cleaned = String::new();
        if let Some(last) = self.partial.rfind('\n') {
            let rest = self.partial.split_off(last + 1);
            let complete = std::mem::replace(&mut self.partial, rest);
            for line in complete.split_terminator('\n') {
                cleaned.push_str(&clean(line.trim_end_matches('\r')));
                cleaned.push('\n');
            }
        }
        if self.partial.len() > MAX_PARTIAL {
            cleaned.push_str(&clean(&std::mem::take(&mut self.partial)));
            cleaned.push('\n');
        }
        if cleaned.is_empty() {
            return Vec::new();
        }
        let released = self.stream.push(cleaned.as_bytes());
        self.release(released)
    }

    /// Takes one whole line of output (without its line break).
    pub fn push_line(&mut self, line: &str) -> Vec<String> {
        let mut text = String::with_capacity(line.len() + 1);
        text.push_str(line);
        text.push('\n');
        self.push(&text)
    }

    /// Ends the output: returns every line not yet passed on.
    pub fn finish(&mut self) -> Vec<String> {
        let mut cleaned = Vec::new();
        if !self.partial.is_empty() {
            cleaned = clean(&std::mem::take(&mut self.partial)).into_bytes();
            cleaned.push(b'\n');
        }
        let mut released = if cleaned.is_empty() { Vec::new() } else { self.stream.push(&cleaned) };
        released.extend(self.stream.finish());
        let mut lines = self.release(released);
        if !self.released.is_empty() {
            lines.push(cut(std::mem::take(&mut self.released)));
        }
        lines
    }

    /// Whether some output is waiting: a line not yet ended, or held back.
    pub fn waiting(&self) -> bool {
        !self.partial.is_empty() || !self.released.is_empty() || self.stream.held() > 0
    }

    fn release(&mut self, bytes: Vec<u8>) -> Vec<String> {
        self.released.push_str(&String::from_utf8_lossy(&bytes));
        let Some(last) = self.released.rfind('\n') else { return Vec::new() };
        let rest = self.released.split_off(last + 1);
        let complete = std::mem::replace(&mut self.released, rest);
        complete.split_terminator('\n').map(|line| cut(line.to_string())).collect()
    }
}

/// The per-call state of the `events` capability.
pub struct EventsCap {
    sink: Arc<dyn EventSink>,
    audit: Option<Arc<crate::caps::Audit>>,
    lines: u64,
    dropped: u64,
    tokens: f64,
    refilled: Instant,
    output: OutputLines<'static>,
}

impl EventsCap {
    /// Events go to `sink`; what the plugin writes is also recorded in `audit`, if set.
    pub fn new(sink: Arc<dyn EventSink>, audit: Option<Arc<crate::caps::Audit>>) -> Self {
        EventsCap {
            sink,
            audit,
            lines: 0,
            dropped: 0,
            tokens: BURST,
            refilled: Instant::now(),
            output: OutputLines::new(),
        }
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
            self.sink.emit(make(safe_line(text)));
        }
    }

    /// Passes on output lines that [`OutputLines`] made safe.
    fn pass_output(&mut self, lines: Vec<String>) {
        for line in lines {
            if self.admit() {
                self.sink.emit(Event::Output { line });
            }
        }
    }

    /// Emits a log line on the host's behalf, under the same policy.
    pub fn log(&mut self, level: Level, message: &str) {
        self.pass(|message| Event::Log { level, message }, message);
    }

    /// Emits output text, split into lines (see [`OutputLines`]); a partial line, and
    /// lines that could still be part of a secret's form, wait for more.
    pub fn output(&mut self, text: &str) {
        let lines = self.output.push(text);
        self.pass_output(lines);
    }

    /// Passes on the output still waiting; called at a step and when the call ends.
    pub fn flush(&mut self) {
        if self.output.waiting() {
            let lines = self.output.finish();
            self.pass_output(lines);
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
    use crate::caps::secrets::REDACTED as REDACTED_MARK;

    #[test]
    fn counts_are_in_words() {
        assert_eq!(count(0, "command"), "0 commands");
        assert_eq!(count(1, "command"), "1 command");
        assert_eq!(count(2, "later command"), "2 later commands");
    }

    #[test]
    fn escapes_and_controls_are_removed() {
        assert_eq!(clean_line("\x1b[31mred\x1b[0m\x07 bell\ttab"), "red bell    tab");
        assert_eq!(clean_line("\x1b]0;title\x07text"), "text");
    }

    proptest::proptest! {
        /// `is_inert` is exactly "`inert` keeps it": what it accepts is kept, and what
        /// `inert` makes is accepted.
        #[test]
        fn is_inert_says_what_inert_keeps(text in "(\\PC|[\\x00-\\x1f\\x7f\\u{200b}-\\u{200f}\\u{202a}-\\u{202e}\\u{feff}]){0,40}") {
            let made = inert(&text);
            proptest::prop_assert!(is_inert(&made), "{made:?}");
            proptest::prop_assert_eq!(is_inert(&text), made == text, "{:?}", text);
        }
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
        // Lines ending in `.`, which begins no form of any secret another test registers.
        cap.output("one.\ntw");
        cap.output("o.\r\nthree.");
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
        assert_eq!(lines, ["one.", "two.", "three."]);
    }

    const KEY: &str = "events-test-key-0c1d2e3f4a";

    fn lines_of(redactor: &Redactor, pieces: &[&str]) -> Vec<String> {
        let mut lines = OutputLines::with(redactor);
        let mut out: Vec<String> = pieces.iter().flat_map(|p| lines.push(p)).collect();
        out.extend(lines.finish());
        out
    }

    #[test]
    fn output_is_cleaned_before_it_is_redacted() {
        let r = Redactor::new();
        r.register(KEY);
        let lines = lines_of(&r, &["key events-test\x1b[0m-key-0c1d\u{200b}2e3f4a\x07 done\n"]);
        assert_eq!(lines, ["key [redacted] done"]);
        assert_eq!(
            safe_line("events-\x1b[1mtest-key-0c1d2e3f4a"),
            "events-test-key-0c1d2e3f4a",
            "no secret registered"
        );
        secrets::register(KEY);
        assert_eq!(safe_line("events-\x1b[1mtest-key-0c1d2e3f4a"), "[redacted]");
    }

    #[test]
    fn output_is_redacted_across_writes_and_lines() {
        use base64::Engine as _;
        let r = Redactor::new();
        r.register(KEY);
        let wrapped: String = base64::engine::general_purpose::STANDARD
            .encode(KEY)
            .as_bytes()
            .chunks(20)
            .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
            .collect();
        for pieces in [
            vec!["start: events-test-", "key-0c1d2e3f4a end\n"],
            vec!["start: events-test-key-0c1d2e\n", "3f4a end\n"],
            vec!["start:\n", &wrapped, "end\n"],
        ] {
            let lines = lines_of(&r, &pieces);
            let all = lines.join("\n");
            assert!(all.contains(REDACTED_MARK), "{pieces:?}: {lines:?}");
            assert!(!secrets::exposes(&all, KEY) && !all.contains("events-test") && !all.contains("0c1d"), "{lines:?}");
            assert!(
                lines.first().is_some_and(|l| l.starts_with("start"))
                    && lines.last().is_some_and(|l| l.ends_with("end"))
            );
        }
        // Nothing passed on before the rest arrives may hold the beginning of the key.
        let mut lines = OutputLines::with(&r);
        let early = lines.push("ok.\nthe key is events-test-key-\n");
        assert_eq!(early, ["ok."]);
        let later = lines.push("0c1d2e3f4a\n");
        assert_eq!(later, ["the key is [redacted]", "[redacted]"]);
    }

    #[test]
    fn a_long_run_without_line_breaks_is_cut_after_redaction() {
        let r = Redactor::new();
        r.register(KEY);
        let text = format!("{}{KEY}{}", "x".repeat(MAX_LINE - 5), "y".repeat(MAX_PARTIAL));
        let lines = lines_of(&r, &[&text]);
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE + 6 && !l.contains("events-")), "{:?}", lines[0].len());
        assert!(lines[0].ends_with(" [cut]"));
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
