// Shared by the test plugins built with the SDK: a describe with a given name and
// permissions, the exports a test plugin does not use, and one-line outcomes for plugins
// that report what the host did. Included with `include!`.

#[allow(dead_code)]
fn describe_with(name: &str, permissions: Permissions, fields: Vec<Field>) -> Description {
    Description {
        name: name.into(),
        title: format!("Test plugin {name}"),
        version: "0.1.0".into(),
        summary: "A plugin for Pier's own tests.".into(),
        fields,
        permissions,
    }
}

#[allow(dead_code)]
fn api_endpoint() -> Endpoint {
    Endpoint { id: "api".into(), sources: vec![EndpointSource::Field("api_url".into())] }
}

#[allow(dead_code)]
fn api_url_field() -> Field {
    Field::new("api_url", "API URL", "Where the provider's API is.", FieldKind::Text, true)
}

#[allow(dead_code)]
fn api_key_field() -> Field {
    Field::new("api_key", "API key", "The provider's API key.", FieldKind::Secret, true)
}

#[allow(dead_code)]
fn mode_field() -> Field {
    Field::new("mode", "Mode", "What the test plugin does when it deploys.", FieldKind::Text, false)
}

#[allow(dead_code)]
fn unused(export: &str) -> MethodError {
    MethodError::Unsupported(format!("{export} is not used by this test plugin"))
}

/// A setting, or the empty string.
#[allow(dead_code)]
fn setting<'a>(settings: &'a [Answer], field: &str) -> &'a str {
    answer(settings, field).unwrap_or_default()
}

/// A deploy report of one line.
#[allow(dead_code)]
fn report(summary: impl Into<String>) -> Result<DeployReport, MethodError> {
    Ok(DeployReport { release: None, summary: one_line(&summary.into()), url: None })
}

/// `text` on one line: trimmed, line breaks as spaces.
#[allow(dead_code)]
fn one_line(text: &str) -> String {
    text.trim().lines().map(str::trim).collect::<Vec<_>>().join(" ")
}

/// `ok CODE` or `ok CODE: TEXT`.
#[allow(dead_code)]
fn ok(code: impl std::fmt::Display, text: &str) -> String {
    let text = one_line(text);
    if text.is_empty() { format!("ok {code}") } else { format!("ok {code}: {text}") }
}

/// How a program run ended, as one line: `ok CODE[: STDOUT]`, `denied: ...`,
/// `not-found: ...`, `timeout` or `failed: ...`.
#[allow(dead_code)]
fn exec_outcome(result: Result<exec::Exit, exec::ExecError>) -> String {
    match result {
        Ok(exit) => ok(exit.code, &exit.stdout),
        Err(exec::ExecError::Denied(m)) => format!("denied: {m}"),
        Err(exec::ExecError::NotFound(m)) => format!("not-found: {m}"),
        Err(exec::ExecError::Timeout) => "timeout".into(),
        Err(exec::ExecError::Failed(m)) => format!("failed: {m}"),
    }
}

/// An HTTP error as one line: `denied: ...`, `invalid-request: ...`, `timeout`,
/// `connection: ...` or `too-large: N`.
#[allow(dead_code)]
fn http_error(error: &http::HttpError) -> String {
    match error {
        http::HttpError::Denied(m) => format!("denied: {m}"),
        http::HttpError::InvalidRequest(m) => format!("invalid-request: {m}"),
        http::HttpError::Timeout => "timeout".into(),
        http::HttpError::Connection(m) => format!("connection: {m}"),
        http::HttpError::TooLarge(n) => format!("too-large: {n}"),
    }
}

/// How a request ended, as one line: `ok STATUS[: BODY]` or the error.
#[allow(dead_code)]
fn http_outcome(result: &Result<api::Response, http::HttpError>) -> String {
    match result {
        Ok(response) => ok(response.status(), &response.text()),
        Err(e) => http_error(e),
    }
}

/// A workspace error as one line.
#[allow(dead_code)]
fn workspace_error(error: &workspace::WorkspaceError) -> String {
    match error {
        workspace::WorkspaceError::Unavailable => "unavailable".into(),
        workspace::WorkspaceError::TooLarge(n) => format!("too-large: {n}"),
        workspace::WorkspaceError::Io(m) => format!("io: {m}"),
        workspace::WorkspaceError::Upload(e) => http_error(e),
    }
}

/// Implements every export but `describe` and `deploy` as unsupported.
#[macro_export]
macro_rules! unused_exports {
    () => {
        fn choices(_: Context, _: String, _: Vec<Answer>) -> Result<Vec<Choice>, MethodError> {
            Err(unused("choices"))
        }
        fn validate(_: Context, _: Vec<Answer>) -> Result<String, MethodError> {
            Err(unused("validate"))
        }
        fn setup(_: Context, _: Vec<Answer>) -> Result<SetupResult, MethodError> {
            Err(unused("setup"))
        }
    };
}

/// Implements `choices` as unsupported, `validate` as accepting anything and `setup` as
/// storing the answers as they are: enough for `pier server add`.
#[macro_export]
macro_rules! accepting_exports {
    () => {
        fn choices(_: Context, field: String, _: Vec<Answer>) -> Result<Vec<Choice>, MethodError> {
            Err(MethodError::Unsupported(format!("`{field}` is not a choice field")))
        }
        fn validate(_: Context, _: Vec<Answer>) -> Result<String, MethodError> {
            Ok("nothing to check".into())
        }
        fn setup(_: Context, answers: Vec<Answer>) -> Result<SetupResult, MethodError> {
            Ok(SetupResult { settings: answers, notes: vec![] })
        }
    };
}
