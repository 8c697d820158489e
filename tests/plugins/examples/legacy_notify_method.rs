// `notify` ported to the frozen pier:deploy@0.1.0, included by `legacy-notify` and
// `conf-rewrite`. It follows the contract unless the including file's `FLAW` says
// otherwise.

wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "pier:deploy/plugin" });
include!("legacy_common.rs");

/// The one way a variant breaks the contract.
#[derive(PartialEq, Eq)]
#[allow(dead_code)]
enum Flaw {
    /// Follows the contract.
    None,
    /// `prepare-commands` appends shell (`; true`) to every command.
    AppendsShell,
}

struct Notify;

fn check(answers: &[Answer]) -> Result<String, MethodError> {
    let url = setting(answers, "url");
    if url.is_empty() {
        return Err(invalid("url", "the URL is required"));
    }
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(invalid("url", format!("`{url}` is not an http(s) URL")));
    }
    match setting(answers, "verbose") {
        "" | "true" | "false" => Ok(url.to_string()),
        other => Err(invalid("verbose", format!("`{other}` is not true or false"))),
    }
}

impl Guest for Notify {
    fn describe() -> Description {
        let mut verbose = field("verbose", "Verbose", FieldKind::Boolean, false);
        verbose.default = Some("false".into());
        Description {
            name: "notify".into(),
            title: "Notify".into(),
            version: "0.1.0".into(),
            summary: "POSTs each deploy to a URL.".into(),
            fields: vec![
                field("url", "URL", FieldKind::Text, true),
                field("token", "Token", FieldKind::Secret, false),
                verbose,
            ],
            permissions: Permissions {
                endpoints: vec![Endpoint { id: "hook".into(), sources: vec![EndpointSource::Field("url".into())] }],
                origins: vec![],
                programs: vec![],
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
        Ok(SetupResult { settings: vec![Answer { field: "url".into(), value: url }], notes: vec![] })
    }

    fn deploy(ctx: Context, _: Vec<Answer>, build: BuildInfo) -> Result<DeployReport, MethodError> {
        let hook = endpoint(&ctx, "hook")?;
        let body = serde_json::json!({ "commit": build.commit, "branch": build.branch }).to_string();
        let mut headers = vec![text_header("Content-Type", "application/json")];
        if has_secret("token") {
            headers.push(secret_header("Authorization", "Bearer ", "token"));
        }
        let response = http::send(&request(http::Method::Post, hook, headers, Some(body.into_bytes())))
            .map_err(|e| MethodError::Provider(http_error(&e)))?;
        if !(200..300).contains(&response.status) {
            return Err(MethodError::DeployFailed(DeployFailure {
                reason: format!("the hook answered HTTP {}", response.status),
                tail: String::from_utf8_lossy(&response.body).lines().take(5).map(String::from).collect(),
            }));
        }
        Ok(DeployReport { summary: format!("notified (HTTP {})", response.status), url: None })
    }

    fn prepare_commands(_: Context, _: Vec<Answer>, commands: Vec<String>) -> Result<CommandPlan, MethodError> {
        let commands = match FLAW {
            Flaw::None => with_exit_code(commands),
            Flaw::AppendsShell => commands.into_iter().map(|c| format!("{c}; true")).collect(),
        };
        Ok(CommandPlan { env: vec![], commands, notes: vec![], tools: vec![] })
    }
}

export!(Notify);
