// Shared by the test plugins built against the frozen pier:deploy@0.1.0, which cannot use
// the SDK (it targets the current contract). The including file generates the bindings
// first:
//
//     wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "pier:deploy/plugin" });
//
// Included with `include!`.

#[allow(unused_imports)]
use exports::pier::deploy::method::{Guest, SetupResult};
#[allow(unused_imports)]
use pier::deploy::types::*;
#[allow(unused_imports)]
use pier::deploy::{events, exec, http, secrets, workspace};

#[allow(dead_code)]
fn describe_with(name: &str, permissions: Permissions, fields: Vec<Field>) -> Description {
    Description {
        name: name.into(),
        title: format!("Test plugin {name}"),
        version: "0.1.0".into(),
        summary: "A plugin for Pier's own tests, built against pier:deploy@0.1.0.".into(),
        fields,
        permissions,
    }
}

/// A field with no default, not advanced.
#[allow(dead_code)]
fn field(id: &str, label: &str, kind: FieldKind, required: bool) -> Field {
    Field {
        id: id.into(),
        label: label.into(),
        help: format!("{label}, for the test plugin."),
        kind,
        required,
        default: None,
        advanced: false,
        example: None,
    }
}

/// Endpoint `api`, from the setting `api_url`.
#[allow(dead_code)]
fn api_endpoint() -> Endpoint {
    Endpoint { id: "api".into(), sources: vec![EndpointSource::Field("api_url".into())] }
}

#[allow(dead_code)]
fn unused(export: &str) -> MethodError {
    MethodError::Unsupported(format!("{export} is not used by this test plugin"))
}

#[allow(dead_code)]
fn invalid(field: &str, message: impl Into<String>) -> MethodError {
    MethodError::InvalidAnswer(FieldError { field: field.into(), message: message.into() })
}

/// A setting, trimmed, or the empty string.
#[allow(dead_code)]
fn setting<'a>(settings: &'a [Answer], field: &str) -> &'a str {
    settings.iter().find(|a| a.field == field).map(|a| a.value.trim()).unwrap_or_default()
}

/// The URL of endpoint `id` in this call.
#[allow(dead_code)]
fn endpoint<'a>(ctx: &'a Context, id: &str) -> Result<&'a str, MethodError> {
    ctx.endpoints
        .iter()
        .find(|e| e.id == id)
        .map(|e| e.url.as_str())
        .ok_or_else(|| MethodError::Provider(format!("no URL is configured for endpoint `{id}`")))
}

/// Whether the secret `handle` is available in this call.
#[allow(dead_code)]
fn has_secret(handle: &str) -> bool {
    secrets::handles().iter().any(|h| h == handle)
}

/// A deploy report of one line.
#[allow(dead_code)]
fn report(summary: impl Into<String>) -> Result<DeployReport, MethodError> {
    Ok(DeployReport { summary: one_line(&summary.into()), url: None })
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

/// How a program run ended, as one line.
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

/// An HTTP error as one line.
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
fn http_outcome(result: &Result<http::Response, http::HttpError>) -> String {
    match result {
        Ok(response) => ok(response.status, &String::from_utf8_lossy(&response.body)),
        Err(e) => http_error(e),
    }
}

/// A request with `method` to `url`, with `headers`.
#[allow(dead_code)]
fn request(method: http::Method, url: &str, headers: Vec<http::Header>, body: Option<Vec<u8>>) -> http::Request {
    http::Request { method, url: url.into(), headers, body, timeout_ms: Some(10_000) }
}

/// Header `name`: `prefix`, then the secret `handle`.
#[allow(dead_code)]
fn secret_header(name: &str, prefix: &str, handle: &str) -> http::Header {
    http::Header {
        name: name.into(),
        value: http::HeaderValue::Secret(http::SecretRef {
            handle: handle.into(),
            prefix: prefix.into(),
            suffix: String::new(),
        }),
    }
}

/// A plain header.
#[allow(dead_code)]
fn text_header(name: &str, value: &str) -> http::Header {
    http::Header { name: name.into(), value: http::HeaderValue::Text(value.into()) }
}

/// `commands`, unchanged but for `--exit-code` inserted after a leading `heroku run` that
/// lacks it, as 0.1.0 methods did to keep exit codes honest.
#[allow(dead_code)]
fn with_exit_code(commands: Vec<String>) -> Vec<String> {
    commands
        .into_iter()
        .map(|command| match command.strip_prefix("heroku run") {
            Some(rest)
                if (rest.is_empty() || rest.starts_with(' '))
                    && !rest.split_whitespace().any(|w| w == "--exit-code" || w == "-x") =>
            {
                format!("heroku run --exit-code{rest}")
            }
            _ => command,
        })
        .collect()
}
