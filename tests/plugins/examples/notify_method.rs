// A small webhook method, included by the `notify*` and `conf-*` test plugins. It follows
// the contract unless the including file's `FLAW` says otherwise, so that the conformance
// runner can be shown to catch each flaw and nothing else.

use pier_plugin_sdk::*;

/// Where [`Flaw::ReportsOut`] reports: `.invalid` never resolves (RFC 6761).
const COLLECTOR: &str = "https://collector.pier.invalid";

/// The one way a variant breaks the contract.
#[derive(PartialEq, Eq)]
#[allow(dead_code)]
enum Flaw {
    /// Follows the contract.
    None,
    /// Reports a deploy as passed when the provider failed it.
    SwallowsFailure,
    /// Accepts missing answers.
    SloppyForm,
    /// Answers the same setup differently each time.
    Stateful,
    /// Declares `true` with no environment, then runs it with `X=1`.
    UndeclaredEnv,
    /// Declares `true --ok`, then runs `true --other`.
    UndeclaredArgs,
    /// Binds the token to `Authorization: Bearer `, then sends it in `X-Api-Key`.
    UnboundHeader,
    /// Puts a terminal control sequence in its title.
    ControlsInTitle,
    /// Describes itself in more than 1 MiB of text: a URL help of 2 MiB.
    BigDescribe,
    /// Declares (and runs) a program whose name is shell: [`BAD_PROGRAM`].
    BadProgram,
    /// Not a flaw: also reports each deploy to its declared extra origin [`COLLECTOR`],
    /// a name that never resolves, and traps unless an HTTP answer comes back.
    ReportsOut,
}

/// The program `BadProgram` declares: run by a shell, it would create
/// `/tmp/pier-conformance-pwned`.
#[allow(dead_code)]
const BAD_PROGRAM: &str = "x$(touch${IFS}/tmp/pier-conformance-pwned)";

/// The help of the `url` field: 2 MiB of text for `BigDescribe`.
fn url_help() -> String {
    if FLAW == Flaw::BigDescribe { "Where to POST. ".repeat((2 << 20) / 15 + 1) } else { "Where to POST.".into() }
}

struct Notify;

fn check(answers: &[Answer]) -> Result<String, MethodError> {
    if FLAW == Flaw::SloppyForm {
        return Ok(answer(answers, "url").unwrap_or_default().to_string());
    }
    let url = required(answers, "url", "the URL")?;
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(invalid("url", format!("`{url}` is not an http(s) URL")));
    }
    flag(answers, "verbose", false)?;
    Ok(url.to_string())
}

/// The program the flawed variants declare, if any.
fn programs() -> Vec<Program> {
    match FLAW {
        Flaw::UndeclaredEnv => vec![Program::new("true", &[&["**"]])],
        Flaw::UndeclaredArgs => vec![Program::new("true", &[&["--ok"]])],
        Flaw::BadProgram => vec![Program::new(BAD_PROGRAM, &[&[]])],
        _ => vec![],
    }
}

/// The name of the program the flawed variants run.
fn program() -> &'static str {
    if FLAW == Flaw::BadProgram { BAD_PROGRAM } else { "true" }
}

fn run_true(args: &[&str], env: Vec<EnvVar>) -> Result<exec::Exit, exec::ExecError> {
    exec::run(&exec::Command {
        program: program().into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env,
        in_workspace: false,
        ssh_key: None,
        capture_stdout: false,
        timeout_ms: Some(30_000),
    })
}

/// Runs the declared program, if any, the flawed way first; where the host refuses that,
/// the declared way, so that the flaw is the only difference from `notify`. A non-zero
/// exit fails the deploy.
fn run_program() -> Result<(), MethodError> {
    let (flawed, declared): (Result<exec::Exit, exec::ExecError>, &[&str]) = match FLAW {
        Flaw::UndeclaredEnv => {
            let x = EnvVar { name: "X".into(), value: EnvValue::Text("1".into()) };
            (run_true(&[], vec![x]), &[])
        }
        Flaw::UndeclaredArgs => (run_true(&["--other"], vec![]), &["--ok"]),
        Flaw::BadProgram => (run_true(&[], vec![]), &[]),
        _ => return Ok(()),
    };
    let exit = match flawed {
        Err(exec::ExecError::Denied(_)) => run_true(declared, vec![]),
        other => other,
    }
    .map_err(|e| MethodError::Provider(format!("could not run `{}`: {e:?}", program())))?;
    if exit.code != 0 {
        return Err(MethodError::DeployFailed(DeployFailure {
            reason: format!("`{}` exited with {}", program(), exit.code),
            tail: exit.tail,
        }));
    }
    Ok(())
}

impl Method for Notify {
    fn describe() -> Description {
        Description {
            name: "notify".into(),
            title: if FLAW == Flaw::ControlsInTitle { "Notify\u{1b}[2K".into() } else { "Notify".into() },
            version: "0.1.0".into(),
            summary: "POSTs each deploy to a URL.".into(),
            fields: vec![
                Field::new("url", "URL", &url_help(), FieldKind::Text, true),
                Field::new("token", "Token", "Sent as a bearer token.", FieldKind::Secret, false),
                Field::new("verbose", "Verbose", "Log the answer.", FieldKind::Boolean, false).with_default("false"),
            ],
            permissions: Permissions {
                endpoints: vec![Endpoint { id: "hook".into(), sources: vec![EndpointSource::Field("url".into())] }],
                programs: programs(),
                secrets: vec![SecretBinding::header("token", "hook", "Authorization", "Bearer ")],
                origins: if FLAW == Flaw::ReportsOut { vec![COLLECTOR.into()] } else { vec![] },
                ..Permissions::none()
            },
        }
    }

    fn choices(_: Context, field: String, _: Vec<Answer>) -> Result<Vec<Choice>, MethodError> {
        Err(MethodError::Unsupported(format!("`{field}` is not a choice field")))
    }

    fn validate(_: Context, answers: Vec<Answer>) -> Result<String, MethodError> {
        check(&answers).map(|url| format!("will notify {url}"))
    }

    fn setup(_: Context, answers: Vec<Answer>) -> Result<SetupResult, MethodError> {
        let url = check(&answers)?;
        let mut settings = vec![Answer::new("url", url)];
        if FLAW == Flaw::Stateful {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            settings.push(Answer::new("nonce", now.as_nanos().to_string()));
        }
        Ok(SetupResult { settings, notes: vec![] })
    }

    fn deploy(ctx: Context, _: Vec<Answer>, build: BuildInfo) -> Result<DeployReport, MethodError> {
        let hook = endpoint(&ctx, "hook")?;
        if FLAW == Flaw::ReportsOut {
            // First, so that nothing else failing first can hide an unreached collector.
            let sent = api::Request::post(&format!("{COLLECTOR}/report")).send();
            if let Err(e) = sent {
                panic!("the collector was not reached: {}", api::describe_error(&e));
            }
        }
        run_program()?;
        let request =
            api::Request::post(hook).json(&serde_json::json!({ "commit": build.commit, "branch": build.branch }));
        let bearer = |request: api::Request| if has_secret("token") { request.bearer("token") } else { request };
        let sent = if FLAW == Flaw::UnboundHeader && has_secret("token") {
            // The flawed way first; where the host refuses it, the bound way.
            match request.clone().secret_header("X-Api-Key", "", "token", "").send() {
                Err(http::HttpError::Denied(_)) => bearer(request).send(),
                other => other,
            }
        } else {
            bearer(request).send()
        };
        let response = sent.map_err(|e| MethodError::Provider(api::describe_error(&e)))?;
        if !response.ok() && FLAW != Flaw::SwallowsFailure {
            return Err(MethodError::DeployFailed(DeployFailure {
                reason: format!("the hook answered HTTP {}", response.status()),
                tail: response.text().lines().take(5).map(String::from).collect(),
            }));
        }
        Ok(DeployReport { release: None, summary: format!("notified (HTTP {})", response.status()), url: None })
    }
}

export_method!(Notify);
