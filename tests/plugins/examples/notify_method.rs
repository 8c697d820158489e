// A small webhook method, included by the `notify*` test plugins. It follows the contract
// unless the including file's `FLAW` says otherwise, so that the conformance runner can
// be shown to catch each flaw and nothing else.

use pier_plugin_sdk::*;

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

impl Method for Notify {
    fn describe() -> Description {
        Description {
            name: "notify".into(),
            title: "Notify".into(),
            version: "0.1.0".into(),
            summary: "POSTs each deploy to a URL.".into(),
            fields: vec![
                Field::new("url", "URL", "Where to POST.", FieldKind::Text, true),
                Field::new("token", "Token", "Sent as a bearer token.", FieldKind::Secret, false),
                Field::new("verbose", "Verbose", "Log the answer.", FieldKind::Boolean, false).with_default("false"),
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
        let mut settings = vec![Answer::new("url", url)];
        if FLAW == Flaw::Stateful {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            settings.push(Answer::new("nonce", now.as_nanos().to_string()));
        }
        Ok(SetupResult { settings, notes: vec![] })
    }

    fn deploy(ctx: Context, _: Vec<Answer>, build: BuildInfo) -> Result<DeployReport, MethodError> {
        let hook = endpoint(&ctx, "hook")?;
        let mut request = api::Request::post(hook).json(&serde_json::json!({ "commit": build.commit, "branch": build.branch }));
        if has_secret("token") {
            request = request.bearer("token");
        }
        let response = request.send().map_err(|e| MethodError::Provider(api::describe_error(&e)))?;
        if !response.ok() && FLAW != Flaw::SwallowsFailure {
            return Err(MethodError::DeployFailed(DeployFailure {
                reason: format!("the hook answered HTTP {}", response.status()),
                tail: response.text().lines().take(5).map(String::from).collect(),
            }));
        }
        Ok(DeployReport { summary: format!("notified (HTTP {})", response.status()), url: None })
    }

    fn prepare_commands(_: Context, _: Vec<Answer>, commands: Vec<String>) -> Result<CommandPlan, MethodError> {
        Ok(CommandPlan { env: vec![], commands, notes: vec![], tools: vec![] })
    }
}

export_method!(Notify);
