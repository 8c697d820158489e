//! Write Pier deployment methods in Rust.
//!
//! This crate holds the bindings of the `pier:deploy@0.3.0` contract (generated from the
//! WIT with `wit-bindgen`) and small helpers over them: JSON over the `http` capability
//! with secret handles in headers, typed errors, answers and endpoints, progress
//! events, and waiting ([`sleep`], [`poll`] with backoff).
//!
//! A plugin implements [`Method`] and exports it with [`export_method!`]. `describe`,
//! `choices`, `validate`, `setup` and `deploy` are required; `run`, `rollback` and
//! `remove` have defaults for a method without one-off commands, without rollbacks and
//! with nothing to undo at the provider.
//!
//! ```text
//! use pier_plugin_sdk::{Method, export_method};
//! struct MyMethod;
//! impl Method for MyMethod { /* describe, choices, validate, setup, deploy */ }
//! export_method!(MyMethod);
//! ```

wit_bindgen::generate!({
    path: "../../wit/0.3.0",
    world: "pier:deploy/plugin",
    pub_export_macro: true,
    export_macro_name: "export_method",
    default_bindings_module: "pier_plugin_sdk",
});

pub use exports::pier::deploy::method::SetupResult;
pub use pier::deploy::types::*;
pub use pier::deploy::{events, exec, http, keys, secrets, tls, workspace};

/// A deployment method: the `method` export of the contract (see `wit/0.3.0/method.wit`
/// for what each function must do). Every type implementing it is exported by
/// [`export_method!`].
pub trait Method {
    /// Describe the method: its name, setup form and permissions. Must not call the host.
    fn describe() -> Description;

    /// The options of the choice field `field`, given the answers so far.
    fn choices(ctx: Context, field: String, answers: Vec<Answer>) -> Result<Vec<Choice>, MethodError>;

    /// Check a complete set of answers against the provider; one line for the user.
    fn validate(ctx: Context, answers: Vec<Answer>) -> Result<String, MethodError>;

    /// Set the server up and return the settings to store.
    fn setup(ctx: Context, answers: Vec<Answer>) -> Result<SetupResult, MethodError>;

    /// Deploy a build with the stored settings.
    fn deploy(ctx: Context, settings: Vec<Answer>, build: BuildInfo) -> Result<DeployReport, MethodError>;

    /// Run a one-off command on the server and return its exit status. By default the
    /// method has none: `unsupported`.
    fn run(ctx: Context, settings: Vec<Answer>, request: RunRequest) -> Result<i32, MethodError> {
        let _ = (ctx, settings, request);
        Err(MethodError::Unsupported("this method has no one-off commands".into()))
    }

    /// Make the release `release` (none: the last good one before the current) live
    /// again. By default the method cannot: `unsupported`.
    fn rollback(ctx: Context, settings: Vec<Answer>, release: Option<String>) -> Result<DeployReport, MethodError> {
        let _ = (ctx, settings, release);
        Err(MethodError::Unsupported("this method cannot roll back".into()))
    }

    /// Undo at the provider what `setup` registered there; lines for the user. By
    /// default there is nothing to undo.
    fn remove(ctx: Context, settings: Vec<Answer>) -> Result<Vec<String>, MethodError> {
        let _ = (ctx, settings);
        Ok(vec![])
    }
}

impl<T: Method> exports::pier::deploy::method::Guest for T {
    fn describe() -> Description {
        T::describe()
    }

    fn choices(ctx: Context, field: String, answers: Vec<Answer>) -> Result<Vec<Choice>, MethodError> {
        T::choices(ctx, field, answers)
    }

    fn validate(ctx: Context, answers: Vec<Answer>) -> Result<String, MethodError> {
        T::validate(ctx, answers)
    }

    fn setup(ctx: Context, answers: Vec<Answer>) -> Result<SetupResult, MethodError> {
        T::setup(ctx, answers)
    }

    fn deploy(ctx: Context, settings: Vec<Answer>, build: BuildInfo) -> Result<DeployReport, MethodError> {
        T::deploy(ctx, settings, build)
    }

    fn run(ctx: Context, settings: Vec<Answer>, request: RunRequest) -> Result<i32, MethodError> {
        T::run(ctx, settings, request)
    }

    fn rollback(ctx: Context, settings: Vec<Answer>, release: Option<String>) -> Result<DeployReport, MethodError> {
        T::rollback(ctx, settings, release)
    }

    fn remove(ctx: Context, settings: Vec<Answer>) -> Result<Vec<String>, MethodError> {
        T::remove(ctx, settings)
    }
}

pub mod api;
pub mod log;
pub mod wait;

pub use wait::{poll, sleep};

/// The answer to `field`, if given and not empty.
pub fn answer<'a>(answers: &'a [Answer], field: &str) -> Option<&'a str> {
    answers.iter().find(|a| a.field == field).map(|a| a.value.trim()).filter(|v| !v.is_empty())
}

/// The answer to `field`, or an `invalid-answer` error saying it is required.
pub fn required<'a>(answers: &'a [Answer], field: &str, label: &str) -> Result<&'a str, MethodError> {
    answer(answers, field).ok_or_else(|| invalid(field, format!("{label} is required")))
}

/// A boolean answer (`true` / `false`), or `default` when not given.
pub fn flag(answers: &[Answer], field: &str, default: bool) -> Result<bool, MethodError> {
    match answer(answers, field) {
        None => Ok(default),
        Some("true" | "yes" | "1") => Ok(true),
        Some("false" | "no" | "0") => Ok(false),
        Some(other) => Err(invalid(field, format!("`{other}` is not true or false"))),
    }
}

/// An `invalid-answer` error about `field`.
pub fn invalid(field: &str, message: impl Into<String>) -> MethodError {
    MethodError::InvalidAnswer(FieldError { field: field.to_string(), message: message.into() })
}

/// Whether the secret `handle` is available in this call.
pub fn has_secret(handle: &str) -> bool {
    secrets::handles().iter().any(|h| h == handle)
}

/// The base URL of endpoint `id` in this call (no trailing `/`), or a `provider` error
/// naming the endpoint when the host resolved none (no source of it had a value).
pub fn endpoint<'a>(ctx: &'a Context, id: &str) -> Result<&'a str, MethodError> {
    ctx.endpoints
        .iter()
        .find(|e| e.id == id)
        .map(|e| e.url.as_str())
        .ok_or_else(|| MethodError::Provider(format!("no URL is configured for endpoint `{id}`")))
}

impl Field {
    /// A field with no default, not advanced.
    pub fn new(id: &str, label: &str, help: &str, kind: FieldKind, required: bool) -> Field {
        Field {
            id: id.into(),
            label: label.into(),
            help: help.into(),
            kind,
            required,
            default: None,
            advanced: false,
            example: None,
        }
    }

    /// The same field with a default answer.
    pub fn with_default(mut self, default: &str) -> Field {
        self.default = Some(default.into());
        self
    }

    /// The same field with an example of a valid answer.
    pub fn with_example(mut self, example: &str) -> Field {
        self.example = Some(example.into());
        self
    }

    /// The same field, asked only with `--set`.
    pub fn advanced(mut self) -> Field {
        self.advanced = true;
        self
    }
}

impl Answer {
    /// An answer or setting.
    pub fn new(field: &str, value: impl Into<String>) -> Answer {
        Answer { field: field.into(), value: value.into() }
    }
}

impl Permissions {
    /// Nothing at all: no endpoints, origins, programs, secret bindings, command support
    /// or streams.
    pub fn none() -> Permissions {
        Permissions {
            endpoints: vec![],
            origins: vec![],
            programs: vec![],
            secrets: vec![],
            commands: CommandSupport::none(),
            streams: vec![],
        }
    }
}

impl CommandSupport {
    /// No environment, rules, tools or native commands for deploy commands.
    pub fn none() -> CommandSupport {
        CommandSupport { env: vec![], rules: vec![], tools: vec![], native: vec![] }
    }
}

impl Program {
    /// Program `name`, allowed with arguments matching one of `patterns` (each a list of
    /// words: literal, `*` for one argument not starting with `-`, `**` for the rest),
    /// and no environment variables.
    pub fn new(name: &str, patterns: &[&[&str]]) -> Program {
        Program {
            name: name.into(),
            args: patterns.iter().map(|p| p.iter().map(|w| w.to_string()).collect()).collect(),
            env: vec![],
        }
    }

    /// The same program, allowed to be given the environment variables `names`.
    pub fn with_env(mut self, names: &[&str]) -> Program {
        self.env = names.iter().map(|n| n.to_string()).collect();
        self
    }
}

impl SecretBinding {
    /// Secret `secret` may be sent in header `name` of requests to endpoint `endpoint`,
    /// right after `prefix` (for example `Bearer `).
    pub fn header(secret: &str, endpoint: &str, name: &str, prefix: &str) -> SecretBinding {
        SecretBinding {
            secret: secret.into(),
            use_: SecretUse::Header(SecretHeader {
                endpoint: endpoint.into(),
                name: name.into(),
                prefix: prefix.into(),
            }),
        }
    }

    /// Key `secret` may be the SSH key of program `program`.
    pub fn ssh_key(secret: &str, program: &str) -> SecretBinding {
        SecretBinding { secret: secret.into(), use_: SecretUse::SshKey(program.into()) }
    }
}

impl NativeFlag {
    /// A flag of a native command, spelled as `names`.
    pub fn new(names: &[&str], means: FlagMeaning) -> NativeFlag {
        NativeFlag { names: names.iter().map(|n| n.to_string()).collect(), means }
    }
}

impl StreamGrant {
    /// TLS streams to `host` (a name, or `*.` and a domain) on `port`, or on any port
    /// when none. A wildcard host or an open port reaches only a `host:port` that one of
    /// the plugin's endpoints named in the same call.
    pub fn host(host: &str, port: Option<u16>) -> StreamGrant {
        StreamGrant { host: host.into(), port }
    }

    /// TLS streams to the host of endpoint `id`'s URL in force, on any port.
    pub fn endpoint(id: &str) -> StreamGrant {
        StreamGrant { host: format!("endpoint:{id}"), port: None }
    }
}
