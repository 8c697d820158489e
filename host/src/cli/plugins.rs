//! `pier plugins`: list and inspect deployment-method plugins.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::Serialize;

use super::project::{Project, load_installed};
use super::template::Lang;
use super::{CliError, Globals, Output, ask};
use crate::caps::exec::refused_env;
use crate::exit::Exit;
use crate::project::config::InstalledPlugin;
use crate::runtime::bindings::{CommandEnvValue, EndpointSource, FieldKind, SecretUse};
use crate::runtime::builtin::{self, Builtin};
use crate::runtime::{CacheOutcome, Compilation, Description, Plugin, PluginFile, Runtime};

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List the built-in and installed plugins.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a plugin's setup form, permissions, size and digest.
    Inspect {
        /// A plugin file (.wasm), or the name of a built-in or installed plugin.
        plugin: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compile plugins with the optimising compiler (Cranelift) now and cache the result,
    /// so that later runs (a CI job restoring the cache) start at full speed.
    ///
    /// Without this, a plugin's first load compiles it with the fast baseline compiler
    /// (Winch) and optimises it in the background.
    Compile {
        /// Plugin files, or names of installed or built-in plugins (default: every plugin
        /// installed in this project).
        plugins: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Install a plugin file in this project, after showing what it asks to be allowed.
    Add {
        /// The plugin file (.wasm).
        file: PathBuf,
        /// Install without asking (required when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create a new plugin project (Rust, Python or JavaScript) that builds and passes
    /// `pier conformance` as is.
    New {
        /// The method's name: lowercase letters, digits and `-`.
        name: String,
        /// Where to create it (default: a new directory named NAME).
        #[arg(long, value_name = "PATH")]
        dir: Option<PathBuf>,
        /// The language of the project.
        #[arg(long, value_enum, default_value_t = Lang::Rust)]
        lang: Lang,
    },
}

/// A plugin as `list` and `inspect` show it.
#[derive(Debug, Serialize)]
pub struct PluginView {
    pub name: String,
    pub title: String,
    pub version: String,
    pub summary: String,
    pub contract: String,
    pub source: String,
    pub builtin: bool,
    pub size: u64,
    pub sha256: String,
    pub fields: Vec<FieldView>,
    pub permissions: PermissionsView,
}

/// A setup field.
#[derive(Debug, Serialize)]
pub struct FieldView {
    pub id: String,
    pub label: String,
    pub help: String,
    pub kind: &'static str,
    pub required: bool,
    pub default: Option<String>,
    pub advanced: bool,
    pub example: Option<String>,
}

/// What a plugin asks to be allowed.
#[derive(Debug, Serialize)]
pub struct PermissionsView {
    pub endpoints: Vec<EndpointView>,
    pub origins: Vec<String>,
    pub programs: Vec<ProgramView>,
    /// Where each secret may go, one line each.
    pub secrets: Vec<String>,
    /// What deploy commands get: variables, then rules, then tools, then the commands the
    /// method runs itself, one line each.
    pub commands: Vec<String>,
    /// Where the plugin may open TLS streams, one line each.
    pub streams: Vec<String>,
    /// Whether programs the plugin runs are confined on this machine, one line.
    pub confinement: String,
}

/// A program grant, as a user reads it.
#[derive(Debug, Serialize)]
pub struct ProgramView {
    pub name: String,
    /// Argument patterns, each as words.
    pub args: Vec<Vec<String>>,
    /// Variables the plugin may set for it.
    pub env: Vec<String>,
    /// One line saying what the grant allows.
    pub allows: String,
}

/// An endpoint and where its URL comes from, in order.
#[derive(Debug, Serialize)]
pub struct EndpointView {
    pub id: String,
    pub sources: Vec<SourceView>,
}

/// One source of an endpoint's URL.
#[derive(Debug, Serialize)]
#[serde(tag = "from", rename_all = "lowercase")]
pub enum SourceView {
    Fixed { url: String },
    Field { field: String },
    Env { name: String, bare_host: String, in_force: Option<String> },
}

impl std::fmt::Display for SourceView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceView::Fixed { url } => write!(f, "{url}"),
            SourceView::Field { field } => write!(f, "setting `{field}`"),
            SourceView::Env { name, bare_host, in_force } => {
                write!(f, "${name} (a host name, put into {bare_host}; ")?;
                match in_force {
                    Some(url) => write!(f, "now {url})"),
                    None => write!(f, "not set now)"),
                }
            }
        }
    }
}

fn kind_name(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Text => "text",
        FieldKind::Secret => "secret",
        FieldKind::Choice => "choice",
        FieldKind::Boolean => "boolean",
    }
}

/// What a view says about the component a plugin came from.
pub struct Origin<'a> {
    /// A path, or `builtin:NAME`.
    pub source: &'a str,
    /// Size of the component in bytes.
    pub size: u64,
    /// SHA-256 of the component, lowercase hex.
    pub sha256: &'a str,
    /// The `pier:deploy` version it targets.
    pub contract: &'a str,
}

impl<'a> From<&'a PluginFile> for Origin<'a> {
    fn from(file: &'a PluginFile) -> Self {
        Origin { source: &file.source, size: file.size, sha256: &file.sha256, contract: &file.contract }
    }
}

impl PluginView {
    pub fn new<'a>(description: &Description, file: impl Into<Origin<'a>>) -> Self {
        let file = file.into();
        PluginView {
            name: description.name.clone(),
            title: description.title.clone(),
            version: description.version.clone(),
            summary: description.summary.clone(),
            contract: file.contract.to_string(),
            source: file.source.to_string(),
            builtin: file.source.starts_with("builtin:"),
            size: file.size,
            sha256: file.sha256.to_string(),
            fields: description
                .fields
                .iter()
                .map(|f| FieldView {
                    id: f.id.clone(),
                    label: f.label.clone(),
                    help: f.help.clone(),
                    kind: kind_name(f.kind),
                    required: f.required,
                    default: f.default.clone(),
                    advanced: f.advanced,
                    example: f.example.clone(),
                })
                .collect(),
            permissions: PermissionsView {
                endpoints: description
                    .permissions
                    .endpoints
                    .iter()
                    .map(|e| EndpointView {
                        id: e.id.clone(),
                        sources: e
                            .sources
                            .iter()
                            .map(|s| match s {
                                EndpointSource::Fixed(url) => SourceView::Fixed { url: url.clone() },
                                EndpointSource::Field(field) => SourceView::Field { field: field.clone() },
                                EndpointSource::Env(env) => SourceView::Env {
                                    name: env.name.clone(),
                                    bare_host: env.bare_host.clone(),
                                    in_force: std::env::var(&env.name).ok().filter(|v| !v.trim().is_empty()).map(|v| {
                                        crate::caps::http::env_endpoint_url(env, &v).unwrap_or_else(|_| {
                                            "a value that is not a host name (it will be refused)".to_string()
                                        })
                                    }),
                                },
                            })
                            .collect(),
                    })
                    .collect(),
                origins: description.permissions.origins.clone(),
                programs: description.permissions.programs.iter().map(|p| program_view(p, file.contract)).collect(),
                secrets: secret_lines(description),
                commands: command_lines(description),
                streams: stream_lines(description),
                confinement: crate::caps::confine::status().to_string(),
            },
        }
    }
}

fn program_view(p: &crate::runtime::bindings::Program, contract: &str) -> ProgramView {
    let allows = if contract.starts_with("0.1") {
        "never runs: the plugin is built against pier:deploy@0.1.0, which cannot declare argument patterns".to_string()
    } else if p.args.is_empty() {
        "never runs: no argument patterns declared".to_string()
    } else {
        let patterns: Vec<String> =
            p.args.iter().map(|a| if a.is_empty() { "(no arguments)".into() } else { a.join(" ") }).collect();
        let any = p.args.iter().any(|a| a.last().is_some_and(|w| w == "**"));
        const RUNS_CODE: &[&str] = &[
            "sh", "bash", "dash", "zsh", "ksh", "fish", "env", "xargs", "python", "python3", "node", "perl", "ruby",
            "php", "lua", "deno", "bun", "sudo", "su", "nohup", "timeout", "find", "awk", "make",
        ];
        let runs_code = RUNS_CODE.contains(&p.name.as_str()) || p.name.starts_with("python");
        format!(
            "`{}` with arguments {}{}; variables it may set: {}{}",
            p.name,
            patterns.join(" | "),
            if any { " (`**`: any further arguments, including options)" } else { "" },
            if p.env.is_empty() { "none".to_string() } else { p.env.join(", ") },
            if runs_code {
                " — WARNING: this program runs code it is given, so this grant can run anything"
            } else {
                ""
            }
        )
    };
    ProgramView { name: p.name.clone(), args: p.args.clone(), env: p.env.clone(), allows }
}

fn secret_lines(d: &Description) -> Vec<String> {
    d.permissions
        .secrets
        .iter()
        .map(|b| match &b.use_ {
            SecretUse::Header(h) => {
                format!("secret `{}` → header `{}: {}…` to endpoint `{}`", b.secret, h.name, h.prefix, h.endpoint)
            }
            SecretUse::ProgramEnv(e) => {
                format!("secret `{}` → variable `{}` of program `{}`", b.secret, e.variable, e.program)
            }
            SecretUse::SshKey(p) => format!("secret `{}` → SSH key of program `{p}`", b.secret),
        })
        .collect()
}

fn command_lines(d: &Description) -> Vec<String> {
    let c = &d.permissions.commands;
    let mut lines = Vec::new();
    for var in &c.env {
        let from = match &var.value {
            CommandEnvValue::Secret(h) => format!("secret `{h}`"),
            CommandEnvValue::Setting(f) => format!("setting `{f}`"),
            CommandEnvValue::Endpoint(e) => format!("the URL of endpoint `{e}`"),
            CommandEnvValue::EndpointOverride(e) => format!("the URL of endpoint `{e}` when not its default"),
        };
        let note = if refused_env(&var.name).is_some() { " (refused)" } else { "" };
        lines.push(format!("variable {} = {from}{note}", var.name));
    }
    for rule in &c.rules {
        let unless =
            if rule.unless.is_empty() { String::new() } else { format!(" unless {}", rule.unless.join(" or ")) };
        lines.push(format!("rule: in a command beginning `{}`, insert `{}`{unless}", rule.prefix.join(" "), rule.flag));
    }
    for tool in &c.tools {
        lines.push(format!("needs `{}` on PATH when a command runs it ({})", tool.program, tool.install_hint));
    }
    for native in &c.native {
        let flags: Vec<String> = native.options.iter().map(|f| f.names.join("/")).collect();
        lines.push(format!(
            "runs commands beginning `{}` itself (its `run` export), when their flags are among: {}",
            native.prefix.join(" "),
            if flags.is_empty() { "none".to_string() } else { flags.join(", ") }
        ));
    }
    lines
}

fn stream_lines(d: &Description) -> Vec<String> {
    d.permissions
        .streams
        .iter()
        .map(|g| {
            let host = match g.host.strip_prefix("endpoint:") {
                Some(id) => format!("the host of endpoint `{id}`"),
                None => format!("`{}`", g.host),
            };
            let port = g.port.map_or("any port".to_string(), |p| format!("port {p}"));
            let handed = g.port.is_none() || g.host.starts_with("*.");
            let only = if handed { ", only where a response from its endpoints named the address" } else { "" };
            format!("TLS to {host}, {port}{only}")
        })
        .collect()
}

/// A built-in's view, from the description it gave when `pier` was built: no instance.
fn builtin_view(builtin: &Builtin) -> Result<PluginView, CliError> {
    let description = builtin.description()?;
    let source = format!("builtin:{}", builtin.name);
    let origin =
        Origin { source: &source, size: builtin.wasm.len() as u64, sha256: builtin.sha256, contract: builtin.contract };
    Ok(PluginView::new(&description, origin))
}

/// Loads `spec`: a built-in name always means the built-in; anything that looks like a
/// path (`./heroku`, `x.wasm`) is a file; else an installed plugin of the project, else a
/// file of that name.
pub fn load(runtime: &Runtime, spec: &str) -> Result<Plugin, CliError> {
    let path = Path::new(spec);
    if builtin::find(spec).is_some() {
        return Ok(runtime.load_builtin(spec)?);
    }
    if spec.ends_with(".wasm") || spec.contains('/') {
        return Ok(runtime.load_file(path)?);
    }
    if let Ok(project) = Project::open()
        && let Some(installed) = project.config.plugins().iter().find(|p| p.name == spec)
    {
        return load_installed(runtime, &project.root, installed);
    }
    if path.exists() {
        return Ok(runtime.load_file(path)?);
    }
    Ok(runtime.load_builtin(spec)?)
}

pub async fn run(command: PluginsCommand, globals: &Globals, out: &mut Output) -> Result<Exit, CliError> {
    match command {
        PluginsCommand::List { json } => list(globals, json, out).await,
        PluginsCommand::Add { file, yes, json } => add(&globals.runtime()?, &file, yes, json, out).await,
        PluginsCommand::New { name, dir, lang } => new(&name, dir, lang, out),
        PluginsCommand::Inspect { plugin, json } => inspect(globals, &plugin, json, out).await,
        PluginsCommand::Compile { plugins, json } => {
            // Compiling ahead is what this command is for: a large plugin may take minutes
            // with Cranelift, where a load that runs it gives up after one.
            let mut limits = crate::runtime::Limits::default();
            globals.apply_env_limits(&mut limits)?;
            limits.compile_time = limits.compile_time.max(std::time::Duration::from_secs(600));
            let runtime = globals.runtime_with(limits)?.with_compilation(Compilation::Optimized);
            compile(runtime, plugins, json, globals, out)
        }
    }
}

/// `pier plugins inspect`: a built-in from what it described at build time, anything
/// else loaded and asked.
async fn inspect(globals: &Globals, spec: &str, json: bool, out: &mut Output) -> Result<Exit, CliError> {
    let view = match builtin::find(spec) {
        Some(builtin) => {
            globals.check_runtime_env()?;
            builtin_view(builtin)?
        }
        None => {
            let runtime = globals.runtime()?;
            let plugin = load(&runtime, spec)?;
            let description = plugin.describe(&runtime).await?;
            PluginView::new(&description, plugin.file())
        }
    };
    if json {
        out.json(&view)?;
    } else {
        print_view(&view, out)?;
    }
    Ok(Exit::Success)
}

/// `pier plugins list`: the built-ins from what they described at build time, then the
/// project's installed plugins, loaded and asked. A runtime is started only for those.
async fn list(globals: &Globals, json: bool, out: &mut Output) -> Result<Exit, CliError> {
    globals.check_runtime_env()?;
    let mut views = builtin::BUILTINS.iter().map(builtin_view).collect::<Result<Vec<_>, _>>()?;
    let mut broken = false;
    if let Ok(project) = Project::open()
        && !project.config.plugins().is_empty()
    {
        let runtime = globals.runtime()?;
        for installed in project.config.plugins() {
            match load_installed(&runtime, &project.root, installed) {
                Ok(plugin) => {
                    let description = plugin.describe(&runtime).await?;
                    views.push(PluginView::new(&description, plugin.file()));
                }
                Err(e) => {
                    broken = true;
                    eprintln!("error: installed plugin `{}`: {e}", installed.name);
                }
            }
        }
    }
    if json {
        out.json(&views)?;
    } else {
        out.line(format!("{:<12} {:<24} {:<9} {:<9} SOURCE", "NAME", "TITLE", "VERSION", "CONTRACT"))?;
        for v in &views {
            let source = if v.builtin { "built-in".to_string() } else { v.source.clone() };
            out.line(format!("{:<12} {:<24} {:<9} {:<9} {source}", v.name, v.title, v.version, v.contract))?;
        }
    }
    Ok(if broken { Exit::BadInput } else { Exit::Success })
}

/// What `pier plugins compile` did for one plugin.
#[derive(Debug, Serialize)]
struct Compiled {
    plugin: String,
    source: String,
    size: u64,
    compiler: &'static str,
    /// Whether the artifact was already there (cached, or embedded in `pier`).
    cached: bool,
    seconds: f64,
}

/// `pier plugins compile`: loads each plugin with Cranelift, compiling and caching it
/// when its optimised artifact is not cached yet.
fn compile(
    runtime: Runtime,
    specs: Vec<String>,
    json: bool,
    globals: &Globals,
    out: &mut Output,
) -> Result<Exit, CliError> {
    let Some(cache) = &globals.cache_dir else {
        return Err(CliError::Usage(
            "there is no cache directory to keep compiled plugins in: set PIER_CACHE_DIR".into(),
        ));
    };
    let specs = if specs.is_empty() {
        let project = Project::open()?;
        let names: Vec<String> = project.config.plugins().iter().map(|p| p.name.clone()).collect();
        if names.is_empty() {
            // Nothing to do is not a failure: a CI step runs this whatever is installed.
            if json {
                out.json(&serde_json::json!({ "cache": cache, "plugins": [] }))?;
            } else {
                out.line("no plugins are installed in this project (built-in ones are compiled into pier)")?;
            }
            return Ok(Exit::Success);
        }
        names
    } else {
        specs
    };
    let mut done = Vec::new();
    for spec in &specs {
        let started = std::time::Instant::now();
        let plugin = load(&runtime, spec)?;
        let file = plugin.file();
        done.push(Compiled {
            plugin: spec.clone(),
            source: file.source.clone(),
            size: file.size,
            compiler: file.compiler,
            cached: file.cache == CacheOutcome::Hit,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    if json {
        out.json(&serde_json::json!({ "cache": cache, "plugins": done }))?;
        return Ok(Exit::Success);
    }
    for c in &done {
        let size = format!("{:.1} MB", c.size as f64 / 1e6);
        if c.cached {
            out.line(format!("{}: already compiled with {} ({}, {size})", c.plugin, c.compiler, c.source))?;
        } else {
            out.line(format!(
                "{}: compiled with {} in {:.1} s ({}, {size})",
                c.plugin, c.compiler, c.seconds, c.source
            ))?;
        }
    }
    out.line(format!("cache: {}", cache.display()))?;
    Ok(Exit::Success)
}

pub fn print_view(v: &PluginView, out: &mut Output) -> std::io::Result<()> {
    out.line(format!("{} ({}) {}", v.title, v.name, v.version))?;
    if !v.summary.is_empty() {
        out.line(format!("  {}", v.summary))?;
    }
    out.line(format!("  source:    {}", v.source))?;
    out.line(format!("  size:      {} bytes", v.size))?;
    out.line(format!("  sha256:    {}", v.sha256))?;
    out.line(format!("  contract:  pier:deploy@{}", v.contract))?;
    out.line("  setup form:")?;
    if v.fields.is_empty() {
        out.line("    (no fields)")?;
    }
    for f in &v.fields {
        let mut traits = vec![f.kind.to_string()];
        traits.push(if f.required { "required".into() } else { "optional".into() });
        if let Some(d) = &f.default {
            traits.push(format!("default {d}"));
        }
        if f.advanced {
            traits.push("advanced".into());
        }
        if let Some(e) = &f.example {
            traits.push(format!("e.g. {e}"));
        }
        out.line(format!("    {:<14} {} ({})", f.id, f.label, traits.join(", ")))?;
        if !f.help.trim().is_empty() {
            out.line(format!("    {:<14} {}", "", f.help.trim()))?;
        }
    }
    out.line("  permissions:")?;
    let mut any = false;
    for e in &v.permissions.endpoints {
        let sources: Vec<String> = e.sources.iter().map(ToString::to_string).collect();
        out.line(format!("    http endpoint `{}`: {}", e.id, sources.join(", else ")))?;
        any = true;
    }
    for o in &v.permissions.origins {
        out.line(format!("    http origin {o}"))?;
        any = true;
    }
    for p in &v.permissions.programs {
        out.line(format!("    run program `{}`: {}", p.name, p.allows))?;
        any = true;
    }
    for line in &v.permissions.secrets {
        out.line(format!("    {line}"))?;
        any = true;
    }
    if !any {
        out.line("    (none)")?;
    }
    if !v.permissions.programs.is_empty() {
        out.line(format!("    {}", v.permissions.confinement))?;
    }
    if !v.permissions.commands.is_empty() {
        out.line("  deploy commands:")?;
        for line in &v.permissions.commands {
            out.line(format!("    {line}"))?;
        }
    }
    if !v.permissions.streams.is_empty() {
        out.line("  streams:")?;
        for line in &v.permissions.streams {
            out.line(format!("    {line}"))?;
        }
    }
    Ok(())
}

async fn add(runtime: &Runtime, file: &Path, yes: bool, json: bool, out: &mut Output) -> Result<Exit, CliError> {
    let project = Project::open()?;
    let plugin = runtime.load_file(file)?;
    let description = plugin.describe(runtime).await?;
    let view = PluginView::new(&description, plugin.file());
    if builtin::find(&description.name).is_some() {
        return Err(CliError::Usage(format!(
            "plugin {} calls itself `{}`, the name of a built-in method: give it another name",
            file.display(),
            description.name
        )));
    }
    // Show exactly what is being granted before anything is recorded.
    if !json {
        print_view(&view, out)?;
    }
    if !yes {
        if !ask::interactive() {
            return Err(CliError::Usage(
                "not a terminal, so nothing can be asked: review the permissions above, then pass --yes".into(),
            ));
        }
        if !ask::confirm(&format!("Install `{}` with these permissions?", description.name), false)? {
            return Err(CliError::Usage("not installed".into()));
        }
    }
    let absolute = file.canonicalize().map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
    let path = absolute
        .strip_prefix(&project.root)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| absolute.clone())
        .display()
        .to_string();
    let replaced = project.config.plugins().iter().any(|p| p.name == description.name);
    let installed = InstalledPlugin { name: description.name.clone(), path, sha256: plugin.file().sha256.clone() };
    project.config.add_plugin(&installed)?;
    if json {
        out.json(&serde_json::json!({ "installed": installed, "replaced": replaced, "plugin": view }))?;
    } else {
        out.line(format!(
            "{} plugin `{}` ({}, sha256 {}): servers can now use --method {}",
            if replaced { "updated" } else { "installed" },
            installed.name,
            installed.path,
            installed.sha256,
            installed.name
        ))?;
    }
    Ok(Exit::Success)
}

fn new(name: &str, dir: Option<PathBuf>, lang: Lang, out: &mut Output) -> Result<Exit, CliError> {
    if !super::template::valid_name(name) {
        return Err(CliError::Usage(format!(
            "`{name}` is not a method name: use lowercase letters, digits and `-`, starting with a letter"
        )));
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(CliError::Usage(format!("{} already exists and is not empty", dir.display())));
    }
    let files = super::template::write(&dir, name, lang)
        .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", dir.display())))?;
    out.line(format!("created plugin `{name}` in {} ({} files)", dir.display(), files.len()))?;
    out.line(format!("next: cd {} && {}", dir.display(), lang.build_commands(name)))?;
    if let Some(needs) = lang.needs() {
        out.line(format!("(needs {needs}; see {})", dir.join("README.md").display()))?;
    }
    Ok(Exit::Success)
}
