//! Scripted behaviour: failures, rate limits, the outcome of the next builds and rollbacks,
//! the apps' web statuses and one-off dynos.
//!
//! A [`Script`] is queued with [`crate::FakeHeroku::script`] or `POST /__fake/script`; all its
//! fields are optional and several scripts add up (failure rules, build, rollback, web and run
//! scripts queue, the `rate_limit_next` counts add).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Behaviour to queue. Every field is optional; unknown fields are refused so that a typo in a
/// test's script fails loudly instead of being ignored.
///
/// ```json
/// { "fail_next": [{"method": "GET", "path": "/apps", "status": 503}],
///   "rate_limit_next": 2, "retry_after_seconds": 30,
///   "set_rate_limit_remaining": [{"email": "ada@example.com", "remaining": 0}],
///   "next_build": {"status": "failed", "build_polls_pending": 2},
///   "next_rollback": {"status": "succeeded", "release_phase": false},
///   "web": [503, 503],
///   "runs": [{"command": "bin/migrate", "output": ["Migrating... done"], "status": 1}] }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Script {
    /// Requests to fail with a scripted error, matched by method and path.
    pub fail_next: Vec<FailRule>,
    /// Answer `429 rate_limit` to this many of the next authenticated API requests (added to any
    /// count still pending).
    pub rate_limit_next: u32,
    /// When set, 429 answers carry `Retry-After` with this many seconds (both the
    /// `rate_limit_next` ones and those for an account whose bucket is empty). Stays in force
    /// until another script sets it.
    pub retry_after_seconds: Option<u64>,
    /// Set accounts' `RateLimit-Remaining` buckets; a bucket at 0 answers 429.
    pub set_rate_limit_remaining: Vec<RateLimitSetting>,
    /// The outcome of the next build created (builds without a script succeed).
    pub next_build: Option<BuildScript>,
    /// The release the next rollback creates (queued like `next_build`). Without one, a
    /// rollback's release has succeeded at once, has a release phase when the release rolled
    /// back to had one, and runs a `web.1` that is up after one dyno list. With one, its
    /// fields apply (with their defaults: a release phase, pending for one GET, ...).
    pub next_rollback: Option<ReleaseScript>,
    /// Statuses (100..=599) for the next requests to the apps' web servers (`/__app/...`, see
    /// [`crate::ServeOptions::local_web_urls`]), one per request, whatever the app; once
    /// they are used up, 200.
    pub web: Vec<u16>,
    /// How the next one-off dynos (`POST /apps/{app}/dynos`) behave, each taken by the first
    /// create whose command it matches (see [`RunScript`]); a run no script matches prints
    /// nothing and exits 0.
    pub runs: Vec<RunScript>,
}

/// The scripted behaviour of one one-off dyno (`heroku run`), over its rendezvous session.
///
/// A script is matched against the created dyno's command with the exit-status suffix that
/// clients append removed (` ; echo "\u{FFFF} heroku-command-exit-status: $?"`, or the older
/// `; echo heroku-command-exit-status $?`). The first queued script that matches answers
/// `conflicts` creates with 409 and is then taken by the next matching create.
///
/// Once a client attaches (see [`crate::ServeOptions::tls`]), the session is:
///
/// 1. the line `rendezvous\r\n`;
/// 2. each line of `output`, one TLS write each;
/// 3. with `echo_input`, everything the client sends, echoed back as it comes, until the
///    client sends EOT (`\x04`, which the official CLI sends at the end of its piped
///    standard input; not echoed) or half-closes;
/// 4. when the command carried the suffix and not `no_marker`, the line its `echo` prints:
///    `\u{FFFF} heroku-command-exit-status: STATUS` (or `heroku-command-exit-status STATUS`
///    for the older suffix);
/// 5. the fake closes (TLS close_notify, then FIN).
///
/// With `crlf` (the default unless the create asked for `force_no_tty`, as a pty does), every
/// line ends with `\r\n` and every `\n` echoed is sent as `\r\n`; otherwise lines end with
/// `\n`.
///
/// ```json
/// { "command": "bin/migrate", "output": ["Migrating... done"], "status": 0,
///   "split_marker": false, "no_marker": false, "crlf": null, "echo_input": false,
///   "conflicts": 0, "attach_host": null }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunScript {
    /// The command to match, without the exit-status suffix; `None` matches any.
    pub command: Option<String>,
    /// Lines the dyno prints (without line endings).
    pub output: Vec<String>,
    /// The exit status the marker line reports.
    pub status: i32,
    /// Send the marker line in two TLS records, each flushed, split in the middle of the
    /// marker text, so that a client must put the line together across reads.
    pub split_marker: bool,
    /// Close without the marker line, as when the connection drops.
    pub no_marker: bool,
    /// Line endings: `\r\n` when true, `\n` when false; by default `\r\n` unless the create
    /// asked for `force_no_tty`.
    pub crlf: Option<bool>,
    /// Echo the client's input back (step 3 above) and record it.
    pub echo_input: bool,
    /// Answer this many matching creates with `409 conflict` first, as Heroku does while the
    /// release a one-off dyno would run is not ready yet.
    pub conflicts: u32,
    /// The host the `attach_url` names instead of `127.0.0.1` (for example `127.0.0.2`), with
    /// the same port and secret: for tests that a client refuses to attach elsewhere.
    pub attach_host: Option<String>,
}

impl RunScript {
    /// Whether this script applies to a run of `command` (suffix removed).
    pub fn matches(&self, command: &str) -> bool {
        self.command.as_deref().is_none_or(|c| c == command)
    }
}

/// A scripted failure: the next `times` requests matching `method` and `path` answer `status`
/// with the JSON error body `{id, message, url}` (and are still recorded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailRule {
    /// HTTP method to match, case-insensitive; `*` matches any method.
    pub method: String,
    /// Exact path to match (without the query string); a trailing `*` makes it a prefix match.
    /// Applies to API paths (checked after the Accept and authentication checks) and to blob,
    /// stream and app web paths.
    pub path: String,
    /// Status to answer (400..=599).
    pub status: u16,
    /// The error `id` (default `"unavailable"`).
    #[serde(default = "default_fail_id")]
    pub id: String,
    /// The error `message` (default a generic scripted-failure message).
    #[serde(default = "default_fail_message")]
    pub message: String,
    /// How many matching requests to fail (default 1).
    #[serde(default = "one")]
    pub times: u32,
    /// When set, the failure carries `Retry-After` with this many seconds.
    #[serde(default)]
    pub retry_after: Option<u64>,
}

/// Set one account's rate-limit bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSetting {
    /// The seeded account's email.
    pub email: String,
    /// The new `RateLimit-Remaining`; 0 makes every API call of the account answer 429.
    pub remaining: u32,
}

/// The final status a scripted build or release reaches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalStatus {
    /// `"succeeded"` (the default).
    #[default]
    Succeeded,
    /// `"failed"`.
    Failed,
}

impl FinalStatus {
    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            FinalStatus::Succeeded => "succeeded",
            FinalStatus::Failed => "failed",
        }
    }
}

/// The scripted outcome of one build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuildScript {
    /// Final status of the build (default succeeded).
    pub status: FinalStatus,
    /// Lines of the build's output stream (default: realistic lines for the status).
    pub output: Option<Vec<String>>,
    /// How many `GET /apps/{app}/builds/{id}` answer `pending` before the final status
    /// (default 1).
    pub build_polls_pending: u32,
    /// How many GETs of the build's output stream answer 404 before it is served (default 0).
    pub stream_404s: u32,
    /// The release that a succeeded build creates.
    pub release: ReleaseScript,
}

impl Default for BuildScript {
    fn default() -> Self {
        BuildScript {
            status: FinalStatus::Succeeded,
            output: None,
            build_polls_pending: 1,
            stream_404s: 0,
            release: ReleaseScript::default(),
        }
    }
}

/// The scripted outcome of the release a succeeded build creates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReleaseScript {
    /// Final status of the release (default succeeded).
    pub status: FinalStatus,
    /// Lines of the release-phase output stream (default: realistic lines for the status).
    pub output: Option<Vec<String>>,
    /// Whether the release has a release phase, i.e. an `output_stream_url` (default true).
    pub release_phase: bool,
    /// How many `GET /apps/{app}/releases/{id}` answer `pending` before the final status
    /// (default 1).
    pub release_polls_pending: u32,
    /// The dynos a succeeded release starts (default: `web.1`, up after one poll).
    pub dynos: Vec<DynoScript>,
}

impl Default for ReleaseScript {
    fn default() -> Self {
        ReleaseScript {
            status: FinalStatus::Succeeded,
            output: None,
            release_phase: true,
            release_polls_pending: 1,
            dynos: vec![DynoScript::default()],
        }
    }
}

/// One dyno of a release, as `GET /apps/{app}/dynos` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DynoScript {
    /// `web.1`, `worker.2`, `run.1234`, `release.5678`.
    pub name: String,
    /// The state it reaches: `up`, `crashed`, `idle`, `down` (default `up`).
    pub state: String,
    /// How many dyno lists show it `starting` first (default 1).
    pub polls_starting: u32,
}

impl Default for DynoScript {
    fn default() -> Self {
        DynoScript { name: "web.1".into(), state: "up".into(), polls_starting: 1 }
    }
}

fn default_fail_id() -> String {
    "unavailable".to_string()
}

fn default_fail_message() -> String {
    "fake-heroku: scripted failure".to_string()
}

fn one() -> u32 {
    1
}

/// Scripted behaviour still pending, inside the server state.
#[derive(Debug, Default)]
pub(crate) struct ScriptQueue {
    pub fail_next: Vec<FailRule>,
    pub rate_limit_next: u32,
    pub retry_after_seconds: Option<u64>,
    pub next_builds: VecDeque<BuildScript>,
    pub next_rollbacks: VecDeque<ReleaseScript>,
    pub web: VecDeque<u16>,
    pub runs: Vec<RunScript>,
}

impl ScriptQueue {
    /// For a dyno create of `command` (suffix removed): `Err(())` when the first matching run
    /// script still has a conflict to answer (one is used up), else the script the run follows
    /// (taken from the queue), or the default.
    pub fn take_run(&mut self, command: &str) -> Result<RunScript, ()> {
        let Some(index) = self.runs.iter().position(|r| r.matches(command)) else {
            return Ok(RunScript::default());
        };
        if self.runs[index].conflicts > 0 {
            self.runs[index].conflicts -= 1;
            return Err(());
        }
        Ok(self.runs.remove(index))
    }

    /// Takes one use of the first failure rule matching `method` and `path`, if any.
    pub fn take_failure(&mut self, method: &str, path: &str) -> Option<FailRule> {
        let index = self.fail_next.iter().position(|rule| rule.times > 0 && rule_matches(rule, method, path))?;
        let rule = self.fail_next.get_mut(index)?;
        rule.times -= 1;
        let taken = rule.clone();
        if rule.times == 0 {
            self.fail_next.remove(index);
        }
        Some(taken)
    }
}

fn rule_matches(rule: &FailRule, method: &str, path: &str) -> bool {
    let method_ok = rule.method == "*" || rule.method.eq_ignore_ascii_case(method);
    let path_ok = match rule.path.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => rule.path == path,
    };
    method_ok && path_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(method: &str, path: &str, times: u32) -> FailRule {
        FailRule {
            method: method.into(),
            path: path.into(),
            status: 503,
            id: default_fail_id(),
            message: default_fail_message(),
            times,
            retry_after: None,
        }
    }

    #[test]
    fn failure_rules_match_exactly_or_by_prefix_and_are_consumed() {
        let mut queue = ScriptQueue {
            fail_next: vec![rule("get", "/apps", 2), rule("*", "/apps/x/*", 1)],
            ..ScriptQueue::default()
        };
        assert!(queue.take_failure("GET", "/apps/x").is_none());
        assert!(queue.take_failure("POST", "/apps").is_none());
        assert!(queue.take_failure("GET", "/apps").is_some());
        assert!(queue.take_failure("GET", "/apps").is_some());
        assert!(queue.take_failure("GET", "/apps").is_none());
        assert!(queue.take_failure("POST", "/apps/x/builds").is_some());
        assert!(queue.take_failure("POST", "/apps/x/builds").is_none());
        assert!(queue.fail_next.is_empty());
    }

    #[test]
    fn script_defaults_match_the_documented_ones() {
        let script: Script = serde_json::from_str(r#"{"next_build": {}}"#).expect("parses");
        let build = script.next_build.expect("next_build");
        assert_eq!(build, BuildScript::default());
        assert_eq!(build.build_polls_pending, 1);
        assert!(build.release.release_phase);
        let rule: FailRule = serde_json::from_str(r#"{"method":"GET","path":"/apps","status":500}"#).expect("rule");
        assert_eq!((rule.times, rule.id.as_str()), (1, "unavailable"));
        assert!(serde_json::from_str::<Script>(r#"{"fial_next": []}"#).is_err());
    }
}
