//! The fake's in-memory state (kept behind one mutex) and the seed that fills it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::record::{RecordedRequest, RollbackRecord, RunRecord};
use crate::script::{FinalStatus, RunScript, Script, ScriptQueue};
use crate::util::{derived_uuid, now_rfc3339};

/// A rate-limit bucket's starting size: Heroku allows 4,500 requests an hour per account.
pub const RATE_LIMIT_START: u32 = 4500;
/// The stack every fake app and build is on.
pub const STACK: &str = "heroku-24";
/// The region every fake app is in.
pub const REGION: &str = "us";

/// Accounts (and their apps and releases) to create.
///
/// ```json
/// { "accounts": [ { "email": "ada@example.com", "api_key": "any-string",
///                   "two_factor_required": false, "suspended": false,
///                   "apps": ["hello-app"], "generated_apps": 0,
///                   "releases": [ {"app": "hello-app"},
///                                 {"app": "hello-app", "status": "failed"} ] } ] }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Seed {
    /// Accounts to create, or to update when an account with the same email exists.
    pub accounts: Vec<SeedAccount>,
}

/// One seeded account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeedAccount {
    /// The account's email (its identity in the seed).
    pub email: String,
    /// The API key that authenticates as this account (`Authorization: Bearer KEY`).
    pub api_key: String,
    /// The account's display name (`null` when not given).
    pub name: Option<String>,
    /// When true, every API call with this key answers `403 two_factor`.
    pub two_factor_required: bool,
    /// When true, every API call with this key answers `403 suspended`.
    pub suspended: bool,
    /// Names of the apps the account owns.
    pub apps: Vec<String>,
    /// Also own this many apps named `app-0001`, `app-0002`, ... (zero-padded to 4 digits).
    pub generated_apps: u32,
    /// Releases the account's apps already have, oldest first: each takes the app's next
    /// version (`v1`, `v2`, ... for an app without releases).
    pub releases: Vec<SeedRelease>,
}

/// One seeded release, made by its account.
///
/// ```json
/// { "app": "hello-app", "status": "succeeded", "description": "Deploy 1a2b3c4d",
///   "release_phase": false, "dynos": [{"name": "web.1", "state": "up", "polls_starting": 0}] }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeedRelease {
    /// The app, one of the account's (seeded now or before).
    pub app: String,
    /// The release's status (default succeeded); `failed` is a release whose release phase
    /// failed. The newest succeeded release is the app's current one.
    pub status: FinalStatus,
    /// The description (default `Deploy ` and 8 hex digits, as for a Build API deploy).
    pub description: Option<String>,
    /// Whether the release had a release phase, i.e. an `output_stream_url` serving the
    /// default release-phase lines for its status (default false).
    pub release_phase: bool,
    /// The dynos it runs while it is current (default: `web.1`, already up).
    pub dynos: Vec<crate::script::DynoScript>,
}

impl Default for SeedRelease {
    fn default() -> Self {
        SeedRelease {
            app: String::new(),
            status: FinalStatus::Succeeded,
            description: None,
            release_phase: false,
            dynos: vec![crate::script::DynoScript { polls_starting: 0, ..crate::script::DynoScript::default() }],
        }
    }
}

/// An SSH public key registered with an account, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// The key's comment (the text after the base64 body; empty when there was none).
    pub comment: String,
    /// When the key was added.
    pub created_at: String,
    /// The email of the account the key belongs to.
    pub email: String,
    /// `SHA256:` followed by the unpadded base64 of the SHA-256 of the decoded key blob, as
    /// `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// Unique id of the key.
    pub id: String,
    /// The public key line as it was sent (trimmed).
    pub public_key: String,
    /// When the key was last updated.
    pub updated_at: String,
}

#[derive(Debug)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub api_key: String,
    pub two_factor_required: bool,
    pub suspended: bool,
    pub remaining: u32,
    pub created_at: String,
}

impl Account {
    pub fn to_json(&self) -> Value {
        json!({
            "allow_tracking": true,
            "beta": false,
            "country_of_residence": null,
            "created_at": self.created_at,
            "default_organization": null,
            "default_team": null,
            "delinquent_at": null,
            "email": self.email,
            "federated": false,
            "id": self.id,
            "identity_provider": null,
            "last_login": self.created_at,
            "name": self.name,
            "sms_number": null,
            "suspended_at": null,
            "two_factor_authentication": self.two_factor_required,
            "updated_at": self.created_at,
            "verified": true,
        })
    }

    /// `{id, email}`, as builds and releases name their user.
    pub fn identity(&self) -> Value {
        json!({ "id": self.id, "email": self.email })
    }
}

#[derive(Debug)]
pub struct App {
    pub id: String,
    pub name: String,
    pub owner: usize,
    pub created_at: String,
    /// How many releases the app has had (the last release's version).
    pub releases: u64,
}

#[derive(Debug)]
pub struct Build {
    pub id: String,
    pub app: usize,
    pub user: usize,
    pub created_at: String,
    pub updated_at: String,
    pub source_blob: Value,
    pub buildpacks: Value,
    pub final_status: FinalStatus,
    pub polls: u32,
    pub polls_pending: u32,
    pub stream_gets: u32,
    pub stream_404s: u32,
    /// Scripted output, or the failure lines when the source could not be fetched or
    /// verified.
    pub output: Option<Vec<String>>,
    /// The release this build creates once it succeeds (index into `State::releases`).
    pub release: Option<usize>,
    pub slug_id: String,
}

#[derive(Debug)]
pub struct Release {
    pub id: String,
    pub app: usize,
    pub user: usize,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
    pub description: String,
    pub slug_id: String,
    pub final_status: FinalStatus,
    pub polls: u32,
    pub polls_pending: u32,
    pub release_phase: bool,
    pub output: Option<Vec<String>>,
    /// The dynos it starts once it has succeeded.
    pub dynos: Vec<crate::script::DynoScript>,
    /// How many dyno lists have shown them.
    pub dyno_polls: u32,
}

/// A one-off dyno.
#[derive(Debug)]
pub struct Run {
    /// What tests see of it.
    pub record: RunRecord,
    pub app: usize,
    /// The release it runs (the app's current one when it was created).
    pub release: usize,
    /// The rendezvous secret, for an attached run.
    pub secret: Option<String>,
    pub script: RunScript,
    /// Whether the command carried the older suffix (`; echo heroku-command-exit-status $?`).
    pub legacy_suffix: bool,
    /// Whether lines end with `\r\n`.
    pub crlf: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// What a rendezvous session sends, decided when the client attaches.
#[derive(Debug)]
pub struct Session {
    /// Index into `State::runs`.
    pub run: usize,
    /// The output lines, each with its line ending.
    pub output: Vec<String>,
    pub echo_input: bool,
    pub crlf: bool,
    /// The marker line with its line ending, if one is sent.
    pub marker: Option<String>,
    pub split_marker: bool,
}

/// Everything the fake knows.
#[derive(Debug)]
pub struct State {
    /// `http://127.0.0.1:PORT`, for URLs the fake hands out.
    pub base_url: String,
    pub accounts: Vec<Account>,
    /// Rate-limit bucket for requests that do not authenticate as a seeded account.
    pub anonymous_remaining: u32,
    pub apps: Vec<App>,
    pub keys: Vec<Key>,
    /// Source blobs by id: `None` until uploaded.
    pub blobs: HashMap<String, Option<Vec<u8>>>,
    /// Every upload to a source's `put_url`, in order, with the tarball's members.
    pub uploads: Vec<crate::transfer::Upload>,
    pub builds: Vec<Build>,
    pub releases: Vec<Release>,
    pub rollbacks: Vec<RollbackRecord>,
    pub runs: Vec<Run>,
    /// The rendezvous port, when the fake serves rendezvous over TLS.
    pub rendezvous_port: Option<u16>,
    /// The secret lines of rendezvous connections that were refused, in order.
    pub refused_rendezvous: Vec<String>,
    pub requests: Vec<RecordedRequest>,
    pub script: ScriptQueue,
    /// Counter for ids of created objects.
    pub counter: u64,
    /// Secret mixed into blob URL signatures.
    pub signing_secret: String,
    /// Whether apps' `web_url`s point at the fake's `/__app/{app}/` (see
    /// [`crate::ServeOptions::local_web_urls`]).
    pub local_web_urls: bool,
}

impl State {
    pub fn new(base_url: String) -> State {
        State {
            signing_secret: derived_uuid("signing", &base_url),
            base_url,
            accounts: Vec::new(),
            anonymous_remaining: RATE_LIMIT_START,
            apps: Vec::new(),
            keys: Vec::new(),
            blobs: HashMap::new(),
            uploads: Vec::new(),
            builds: Vec::new(),
            releases: Vec::new(),
            rollbacks: Vec::new(),
            runs: Vec::new(),
            rendezvous_port: None,
            refused_rendezvous: Vec::new(),
            requests: Vec::new(),
            script: ScriptQueue::default(),
            counter: 0,
            local_web_urls: false,
        }
    }

    /// A fresh id for an object of `kind`.
    pub fn new_id(&mut self, kind: &str) -> String {
        self.counter += 1;
        derived_uuid(kind, &self.counter.to_string())
    }

    /// Merges a seed in: new accounts are created; an account whose email exists is updated
    /// (key, name, flags) and gains the listed apps. App names are global, as on Heroku.
    pub fn apply_seed(&mut self, seed: &Seed) -> Result<(), String> {
        // Validate everything first so that a bad seed changes nothing.
        let mut key_owner: HashMap<&str, &str> =
            self.accounts.iter().map(|a| (a.api_key.as_str(), a.email.as_str())).collect();
        let mut app_owner: HashMap<String, String> =
            self.apps.iter().map(|app| (app.name.clone(), self.accounts[app.owner].email.clone())).collect();
        for account in &seed.accounts {
            if account.email.trim().is_empty() {
                return Err("a seeded account has an empty email".into());
            }
            if account.api_key.is_empty() {
                return Err(format!("account {} has an empty api_key", account.email));
            }
            if let Some(other) = key_owner.insert(&account.api_key, &account.email)
                && other != account.email
            {
                return Err(format!("accounts {other} and {} have the same api_key", account.email));
            }
            for name in seed_app_names(account) {
                if name.is_empty() || name.contains(['/', '?', '#', '%']) || name.contains(char::is_whitespace) {
                    return Err(format!("app name {name:?} is not usable in a URL path"));
                }
                if let Some(owner) = app_owner.insert(name.clone(), account.email.clone())
                    && owner != account.email
                {
                    return Err(format!("app {name} is already owned by {owner}"));
                }
            }
            for release in &account.releases {
                if app_owner.get(&release.app) != Some(&account.email) {
                    return Err(format!(
                        "account {} seeds a release of {:?}, which is not one of its apps",
                        account.email, release.app
                    ));
                }
            }
        }

        let now = now_rfc3339();
        for seeded in &seed.accounts {
            let index = match self.accounts.iter().position(|a| a.email == seeded.email) {
                Some(index) => {
                    let account = &mut self.accounts[index];
                    account.api_key = seeded.api_key.clone();
                    account.two_factor_required = seeded.two_factor_required;
                    account.suspended = seeded.suspended;
                    if seeded.name.is_some() {
                        account.name = seeded.name.clone();
                    }
                    index
                }
                None => {
                    self.accounts.push(Account {
                        id: derived_uuid("account", &seeded.email),
                        email: seeded.email.clone(),
                        name: seeded.name.clone(),
                        api_key: seeded.api_key.clone(),
                        two_factor_required: seeded.two_factor_required,
                        suspended: seeded.suspended,
                        remaining: RATE_LIMIT_START,
                        created_at: now.clone(),
                    });
                    self.accounts.len() - 1
                }
            };
            for name in seed_app_names(seeded) {
                if self.apps.iter().any(|app| app.name == name) {
                    continue;
                }
                self.apps.push(App {
                    id: derived_uuid("app", &name),
                    name,
                    owner: index,
                    created_at: now.clone(),
                    releases: 0,
                });
            }
            for seeded_release in &seeded.releases {
                let Some(app) = self.apps.iter().position(|a| a.name == seeded_release.app) else {
                    continue;
                };
                self.seed_release(app, index, seeded_release, &now);
            }
        }
        Ok(())
    }

    /// Adds a seeded release as the app's next version, finished already.
    fn seed_release(&mut self, app: usize, user: usize, seeded: &SeedRelease, now: &str) {
        let id = self.new_id("release");
        let slug_id = self.new_id("slug");
        self.apps[app].releases += 1;
        let version = self.apps[app].releases;
        let description = seeded.description.clone().unwrap_or_else(|| {
            format!("Deploy {}", &derived_uuid("commit", &format!("{}/{version}", self.apps[app].name))[..8])
        });
        self.releases.push(Release {
            id,
            app,
            user,
            version,
            created_at: now.to_string(),
            updated_at: now.to_string(),
            description,
            slug_id,
            final_status: seeded.status,
            // Finished: past its (no) pending polls.
            polls: 1,
            polls_pending: 0,
            release_phase: seeded.release_phase,
            output: None,
            dynos: seeded.dynos.clone(),
            dyno_polls: 0,
        });
    }

    /// Queues a script. Unknown emails and unusable statuses are refused before anything
    /// changes.
    pub fn apply_script(&mut self, script: Script) -> Result<(), String> {
        for rule in &script.fail_next {
            if !(400..=599).contains(&rule.status) {
                return Err(format!("fail_next status {} is not an error status (400..=599)", rule.status));
            }
        }
        if let Some(status) = script.web.iter().find(|s| !(100..=599).contains(*s)) {
            return Err(format!("web status {status} is not an HTTP status (100..=599)"));
        }
        for run in &script.runs {
            if let Some(host) = &run.attach_host
                && (host.is_empty() || host.contains(|c: char| c.is_whitespace() || "/?#@:".contains(c)))
            {
                return Err(format!("attach_host {host:?} is not a host name or IPv4 address"));
            }
        }
        let mut settings = Vec::new();
        for setting in &script.set_rate_limit_remaining {
            let index = self.accounts.iter().position(|a| a.email == setting.email).ok_or_else(|| {
                format!("set_rate_limit_remaining names {}, which is not a seeded account", setting.email)
            })?;
            settings.push((index, setting.remaining));
        }
        for (index, remaining) in settings {
            self.accounts[index].remaining = remaining;
        }
        self.script.fail_next.extend(script.fail_next);
        self.script.rate_limit_next = self.script.rate_limit_next.saturating_add(script.rate_limit_next);
        if script.retry_after_seconds.is_some() {
            self.script.retry_after_seconds = script.retry_after_seconds;
        }
        if let Some(build) = script.next_build {
            self.script.next_builds.push_back(build);
        }
        if let Some(release) = script.next_rollback {
            self.script.next_rollbacks.push_back(release);
        }
        self.script.web.extend(script.web);
        self.script.runs.extend(script.runs);
        Ok(())
    }

    pub fn account_by_key(&self, key: &str) -> Option<usize> {
        self.accounts.iter().position(|a| a.api_key == key)
    }

    /// The app `identity` (id or name) if `account` owns it.
    pub fn owned_app(&self, account: usize, identity: &str) -> Option<usize> {
        self.apps.iter().position(|app| app.owner == account && (app.name == identity || app.id == identity))
    }

    pub fn app_json(&self, index: usize) -> Value {
        let app = &self.apps[index];
        let owner = &self.accounts[app.owner];
        let stack = json!({ "id": derived_uuid("stack", STACK), "name": STACK });
        let released_at = self.current_release(index).map(|r| self.releases[r].created_at.clone());
        json!({
            "acm": false,
            "archived_at": null,
            "build_stack": stack,
            "buildpack_provided_description": null,
            "created_at": app.created_at,
            "generation": { "id": derived_uuid("generation", "cedar"), "name": "cedar" },
            "git_url": format!("https://git.heroku.com/{}.git", app.name),
            "id": app.id,
            "internal_routing": null,
            "maintenance": false,
            "name": app.name,
            "organization": null,
            "owner": { "email": owner.email, "id": owner.id },
            "region": { "id": derived_uuid("region", REGION), "name": REGION },
            "released_at": released_at,
            "repo_size": null,
            "slug_size": null,
            "space": null,
            "stack": stack,
            "team": null,
            "updated_at": released_at.as_deref().unwrap_or(&app.created_at),
            "web_url": self.web_url(index),
        })
    }

    /// The app's `web_url`: `https://APP.herokuapp.com/`, or `http://127.0.0.1:PORT/__app/APP/`
    /// on the fake itself with `local_web_urls`.
    pub fn web_url(&self, app: usize) -> String {
        let name = &self.apps[app].name;
        if self.local_web_urls {
            format!("{}{}{name}/", self.base_url, crate::web::PREFIX)
        } else {
            format!("https://{name}.herokuapp.com/")
        }
    }

    /// The status a build reports after `polls` GETs.
    pub fn build_status(build: &Build) -> &'static str {
        if build.polls <= build.polls_pending { "pending" } else { build.final_status.as_str() }
    }

    pub fn build_json(&self, index: usize) -> Value {
        let build = &self.builds[index];
        let app = &self.apps[build.app];
        let status = State::build_status(build);
        let (release, slug) = match (status, build.release) {
            ("succeeded", Some(release)) => {
                (json!({ "id": self.releases[release].id }), json!({ "id": build.slug_id }))
            }
            _ => (Value::Null, Value::Null),
        };
        json!({
            "app": { "id": app.id, "name": app.name },
            "buildpacks": build.buildpacks,
            "created_at": build.created_at,
            "id": build.id,
            "output_stream_url": format!("{}/__streams/builds/{}", self.base_url, build.id),
            "release": release,
            "slug": slug,
            "source_blob": build.source_blob,
            "stack": STACK,
            "status": status,
            "updated_at": build.updated_at,
            "user": self.accounts[build.user].identity(),
        })
    }

    /// The status a release reports after `polls` GETs.
    pub fn release_status(release: &Release) -> &'static str {
        if release.polls <= release.polls_pending { "pending" } else { release.final_status.as_str() }
    }

    /// The app's dynos, as `GET /apps/{app}/dynos` lists them: those of its newest
    /// succeeded release, each `starting` for its first polls.
    pub fn dynos_json(&self, app: usize) -> Value {
        let Some(release) = self.current_release(app).map(|r| &self.releases[r]) else {
            return json!([]);
        };
        let runs = self.runs.iter().enumerate().filter(|(_, r)| r.app == app && !r.record.finished);
        let runs: Vec<Value> = runs.map(|(i, _)| self.run_json(i)).collect();
        let app = &self.apps[app];
        let dynos: Vec<Value> = release
            .dynos
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let state = if release.dyno_polls < d.polls_starting { "starting" } else { d.state.as_str() };
                let kind = d.name.split('.').next().unwrap_or("web");
                json!({
                    "app": { "id": app.id, "name": app.name },
                    "attach_url": null,
                    "command": if kind == "web" { "python app.py" } else { "bin/worker" },
                    "created_at": release.updated_at,
                    "id": derived_uuid(&format!("dyno-{i}"), &release.id),
                    "name": d.name,
                    "release": { "id": release.id, "version": release.version },
                    "size": "basic",
                    "state": state,
                    "type": kind,
                    "updated_at": release.updated_at,
                })
            })
            .chain(runs)
            .collect();
        Value::Array(dynos)
    }

    /// A one-off dyno, as the API shows it: `starting` until a client attaches, then `up`.
    pub fn run_json(&self, index: usize) -> Value {
        let run = &self.runs[index];
        let app = &self.apps[run.app];
        let release = &self.releases[run.release];
        json!({
            "app": { "id": app.id, "name": app.name },
            "attach_url": run.record.attach_url,
            "command": run.record.command,
            "created_at": run.created_at,
            "id": run.record.id,
            "name": run.record.name,
            "release": { "id": release.id, "version": release.version },
            "size": run.record.size.as_deref().unwrap_or("basic"),
            "state": if run.record.attached { "up" } else { "starting" },
            "type": run.record.dyno_type.as_deref().unwrap_or("run"),
            "updated_at": run.updated_at,
        })
    }

    /// A client sent `secret` on a rendezvous connection: the session to serve, or `None`
    /// (recorded as refused) when no run waits for that secret, or its client has attached
    /// already.
    pub fn attach(&mut self, secret: &str) -> Option<Session> {
        let Some(index) = self.runs.iter().position(|r| r.secret.as_deref() == Some(secret) && !r.record.attached)
        else {
            self.refused_rendezvous.push(secret.to_string());
            return None;
        };
        let run = &mut self.runs[index];
        run.record.attached = true;
        run.updated_at = now_rfc3339();
        let eol = if run.crlf { "\r\n" } else { "\n" };
        let status = run.script.status;
        let marker = (run.record.exit_status_suffix && !run.script.no_marker).then(|| {
            if run.legacy_suffix {
                format!("heroku-command-exit-status {status}{eol}")
            } else {
                format!("\u{FFFF} heroku-command-exit-status: {status}{eol}")
            }
        });
        Some(Session {
            run: index,
            output: run.script.output.iter().map(|line| format!("{line}{eol}")).collect(),
            echo_input: run.script.echo_input,
            crlf: run.crlf,
            marker,
            split_marker: run.script.split_marker,
        })
    }

    /// Whether clients can see the release: a release made by a build exists once its build
    /// has reported success; seeded and rollback releases exist from the start.
    pub fn release_visible(&self, index: usize) -> bool {
        match self.builds.iter().find(|b| b.release == Some(index)) {
            Some(build) => State::build_status(build) == "succeeded",
            None => true,
        }
    }

    /// The app's visible release named by `identity`: its id, or its version (`3` or `v3`).
    pub fn find_release(&self, app: usize, identity: &str) -> Option<usize> {
        let version: Option<u64> = identity.strip_prefix('v').unwrap_or(identity).parse().ok();
        (0..self.releases.len()).find(|&i| {
            let r = &self.releases[i];
            r.app == app && (r.id == identity || Some(r.version) == version) && self.release_visible(i)
        })
    }

    /// The app's current release: its newest visible release that has succeeded.
    pub fn current_release(&self, app: usize) -> Option<usize> {
        (0..self.releases.len())
            .filter(|&i| {
                let r = &self.releases[i];
                r.app == app && State::release_status(r) == "succeeded" && self.release_visible(i)
            })
            .max_by_key(|&i| self.releases[i].version)
    }

    /// The app's visible releases, oldest first, as the API shows them now.
    pub fn releases_json(&self, app: usize) -> Vec<Value> {
        let mut indices: Vec<usize> =
            (0..self.releases.len()).filter(|&i| self.releases[i].app == app && self.release_visible(i)).collect();
        indices.sort_by_key(|&i| self.releases[i].version);
        indices.into_iter().map(|i| self.release_json(i)).collect()
    }

    /// Rolls the app back to the release `target`: a new release, the app's next version,
    /// `Rollback to vN`, with the target's slug; shaped by the next scripted rollback if any
    /// (see [`Script::next_rollback`]), else succeeded at once, with a release phase when the
    /// target had one, and a `web.1` that is up after one dyno list. Returns its index.
    pub fn roll_back(&mut self, app: usize, user: usize, target: usize) -> usize {
        let scripted = self.script.next_rollbacks.pop_front();
        let id = self.new_id("release");
        self.apps[app].releases += 1;
        let version = self.apps[app].releases;
        let now = now_rfc3339();
        let to = &self.releases[target];
        let (to_id, to_version, slug_id) = (to.id.clone(), to.version, to.slug_id.clone());
        // `polls` past `polls_pending` is a release that has finished.
        let (final_status, polls, polls_pending, release_phase, output, dynos) = match scripted {
            Some(s) => (s.status, 0, s.release_polls_pending, s.release_phase, s.output, s.dynos),
            None => (FinalStatus::Succeeded, 1, 0, to.release_phase, None, vec![crate::script::DynoScript::default()]),
        };
        self.releases.push(Release {
            id: id.clone(),
            app,
            user,
            version,
            created_at: now.clone(),
            updated_at: now,
            description: format!("Rollback to v{to_version}"),
            slug_id,
            final_status,
            polls,
            polls_pending,
            release_phase,
            output,
            dynos,
            dyno_polls: 0,
        });
        self.rollbacks.push(RollbackRecord {
            app: self.apps[app].name.clone(),
            to_id,
            to_version,
            release_id: id,
            version,
        });
        self.releases.len() - 1
    }

    pub fn release_json(&self, index: usize) -> Value {
        let release = &self.releases[index];
        let app = &self.apps[release.app];
        let status = State::release_status(release);
        let current = self.current_release(release.app) == Some(index);
        let output_stream_url =
            release.release_phase.then(|| format!("{}/__streams/releases/{}", self.base_url, release.id));
        json!({
            "addon_plan_names": [],
            "app": { "id": app.id, "name": app.name },
            "artifacts": [{ "type": "slug", "id": release.slug_id }],
            "created_at": release.created_at,
            "current": current,
            "description": release.description,
            "eligible_for_rollback": status == "succeeded",
            "id": release.id,
            "output_stream_url": output_stream_url,
            "slug": { "id": release.slug_id },
            "status": status,
            "updated_at": release.updated_at,
            "user": self.accounts[release.user].identity(),
            "version": release.version,
        })
    }
}

/// The app names a seeded account owns: its listed apps, then the generated ones.
fn seed_app_names(account: &SeedAccount) -> Vec<String> {
    let mut names = account.apps.clone();
    names.extend((1..=account.generated_apps).map(|i| format!("app-{i:04}")));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(email: &str, key: &str, apps: &[&str], generated: u32) -> SeedAccount {
        SeedAccount {
            email: email.into(),
            api_key: key.into(),
            apps: apps.iter().map(|a| a.to_string()).collect(),
            generated_apps: generated,
            ..SeedAccount::default()
        }
    }

    #[test]
    fn seeds_merge_and_conflicts_change_nothing() {
        let mut state = State::new("http://127.0.0.1:1".into());
        let seed = Seed { accounts: vec![account("ada@example.com", "k1", &["hello-app"], 3)] };
        state.apply_seed(&seed).expect("first seed");
        assert_eq!(state.apps.len(), 4);
        assert_eq!(state.apps[1].name, "app-0001");

        let more = Seed { accounts: vec![account("ada@example.com", "k1b", &["hello-app", "second"], 0)] };
        state.apply_seed(&more).expect("merge");
        assert_eq!(state.accounts.len(), 1);
        assert_eq!(state.accounts[0].api_key, "k1b");
        assert_eq!(state.apps.len(), 5);

        let conflict = Seed { accounts: vec![account("bob@example.com", "k2", &["second"], 0)] };
        assert!(state.apply_seed(&conflict).is_err());
        let same_key = Seed { accounts: vec![account("bob@example.com", "k1b", &[], 0)] };
        assert!(state.apply_seed(&same_key).is_err());
        assert_eq!(state.accounts.len(), 1);
    }

    #[test]
    fn scripts_with_unknown_emails_are_refused() {
        let mut state = State::new("http://127.0.0.1:1".into());
        let script: Script = serde_json::from_value(json!({
            "rate_limit_next": 2,
            "set_rate_limit_remaining": [{"email": "nobody@example.com", "remaining": 0}]
        }))
        .expect("script parses");
        assert!(state.apply_script(script).is_err());
        assert_eq!(state.script.rate_limit_next, 0);
    }
}
