//! Deploying through Heroku's Build API, honest about failure: a failed build or a failed
//! release phase fails the deploy, with the last lines of their output.

use std::collections::VecDeque;
use std::time::Duration;

use pier_plugin_sdk::api::describe_error;
use pier_plugin_sdk::*;
use serde::Deserialize;

use crate::api::{Client, encode};
use crate::{APP, DEFAULT_HEALTH_TIMEOUT, HEALTH_TIMEOUT, WEB_URL};

/// Output lines kept for failure messages.
const TAIL: usize = 20;
/// How long an output stream may answer 404 before the deploy goes on polling without it.
const STREAM_WAIT: Duration = Duration::from_secs(15);
/// How long a build or release may stay pending.
const MAX_PENDING: Duration = Duration::from_secs(45 * 60);

#[derive(Debug, Deserialize)]
struct SourceBlob {
    get_url: String,
    put_url: String,
}

#[derive(Debug, Deserialize)]
struct Source {
    source_blob: SourceBlob,
}

#[derive(Debug, Deserialize)]
struct Id {
    id: String,
}

#[derive(Debug, Deserialize)]
struct Build {
    id: String,
    status: String,
    output_stream_url: Option<String>,
    release: Option<Id>,
}

#[derive(Debug, Deserialize)]
struct Release {
    version: u64,
    status: String,
    output_stream_url: Option<String>,
}

/// The last lines of provider output, for failure messages.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    partial: String,
}

impl Tail {
    fn push(&mut self, text: &str) {
        self.partial.push_str(text);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            if self.lines.len() == TAIL {
                self.lines.pop_front();
            }
            self.lines.push_back(line.trim_end().to_string());
        }
    }

    fn take(&mut self) -> Vec<String> {
        let mut lines: Vec<String> = self.lines.drain(..).collect();
        if !self.partial.trim().is_empty() {
            lines.push(std::mem::take(&mut self.partial).trim_end().to_string());
        }
        lines
    }
}

/// Streams an output URL into the log. A 404 at first is normal (the stream is not
/// open yet): retried for [`STREAM_WAIT`]. Returns whether the stream was read.
fn stream(url: &str, tail: &mut Tail) -> bool {
    let started = std::time::Instant::now();
    let mut wait = 0.25;
    loop {
        match api::Request::get(url).timeout_ms(120_000).open() {
            Ok(response) if response.status() == 200 => loop {
                match response.next() {
                    Ok(Some(chunk)) => {
                        let text = String::from_utf8_lossy(&chunk);
                        log::output(&text);
                        tail.push(&text);
                    }
                    Ok(None) => return true,
                    Err(e) => {
                        log::warn(&format!("output stream ended early: {}", describe_error(&e)));
                        return true;
                    }
                }
            },
            Ok(response) if response.status() == 404 && started.elapsed() < STREAM_WAIT => {}
            Ok(response) => {
                log::warn(&format!("output stream answered {}; following the status instead", response.status()));
                return false;
            }
            Err(e) => {
                log::warn(&format!("cannot read the output stream: {}", describe_error(&e)));
                return false;
            }
        }
        std::thread::sleep(Duration::from_secs_f64(wait));
        wait = (wait * 2.0).min(2.0);
    }
}

/// Polls `path` until its `status` is not `pending`.
fn poll<T: for<'de> Deserialize<'de>>(
    client: &Client,
    path: &str,
    what: &str,
    status: impl Fn(&T) -> &str,
) -> Result<T, MethodError> {
    let started = std::time::Instant::now();
    let mut wait = 0.25;
    loop {
        let current: T = client.json(client.get(path), what).map_err(deploy_error)?;
        if status(&current) != "pending" {
            return Ok(current);
        }
        if started.elapsed() > MAX_PENDING {
            return Err(MethodError::Provider(format!(
                "{what} is still pending after {} minutes",
                MAX_PENDING.as_secs() / 60
            )));
        }
        std::thread::sleep(Duration::from_secs_f64(wait));
        wait = (wait * 2.0).min(3.0);
    }
}

/// An error during a deploy: a rejected key is a provider problem here, not an answer to fix.
fn deploy_error(e: MethodError) -> MethodError {
    match e {
        MethodError::InvalidAnswer(f) => MethodError::Provider(f.message),
        other => other,
    }
}

pub fn deploy(ctx: &Context, settings: &[Answer], build: &BuildInfo) -> Result<DeployReport, MethodError> {
    let app = required(settings, APP, "the app")?;
    let client = Client::new(ctx)?;
    let app_path = format!("/apps/{}", encode(app));

    log::step("Packing the checkout");
    let blob = workspace::pack().map_err(|e| MethodError::Provider(format!("could not pack the checkout: {e:?}")))?;
    log::info(&format!("packed {} bytes (sha256 {})", blob.size(), blob.sha256()));

    log::step("Uploading the source");
    let source: Source = client.json(client.post("/sources"), "the source upload").map_err(deploy_error)?;
    let status = workspace::upload(&blob, &source.source_blob.put_url, &[])
        .map_err(|e| MethodError::Provider(format!("uploading the source failed: {e:?}")))?;
    if !(200..300).contains(&status) {
        return Err(MethodError::Provider(format!("uploading the source failed: HTTP {status}")));
    }

    log::step(&format!("Building {} on Heroku", short(&build.commit)));
    let body = serde_json::json!({
        "source_blob": {
            "url": source.source_blob.get_url,
            "version": build.commit,
            "checksum": format!("SHA256:{}", blob.sha256()),
        }
    });
    let created: Build =
        client.json(client.post(&format!("{app_path}/builds")).json(&body), "the build").map_err(deploy_error)?;
    let mut tail = Tail::default();
    if let Some(url) = &created.output_stream_url {
        stream(url, &mut tail);
    }
    let finished = poll::<Build>(&client, &format!("{app_path}/builds/{}", created.id), "the build", |b| &b.status)?;
    if finished.status != "succeeded" {
        return Err(MethodError::DeployFailed(DeployFailure {
            reason: format!("the Heroku build {} {}", finished.id, finished.status),
            tail: tail.take(),
        }));
    }
    let Some(release) = finished.release else {
        return Err(MethodError::Provider(format!(
            "the build {} succeeded but Heroku reports no release",
            finished.id
        )));
    };

    log::step("Releasing");
    let release_path = format!("{app_path}/releases/{}", release.id);
    let mut tail = Tail::default();
    let mut streamed = false;
    let started = std::time::Instant::now();
    let mut wait = 0.25;
    let done = loop {
        let current: Release = client.json(client.get(&release_path), "the release").map_err(deploy_error)?;
        if !streamed && let Some(url) = &current.output_stream_url {
            streamed = stream(url, &mut tail);
            continue;
        }
        if current.status != "pending" {
            break current;
        }
        if started.elapsed() > MAX_PENDING {
            return Err(MethodError::Provider("the release is still pending after 45 minutes".into()));
        }
        std::thread::sleep(Duration::from_secs_f64(wait));
        wait = (wait * 2.0).min(3.0);
    };
    if done.status != "succeeded" {
        return Err(MethodError::DeployFailed(DeployFailure {
            reason: format!("the release phase of v{} {} on Heroku", done.version, done.status),
            tail: tail.take(),
        }));
    }
    let timeout = health_timeout(settings)?;
    let health = match timeout.is_zero() {
        true => Ok(String::new()),
        false => wait_for_dynos(&client, &app_path, done.version, timeout).map(|up| format!("; {up}")),
    };
    let health = match (health, health_path(settings)?) {
        (Ok(up), Some(path)) => check_url(ctx, path, timeout).map(|answered| format!("{up}; {answered}")),
        (other, _) => other,
    };
    let health = match health {
        Ok(health) => health,
        Err(MethodError::DeployFailed(failure)) if flag(settings, crate::ROLLBACK_ON_FAILURE, false)? => {
            return Err(roll_back_after(&client, app, done.version, failure));
        }
        Err(e) => return Err(e),
    };
    Ok(DeployReport {
        summary: format!("released v{} of {app}{health}", done.version),
        url: answer(settings, WEB_URL).map(String::from),
        release: Some(format!("v{}", done.version)),
    })
}

/// A release that failed its health check, rolled back to the last good release before
/// it: the deploy still fails, and says what is live now.
fn roll_back_after(client: &Client, app: &str, version: u64, failure: DeployFailure) -> MethodError {
    let rolled = crate::rollback::releases(client, app)
        .and_then(|all| crate::rollback::target(&all, None, Some(version)))
        .and_then(|to| crate::rollback::roll_back(client, app, &to).map(|new| (to, new)));
    let reason = match rolled {
        Ok((to, new)) => format!("{}; rolled back to v{} (now v{})", failure.reason, to.version, new.version),
        Err(e) => format!("{}; the automatic rollback failed: {e:?}", failure.reason),
    };
    MethodError::DeployFailed(DeployFailure { reason, tail: failure.tail })
}

/// The health check path the settings ask for: none, or a path starting with `/`.
pub fn health_path(settings: &[Answer]) -> Result<Option<&str>, MethodError> {
    match answer(settings, crate::HEALTH_PATH) {
        None => Ok(None),
        Some(path) if path.starts_with('/') && !path.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Ok(Some(path))
        }
        Some(path) => Err(invalid(crate::HEALTH_PATH, format!("`{path}` is not a path starting with /"))),
    }
}

/// Requests `path` of the app until it answers 2xx or 3xx (redirects are not followed),
/// for at most `window` (the health timeout): what it answered, or why the deploy fails.
fn check_url(ctx: &Context, path: &str, window: Duration) -> Result<String, MethodError> {
    let base = endpoint(ctx, "web").map_err(|_| {
        invalid(crate::HEALTH_PATH, "the health check needs the app's URL: set web_url (the app has none on Heroku)")
    })?;
    let url = format!("{}{path}", base.trim_end_matches('/'));
    log::step(&format!("Checking {url}"));
    let started = std::time::Instant::now();
    let mut wait = 0.25;
    loop {
        let last = match api::Request::get(&url).timeout_ms(10_000).send() {
            Ok(response) if (200..400).contains(&response.status()) => {
                return Ok(format!("GET {path} answered {}", response.status()));
            }
            Ok(response) => format!("HTTP {}", response.status()),
            Err(e) => describe_error(&e),
        };
        if started.elapsed() >= window {
            return Err(MethodError::DeployFailed(DeployFailure {
                reason: format!(
                    "the health check of {url} did not pass within {} s: last answer {last}",
                    window.as_secs()
                ),
                tail: vec![],
            }));
        }
        log::info(&format!("{url}: {last}; trying again"));
        std::thread::sleep(Duration::from_secs_f64(wait).min(window.saturating_sub(started.elapsed())));
        wait = (wait * 2.0).min(3.0);
    }
}

/// The health wait the settings ask for (`health_timeout`, seconds, at most an hour).
pub fn health_timeout(settings: &[Answer]) -> Result<Duration, MethodError> {
    match answer(settings, HEALTH_TIMEOUT).map(str::trim) {
        None | Some("") => Ok(Duration::from_secs(DEFAULT_HEALTH_TIMEOUT.into())),
        Some(text) => match text.parse::<u32>() {
            Ok(seconds) if seconds <= 3600 => Ok(Duration::from_secs(seconds.into())),
            _ => Err(invalid(HEALTH_TIMEOUT, format!("`{text}` is not a number of seconds from 0 to 3600"))),
        },
    }
}

#[derive(Debug, Deserialize)]
struct DynoRelease {
    version: u64,
}

#[derive(Debug, Deserialize)]
struct Dyno {
    name: String,
    state: String,
    #[serde(rename = "type")]
    kind: String,
    release: Option<DynoRelease>,
}

/// States of a dyno that has started and stays so (`idle`: an eco dyno asleep).
const HEALTHY: [&str; 2] = ["up", "idle"];

/// Waits, as `heroku ps:wait` does, until every process dyno (not `run` or `release`
/// dynos) is on release `version` or later and up; a crashed one fails the deploy.
/// Returns what it saw, for the summary.
pub fn wait_for_dynos(client: &Client, app_path: &str, version: u64, timeout: Duration) -> Result<String, MethodError> {
    log::step(&format!("Waiting for the dynos of v{version} to be up"));
    let started = std::time::Instant::now();
    let mut wait = 0.25;
    loop {
        let dynos: Vec<Dyno> =
            client.json(client.get(&format!("{app_path}/dynos")), "the app's dynos").map_err(deploy_error)?;
        let process: Vec<&Dyno> = dynos.iter().filter(|d| !matches!(d.kind.as_str(), "run" | "release")).collect();
        let of = |d: &Dyno| d.release.as_ref().map_or(0, |r| r.version);
        if let Some(crashed) = process.iter().find(|d| d.state == "crashed" && of(d) >= version) {
            return Err(MethodError::DeployFailed(DeployFailure {
                reason: format!(
                    "dyno {} of v{version} crashed after the release (see `heroku logs --dyno {}`)",
                    crashed.name, crashed.name
                ),
                tail: vec![],
            }));
        }
        let waiting: Vec<String> = process
            .iter()
            .filter(|d| of(d) < version || !HEALTHY.contains(&d.state.as_str()))
            .map(|d| format!("{} {} on v{}", d.name, d.state, of(d)))
            .collect();
        if waiting.is_empty() {
            let names: Vec<&str> = process.iter().map(|d| d.name.as_str()).collect();
            return Ok(match names.len() {
                0 => "no process dynos to wait for".to_string(),
                1 => format!("{} up", names[0]),
                n => format!("{n} dynos up ({})", names.join(", ")),
            });
        }
        if started.elapsed() >= timeout {
            return Err(MethodError::DeployFailed(DeployFailure {
                reason: format!(
                    "the dynos of v{version} were not all up after {} s: {}",
                    timeout.as_secs(),
                    waiting.join(", ")
                ),
                tail: vec![],
            }));
        }
        std::thread::sleep(Duration::from_secs_f64(wait).min(timeout.saturating_sub(started.elapsed())));
        wait = (wait * 2.0).min(3.0);
    }
}

fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}
