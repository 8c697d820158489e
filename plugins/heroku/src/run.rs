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
                if let Some(status) = output.push(bytes) {
                    return Ok(status);
                }
            }
        }
    }
    output.finish();
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

    /// Takes `bytes`: shows each complete line; returns the exit status once the marker
    /// line has arrived (whatever follows it is not the command's).
    pub fn push(&mut self, bytes: &[u8]) -> Option<i32> {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches('\n').trim_end_matches('\r');
            if let Some(at) = text.find(MARKER) {
                let before = &text[..at];
                if !before.is_empty() {
                    events::output(&format!("{before}\n"));
                }
                let status = text[at + MARKER.len()..].trim();
                return Some(status.parse().unwrap_or(-1));
            }
            events::output(&format!("{text}\n"));
        }
        None
    }

    /// Shows what is left, a last line without its newline.
    pub fn finish(&mut self) {
        if !self.pending.is_empty() {
            let text = String::from_utf8_lossy(&self.pending).into_owned();
            events::output(&format!("{}\n", text.trim_end_matches('\r')));
            self.pending.clear();
        }
    }
}
