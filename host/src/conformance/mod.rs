//! The conformance runner: spec-written checks that tell a plugin author whether their
//! plugin follows the `pier:deploy` contract.
//!
//! The plugin runs in the real runtime, with every capability recording what it does
//! ([`crate::caps::Audit`]), a fake provider on loopback that its endpoints resolve to,
//! stand-ins for the programs it declares (it never runs real ones here), and canary
//! values for its secrets. Each check has an id, a one-line description, and a result:
//! pass, fail with a reason the author can act on, or skip with why it does not apply.

pub mod provider;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::sync::Arc;

use rand_core::RngCore as _;
use secrecy::SecretString;
use serde::Serialize;

use crate::caps::events::NullSink;
use crate::caps::keys::GeneratedKey;
use crate::caps::secrets::{Vault, exposes};
use crate::caps::workspace::Workspace;
use crate::caps::{Audit, AuditRecord, Grant, Refusal};
use crate::runtime::bindings::{FieldKind, ResolvedEndpoint, Trigger};
use crate::runtime::{
    Answer, BuildInfo, CallEnv, CallError, Context, Description, MethodError, Plugin, PluginFault, Runtime,
};
use provider::{FakeProvider, stand_ins};

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

/// One check and its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub description: &'static str,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Every check, in the order they run: (id, description).
pub const CHECKS: &[(&str, &str)] = &[
    ("describe.size", "describe returns at most 1 MiB"),
    (
        "describe.programs",
        "every program and tool the plugin declares has a plain name (letters, digits, `.`, `_`, `+`, `-`)",
    ),
    (
        "describe.well-formed",
        "describe returns a well-formed form and permissions: unique field ids, labels, valid origins, patterns and bindings",
    ),
    ("describe.inert", "describe's text has no control characters or terminal escape sequences"),
    (
        "describe.choices",
        "every choice field's options can be fetched: choices answers a list or a typed error, for every choice field",
    ),
    ("validate.rejects-missing", "validate rejects each missing required answer with invalid-answer naming that field"),
    ("setup.rejects-missing", "setup rejects each missing required answer with invalid-answer naming that field"),
    (
        "answers.rejects-invalid",
        "validate rejects a boolean answer that is not true or false with invalid-answer naming the field",
    ),
    (
        "permissions.http",
        "the plugin makes no HTTP request outside the origins it declares, nor to an internal address",
    ),
    ("permissions.exec", "the plugin runs no program it does not declare"),
    ("permissions.exec-args", "every program runs with arguments that match one of its declared patterns"),
    ("permissions.exec-env", "every variable the plugin gives a program is declared for it and not a refused one"),
    ("deploy.succeeds", "deploy succeeds against the author's scripted provider responses (--responses)"),
    ("deploy.provider-failure", "deploy reports failure when the provider fails every request"),
    ("deploy.program-failure", "deploy reports failure when a program it runs exits non-zero"),
    (
        "commands.plan",
        "deploy commands stay the user's: declared support only (0.2), or the same commands with flags inserted (0.1)",
    ),
    (
        "secrets.not-exposed",
        "no secret value appears in anything the plugin logs, returns, sends or passes to a program",
    ),
    ("secrets.bound", "every secret goes only where the plugin's secret bindings send it"),
    ("calls.repeatable", "repeated setup and deploy calls with the same input behave the same (no hidden state)"),
    (
        "limits.resources",
        "every call stays within the default memory (tables included), instance, table and memory counts and result size",
    ),
    ("limits.default", "every call stays within the default time limits, without a trap"),
];

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub plugin: String,
    pub name: String,
    pub version: String,
    pub contract: String,
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether every applicable check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| !matches!(c.outcome, Outcome::Fail(_)))
    }

    /// Counts of passed, failed and skipped checks.
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |f: fn(&Outcome) -> bool| self.checks.iter().filter(|c| f(&c.outcome)).count();
        (
            count(|o| *o == Outcome::Pass),
            count(|o| matches!(o, Outcome::Fail(_))),
            count(|o| matches!(o, Outcome::Skip(_))),
        )
    }

    /// The report as JUnit XML.
    pub fn junit(&self) -> Result<String, quick_junit::SerializeError> {
        use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
        let mut report = quick_junit::Report::new("pier conformance");
        let mut suite = TestSuite::new(format!("{} {}", self.name, self.version));
        for check in &self.checks {
            let status = match &check.outcome {
                Outcome::Pass => TestCaseStatus::success(),
                Outcome::Fail(reason) => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(reason.as_str());
                    s
                }
                Outcome::Skip(reason) => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(reason.as_str());
                    s
                }
            };
            let mut case = TestCase::new(check.id, status);
            case.set_classname(format!("conformance.{}", self.name));
            case.set_system_out(check.description);
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
        report.to_string()
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pass => f.write_str("pass"),
            Outcome::Fail(_) => f.write_str("FAIL"),
            Outcome::Skip(_) => f.write_str("skip"),
        }
    }
}

/// One call the runner made, with what it recorded.
struct Call {
    export: &'static str,
    fault: Option<String>,
    /// Whether the fault was a resource limit (memory, counts, result size).
    resource_fault: bool,
    audit: Vec<AuditRecord>,
    /// Whether the plugin did more than the audit records.
    overflowed: bool,
    /// Everything the call returned, as text, for the secrets check.
    returned: String,
}

/// Why the runner could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    #[error("the conformance provider could not start: {0}")]
    Provider(std::io::Error),
    #[error("conformance scratch space: {0}")]
    Scratch(std::io::Error),
}

/// The server name, build and placeholder answer of one run.
struct Markers {
    server: String,
    word: String,
    build: BuildInfo,
}

impl Markers {
    fn new() -> Self {
        const SERVERS: &[&str] = &["production", "staging", "prod", "web", "app", "live", "eu", "main"];
        const WORDS: &[&str] = &["acme", "shop", "api", "site", "blog", "portal", "store", "backend"];
        let mut random = [0u8; 24];
        rand_core::OsRng.fill_bytes(&mut random);
        let pick = |list: &[&str], byte: u8| list[usize::from(byte) % list.len()].to_string();
        Markers {
            server: pick(SERVERS, random[0]),
            word: format!("{}-{}", pick(WORDS, random[1]), u16::from_le_bytes([random[2], random[3]]) % 1000),
            build: BuildInfo {
                deploy_id: crate::project::timeline::new_id(),
                commit: hex::encode(&random[4..24]),
                branch: "main".into(),
                build_id: Some(
                    (u32::from_le_bytes([random[4], random[5], random[6], random[7]]) % 100_000).to_string(),
                ),
                trigger: Trigger::Manual,
            },
        }
    }
}

struct Runner<'a> {
    runtime: &'a Runtime,
    plugin: &'a Plugin,
    d: Description,
    provider: FakeProvider,
    ok_path: OsString,
    fail_path: OsString,
    /// The checkout's directory, and its one commit, which deploy calls ship.
    _checkout: tempfile::TempDir,
    workspace: Workspace,
    canaries: BTreeMap<String, String>,
    /// What this run calls things, chosen afresh each run so a plugin cannot tell a
    /// conformance run by a fixed name or id.
    markers: Markers,
    /// Every vault a call used: canaries, and keys the plugin generated.
    vaults: Vec<Arc<Vault>>,
    calls: Vec<Call>,
    /// Told of each call as it starts (`pier conformance` prints it on stderr).
    progress: &'a dyn Fn(&str),
}

fn fault_text(e: &CallError) -> String {
    e.to_string()
}

/// Whether a call ended for going over a resource bound rather than time or a trap.
fn is_resource_fault(e: &CallError) -> bool {
    matches!(
        e,
        CallError::Fault(
            PluginFault::MemoryLimit { .. } | PluginFault::ResourceLimit { .. } | PluginFault::TooLarge { .. }
        )
    )
}

fn variant(e: &MethodError) -> &'static str {
    match e {
        MethodError::InvalidAnswer(_) => "invalid-answer",
        MethodError::Provider(_) => "provider",
        MethodError::RateLimited(_) => "rate-limited",
        MethodError::DeployFailed(_) => "deploy-failed",
        MethodError::Denied(_) => "denied",
        MethodError::Unsupported(_) => "unsupported",
    }
}

impl<'a> Runner<'a> {
    /// The URL endpoint `id` gets: its fixed default if it has one (what a user who keeps
    /// the defaults gets), else a made-up one. Either way every request is diverted to
    /// the fake provider, so the URL only has to look like a real one.
    fn endpoint_url(&self, endpoint: &crate::runtime::bindings::Endpoint) -> String {
        endpoint
            .sources
            .iter()
            .find_map(|s| match s {
                crate::runtime::bindings::EndpointSource::Fixed(url) => Some(url.clone()),
                _ => None,
            })
            .unwrap_or_else(|| format!("https://{}.{}.net", endpoint.id.replace('_', "-"), self.markers.word))
    }

    fn grant(&self) -> (Grant, Vec<ResolvedEndpoint>) {
        let endpoints: Vec<ResolvedEndpoint> = self
            .d
            .permissions
            .endpoints
            .iter()
            .map(|e| ResolvedEndpoint { id: e.id.clone(), url: self.endpoint_url(e) })
            .collect();
        // describe.well-formed has checked the origins and programs parse.
        let mut permissions = self.d.permissions.clone();
        for (endpoint, resolved) in permissions.endpoints.iter_mut().zip(&endpoints) {
            endpoint.sources = vec![crate::runtime::bindings::EndpointSource::Fixed(resolved.url.clone())];
        }
        let grant = Grant::for_contract(self.plugin.contract(), &permissions, &BTreeMap::new(), &|_| None)
            .map(|(grant, _)| grant)
            .unwrap_or_default();
        (grant, endpoints)
    }

    /// Answers that should be acceptable: defaults, the provider's URL for URL fields,
    /// canaries for secrets (in the returned vault).
    fn answers(&self, choices: &BTreeMap<String, String>) -> (Vec<Answer>, Arc<Vault>) {
        let vault = Arc::new(Vault::new());
        // A field that feeds an endpoint is answered with that endpoint's URL.
        let url_fields: BTreeMap<&str, String> = self
            .d
            .permissions
            .endpoints
            .iter()
            .flat_map(|e| e.sources.iter().map(move |s| (e, s)))
            .filter_map(|(e, s)| match s {
                crate::runtime::bindings::EndpointSource::Field(f) => Some((f.as_str(), self.endpoint_url(e))),
                _ => None,
            })
            .collect();
        let mut answers = Vec::new();
        for field in &self.d.fields {
            let value = match field.kind {
                FieldKind::Secret => {
                    vault.insert(&field.id, SecretString::from(self.canaries[&field.id].clone()));
                    continue;
                }
                _ if url_fields.contains_key(field.id.as_str()) => url_fields[field.id.as_str()].clone(),
                FieldKind::Choice => choices.get(&field.id).cloned().unwrap_or_else(|| self.markers.word.clone()),
                FieldKind::Boolean => field.default.clone().unwrap_or_else(|| "false".into()),
                FieldKind::Text => {
                    field.default.clone().or(field.example.clone()).unwrap_or_else(|| self.markers.word.clone())
                }
            };
            answers.push(Answer { field: field.id.clone(), value });
        }
        (answers, vault)
    }

    fn env(&mut self, vault: Arc<Vault>, audit: Arc<Audit>, failing_programs: bool) -> (CallEnv, Context) {
        if !self.vaults.iter().any(|v| Arc::ptr_eq(v, &vault)) {
            self.vaults.push(vault.clone());
        }
        let (grant, endpoints) = self.grant();
        let path = if failing_programs { self.fail_path.clone() } else { self.ok_path.clone() };
        let env = CallEnv::new(grant, vault, Arc::new(NullSink))
            .with_workspace(self.workspace.clone())
            .with_audit(audit)
            .with_path(path)
            .with_divert(self.provider.url());
        (env, Context { endpoints, server: self.markers.server.clone() })
    }

    /// Says that a call of `export` starts, and starts the provider's script over.
    fn announce(&self, export: &str) {
        self.provider.reset();
        (self.progress)(export);
    }

    fn record(&mut self, export: &'static str, audit: &Audit, fault: Option<&CallError>, returned: String) {
        self.calls.push(Call {
            export,
            fault: fault.map(fault_text),
            resource_fault: fault.is_some_and(is_resource_fault),
            audit: audit.records(),
            overflowed: audit.overflowed(),
            returned: bounded(returned),
        });
    }

    async fn choices(
        &mut self,
        field: &str,
        answers: &[Answer],
        vault: Arc<Vault>,
    ) -> Result<Result<Vec<crate::runtime::Choice>, MethodError>, String> {
        let audit = Arc::new(Audit::default());
        let (env, ctx) = self.env(vault, audit.clone(), false);
        self.announce("choices");
        let result = self.plugin.choices(self.runtime, &env, &ctx, field, answers).await;
        self.record("choices", &audit, result.as_ref().err(), format!("{result:?}"));
        result.map_err(|e| fault_text(&e))
    }

    async fn validate(&mut self, answers: &[Answer], vault: Arc<Vault>) -> Result<Result<String, MethodError>, String> {
        let audit = Arc::new(Audit::default());
        let (env, ctx) = self.env(vault, audit.clone(), false);
        self.announce("validate");
        let result = self.plugin.validate(self.runtime, &env, &ctx, answers).await;
        self.record("validate", &audit, result.as_ref().err(), format!("{result:?}"));
        result.map_err(|e| fault_text(&e))
    }

    #[allow(clippy::type_complexity)]
    async fn setup(
        &mut self,
        answers: &[Answer],
        vault: Arc<Vault>,
    ) -> Result<(Result<crate::runtime::SetupResult, MethodError>, Vec<GeneratedKey>, Vec<AuditRecord>), String> {
        let audit = Arc::new(Audit::default());
        let (env, ctx) = self.env(vault, audit.clone(), false);
        self.announce("setup");
        let result = self.plugin.setup(self.runtime, &env, &ctx, answers).await;
        let returned = match &result {
            Ok(out) => format!("{:?}", out.value),
            Err(e) => fault_text(e),
        };
        self.record("setup", &audit, result.as_ref().err(), returned);
        result.map(|out| (out.value, out.generated_keys, audit.records())).map_err(|e| fault_text(&e))
    }

    #[allow(clippy::type_complexity)]
    async fn deploy(
        &mut self,
        settings: &[Answer],
        vault: Arc<Vault>,
        failing_programs: bool,
    ) -> Result<(Result<crate::runtime::DeployReport, MethodError>, Vec<AuditRecord>), String> {
        let audit = Arc::new(Audit::default());
        let (env, ctx) = self.env(vault, audit.clone(), failing_programs);
        let build = self.markers.build.clone();
        self.announce("deploy");
        let result = self.plugin.deploy(self.runtime, &env, &ctx, settings, &build).await;
        self.record("deploy", &audit, result.as_ref().err(), format!("{result:?}"));
        result.map(|r| (r, audit.records())).map_err(|e| fault_text(&e))
    }

    /// The `commands.plan` check: a 0.1.0 plugin's `prepare-commands` must return the
    /// user's commands or the same with flags inserted, and only variables a current
    /// plugin could declare; a current plugin declares its support (checked by describe).
    async fn prepare(&mut self, settings: &[Answer], vault: Arc<Vault>) -> Outcome {
        let audit = Arc::new(Audit::default());
        let (env, ctx) = self.env(vault, audit.clone(), false);
        let commands =
            ["echo one".to_string(), "heroku run rake db:migrate".to_string(), "ls -la && echo 'a  b'".to_string()];
        self.announce("prepare-commands");
        let result = self.plugin.legacy_prepare_commands(self.runtime, &env, &ctx, settings, &commands).await;
        self.record("prepare-commands", &audit, result.as_ref().err(), format!("{result:?}"));
        let plan = match result {
            Ok(None) => return Outcome::Pass,
            Ok(Some(Err(_))) => return Outcome::Pass,
            Ok(Some(Ok(plan))) => plan,
            Err(e) => return Outcome::Fail(fault_text(&e)),
        };
        let mut problems = Vec::new();
        for (original, returned) in commands.iter().zip(&plan.commands) {
            if let Err(e) = crate::commands::accept_rewrite(original, returned) {
                problems.push(format!("`{original}` came back as `{}` ({e})", crate::caps::events::inert(returned)));
            }
        }
        for var in &plan.env {
            if let Some(why) = crate::caps::exec::refused_env(&var.name) {
                problems.push(format!("variable `{}` {why}", crate::caps::events::inert(&var.name)));
            }
        }
        if problems.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail(format!(
                "prepare-commands may only insert flag words into the user's commands: {}",
                problems.join("; ")
            ))
        }
    }

    /// Answers without `field` (a secret is left out of the vault).
    fn without(&self, answers: &[Answer], vault: &Vault, field: &str) -> (Vec<Answer>, Arc<Vault>) {
        let kept: Vec<Answer> = answers.iter().filter(|a| a.field != field).cloned().collect();
        let new = Vault::new();
        for handle in vault.handles().into_iter().filter(|h| h != field) {
            if let Some(v) = vault.get(&handle) {
                new.insert(&handle, v);
            }
        }
        (kept, Arc::new(new))
    }
}

/// `export: what` for every record of every call that `denied` picks out.
fn denials(calls: &[Call], denied: impl Fn(&AuditRecord) -> Option<String>) -> Vec<String> {
    let all = calls.iter().flat_map(|c| c.audit.iter().filter_map(&denied).map(move |d| format!("{}: {d}", c.export)));
    // Each once, in the order first seen, with how many times when more than once.
    let mut counted: Vec<(String, usize)> = Vec::new();
    for denial in all {
        match counted.iter_mut().find(|(d, _)| *d == denial) {
            Some((_, n)) => *n += 1,
            None => counted.push((denial, 1)),
        }
    }
    counted.into_iter().map(|(d, n)| if n > 1 { format!("{d} ({n} times)") } else { d }).collect()
}

/// A deploy that should have failed because of `cause`: passes if it returned an error.
fn must_fail(
    result: Result<(Result<crate::runtime::DeployReport, MethodError>, Vec<AuditRecord>), String>,
    cause: &str,
    advice: &str,
) -> Outcome {
    match result {
        Ok((Err(_), _)) => Outcome::Pass,
        Ok((Ok(report), _)) => Outcome::Fail(format!("{cause}, yet deploy succeeded (`{}`): {advice}", report.summary)),
        Err(fault) => Outcome::Fail(format!("deploy faulted instead of returning an error: {fault}")),
    }
}

/// A new vault holding the same secrets.
fn copy(vault: &Vault) -> Arc<Vault> {
    let new = Vault::new();
    for handle in vault.handles() {
        if let Some(value) = vault.get(&handle) {
            new.insert(&handle, value);
        }
    }
    Arc::new(new)
}

/// Whether `result` is `invalid-answer` about `field`.
fn rejects<T: fmt::Debug>(result: &Result<Result<T, MethodError>, String>, field: &str) -> Result<(), String> {
    match result {
        Ok(Err(MethodError::InvalidAnswer(f))) if f.field == field => Ok(()),
        Ok(Err(MethodError::InvalidAnswer(f))) => Err(format!("it named field `{}` instead", f.field)),
        Ok(Err(other)) => Err(format!("it returned {} ({other:?}) instead of invalid-answer", variant(other))),
        Ok(Ok(value)) => Err(format!("it succeeded ({value:?})")),
        Err(fault) => Err(format!("it faulted: {fault}")),
    }
}

/// An outcome as a comparable signature: the variant, and for setup the settings with
/// generated key material masked, and the requests made (method and path).
fn signature(outcome: &str, keys: &[GeneratedKey], audit: &[AuditRecord]) -> String {
    let mut text = outcome.to_string();
    for key in keys {
        text = text.replace(&key.public_key, "<public key>").replace(&key.fingerprint, "<fingerprint>");
    }
    // Keys generated during deploy differ every time, as they should.
    text = mask_after(&text, "ssh-ed25519 ", "<public key>");
    text = mask_after(&text, "SHA256:", "<fingerprint>");
    for record in audit {
        if let AuditRecord::Http { method, url, .. } = record {
            let path = url.split('?').next().unwrap_or(url);
            text.push_str(&format!("\n{method} {path}"));
        }
    }
    text
}

/// Runs every check against `plugin`.
pub async fn run(runtime: &Runtime, plugin: &Plugin) -> Result<Report, ConformanceError> {
    run_with(runtime, plugin, RunOptions { progress: &|_| {}, responses: vec![] }).await
}

/// How [`run_with`] runs.
pub struct RunOptions<'a> {
    /// Told of each call as it starts, so that a plugin that hangs is seen hanging in the
    /// call it hangs in.
    pub progress: &'a dyn Fn(&str),
    /// What the fake provider answers instead of `200 {}`, from the start in every call;
    /// with some, `deploy.succeeds` is checked.
    pub responses: Vec<provider::Scripted>,
}

/// [`run`], as `options` say.
pub async fn run_with(runtime: &Runtime, plugin: &Plugin, options: RunOptions<'_>) -> Result<Report, ConformanceError> {
    let progress = options.progress;
    progress("describe");
    let file = plugin.file().clone();
    let mut checks: Vec<Check> = Vec::new();
    let check = |id: &'static str, outcome: Outcome| -> Check {
        let description = CHECKS.iter().find(|(i, _)| *i == id).map(|(_, d)| *d).unwrap_or("");
        Check { id, description, outcome }
    };
    // describe first: if it cannot be used, that one check fails and nothing else runs.
    let stop = |id: &'static str, reason: String| {
        let checks = CHECKS
            .iter()
            .map(|(i, _)| {
                if *i == id {
                    check(i, Outcome::Fail(reason.clone()))
                } else {
                    check(i, Outcome::Skip(format!("{id} failed, so nothing else can be checked")))
                }
            })
            .collect();
        Report {
            plugin: file.source.clone(),
            name: "?".into(),
            version: "?".into(),
            contract: file.contract.clone(),
            checks,
        }
    };
    let (d, had_controls) = match plugin.describe_unchecked(runtime).await {
        Ok(d) => d,
        Err(e) => {
            let id = match &e {
                CallError::Fault(PluginFault::TooLarge { .. }) => "describe.size",
                e if is_resource_fault(e) => "limits.resources",
                _ => "describe.well-formed",
            };
            return Ok(stop(id, e.to_string()));
        }
    };
    let tools = d.permissions.commands.tools.iter().map(|t| &t.program);
    let crooked: Vec<String> = d
        .permissions
        .programs
        .iter()
        .map(|p| &p.name)
        .chain(tools)
        .filter(|name| !crate::caps::exec::plain_program_name(name))
        .map(|name| format!("`{name}`"))
        .collect();
    if !crooked.is_empty() {
        return Ok(stop(
            "describe.programs",
            format!(
                "program names must be plain (letters, digits, `.`, `_`, `+`, `-`), not paths or shell text: {}; \
                 Pier refuses to load this plugin",
                crooked.join(", ")
            ),
        ));
    }
    if let Err(message) = crate::runtime::check_description(&d, plugin.contract()) {
        return Ok(stop(
            "describe.well-formed",
            format!("plugin `{}` broke the contract in `describe`: {message}", plugin.name()),
        ));
    }
    checks.push(check("describe.size", Outcome::Pass));
    checks.push(check("describe.programs", Outcome::Pass));
    checks.push(check("describe.well-formed", Outcome::Pass));
    checks.push(check(
        "describe.inert",
        if had_controls {
            Outcome::Fail(
                "describe returned text with control characters or terminal escape sequences (Pier strips them \
                 before showing anything; remove them)"
                    .into(),
            )
        } else {
            Outcome::Pass
        },
    ));
    let program_names: Vec<String> = d.permissions.programs.iter().map(|p| p.name.clone()).collect();

    let scratch = tempfile::tempdir().map_err(ConformanceError::Scratch)?;
    let ok_path = stand_ins(&scratch.path().join("ok"), &program_names, 0).map_err(ConformanceError::Scratch)?;
    let fail_path = stand_ins(&scratch.path().join("fail"), &program_names, 1).map_err(ConformanceError::Scratch)?;
    let checkout = tempfile::tempdir().map_err(ConformanceError::Scratch)?;
    let mut markers = Markers::new();
    std::fs::write(
        checkout.path().join("README.md"),
        format!("# {}\n\nDeployed by {}.\n", markers.word, markers.server),
    )
    .map_err(ConformanceError::Scratch)?;
    // Deploys ship a commit: the checkout is a repository of one, whose SHA the build names.
    let dir = checkout.path().canonicalize().map_err(ConformanceError::Scratch)?;
    let (repo, commit) = crate::git::Checkout::create(&dir, &format!("{} {}", markers.word, markers.server))
        .map_err(|e| ConformanceError::Scratch(std::io::Error::other(e.to_string())))?;
    markers.build.commit = commit.clone();
    let workspace = Workspace::new(repo, commit);
    let mut canaries = BTreeMap::new();
    for field in d.fields.iter().filter(|f| f.kind == FieldKind::Secret) {
        let mut bytes = [0u8; 8];
        rand_core::OsRng.fill_bytes(&mut bytes);
        canaries.insert(field.id.clone(), format!("pier-canary-{}-{}", field.id, hex::encode(bytes)));
    }
    let provider = FakeProvider::start(options.responses).await.map_err(ConformanceError::Provider)?;
    let mut r = Runner {
        runtime,
        plugin,
        d: d.clone(),
        provider,
        ok_path: ok_path.into_os_string(),
        fail_path: fail_path.into_os_string(),
        _checkout: checkout,
        workspace,
        canaries,
        markers,
        vaults: Vec::new(),
        calls: Vec::new(),
        progress,
    };

    // describe.choices: fetch every choice field's options, answering the fields before it.
    let choice_fields: Vec<String> =
        d.fields.iter().filter(|f| f.kind == FieldKind::Choice).map(|f| f.id.clone()).collect();
    let mut chosen = BTreeMap::new();
    if choice_fields.is_empty() {
        checks.push(check("describe.choices", Outcome::Skip("the form has no choice fields".into())));
    } else {
        let mut problems = Vec::new();
        for field in &choice_fields {
            let (answers, vault) = r.answers(&chosen);
            let position = d.fields.iter().position(|f| &f.id == field).unwrap_or(0);
            let before: Vec<Answer> =
                answers.into_iter().filter(|a| d.fields[..position].iter().any(|f| f.id == a.field)).collect();
            match r.choices(field, &before, vault).await {
                Ok(Ok(list)) => {
                    if let Some(first) = list.first() {
                        chosen.insert(field.clone(), first.value.clone());
                    }
                }
                Ok(Err(MethodError::Unsupported(m))) => problems
                    .push(format!("`{field}`: choices answered unsupported ({m}); a choice field needs choices")),
                Ok(Err(_)) => {}
                Err(fault) => problems.push(format!("`{field}`: {fault}")),
            }
        }
        checks.push(check(
            "describe.choices",
            if problems.is_empty() { Outcome::Pass } else { Outcome::Fail(problems.join("; ")) },
        ));
    }

    let (answers, vault) = r.answers(&chosen);
    let required: Vec<String> = d.fields.iter().filter(|f| f.required).map(|f| f.id.clone()).collect();
    for (id, export) in [("validate.rejects-missing", "validate"), ("setup.rejects-missing", "setup")] {
        if required.is_empty() {
            checks.push(check(id, Outcome::Skip("the form has no required fields".into())));
            continue;
        }
        let mut problems = Vec::new();
        for field in &required {
            let (partial, partial_vault) = r.without(&answers, &vault, field);
            let verdict = if export == "validate" {
                rejects(&r.validate(&partial, partial_vault).await, field)
            } else {
                rejects(&r.setup(&partial, partial_vault).await.map(|(v, _, _)| v), field)
            };
            if let Err(why) = verdict {
                problems.push(format!("without `{field}`, {export}: {why}"));
            }
        }
        checks.push(check(id, if problems.is_empty() { Outcome::Pass } else { Outcome::Fail(problems.join("; ")) }));
    }

    let booleans: Vec<String> =
        d.fields.iter().filter(|f| f.kind == FieldKind::Boolean).map(|f| f.id.clone()).collect();
    if booleans.is_empty() {
        checks.push(check("answers.rejects-invalid", Outcome::Skip("the form has no boolean fields".into())));
    } else {
        let mut problems = Vec::new();
        // If the runner's own answers are refused for another field, a bad boolean cannot
        // be told apart: say so rather than blame the plugin.
        let baseline = r.validate(&answers, vault.clone()).await;
        let refused = match &baseline {
            Ok(Err(MethodError::InvalidAnswer(f))) if !booleans.contains(&f.field) => Some(f.clone()),
            _ => None,
        };
        for field in booleans.iter().filter(|_| refused.is_none()) {
            let bad: Vec<Answer> = answers
                .iter()
                .map(|a| {
                    if &a.field == field { Answer { field: a.field.clone(), value: "maybe".into() } } else { a.clone() }
                })
                .collect();
            if let Err(why) = rejects(&r.validate(&bad, vault.clone()).await, field) {
                problems.push(format!("with `{field}` = `maybe`, validate: {why}"));
            }
        }
        checks.push(check(
            "answers.rejects-invalid",
            match refused {
                Some(f) => Outcome::Skip(format!(
                    "validate refused the runner's placeholder for `{}` ({}), so a bad boolean cannot be isolated",
                    f.field, f.message
                )),
                None if problems.is_empty() => Outcome::Pass,
                None => Outcome::Fail(problems.join("; ")),
            },
        ));
    }

    // Ordinary calls with acceptable answers: validate, setup (twice), deploy (twice),
    // prepare-commands. Their records feed the permission, secret and limit checks.
    let _ = r.validate(&answers, vault.clone()).await;
    // Each call gets its own copy of the secrets, as separate runs of pier would; deploys
    // also get the keys the first setup generated.
    let setup_vault = copy(&vault);
    let first = r.setup(&answers, setup_vault.clone()).await;
    let second = r.setup(&answers, copy(&vault)).await;
    let settings: Vec<Answer> = match &first {
        Ok((Ok(setup), _, _)) => {
            let mut s = answers.clone();
            for a in &setup.settings {
                s.retain(|x| x.field != a.field);
                s.push(a.clone());
            }
            s
        }
        _ => answers.clone(),
    };
    let vault = setup_vault;
    let deploy_a = r.deploy(&settings, copy(&vault), false).await;
    let deploy_b = r.deploy(&settings, copy(&vault), false).await;
    let plan = r.prepare(&settings, copy(&vault)).await;

    checks.push(check(
        "deploy.succeeds",
        if !r.provider.scripted() {
            Outcome::Skip(
                "no scripted provider responses: give them with --responses FILE to check the happy path".into(),
            )
        } else {
            match &deploy_a {
                Ok((Ok(_), _)) => Outcome::Pass,
                Ok((Err(e), _)) => {
                    Outcome::Fail(format!("deploy returned an error against the scripted responses: {e:?}"))
                }
                Err(fault) => Outcome::Fail(format!("deploy faulted against the scripted responses: {fault}")),
            }
        },
    ));
    let has_provider = !d.permissions.endpoints.is_empty() || !d.permissions.origins.is_empty();
    if has_provider {
        r.provider.fail(true);
        let failed = r.deploy(&settings, copy(&vault), false).await;
        r.provider.fail(false);
        checks.push(check(
            "deploy.provider-failure",
            must_fail(failed, "every provider request answered HTTP 500", "return deploy-failed or provider"),
        ));
    } else {
        checks.push(check(
            "deploy.provider-failure",
            Outcome::Skip("the plugin declares no endpoints or origins".into()),
        ));
    }
    if d.permissions.programs.is_empty() {
        checks.push(check("deploy.program-failure", Outcome::Skip("the plugin declares no programs".into())));
    } else {
        let failed = r.deploy(&settings, copy(&vault), true).await;
        let cause = format!("every declared program ({}) exited 1", program_names.join(", "));
        checks.push(check("deploy.program-failure", must_fail(failed, &cause, "exit codes must propagate")));
    }
    checks.push(check("commands.plan", plan));

    // Permissions: every attempt, in every call, stayed within the declaration.
    let denied_http = denials(&r.calls, |a| match a {
        AuditRecord::Http { method, url, refused: Some(Refusal::Origin | Refusal::Address), .. } => {
            Some(format!("{method} {url}"))
        }
        _ => None,
    });
    checks.push(check(
        "permissions.http",
        if denied_http.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail(format!(
                "requests outside the declared origins (add them to permissions, or stop making them): {}",
                denied_http.join(", ")
            ))
        },
    ));
    let denied_exec = denials(&r.calls, |a| match a {
        AuditRecord::Exec { program, refused: Some(Refusal::Program), .. } => Some(format!("`{program}`")),
        _ => None,
    });
    checks.push(check(
        "permissions.exec",
        if denied_exec.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail(format!(
                "programs run without being declared (declare them by bare name): {}",
                denied_exec.join(", ")
            ))
        },
    ));

    for (id, refusal, what) in [
        ("permissions.exec-args", Refusal::Args, "programs run with arguments outside their declared patterns"),
        ("permissions.exec-env", Refusal::Env, "programs given variables that are not declared for them, or refused"),
    ] {
        let refused = denials(&r.calls, |a| match a {
            AuditRecord::Exec { program, refused: Some(r), plugin_text, .. } if *r == refusal => {
                Some(format!("`{program} {}`", plugin_text.replace('\n', " ")))
            }
            _ => None,
        });
        checks.push(check(
            id,
            if refused.is_empty() { Outcome::Pass } else { Outcome::Fail(format!("{what}: {}", refused.join(", "))) },
        ));
    }
    let off_binding = denials(&r.calls, |a| match a {
        AuditRecord::Http { method, url, refused: Some(Refusal::Secret), secret_headers, .. } => {
            Some(format!("{method} {url} (headers {})", secret_headers.join(", ")))
        }
        AuditRecord::Exec { program, refused: Some(Refusal::Secret), .. } => Some(format!("`{program}`")),
        _ => None,
    });
    checks.push(check(
        "secrets.bound",
        if off_binding.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail(format!(
                "secrets used where no binding sends them (declare the binding, or stop): {}",
                off_binding.join(", ")
            ))
        },
    ));

    // Secrets: no secret (a canary answer, or a key the plugin generated) in any form,
    // anywhere the plugin wrote.
    let mut secrets: BTreeMap<String, String> = BTreeMap::new();
    for vault in &r.vaults {
        for handle in vault.handles() {
            if let Some(value) = vault.get(&handle) {
                secrets.insert(secrecy::ExposeSecret::expose_secret(&value).to_string(), handle);
            }
        }
    }
    if secrets.is_empty() {
        checks.push(check(
            "secrets.not-exposed",
            Outcome::Skip("the form has no secret fields and no key was generated".into()),
        ));
    } else {
        let mut leaks = Vec::new();
        for call in &r.calls {
            let mut places: Vec<(&str, &str)> = vec![("its return value", call.returned.as_str())];
            for a in &call.audit {
                match a {
                    AuditRecord::Http { plugin_text, .. } => places.push(("an HTTP request", plugin_text)),
                    AuditRecord::Exec { plugin_text, .. } => {
                        places.push(("a program's arguments or environment", plugin_text))
                    }
                    AuditRecord::Event { text } => places.push(("its log", text)),
                    AuditRecord::Stream { address, .. } => places.push(("a TLS stream's address", address)),
                }
            }
            for (value, handle) in &secrets {
                for (place, text) in &places {
                    if exposes(text, value) {
                        leaks.push(format!("{}: the value of secret `{handle}` appeared in {place}", call.export));
                    }
                }
            }
        }
        leaks.dedup();
        checks.push(check(
            "secrets.not-exposed",
            if leaks.is_empty() { Outcome::Pass } else { Outcome::Fail(leaks.join("; ")) },
        ));
    }

    // Repeatability: the same input, the same behaviour.
    let mut differences = Vec::new();
    match (&first, &second) {
        (Ok((a, ka, aa)), Ok((b, kb, ab))) => {
            let sa = signature(&format!("{a:?}"), ka, aa);
            let sb = signature(&format!("{b:?}"), kb, ab);
            if sa != sb {
                differences.push(format!("setup returned `{}` then `{}`", first_line(&sa), first_line(&sb)));
            }
        }
        (Err(_), Err(_)) => {}
        _ => differences.push("setup faulted once and not the other time".into()),
    }
    match (&deploy_a, &deploy_b) {
        (Ok((a, aa)), Ok((b, ab))) => {
            let sa = signature(&format!("{a:?}"), &[], aa);
            let sb = signature(&format!("{b:?}"), &[], ab);
            if sa != sb {
                differences.push(format!("deploy returned `{}` then `{}`", first_line(&sa), first_line(&sb)));
            }
        }
        (Err(_), Err(_)) => {}
        _ => differences.push("deploy faulted once and not the other time".into()),
    }
    checks.push(check(
        "calls.repeatable",
        if differences.is_empty() { Outcome::Pass } else { Outcome::Fail(differences.join("; ")) },
    ));

    let over: Vec<String> = r.calls.iter().filter(|c| c.resource_fault).filter_map(|c| c.fault.clone()).collect();
    let flooded: Vec<&str> = r.calls.iter().filter(|c| c.overflowed).map(|c| c.export).collect();
    checks.push(check(
        "limits.resources",
        if let Some(first) = over.first() {
            Outcome::Fail(first.clone())
        } else if let Some(export) = flooded.first() {
            Outcome::Fail(format!(
                "{export} did more than the conformance runner records for one call ({} host calls or {} MiB of \
                 text), so it cannot vouch for the rest",
                Audit::MAX_RECORDS,
                Audit::MAX_BYTES >> 20
            ))
        } else {
            Outcome::Pass
        },
    ));
    let faults: Vec<String> = r.calls.iter().filter(|c| !c.resource_fault).filter_map(|c| c.fault.clone()).collect();
    checks.push(check(
        "limits.default",
        if faults.is_empty() { Outcome::Pass } else { Outcome::Fail(faults[0].clone()) },
    ));

    // Report in the order of CHECKS.
    checks.sort_by_key(|c| CHECKS.iter().position(|(id, _)| *id == c.id));
    Ok(Report { plugin: file.source, name: d.name, version: d.version, contract: file.contract, checks })
}

/// `text`, cut to what the runner keeps of one returned value (results are already
/// bounded by the runtime; this bounds fault texts and keeps memory predictable).
fn bounded(mut text: String) -> String {
    const MAX: usize = 2 << 20;
    if text.len() > MAX {
        let mut cut = MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// Replaces the base64 run after every `marker` with `mask`.
fn mask_after(text: &str, marker: &str, mask: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        out.push_str(&rest[..at]);
        out.push_str(mask);
        let after = &rest[at + marker.len()..];
        let end =
            after.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))).unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn first_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or("");
    line.get(..200).unwrap_or(line)
}

#[cfg(test)]
mod tests {

    #[test]
    fn each_denial_is_listed_once_with_how_many_times() {
        let http = |url: &str| AuditRecord::Http {
            method: "GET".into(),
            url: url.into(),
            refused: Some(Refusal::Origin),
            secret_headers: vec![],
            plugin_text: String::new(),
        };
        let call = |audit| Call {
            export: "deploy",
            fault: None,
            resource_fault: false,
            audit,
            overflowed: false,
            returned: String::new(),
        };
        let calls = [
            call(vec![http("https://a.test/x"), http("https://b.test/"), http("https://a.test/x")]),
            call(vec![http("https://a.test/x")]),
        ];
        let listed = denials(&calls, |a| match a {
            AuditRecord::Http { url, .. } => Some(url.clone()),
            _ => None,
        });
        assert_eq!(listed, ["deploy: https://a.test/x (3 times)", "deploy: https://b.test/"]);
    }

    use super::*;

    #[test]
    fn generated_key_material_is_masked_in_signatures() {
        let a = signature("Ok(\"ssh-ed25519 AAAAC3Nza/abc+1= pier\", SHA256:xyz+/=)", &[], &[]);
        let b = signature("Ok(\"ssh-ed25519 AAAAother pier\", SHA256:other)", &[], &[]);
        assert_eq!(a, b);
        assert_eq!(a, "Ok(\"<public key> pier\", <fingerprint>)");
    }

    #[test]
    fn nothing_a_plugin_is_told_marks_a_run_as_conformance() {
        let (a, b) = (Markers::new(), Markers::new());
        for m in [&a, &b] {
            let told = format!("{} {} {:?}", m.server, m.word, m.build);
            assert!(!told.to_lowercase().contains("conformance"), "{told}");
            assert_eq!(m.build.commit.len(), 40);
        }
        // Random per run: a fixed id or commit would give the runner away.
        assert_ne!(a.build.commit, b.build.commit);
        assert_ne!(a.build.deploy_id, b.build.deploy_id);
    }

    #[test]
    fn every_check_is_listed_once() {
        let mut ids: Vec<&str> = CHECKS.iter().map(|(id, _)| *id).collect();
        ids.dedup();
        assert_eq!(ids.len(), CHECKS.len());
    }
}
