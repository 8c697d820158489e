//! Where command output goes: data to stdout, logs to stderr, both redacted.

use std::io::{self, Write};

use serde::Serialize;

use crate::caps::secrets::redact;

/// Data output: stdout, every line redacted of known secrets.
pub struct Output {
    out: Box<dyn Write>,
}

impl Output {
    /// Output to the process's stdout.
    pub fn stdout() -> Self {
        Output { out: Box::new(io::stdout()) }
    }

    /// Output to any writer (tests).
    pub fn to(writer: impl Write + 'static) -> Self {
        Output { out: Box::new(writer) }
    }

    /// Writes one line.
    pub fn line(&mut self, text: impl AsRef<str>) -> io::Result<()> {
        writeln!(self.out, "{}", redact(text.as_ref()))
    }

    /// Writes a JSON document.
    pub fn json<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
        self.line(text)?;
        self.out.flush()
    }
}

/// A stderr writer for logs that redacts every write.
#[derive(Default)]
pub struct RedactingStderr;

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        io::stderr().write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}
