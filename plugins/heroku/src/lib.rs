//! Pier's Heroku deployment method.
//!
//! Setup validates the API key against `GET /account`, lists the account's apps (every
//! page), and registers a freshly generated SSH key as the official CLI's `keys:add`
//! does. Deploys go through the Build API: the checkout is packed and uploaded by the
//! host, a build is created from it, its output streamed, and then the release is
//! polled, so that a failed release phase fails the deploy.
//!
//! The API base URL is the `api_url` setting, else `$HEROKU_HOST` (a value starting with
//! `http` is the URL, anything else a host name to prefix with `https://api.`), else
//! `https://api.heroku.com`, exactly as the Heroku CLI reads it. The host resolves it and
//! grants only that origin; when `$HEROKU_HOST` gave it at setup, the host stores it with
//! the server and uses it while the variable is not set.
//!
//! Deploy commands get an authenticated Heroku CLI (`HEROKU_API_KEY`, `HEROKU_APP`, and
//! `HEROKU_HOST` for a non-default API) and `--exit-code` on every `heroku run`: both are
//! declared in `permissions.commands` and applied by the host.

mod api;
mod deploy;
mod rollback;
mod run;

use pier_plugin_sdk::*;

/// Field ids.
pub const API_KEY: &str = "api_key";
pub const APP: &str = "app";
pub const REGISTER_KEY: &str = "register_ssh_key";
pub const API_URL: &str = "api_url";
/// How long a deploy waits for the new release's dynos to be up, in seconds.
pub const HEALTH_TIMEOUT: &str = "health_timeout";
/// The wait unless configured otherwise: `heroku ps:wait` has no limit; a deploy should.
pub const DEFAULT_HEALTH_TIMEOUT: u32 = 300;
/// Whether a deploy whose new dynos crash or never come up rolls back to the last good release.
pub const ROLLBACK_ON_FAILURE: &str = "rollback_on_failure";
/// The handle of the generated private key.
pub const SSH_KEY: &str = "ssh_key";
/// Where the app answers: Heroku's `web_url`, filled in by setup unless the user gives it.
pub const WEB_URL: &str = "web_url";
/// A path on the app that answers 2xx or 3xx once a release is healthy (`/health`).
pub const HEALTH_PATH: &str = "health_path";
/// Where Heroku's API is unless configured otherwise.
pub const DEFAULT_API: &str = "https://api.heroku.com";

struct Heroku;

impl Method for Heroku {
    fn describe() -> Description {
        Description {
            name: "heroku".into(),
            title: "Heroku".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Deploys a checkout to a Heroku app through the Build API, waits for the release \
                      phase and the new dynos, runs `heroku run` one-off dynos itself (no Heroku CLI \
                      needed), rolls back, and gives other deploy commands an authenticated Heroku CLI."
                .into(),
            fields: vec![
                Field::new(
                    API_KEY,
                    "Heroku API key",
                    "Run `heroku auth:token`, or copy it from https://dashboard.heroku.com/account. \
                     In CI pass it as --secret api_key=env:HEROKU_API_KEY.",
                    FieldKind::Secret,
                    true,
                ),
                Field::new(APP, "App", "The Heroku app to deploy to.", FieldKind::Choice, true),
                Field::new(
                    REGISTER_KEY,
                    "Register an SSH key",
                    "Generate an SSH key pair, keep the private key encrypted, and add the public key \
                     to the Heroku account (used by `heroku run` in private spaces).",
                    FieldKind::Boolean,
                    false,
                )
                .with_default("true"),
                Field::new(
                    API_URL,
                    "Heroku API URL",
                    "Only for a non-default API: overrides $HEROKU_HOST and https://api.heroku.com.",
                    FieldKind::Text,
                    false,
                )
                .with_example("https://api.heroku.com")
                .advanced(),
                Field::new(
                    HEALTH_TIMEOUT,
                    "Seconds to wait for the new dynos",
                    "After a release, a deploy waits this long for every dyno of the new release to be up \
                     (a crashed one fails the deploy); 0 skips the wait.",
                    FieldKind::Text,
                    false,
                )
                .with_default(&DEFAULT_HEALTH_TIMEOUT.to_string())
                .advanced(),
                Field::new(
                    HEALTH_PATH,
                    "Health check path",
                    "After the new dynos are up, the deploy requests this path of the app's URL until it answers \
                     2xx or 3xx, within health_timeout (for example /health); empty: no check.",
                    FieldKind::Text,
                    false,
                )
                .with_example("/health")
                .advanced(),
                Field::new(
                    WEB_URL,
                    "App URL",
                    "Where the app answers; setup fills it in from Heroku. The health check requests it.",
                    FieldKind::Text,
                    false,
                )
                .with_example("https://my-app.herokuapp.com")
                .advanced(),
                Field::new(
                    ROLLBACK_ON_FAILURE,
                    "Roll back when the new dynos fail",
                    "When the dynos of a new release crash or are not up in time, make the last good release live \
                     again (the deploy still fails). Add-ons and config vars are not rolled back.",
                    FieldKind::Boolean,
                    false,
                )
                .with_default("false")
                .advanced(),
            ],
            permissions: Permissions {
                endpoints: vec![
                    Endpoint {
                        id: "api".into(),
                        sources: vec![
                            EndpointSource::Field(API_URL.into()),
                            EndpointSource::Env(EnvEndpoint {
                                name: "HEROKU_HOST".into(),
                                bare_host: "https://api.{}".into(),
                            }),
                            EndpointSource::Fixed(DEFAULT_API.into()),
                        ],
                    },
                    // The app itself, for the health check: only its own origin.
                    Endpoint { id: "web".into(), sources: vec![EndpointSource::Field(WEB_URL.into())] },
                ],
                // Where Heroku's Build API sends uploads (path-style source-blob URLs on
                // S3) and output streams. Exact origins only: `*.s3.amazonaws.com` would
                // reach every bucket on S3.
                origins: vec![
                    "https://s3-external-1.amazonaws.com".into(),
                    "https://build-output.heroku.com".into(),
                    "https://release-output.heroku.com".into(),
                ],
                programs: vec![],
                // The API key goes only to the API, as `Authorization: Bearer KEY` (`api::Client`).
                secrets: vec![SecretBinding::header(API_KEY, "api", "Authorization", "Bearer ")],
                commands: CommandSupport {
                    env: vec![
                        CommandEnv { name: "HEROKU_API_KEY".into(), value: CommandEnvValue::Secret(API_KEY.into()) },
                        CommandEnv { name: "HEROKU_APP".into(), value: CommandEnvValue::Setting(APP.into()) },
                        CommandEnv {
                            name: "HEROKU_HOST".into(),
                            value: CommandEnvValue::EndpointOverride("api".into()),
                        },
                    ],
                    rules: vec![CommandRule {
                        prefix: vec!["heroku".into(), "run".into()],
                        flag: "--exit-code".into(),
                        unless: vec!["-x".into(), "--exit-code".into()],
                        reason: "so that a failure in the dyno fails the deploy".into(),
                    }],
                    tools: vec![Tool { program: "heroku".into(), install_hint: "npm install -g heroku".into() }],
                    // `heroku run` with these flags runs through `run` below: no CLI needed.
                    native: vec![NativeCommand {
                        prefix: vec!["heroku".into(), "run".into()],
                        options: vec![
                            NativeFlag::new(&["--size", "-s"], FlagMeaning::Size),
                            NativeFlag::new(&["--type"], FlagMeaning::ProcessType),
                            NativeFlag::new(&["--env", "-e"], FlagMeaning::Env),
                            NativeFlag::new(&["--exit-code", "-x"], FlagMeaning::Ignored),
                            NativeFlag::new(&["--no-tty"], FlagMeaning::NoTty),
                            NativeFlag::new(&["--no-notify"], FlagMeaning::Ignored),
                            NativeFlag::new(&["--app", "-a"], FlagMeaning::Setting(APP.into())),
                        ],
                    }],
                },
                // One-off dynos' rendezvous: on the API's own host (a test fake) or a
                // Heroku host, only where the API's answer pointed.
                streams: vec![StreamGrant::endpoint("api"), StreamGrant::host("*.heroku.com", None)],
            },
        }
    }

    fn choices(ctx: Context, field: String, _answers: Vec<Answer>) -> Result<Vec<Choice>, MethodError> {
        if field != APP {
            return Err(MethodError::Unsupported(format!("`{field}` is not a choice field")));
        }
        let client = api::Client::new(&ctx)?;
        let apps = client.apps()?;
        if apps.is_empty() {
            return Err(invalid(APP, "this account has no apps: create one with `heroku create`, then run this again"));
        }
        Ok(apps.into_iter().map(|name| Choice { label: name.clone(), value: name }).collect())
    }

    fn validate(ctx: Context, answers: Vec<Answer>) -> Result<String, MethodError> {
        // Answers first, then the provider: a missing or malformed answer never costs a request.
        let client = api::Client::new(&ctx)?;
        let app = required(&answers, APP, "the app")?;
        flag(&answers, REGISTER_KEY, true)?;
        flag(&answers, ROLLBACK_ON_FAILURE, false)?;
        deploy::health_timeout(&answers)?;
        deploy::health_path(&answers)?;
        let account = client.account()?;
        let app = client.app(app)?;
        Ok(format!("authenticated as {}; app {} found", account.email, app.name))
    }

    fn setup(ctx: Context, answers: Vec<Answer>) -> Result<SetupResult, MethodError> {
        let client = api::Client::new(&ctx)?;
        let app_name = required(&answers, APP, "the app")?;
        let register = flag(&answers, REGISTER_KEY, true)?;
        let account = client.account()?;
        let app = client.app(app_name)?;
        let mut settings = vec![Answer::new(APP, app.name.clone())];
        if let Some(url) = answer(&answers, API_URL) {
            settings.push(Answer::new(API_URL, url));
        }
        if answer(&answers, HEALTH_TIMEOUT).is_some() {
            settings.push(Answer::new(HEALTH_TIMEOUT, deploy::health_timeout(&answers)?.as_secs().to_string()));
        }
        if answer(&answers, ROLLBACK_ON_FAILURE).is_some() {
            settings.push(Answer::new(ROLLBACK_ON_FAILURE, flag(&answers, ROLLBACK_ON_FAILURE, false)?.to_string()));
        }
        if let Some(path) = answer(&answers, HEALTH_PATH) {
            settings.push(Answer::new(HEALTH_PATH, deploy::health_path(&answers)?.unwrap_or(path).to_string()));
        }
        // The user's answer, else Heroku's.
        if let Some(web_url) = answer(&answers, WEB_URL).map(str::to_string).or(app.web_url.clone()) {
            settings.push(Answer::new(WEB_URL, web_url));
        }
        let mut notes = Vec::new();
        if register {
            let comment = format!("pier deploy key for {}", app.name);
            let key = keys::generate(SSH_KEY, &comment)
                .map_err(|e| MethodError::Provider(format!("could not generate an SSH key: {e:?}")))?;
            client.add_key(&key.public_key)?;
            notes.push(format!("registered SSH key {} with the Heroku account {}", key.fingerprint, account.email));
            settings.push(Answer::new(REGISTER_KEY, "true"));
        } else {
            settings.push(Answer::new(REGISTER_KEY, "false"));
        }
        Ok(SetupResult { settings, notes })
    }

    fn deploy(ctx: Context, settings: Vec<Answer>, build: BuildInfo) -> Result<DeployReport, MethodError> {
        deploy::deploy(&ctx, &settings, &build)
    }

    fn run(ctx: Context, settings: Vec<Answer>, request: RunRequest) -> Result<i32, MethodError> {
        run::run(&ctx, &settings, &request)
    }

    fn rollback(ctx: Context, settings: Vec<Answer>, release: Option<String>) -> Result<DeployReport, MethodError> {
        rollback::rollback(&ctx, &settings, release)
    }

    fn remove(ctx: Context, settings: Vec<Answer>) -> Result<Vec<String>, MethodError> {
        rollback::remove(&ctx, &settings)
    }
}

export_method!(Heroku);
