//! The conformance runner's fake provider: an HTTP server on 127.0.0.1 that answers
//! every request the same scripted way, and stand-ins for the programs a plugin declares.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// One scripted answer: to requests with `method` (or `*`) whose path matches `path`
/// (`*` is one path segment, a final `**` the rest; the query is ignored), `status` and the
/// JSON `body`, `times` times; then the next rule that matches, and once every matching
/// rule is used up, the last one again (a poll sees its final state).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scripted {
    pub method: String,
    pub path: String,
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default = "empty_object")]
    pub body: serde_json::Value,
    #[serde(default = "once")]
    pub times: u32,
}

fn ok() -> u16 {
    200
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

fn once() -> u32 {
    1
}

/// A responses file: `{"responses": [Scripted, ...]}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponsesFile {
    responses: Vec<Scripted>,
}

/// Reads a responses file, naming what is wrong with it.
pub fn load_responses(path: &Path) -> Result<Vec<Scripted>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: ResponsesFile = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    for rule in &file.responses {
        if !(100..=599).contains(&rule.status) {
            return Err(format!(
                "{}: status {} of `{} {}` is not an HTTP status",
                path.display(),
                rule.status,
                rule.method,
                rule.path
            ));
        }
        if !rule.path.starts_with('/') {
            return Err(format!("{}: path `{}` must start with /", path.display(), rule.path));
        }
    }
    Ok(file.responses)
}

/// Whether request path `path` matches pattern `pattern`.
fn path_matches(pattern: &str, path: &str) -> bool {
    let mut want = pattern.trim_end_matches('/').split('/');
    let mut got = path.trim_end_matches('/').split('/');
    loop {
        match (want.next(), got.next()) {
            (Some("**"), _) => return true,
            (Some("*"), Some(_)) => {}
            (Some(w), Some(g)) if w == g => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The scripted answers and how often each was given in the current call.
#[derive(Debug, Default)]
struct Script {
    rules: Vec<Scripted>,
    used: Vec<u32>,
}

impl Script {
    /// The answer to `method` `path`, when a rule matches.
    fn answer(&mut self, method: &str, path: &str) -> Option<(u16, String)> {
        let matching: Vec<usize> = (0..self.rules.len())
            .filter(|&i| {
                let r = &self.rules[i];
                (r.method == "*" || r.method.eq_ignore_ascii_case(method)) && path_matches(&r.path, path)
            })
            .collect();
        let chosen =
            matching.iter().copied().find(|&i| self.used[i] < self.rules[i].times).or(matching.last().copied())?;
        self.used[chosen] = self.used[chosen].saturating_add(1);
        let rule = &self.rules[chosen];
        Some((rule.status, rule.body.to_string()))
    }
}

/// An HTTP server that answers `200 {}` to everything (or what its script says), or
/// `500` with a Heroku-style error body while failing.
pub struct FakeProvider {
    url: String,
    failing: Arc<AtomicBool>,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeProvider {
    /// Starts it on a free port of 127.0.0.1, answering as `responses` say.
    pub async fn start(responses: Vec<Scripted>) -> std::io::Result<FakeProvider> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let failing = Arc::new(AtomicBool::new(false));
        let used = vec![0; responses.len()];
        let script = Arc::new(Mutex::new(Script { rules: responses, used }));
        let (flag, scripted) = (failing.clone(), script.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (flag, scripted) = (flag.clone(), scripted.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (status, body) = if flag.load(Ordering::Relaxed) {
                            (500, r#"{"id":"internal_server_error","message":"Internal server error."}"#.to_string())
                        } else {
                            let mut script = scripted.lock().unwrap_or_else(|e| e.into_inner());
                            script
                                .answer(request.method().as_str(), request.uri().path())
                                .unwrap_or((200, "{}".to_string()))
                        };
                        async move {
                            let response = Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body)))
                                .expect("a status from 100 to 599");
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(FakeProvider { url, failing, script, task })
    }

    /// Its base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Makes every answer a failure (or a success again).
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }

    /// Whether it has a script.
    pub fn scripted(&self) -> bool {
        !self.script.lock().unwrap_or_else(|e| e.into_inner()).rules.is_empty()
    }

    /// Starts the script over: every call sees it from its first answer.
    pub fn reset(&self) {
        let mut script = self.script.lock().unwrap_or_else(|e| e.into_inner());
        script.used.iter_mut().for_each(|n| *n = 0);
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes a stand-in for each program into `dir`: each prints one line and exits with
/// `code`. Returns `dir`, to use as the search path.
pub fn stand_ins(dir: &Path, programs: &[String], code: i32) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    for program in programs {
        let path = dir.join(program);
        std::fs::write(
            &path,
            // The script never contains what the plugin declared: its own name comes from $0.
            format!("#!/bin/sh\nprintf 'conformance stand-in for %s: exit %s\\n' \"${{0##*/}}\" {code}\nexit {code}\n"),
        )?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(method: &str, path: &str, status: u16, times: u32) -> Scripted {
        Scripted { method: method.into(), path: path.into(), status, body: serde_json::json!({}), times }
    }

    #[test]
    fn answers_go_in_order_and_the_last_repeats() {
        let rules = vec![
            rule("GET", "/apps/*/builds/*", 202, 2),
            rule("GET", "/apps/*/builds/*", 200, 1),
            rule("*", "/x/**", 404, 1),
        ];
        let mut script = Script { used: vec![0; rules.len()], rules };
        let got: Vec<u16> = (0..4).map(|_| script.answer("GET", "/apps/a/builds/b").unwrap().0).collect();
        assert_eq!(got, [202, 202, 200, 200]);
        assert_eq!(script.answer("POST", "/x/y/z").map(|a| a.0), Some(404));
        // Not matched: the runner's own default answers.
        assert_eq!(script.answer("POST", "/apps/a/builds/b"), None);
        assert_eq!(script.answer("GET", "/apps/a/builds"), None);
    }
}
