//! One-off dynos (`heroku run`), spoken natively: no Node runtime, and an exit status that
//! is always the remote command's.
//!
//! As the official CLI does (heroku/cli `src/lib/run/dyno.ts`): `POST /apps/{app}/dynos`
//! with `attach: true` and the command followed by ` ; echo "\u{FFFF}
//! heroku-command-exit-status: $?"`; the answer's `attach_url` is
//! `rendezvous://HOST:PORT/SECRET`; a TLS connection to HOST:PORT, the secret and CRLF, one
//! acknowledgement line, then the dyno's output, whose marker line gives the exit status.
//! A stream that ends without the marker is a failure. A 409 (the release is not ready
//! yet) is retried. The host lets the plugin connect only where the API's answer pointed:
//! the API's own host or a Heroku host (`permissions.streams`).

use std::time::Duration;

use pier_plugin_sdk::tls::StreamError;
use pier_plugin_sdk::*;
use serde::Deserialize;

use crate::APP;
use crate::api::{Client, encode, error};

/// What the command is followed by, so that its exit status comes back in the output.
/// The space before `;` keeps process types such as `web` working.
pub const MARKER_SUFFIX: &str = " ; echo \"\u{FFFF} heroku-command-exit-status: $?\"";
/// What the marker line holds before the status.
const MARKER: &str = "\u{FFFF} heroku-command-exit-status: ";
/// How many times a 409 at creation is retried.
const CONFLICT_RETRIES: u32 = 10;
/// How long a read may wait for the dyno's output.
const READ_TIMEOUT_MS: u32 = 3_600_000;

#[derive(Debug, Deserialize)]
struct Dyno {
    name: String,
    attach_url: Option<String>,
}

/// The command line the dyno's shell runs: the words quoted as `sh` needs.
pub fn command_line(words: &[String]) -> Result<String, MethodError> {
    shlex::try_join(words.iter().map(String::as_str))
        .map_err(|_| MethodError::Unsupported("a command word holds a NUL byte".into()))
}

/// Runs `request` on a one-off dyno of the app; returns its exit status.
pub fn run(ctx: &Context, settings: &[Answer], request: &RunRequest) -> Result<i32, MethodError> {
    let client = Client::new(ctx)?;
    let app = required(settings, APP, "the app")?;
    let line = command_line(&request.command)?;
    let env: serde_json::Map<String, serde_json::Value> =
        request.env.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    let mut body = serde_json::json!({
        "command": format!("{line}{MARKER_SUFFIX}"),
        "attach": true,
        "env": env,
        "force_no_tty": !request.tty,
    });
    if let Some(size) = &request.size {
        body["size"] = size.clone().into();
    }
    if let Some(kind) = &request.process_type {
        body["type"] = kind.clone().into();
    }
    let path = format!("/apps/{}/dynos", encode(app));
    let mut attempt = 0;
    let dyno: Dyno = loop {
        let response = client.send(client.post(&path).json(&body))?;
        if response.status() == 409 && attempt < CONFLICT_RETRIES {
            attempt += 1;
            log::info("the new release is not ready yet; trying again");
            std::thread::sleep(Duration::from_secs_f64((0.5 * f64::from(attempt)).min(5.0)));
            continue;
        }
        if !response.ok() {
            return Err(error(&response, "the one-off dyno"));
        }
        break response.json().map_err(|e| {
            MethodError::Provider(format!("Heroku answered the one-off dyno with unexpected JSON: {e}"))
        })?;
    };
    let attach = dyno
        .attach_url
        .ok_or_else(|| MethodError::Provider(format!("Heroku started {} without an attach URL", dyno.name)))?;
    let (host, port, secret) = rendezvous(&attach)?;
    log::info(&format!("Running `{line}` on {app}: {}", dyno.name));
    let connection = tls::connect(&host, port, Some(READ_TIMEOUT_MS)).map_err(|e| stream_error(&host, port, e))?;
    connection.write(format!("{secret}\r\n").as_bytes()).map_err(|e| stream_error(&host, port, e))?;
    let mut output = Output::default();
    let mut show = |line: &str| events::output(&format!("{line}\n"));
    let mut acknowledged = false;
    loop {
        match connection.read().map_err(|e| stream_error(&host, port, e))? {
            None => break,
            Some(bytes) => {
                let bytes = if acknowledged {
                    &bytes[..]
                } else {
                    output.pending.extend_from_slice(&bytes);
                    match output.take_acknowledgement() {
                        None => continue,
                        Some(()) => {
                            acknowledged = true;
                            connection.forward_input().map_err(|e| stream_error(&host, port, e))?;
                            &[][..]
                        }
                    }
                };
                if let Some(status) = output.push(bytes, &mut show) {
                    return Ok(status);
                }
            }
        }
    }
    output.finish(&mut show);
    Err(MethodError::DeployFailed(DeployFailure {
        reason: format!("no exit status returned: the connection to {} ended before the command did", dyno.name),
        tail: vec![],
    }))
}

/// `rendezvous://HOST:PORT/SECRET` taken apart.
fn rendezvous(url: &str) -> Result<(String, u16, String), MethodError> {
    let bad =
        || MethodError::Provider(format!("Heroku gave an attach URL that is not rendezvous://HOST:PORT/SECRET: {url}"));
    let rest = url.strip_prefix("rendezvous://").ok_or_else(bad)?;
    let (authority, secret) = rest.split_once('/').ok_or_else(bad)?;
    let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() || secret.is_empty() {
        return Err(bad());
    }
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_string(), port, secret.to_string()))
}

fn stream_error(host: &str, port: u16, e: StreamError) -> MethodError {
    match e {
        StreamError::Denied(why) => MethodError::Denied(why),
        StreamError::Timeout => MethodError::Provider(format!("the dyno's output at {host}:{port} timed out")),
        StreamError::Connection(why) | StreamError::Invalid(why) => {
            MethodError::Provider(format!("cannot attach to the dyno at {host}:{port}: {why}"))
        }
        StreamError::TooLarge(limit) => {
            MethodError::Provider(format!("the dyno's output went over the host's limit of {} MiB", limit >> 20))
        }
    }
}

/// The dyno's output, split into lines as it arrives, with the marker line found even
/// when it is split across reads.
#[derive(Debug, Default)]
pub struct Output {
    pending: Vec<u8>,
}

impl Output {
    /// Removes the acknowledgement line (`rendezvous`) from what has arrived, once it is
    /// all there.
    fn take_acknowledgement(&mut self) -> Option<()> {
        let end = self.pending.iter().position(|&b| b == b'\n')?;
        self.pending.drain(..=end);
        Some(())
    }

    /// Takes `bytes`: `show`s each complete line; returns the exit status once the marker
    /// line has arrived (whatever follows it is not the command's).
    pub fn push(&mut self, bytes: &[u8], show: &mut dyn FnMut(&str)) -> Option<i32> {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches('\n').trim_end_matches('\r');
            if let Some(at) = text.find(MARKER) {
                let before = &text[..at];
                if !before.is_empty() {
                    show(before);
                }
                let status = text[at + MARKER.len()..].trim();
                return Some(status.parse().unwrap_or(-1));
            }
            show(text);
        }
        None
    }

    /// `show`s what is left, a last line without its newline.
    pub fn finish(&mut self, show: &mut dyn FnMut(&str)) {
        if !self.pending.is_empty() {
            let text = String::from_utf8_lossy(&self.pending).into_owned();
            show(text.trim_end_matches('\r'));
            self.pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` to an [`Output`]: the lines shown and the status found.
    fn feed(pieces: &[&[u8]]) -> (Vec<String>, Option<i32>) {
        let mut output = Output::default();
        let mut lines = Vec::new();
        for piece in pieces {
            if let Some(status) = output.push(piece, &mut |l| lines.push(l.to_string())) {
                return (lines, Some(status));
            }
        }
        output.finish(&mut |l| lines.push(l.to_string()));
        (lines, None)
    }

    #[test]
    fn the_marker_is_found_when_split_anywhere() {
        let whole = "migrated\r\n\u{FFFF} heroku-command-exit-status: 42\r\n".as_bytes();
        for cut in 1..whole.len() {
            let (lines, status) = feed(&[&whole[..cut], &whole[cut..]]);
            assert_eq!((lines, status), (vec!["migrated".to_string()], Some(42)), "cut at {cut}");
        }
    }

    #[test]
    fn output_before_the_marker_on_its_line_is_kept_and_after_it_dropped() {
        let (lines, status) = feed(&[b"no newline\xef\xbf\xbf heroku-command-exit-status: 0\nlater\n"]);
        assert_eq!((lines, status), (vec!["no newline".to_string()], Some(0)));
    }

    #[test]
    fn a_stream_without_the_marker_has_no_status() {
        let (lines, status) = feed(&[b"a\n", b"b"]);
        assert_eq!((lines, status), (vec!["a".to_string(), "b".to_string()], None));
        // The command printing the words is not the marker: it needs the U+FFFF.
        assert_eq!(feed(&[b"heroku-command-exit-status: 3\n"]).1, None);
    }

    #[test]
    fn command_words_are_quoted_for_the_shell() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(command_line(&words(&["rake", "db:migrate"])).unwrap(), "rake db:migrate");
        assert_eq!(command_line(&words(&["echo", "a b", "$HOME"])).unwrap(), "echo 'a b' '$HOME'");
    }

    #[test]
    fn attach_urls_are_taken_apart() {
        assert_eq!(
            rendezvous("rendezvous://rendezvous.runtime.heroku.com:5000/abc").unwrap(),
            ("rendezvous.runtime.heroku.com".to_string(), 5000, "abc".to_string())
        );
        assert!(rendezvous("https://x:1/a").is_err());
        assert!(rendezvous("rendezvous://x/a").is_err());
        assert!(rendezvous("rendezvous://x:1/").is_err());
    }
}
