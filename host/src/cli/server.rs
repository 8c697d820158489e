//! `pier server`: add (the setup wizard), list, show, edit and remove servers.

use std::collections::BTreeMap;
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::project::{Project, master_key};
use super::table::{self, Column};
use super::{CliError, Globals, Output, ask, method_error};
use crate::caps::Grant;
use crate::caps::host_keys::{self, Destination, HostKeys, Pin};
use crate::caps::secrets::{self, Vault};
use crate::exit::Exit;
use crate::project::alias;
use crate::project::config::{Server, ServerEdit, Strategy, valid_url};
use crate::runtime::bindings::{Field, FieldKind};
use crate::runtime::{Answer, CallEnv, Context, Description, Plugin, Runtime};

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Set up a new server: choose the method, answer its setup form, validate, save.
    Add(AddArgs),
    /// List the servers.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one server.
    Show {
        /// The server's alias or name.
        server: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a server's strategy, branch, URL, settings, secrets or deploy commands.
    Edit(EditArgs),
    /// Remove a server and its secrets.
    Remove {
        /// The server's alias or name.
        server: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The columns of `pier server list`; when room is short, NAME goes (the alias stays).
const LIST_COLUMNS: [Column; 6] = [
    Column::new("ALIAS", 30),
    Column::new("NAME", 24).spare(1),
    Column::new("METHOD", 16),
    Column::new("STRATEGY", 9),
    Column::new("BRANCH", 16),
    Column::new("URL", 0),
];

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StrategyArg {
    /// Deploy after every passed build of one branch (`pier ci`).
    Automatic,
    /// Deploy only when asked (`pier deploy`).
    Manual,
}

impl From<StrategyArg> for Strategy {
    fn from(s: StrategyArg) -> Strategy {
        match s {
            StrategyArg::Automatic => Strategy::Automatic,
            StrategyArg::Manual => Strategy::Manual,
        }
    }
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The deployment method (see `pier plugins list`).
    #[arg(long, value_name = "NAME")]
    method: Option<String>,
    /// The server's name, any text.
    #[arg(long, value_name = "TEXT")]
    name: Option<String>,
    /// When to deploy.
    #[arg(long, value_enum)]
    strategy: Option<StrategyArg>,
    /// The branch automatic deploys follow (required with --strategy automatic).
    #[arg(long, value_name = "NAME")]
    branch: Option<String>,
    /// Where the deployed app can be seen.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Answer a setup field (repeatable).
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    set: Vec<String>,
    /// Answer a secret setup field from an environment variable (repeatable).
    #[arg(long = "secret", value_name = "FIELD=env:VAR")]
    secret: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct EditArgs {
    /// The server's alias or name.
    server: String,
    /// A new strategy: when to deploy.
    #[arg(long, value_enum)]
    strategy: Option<StrategyArg>,
    /// A new branch for automatic deploys to follow.
    #[arg(long, value_name = "NAME")]
    branch: Option<String>,
    /// A new URL; an empty value removes it.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Change a setting (repeatable); the method validates the result.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    set: Vec<String>,
    /// Replace a secret from an environment variable (repeatable); validated first.
    #[arg(long = "secret", value_name = "FIELD=env:VAR")]
    secret: Vec<String>,
    /// Replace the deploy commands with these (repeatable; in order).
    #[arg(long = "command", value_name = "TEXT")]
    command: Vec<String>,
    /// Remove every deploy command.
    #[arg(long, conflicts_with = "command")]
    clear_commands: bool,
    /// Append a deploy command (repeatable).
    #[arg(long = "add-command", value_name = "TEXT")]
    add_command: Vec<String>,
    /// Fetch the SSH host keys of the server's pinned hosts again (or of HOST[:PORT]),
    /// show their fingerprints and pin them in place of the old ones.
    #[arg(long, value_name = "HOST[:PORT]", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    trust_host_key: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// A pinned host key as the commands show it.
#[derive(Debug, Serialize)]
pub struct PinView {
    pub host: String,
    pub algorithm: String,
    pub fingerprint: String,
}

impl PinView {
    fn of(pin: &Pin) -> PinView {
        PinView { host: pin.destination().display(), algorithm: pin.algorithm(), fingerprint: pin.fingerprint() }
    }
}

/// Fetches the host keys of `wanted` (or of every host pinned in `server`), says what
/// changed on stderr, and returns the pins to store.
fn trust_host_keys(server: &Server, wanted: &str) -> Result<Vec<String>, CliError> {
    let old = server.pins();
    let destinations: Vec<Destination> = if wanted.is_empty() {
        let mut hosts: Vec<Destination> = Vec::new();
        for pin in &old {
            if !hosts.contains(&pin.destination()) {
                hosts.push(pin.destination());
            }
        }
        if hosts.is_empty() {
            return Err(CliError::Usage(format!(
                "server `{}` has no pinned SSH host yet: name the host with --trust-host-key=HOST[:PORT]",
                server.alias
            )));
        }
        hosts
    } else {
        vec![Destination::parse(wanted).map_err(|e| CliError::Usage(format!("--trust-host-key: {e}")))?]
    };
    let mut pins = old.clone();
    for destination in destinations {
        let fresh = host_keys::scan(&destination)
            .map_err(|e| CliError::Method { message: e.to_string(), exit: Exit::Provider })?;
        let host = destination.known_hosts_name();
        let before: Vec<String> = old.iter().filter(|p| p.host() == host).map(Pin::fingerprint).collect();
        for pin in &fresh {
            let was = if before.contains(&pin.fingerprint()) {
                "unchanged".to_string()
            } else if before.is_empty() {
                "newly pinned".to_string()
            } else {
                format!("replaces {}", before.join(", "))
            };
            eprintln!("• {} {} {} ({was})", destination.display(), pin.algorithm(), pin.fingerprint());
        }
        pins = host_keys::replace(&pins, &host, fresh);
    }
    Ok(pins.iter().map(Pin::line).collect())
}

/// A server as the commands show it: never a secret value, only names.
#[derive(Debug, Serialize)]
pub struct ServerView {
    #[serde(flatten)]
    pub server: Server,
    pub secrets: Vec<String>,
    /// Public halves of the server's SSH keys (for installing them on a git server), when
    /// the master key is at hand.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub public_keys: BTreeMap<String, String>,
    /// Where the last succeeded deploy that knew it said the app can be seen (the
    /// timeline's record), for a server without a URL of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_deploy_url: Option<String>,
}

impl ServerView {
    /// The app's URL, when known: the server's, else its last deploy's.
    fn url(&self) -> Option<&str> {
        self.server.url.as_deref().or(self.last_deploy_url.as_deref())
    }
}

/// The URL the last succeeded deploy of `alias` recorded, if the project has a timeline
/// (never created here) and it has one.
fn last_deploy_url(project: &Project, alias: &str) -> Option<String> {
    let state = project.root.join(crate::project::STATE_DIR);
    if !state.join(crate::project::timeline::FILE).is_file() {
        return None;
    }
    let found = crate::project::timeline::Timeline::open(&state).and_then(|t| t.last_url(alias));
    found.unwrap_or_else(|e| {
        tracing::warn!("cannot read the last deploy's URL: {e}");
        None
    })
}

/// The public keys of the server's private-key secrets, if the master key opens them.
fn public_keys(project: &Project, alias: &str) -> BTreeMap<String, String> {
    let Ok((key, source)) = master_key() else { return BTreeMap::new() };
    let Ok(vault) = project.secrets().and_then(|f| Ok(f.open_server(&key, &source.to_string(), alias)?)) else {
        return BTreeMap::new();
    };
    vault
        .handles()
        .into_iter()
        .filter_map(|h| {
            let private = vault.get(&h)?;
            crate::caps::keys::public_key(&h, &private).ok().map(|public| (h, public))
        })
        .collect()
}

pub async fn run(command: ServerCommand, globals: &Globals, out: &mut Output) -> Result<Exit, CliError> {
    match command {
        ServerCommand::Add(args) => add(args, globals, out).await,
        ServerCommand::List { json } => {
            let project = Project::open()?;
            let secrets = project.secrets()?;
            let views: Vec<ServerView> = project
                .config
                .servers()
                .iter()
                .map(|s| ServerView {
                    server: s.clone(),
                    secrets: secrets.names(&s.alias),
                    public_keys: BTreeMap::new(),
                    last_deploy_url: if s.url.is_none() { last_deploy_url(&project, &s.alias) } else { None },
                })
                .collect();
            if json {
                out.json(&views)?;
            } else if views.is_empty() {
                out.line("no servers yet: add one with `pier server add`")?;
            } else {
                let rows: Vec<Vec<String>> = views
                    .iter()
                    .map(|v| {
                        let s = &v.server;
                        vec![
                            s.alias.clone(),
                            s.name.clone(),
                            s.method.clone(),
                            s.strategy.to_string(),
                            s.branch.clone().unwrap_or_else(|| "-".into()),
                            v.url().unwrap_or("-").to_string(),
                        ]
                    })
                    .collect();
                for line in table::render(&LIST_COLUMNS, &rows, table::width()) {
                    out.line(line)?;
                }
            }
            Ok(Exit::Success)
        }
        ServerCommand::Show { server, json } => {
            let project = Project::open()?;
            let server = project.server(&server)?.clone();
            let view = ServerView {
                secrets: project.secrets()?.names(&server.alias),
                public_keys: public_keys(&project, &server.alias),
                last_deploy_url: if server.url.is_none() { last_deploy_url(&project, &server.alias) } else { None },
                server,
            };
            if json {
                out.json(&view)?
            } else {
                print_server(&view, out)?
            }
            Ok(Exit::Success)
        }
        ServerCommand::Edit(args) => edit(args, globals, out).await,
        ServerCommand::Remove { server, json } => {
            let project = Project::open()?;
            let server = project.server(&server)?.clone();
            // What setup registered with the provider goes first; failing that, the user is
            // told what to remove by hand, and the server is removed all the same.
            let undone = undo_setup(&project, &server, globals).await;
            let mut secrets = project.secrets()?;
            secrets.remove_server(&server.alias);
            secrets.save()?;
            project.config.remove_server(&server.alias)?;
            if json {
                let (notes, warning) = match &undone {
                    Ok(notes) => (notes.clone(), None),
                    Err(w) => (vec![], Some(w.clone())),
                };
                out.json(&serde_json::json!({ "removed": server.alias, "notes": notes, "warning": warning }))?;
            } else {
                match &undone {
                    Ok(notes) => notes.iter().try_for_each(|n| out.line(n.clone()))?,
                    Err(warning) => eprintln!("warning: {warning}"),
                }
                out.line(format!("removed server {} ({}) and its secrets", server.name, server.alias))?;
            }
            Ok(Exit::Success)
        }
    }
}

fn print_server(v: &ServerView, out: &mut Output) -> std::io::Result<()> {
    let s = &v.server;
    out.line(format!("{} ({})", s.name, s.alias))?;
    out.line(format!("  method:    {}", s.method))?;
    match &s.branch {
        Some(b) if s.strategy == Strategy::Automatic => out.line(format!("  strategy:  automatic, on branch {b}"))?,
        _ => out.line(format!("  strategy:  {}", s.strategy))?,
    }
    match (&s.url, &v.last_deploy_url) {
        (Some(url), _) => out.line(format!("  url:       {url}"))?,
        (None, Some(url)) => out.line(format!("  url:       {url} (as the last deploy reported it)"))?,
        (None, None) => {}
    }
    out.line("  settings:")?;
    for (k, v) in &s.settings {
        out.line(format!("    {k} = {v}"))?;
    }
    out.line(format!("  secrets:   {}", if v.secrets.is_empty() { "none".to_string() } else { v.secrets.join(", ") }))?;
    for (handle, public) in &v.public_keys {
        out.line(format!("  {handle} (public): {public}"))?;
    }
    for (id, url) in &s.endpoints {
        out.line(format!("  endpoint:  {id} = {url}"))?;
    }
    for pin in s.pins() {
        let p = PinView::of(&pin);
        out.line(format!("  host key:  {} {} {}", p.host, p.algorithm, p.fingerprint))?;
    }
    out.line("  commands:")?;
    if s.commands.is_empty() {
        out.line("    (none)")?;
    }
    for (i, c) in s.commands.iter().enumerate() {
        out.line(format!("    {}. {c}", i + 1))?;
    }
    Ok(())
}

/// Parses `FIELD=VALUE` flags.
fn parse_pairs(flag: &str, pairs: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    let mut map = BTreeMap::new();
    for pair in pairs {
        let (k, v) =
            pair.split_once('=').ok_or_else(|| CliError::Usage(format!("{flag} `{pair}` must be FIELD=VALUE")))?;
        if map.insert(k.trim().to_string(), v.to_string()).is_some() {
            return Err(CliError::Usage(format!("{flag} {k} is given twice")));
        }
    }
    Ok(map)
}

/// Parses `FIELD=env:VAR` flags and reads each variable.
fn parse_secrets(pairs: &[String]) -> Result<BTreeMap<String, SecretString>, CliError> {
    let mut map = BTreeMap::new();
    for (field, source) in parse_pairs("--secret", pairs)? {
        let var = source.strip_prefix("env:").ok_or_else(|| {
            CliError::Usage(format!("--secret {field}=... must name an environment variable: --secret {field}=env:VAR"))
        })?;
        let value = std::env::var(var).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
            CliError::Usage(format!("environment variable {var} is empty or not set (from --secret {field}=env:{var})"))
        })?;
        if secrets::too_short(&value) {
            return Err(CliError::Usage(format!(
                "secret `{field}` (from --secret {field}=env:{var}) {}",
                too_short_reason()
            )));
        }
        map.insert(field, SecretString::from(value));
    }
    Ok(map)
}

/// Why a secret is refused when it is too short, after its field is named.
fn too_short_reason() -> String {
    format!(
        "is too short to redact safely: a secret needs at least {} characters, not counting spaces",
        secrets::MIN_SECRET_LEN
    )
}

/// Checks that every flag names a field of the method, of the right kind.
fn check_fields(
    d: &Description,
    set: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, SecretString>,
) -> Result<(), CliError> {
    let ids: Vec<&str> = d.fields.iter().map(|f| f.id.as_str()).collect();
    let field = |id: &str| d.fields.iter().find(|f| f.id == id);
    for id in set.keys() {
        match field(id) {
            None => {
                return Err(CliError::Usage(format!(
                    "method {} has no field `{id}` (fields: {})",
                    d.name,
                    ids.join(", ")
                )));
            }
            Some(f) if f.kind == FieldKind::Secret => {
                return Err(CliError::Usage(format!(
                    "`{id}` is a secret: pass it with --secret {id}=env:VAR, never on the command line"
                )));
            }
            Some(f) if f.kind == FieldKind::Boolean && !matches!(set[id].as_str(), "true" | "false") => {
                return Err(CliError::Usage(format!("--set {id} must be true or false")));
            }
            _ => {}
        }
    }
    for id in secrets.keys() {
        match field(id) {
            None => {
                return Err(CliError::Usage(format!(
                    "method {} has no field `{id}` (fields: {})",
                    d.name,
                    ids.join(", ")
                )));
            }
            Some(f) if f.kind != FieldKind::Secret => {
                return Err(CliError::Usage(format!("`{id}` is not a secret: pass it with --set {id}=VALUE")));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The environment a setup-time call runs in: the method's grant for these answers, with
/// the endpoint URLs `stored` with the server (none for a new one).
fn setup_env(
    plugin: &Plugin,
    d: &Description,
    answers: &[Answer],
    stored: &BTreeMap<String, String>,
    vault: Arc<Vault>,
    server: &str,
) -> Result<(CallEnv, Context), CliError> {
    let values = crate::runtime::values_of(answers);
    let (grant, endpoints) =
        Grant::for_server(plugin.contract(), &d.permissions, &values, stored, &|name| std::env::var(name).ok())
            .map_err(|e| CliError::Usage(format!("method {}: {e}", d.name)))?;
    let env = CallEnv::new(grant, vault, Arc::new(super::progress::StderrSink::new()));
    Ok((env, Context { endpoints, server: server.to_string() }))
}

/// Takes the form's answers from flags (nothing is asked: every missing required answer
/// is added to `missing`), or, on a terminal, asks them with [`Wizard`]. Secret answers go
/// into `vault`.
async fn answer_form(
    runtime: &Runtime,
    plugin: &Plugin,
    d: &Description,
    set: &BTreeMap<String, String>,
    secrets: BTreeMap<String, SecretString>,
    vault: &Arc<Vault>,
    missing: &mut Vec<String>,
) -> Result<Vec<Answer>, CliError> {
    for (id, value) in secrets {
        vault.insert(&id, value);
    }
    let mut answers: Vec<Answer> = Vec::new();
    if ask::interactive() && missing.is_empty() {
        let wizard = Wizard { runtime, plugin, d, vault };
        for (id, value) in set {
            upsert(&mut answers, id, value.clone());
        }
        wizard.ask_from(&mut answers, 0, None).await?;
        return Ok(answers);
    }
    for field in &d.fields {
        if field.kind == FieldKind::Secret {
            if field.required && !vault.contains(&field.id) {
                missing.push(format!("--secret {}=env:VAR ({})", field.id, field.label));
            }
            continue;
        }
        match set.get(&field.id).cloned().or_else(|| field.default.clone()) {
            Some(v) => answers.push(Answer { field: field.id.clone(), value: v }),
            None if field.required => missing.push(format!("--set {}=VALUE ({})", field.id, field.label)),
            None => {}
        }
    }
    Ok(answers)
}

/// Sets the answer to `field`, in place if it has one.
fn upsert(answers: &mut Vec<Answer>, field: &str, value: String) {
    match answers.iter_mut().find(|a| a.field == field) {
        Some(a) => a.value = value,
        None => answers.push(Answer { field: field.to_string(), value }),
    }
}

/// An answer the method found wrong: which field, and why, in the method's words.
struct WrongAnswer {
    field: String,
    message: String,
}

/// The wrong answer a method error names, if it is one.
fn wrong_answer(error: &crate::runtime::MethodError) -> Option<WrongAnswer> {
    match error {
        crate::runtime::MethodError::InvalidAnswer(f) => {
            Some(WrongAnswer { field: f.field.clone(), message: f.message.clone() })
        }
        _ => None,
    }
}

/// The setup form on a terminal: each field with its help, checked as soon as the method
/// can check it, and asked again, with what is wrong, until the method accepts it.
struct Wizard<'a> {
    runtime: &'a Runtime,
    plugin: &'a Plugin,
    d: &'a Description,
    vault: &'a Arc<Vault>,
}

impl Wizard<'_> {
    /// Asks the fields from index `start` on that have no answer yet, and field `again`
    /// whatever it has. An answer found wrong while a later field's choices are fetched
    /// is asked again, and the fields after it too.
    async fn ask_from(&self, answers: &mut Vec<Answer>, start: usize, again: Option<usize>) -> Result<(), CliError> {
        let fields = &self.d.fields;
        let (mut i, mut again) = (start, again);
        while i < fields.len() {
            let field = &fields[i];
            let answered = match field.kind {
                FieldKind::Secret => self.vault.contains(&field.id),
                _ => answers.iter().any(|a| a.field == field.id),
            };
            if again != Some(i) && (answered || field.advanced) {
                if !answered && let Some(default) = &field.default {
                    answers.push(Answer { field: field.id.clone(), value: default.clone() });
                }
                i += 1;
                continue;
            }
            match self.ask(field, answers).await? {
                Ok(()) => {
                    again = None;
                    i += 1;
                }
                Err(wrong) => {
                    let back = self.index_of(&wrong)?;
                    if back == i {
                        // The field's own choices cannot be had: asking again would not help.
                        let message = format!("{}: {}", self.d.name, secrets::redact(&wrong.message));
                        return Err(CliError::Method { message, exit: Exit::BadInput });
                    }
                    self.say_wrong(&wrong);
                    answers.retain(|a| a.field != wrong.field);
                    (i, again) = (back, Some(back));
                }
            }
        }
        Ok(())
    }

    /// Asks `wrong`'s field again (the method refused it after the form), then any field
    /// that lost its answer.
    async fn ask_again(&self, answers: &mut Vec<Answer>, wrong: &WrongAnswer) -> Result<(), CliError> {
        let index = self.index_of(wrong)?;
        self.say_wrong(wrong);
        self.ask_from(answers, index, Some(index)).await
    }

    /// The index of the field `wrong` names; a field the form does not have cannot be
    /// asked again, so it ends the wizard with the method's message.
    fn index_of(&self, wrong: &WrongAnswer) -> Result<usize, CliError> {
        self.d.fields.iter().position(|f| f.id == wrong.field).ok_or_else(|| CliError::Method {
            message: format!("{}: {} ({}): {}", self.d.name, wrong.field, wrong.field, wrong.message),
            exit: Exit::BadInput,
        })
    }

    fn say_wrong(&self, wrong: &WrongAnswer) {
        let label = self.d.fields.iter().find(|f| f.id == wrong.field).map_or(wrong.field.as_str(), |f| &f.label);
        eprintln!("✘ {label}: {}", secrets::redact(&wrong.message));
    }

    /// Asks one field; its answer goes into `answers` (a secret into the vault).
    async fn ask(&self, field: &Field, answers: &mut Vec<Answer>) -> Result<Result<(), WrongAnswer>, CliError> {
        if field.kind != FieldKind::Choice {
            // A choice's help goes with its list, once the list could be had.
            ask::help(&field.help);
        }
        let value = match field.kind {
            FieldKind::Secret => {
                let value = self.ask_secret(field)?;
                self.vault.insert(&field.id, value);
                return Ok(Ok(()));
            }
            FieldKind::Boolean => {
                let current = answers.iter().find(|a| a.field == field.id).map(|a| a.value.as_str());
                let default = current.or(field.default.as_deref()) == Some("true");
                ask::confirm(&field.label, default)?.to_string()
            }
            FieldKind::Text => {
                let label = match &field.example {
                    Some(e) => format!("{} (e.g. {e})", field.label),
                    None => field.label.clone(),
                };
                let required = field.required;
                let text = ask::text_checked(&label, field.default.as_deref(), |answer| {
                    if required && answer.trim().is_empty() {
                        Err(format!("an answer is required: {}", field.help))
                    } else {
                        Ok(())
                    }
                })?;
                if text.trim().is_empty() {
                    answers.retain(|a| a.field != field.id);
                    return Ok(Ok(()));
                }
                text
            }
            FieldKind::Choice => match choose(self.runtime, self.plugin, self.d, field, answers, self.vault).await? {
                Ok(value) => value,
                Err(wrong) => return Ok(Err(wrong)),
            },
        };
        upsert(answers, &field.id, value);
        Ok(Ok(()))
    }

    /// A secret: typed (not echoed), or taken from the environment variable the method
    /// hands it to deploy commands as, when that is set and the user agrees.
    fn ask_secret(&self, field: &Field) -> Result<SecretString, CliError> {
        if let Some((name, value)) = self.offered_by_environment(&field.id) {
            let question = format!("Use ${name} from the environment as the {}?", field.label);
            if ask::confirm(&question, true)? {
                if !secrets::too_short(value.expose_secret()) {
                    return Ok(value);
                }
                eprintln!("✘ ${name} {}; type the value instead", too_short_reason());
            }
        }
        loop {
            let value = ask::secret(&field.label)?;
            if value.expose_secret().is_empty() {
                if field.required {
                    eprintln!("✘ {}: an answer is required: {}", field.label, field.help);
                    continue;
                }
                return Ok(value);
            }
            if secrets::too_short(value.expose_secret()) {
                eprintln!("✘ {} {}; try again", field.label, too_short_reason());
                continue;
            }
            return Ok(value);
        }
    }

    /// The variable the method's deploy commands receive secret `id` as, and its value,
    /// when it is set here.
    fn offered_by_environment(&self, id: &str) -> Option<(String, SecretString)> {
        use crate::runtime::bindings::CommandEnvValue;
        self.d.permissions.commands.env.iter().find_map(|e| match &e.value {
            CommandEnvValue::Secret(handle) if handle == id => std::env::var(&e.name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| (e.name.clone(), SecretString::from(v.trim().to_string()))),
            _ => None,
        })
    }
}

/// Lets the user pick a choice field's value from what the method offers.
async fn choose(
    runtime: &Runtime,
    plugin: &Plugin,
    d: &Description,
    field: &Field,
    answers: &[Answer],
    vault: &Arc<Vault>,
) -> Result<Result<String, WrongAnswer>, CliError> {
    let (env, ctx) = setup_env(plugin, d, answers, &BTreeMap::new(), vault.clone(), "")?;
    let choices = match ask::spin(
        &format!("fetching {} choices", field.label.to_lowercase()),
        plugin.choices(runtime, &env, &ctx, &field.id, answers),
    )
    .await?
    {
        Ok(choices) => choices,
        Err(e) => return wrong_answer(&e).map(Err).ok_or_else(|| method_error(d, e)),
    };
    if choices.is_empty() {
        return Err(CliError::Method {
            message: format!("{}: there is nothing to choose from for {}: {}", d.name, field.label, field.help),
            exit: Exit::BadInput,
        });
    }
    ask::help(&field.help);
    let labels: Vec<String> = choices.iter().map(|c| c.label.clone()).collect();
    let current = answers.iter().find(|a| a.field == field.id).map(|a| &a.value).or(field.default.as_ref());
    let default = current.and_then(|d| choices.iter().position(|c| &c.value == d)).unwrap_or(0);
    let index = ask::select(&field.label, &labels, default)?;
    Ok(Ok(choices[index].value.clone()))
}

async fn add(args: AddArgs, globals: &Globals, out: &mut Output) -> Result<Exit, CliError> {
    let project = Project::open()?;
    let (key, key_source) = master_key()?;
    let mut secrets_file = project.secrets()?;
    secrets_file.verify_key(&key, &key_source.to_string())?;
    let runtime = globals.runtime()?;
    let interactive = ask::interactive();
    let mut missing = Vec::new();

    // S1: the method.
    let methods = project.methods();
    let method = match args.method {
        Some(m) => Some(m),
        None if interactive => Some(methods[ask::select("Deployment method", &methods, 0)?].clone()),
        None => None,
    };
    // S7: name; S2: strategy and branch; URL.
    let check_name = |name: &str| -> Result<(), String> {
        if name.trim().is_empty() {
            return Err("a server needs a name, for example Production".into());
        }
        if alias::slug(name).is_none() {
            return Err(format!("server name `{name}` needs at least one letter or digit"));
        }
        match project.config.servers().iter().find(|s| alias::same_name(&s.name, name)) {
            Some(other) => Err(format!("a server named `{}` already exists (alias {})", other.name, other.alias)),
            None => Ok(()),
        }
    };
    let name = match args.name {
        Some(n) => {
            check_name(&n).map_err(CliError::Usage)?;
            Some(n)
        }
        None if interactive => {
            ask::help("Any text; its alias (lowercase letters, digits and `-`) names it in commands.");
            Some(ask::text_checked("Server name", None, check_name)?)
        }
        None => None,
    };
    let strategy: Option<Strategy> = match args.strategy {
        Some(s) => Some(s.into()),
        None if interactive => {
            let options = [
                "manual: deploy when asked".to_string(),
                "automatic: deploy every passed build of one branch".to_string(),
            ];
            Some(if ask::select("Strategy", &options, 0)? == 0 { Strategy::Manual } else { Strategy::Automatic })
        }
        None => None,
    };
    let branch = match (strategy, args.branch) {
        (_, Some(b)) => Some(b),
        (Some(Strategy::Automatic), None) if interactive => {
            ask::help("`pier ci` deploys every passed build of this branch.");
            Some(ask::text_checked("Branch to deploy automatically", Some("main"), |b| match b.trim() {
                "" => Err("an automatic server needs a branch, for example main".into()),
                _ => Ok(()),
            })?)
        }
        (Some(Strategy::Automatic), None) => {
            missing.push("--branch NAME (required with --strategy automatic)".into());
            None
        }
        _ => None,
    };
    let url = match args.url {
        Some(u) => Some(u).filter(|u| !u.trim().is_empty()),
        None if interactive && !args.json => {
            ask::help("Where the deployed app can be seen; leave empty to take it from the method when it knows.");
            let url = ask::text_checked("Server URL (optional)", None, |u| {
                if u.trim().is_empty() || valid_url(u.trim()) {
                    Ok(())
                } else {
                    Err(format!("`{u}` is not an http(s) URL, for example https://example.com"))
                }
            })?;
            Some(url.trim().to_string()).filter(|u| !u.is_empty())
        }
        None => None,
    };
    if let Some(url) = &url
        && !valid_url(url)
    {
        return Err(CliError::Usage(format!("--url `{url}` is not an http(s) URL")));
    }
    if method.is_none() {
        missing.insert(0, "--method NAME".into());
    }
    if name.is_none() {
        missing.push("--name TEXT".into());
    }
    if strategy.is_none() {
        missing.push("--strategy automatic|manual".into());
    }
    let set = parse_pairs("--set", &args.set)?;
    let secret_values = parse_secrets(&args.secret)?;
    let Some(method) = method else {
        return Err(missing_error(&missing));
    };
    let plugin = project.plugin(&runtime, &method)?;
    let d = plugin.describe(&runtime).await?;
    check_fields(&d, &set, &secret_values)?;
    let vault = Arc::new(Vault::new());
    let mut answers = answer_form(&runtime, &plugin, &d, &set, secret_values, &vault, &mut missing).await?;
    if !missing.is_empty() {
        return Err(missing_error(&missing));
    }
    let (name, strategy) = (name.expect("checked"), strategy.expect("checked"));
    let wizard = interactive.then_some(Wizard { runtime: &runtime, plugin: &plugin, d: &d, vault: &vault });
    let taken: Vec<&str> = project.config.servers().iter().map(|s| s.alias.as_str()).collect();
    let alias = alias::allocate(&name, taken.iter().copied()).expect("name has a letter or digit");
    // On a terminal, an answer the method refuses is asked again, and checked again.
    let (validated, result, host_keys) = loop {
        // S3/S4: validate against the provider before anything is saved.
        let (env, ctx) = setup_env(&plugin, &d, &answers, &BTreeMap::new(), vault.clone(), "")?;
        let validated =
            match ask::spin("validating with the provider", plugin.validate(&runtime, &env, &ctx, &answers)).await? {
                Ok(validated) => validated,
                Err(e) => match (&wizard, wrong_answer(&e)) {
                    (Some(wizard), Some(wrong)) => {
                        wizard.ask_again(&mut answers, &wrong).await?;
                        continue;
                    }
                    _ => return Err(method_error(&d, e)),
                },
            };
        eprintln!("✓ {validated}");
        // S5: set up (keys generated and registered).
        let (env, ctx) = setup_env(&plugin, &d, &answers, &BTreeMap::new(), vault.clone(), &alias)?;
        // Host keys the setup's SSH connections are shown are pinned (trust on first use).
        let host_keys = HostKeys::learning();
        let env = env.with_host_keys(host_keys.clone());
        let before = vault.handles();
        let setup = ask::spin("setting up", plugin.setup(&runtime, &env, &ctx, &answers)).await?;
        match setup.value {
            Ok(result) => break (validated, result, host_keys),
            Err(e) => match (&wizard, wrong_answer(&e)) {
                (Some(wizard), Some(wrong)) => {
                    // Keys the failed setup generated are not kept.
                    vault.handles().iter().filter(|h| !before.contains(h)).for_each(|h| vault.remove(h));
                    wizard.ask_again(&mut answers, &wrong).await?;
                }
                _ => return Err(method_error(&d, e)),
            },
        }
    };
    let settings: BTreeMap<String, String> =
        result.settings.iter().map(|a| (a.field.clone(), a.value.clone())).collect();
    crate::caps::http::check_endpoint_settings(&d.permissions, &crate::runtime::values_of(&answers), &settings)
        .map_err(|message| {
            CliError::Call(crate::runtime::CallError::Fault(crate::runtime::PluginFault::Contract {
                plugin: plugin.name().to_string(),
                export: "setup",
                message,
            }))
        })?;

    // An endpoint a variable pointed elsewhere is remembered: deploys without the
    // variable go where this setup went.
    let resolved = crate::caps::http::resolve_endpoints(
        &d.permissions,
        &crate::runtime::values_of(&answers),
        &BTreeMap::new(),
        &|name| std::env::var(name).ok(),
    )
    .map_err(|e| CliError::Usage(format!("method {}: {e}", d.name)))?;
    let endpoints = crate::caps::http::endpoints_to_store(&d.permissions, &resolved);
    let server = Server {
        alias: alias.clone(),
        name,
        method: d.name.clone(),
        strategy,
        branch,
        url,
        settings: result.settings.iter().map(|a| (a.field.clone(), a.value.clone())).collect(),
        commands: Vec::new(),
        host_keys: host_keys.pins().iter().map(Pin::line).collect(),
        endpoints,
    };
    // Secret answers and generated keys are stored sealed; the config names none of them.
    let mut to_store: Vec<(String, SecretString)> = Vec::new();
    for handle in vault.handles() {
        if let Some(value) = vault.get(&handle) {
            to_store.push((handle, value));
        }
    }
    secrets_file.set(&key, &alias, &to_store);
    secrets_file.save()?;
    project.config.add_server(&server)?;

    for note in &result.notes {
        eprintln!("• {note}");
    }
    for r in resolved.iter().filter(|r| server.endpoints.contains_key(&r.endpoint.id)) {
        let (id, url) = (&r.endpoint.id, &server.endpoints[&r.endpoint.id]);
        let var = r.variable.as_deref().unwrap_or("the variable");
        eprintln!(
            "• stored endpoint `{id}` = {url} (from {var}) with the server: deploys use it when {var} is not set"
        );
    }
    for pin in host_keys.pins() {
        eprintln!(
            "• pinned the SSH host key of {}: {} {} (compare it with the one the server's administrator publishes)",
            pin.destination().display(),
            pin.algorithm(),
            pin.fingerprint()
        );
    }
    let pinned: Vec<PinView> = host_keys.pins().iter().map(PinView::of).collect();
    let view = ServerView {
        secrets: to_store.iter().map(|(n, _)| n.clone()).collect(),
        public_keys: BTreeMap::new(),
        last_deploy_url: None,
        server,
    };
    if args.json {
        out.json(&serde_json::json!({
            "server": view, "validation": validated, "notes": result.notes, "pinned_host_keys": pinned,
        }))?;
    } else {
        out.line(format!(
            "added server {} ({}): {}, {}",
            view.server.name,
            view.server.alias,
            view.server.method,
            match &view.server.branch {
                Some(b) if view.server.strategy == Strategy::Automatic => format!("deploys automatically from {b}"),
                _ => "deploys when asked".to_string(),
            }
        ))?;
    }
    Ok(Exit::Success)
}

fn missing_error(missing: &[String]) -> CliError {
    CliError::Usage(format!("not a terminal, so nothing can be asked; missing: {}", missing.join(", ")))
}

async fn edit(args: EditArgs, globals: &Globals, out: &mut Output) -> Result<Exit, CliError> {
    let project = Project::open()?;
    let server = project.server(&args.server)?.clone();
    let set = parse_pairs("--set", &args.set)?;
    let new_secrets = parse_secrets(&args.secret)?;
    let strategy: Option<Strategy> = args.strategy.map(Into::into);
    if strategy == Some(Strategy::Automatic) && args.branch.is_none() && server.branch.is_none() {
        return Err(CliError::Usage("switching to automatic needs a branch: add --branch NAME".into()));
    }
    if let Some(url) = &args.url
        && !url.is_empty()
        && !valid_url(url)
    {
        return Err(CliError::Usage(format!("--url `{url}` is not an http(s) URL")));
    }
    if !set.is_empty() || !new_secrets.is_empty() {
        // Changed settings or secrets are validated with the provider before saving.
        let runtime = globals.runtime()?;
        let plugin = project.plugin(&runtime, &server.method)?;
        let d = plugin.describe(&runtime).await?;
        check_fields(&d, &set, &new_secrets)?;
        let (key, source) = master_key()?;
        let mut secrets_file = project.secrets()?;
        let vault = Arc::new(secrets_file.open_server(&key, &source.to_string(), &server.alias)?);
        for (id, value) in &new_secrets {
            vault.insert(id, value.clone());
        }
        let mut settings = server.settings.clone();
        settings.extend(set.clone());
        let answers: Vec<Answer> =
            settings.iter().map(|(k, v)| Answer { field: k.clone(), value: v.clone() }).collect();
        let values = crate::runtime::values_of(&answers);
        let resolved = crate::caps::http::resolve_endpoints(&d.permissions, &values, &server.endpoints, &|name| {
            std::env::var(name).ok()
        })
        .map_err(|e| CliError::Usage(format!("method {}: {e}", d.name)))?;
        for note in resolved.iter().filter_map(|r| r.replaced_note(&server.alias)) {
            eprintln!("warning: {note}");
        }
        let (env, ctx) = setup_env(&plugin, &d, &answers, &server.endpoints, vault.clone(), &server.alias)?;
        let validated = ask::spin("validating with the provider", plugin.validate(&runtime, &env, &ctx, &answers))
            .await?
            .map_err(|e| method_error(&d, e))?;
        eprintln!("✓ {validated}");
        if !new_secrets.is_empty() {
            let values: Vec<(String, SecretString)> = new_secrets.into_iter().collect();
            secrets_file.set(&key, &server.alias, &values);
            secrets_file.save()?;
        }
    }
    let edit = ServerEdit {
        strategy,
        branch: args.branch,
        url: args.url,
        settings: set,
        commands: if args.clear_commands {
            Some(Vec::new())
        } else {
            (!args.command.is_empty()).then_some(args.command)
        },
        add_commands: args.add_command,
        host_keys: match &args.trust_host_key {
            Some(wanted) => Some(trust_host_keys(&server, wanted)?),
            None => None,
        },
    };
    let config = project.config.edit_server(&server.alias, &edit)?;
    let server = config.server(&server.alias).expect("edited server exists").clone();
    let view = ServerView {
        secrets: project.secrets()?.names(&server.alias),
        public_keys: BTreeMap::new(),
        last_deploy_url: None,
        server,
    };
    if args.json {
        out.json(&view)?
    } else {
        print_server(&view, out)?
    }
    Ok(Exit::Success)
}

/// Asks the server's method to undo what its setup registered with the provider (the
/// method's `remove`): the lines it returned, or one warning saying what was not undone
/// and what to remove by hand.
async fn undo_setup(project: &Project, server: &Server, globals: &Globals) -> Result<Vec<String>, String> {
    let by_hand = |why: String| {
        format!(
            "{why}; anything setup registered with the provider for `{}` (such as an SSH key) must be removed by hand",
            server.alias
        )
    };
    let call = super::run::ServerCall::open(project, server, globals).await.map_err(|e| by_hand(e.to_string()))?;
    let sink = Arc::new(crate::caps::events::NullSink);
    let (env, ctx, settings) = call.env(sink).map_err(|e| by_hand(e.to_string()))?;
    match call.plugin.remove(&call.runtime, &env, &ctx, &settings).await {
        Ok(Ok(notes)) => Ok(notes),
        Ok(Err(e)) => Err(by_hand(call.method_error(e).to_string())),
        Err(e) => Err(by_hand(e.to_string())),
    }
}
