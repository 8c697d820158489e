//! Sends requests whose addresses the host must check: to its endpoint `api` (from the
//! setting `api_url`, else its fixed default `http://127.0.0.1:1`), to the URL in its
//! `target` setting (its declared extra origin is `http://127.0.0.1:2`), with more headers
//! than allowed or one huge header, through more response streams than allowed, and as a
//! workspace upload. Its `mode` setting says which; the deploy summary says what happened,
//! as `ok STATUS[: BODY]`, `denied: ...`, `invalid-request: ...`, `connection: ...` and so on.
//! In mode `swap-endpoint` its `setup` stores the `target` answer as `api_url`, pointing
//! the endpoint where the user did not.
use pier_plugin_sdk::*;
include!("common.rs");

struct Plugin;

fn get(url: &str) -> api::Request {
    api::Request::get(url).timeout_ms(10_000)
}

fn send(request: api::Request) -> String {
    http_outcome(&request.send())
}

/// Opens streams to `url` until the host refuses one (at most `limit + 1`), then drops one
/// and opens another.
fn streams(url: &str, limit: usize) -> String {
    let mut open = Vec::new();
    let mut refused = String::from("none refused");
    for _ in 0..=limit {
        match get(url).open() {
            Ok(stream) => open.push(stream),
            Err(e) => {
                refused = http_error(&e);
                break;
            }
        }
    }
    let opened = open.len();
    open.pop();
    let again = match get(url).open() {
        Ok(stream) => format!("ok {}", stream.status()),
        Err(e) => http_error(&e),
    };
    format!("opened {opened}; then {refused}; after dropping one: {again}")
}

impl Method for Plugin {
    fn describe() -> Description {
        let api = Endpoint {
            id: "api".into(),
            sources: vec![EndpointSource::Field("api_url".into()), EndpointSource::Fixed("http://127.0.0.1:1".into())],
        };
        let permissions =
            Permissions { endpoints: vec![api], origins: vec!["http://127.0.0.1:2".into()], ..Permissions::none() };
        let fields = vec![
            Field::new("api_url", "API URL", "Where the provider's API is.", FieldKind::Text, false),
            mode_field(),
            Field::new("target", "Target", "The URL some modes request.", FieldKind::Text, false),
        ];
        describe_with("addresses", permissions, fields)
    }

    fn deploy(ctx: Context, settings: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        let base = endpoint(&ctx, "api")?.to_string();
        let target = setting(&settings, "target");
        let summary = match setting(&settings, "mode") {
            "get" => send(get(&format!("{base}/ping"))),
            "target" => send(get(target)),
            "headers" => {
                let mut request = get(&format!("{base}/headers"));
                for i in 0..30_000 {
                    request = request.header(&format!("x-h{i}"), "v");
                }
                format!("{} | {}", send(request), send(get(&format!("{base}/after"))))
            }
            "big-header" => {
                let request = get(&format!("{base}/big")).header("x-big", &"a".repeat(1 << 20));
                format!("{} | {}", send(request), send(get(&format!("{base}/after"))))
            }
            "streams" => streams(&format!("{base}/stream"), 16),
            "upload" => match workspace::pack() {
                Ok(blob) => match workspace::upload(&blob, target, &[]) {
                    Ok(status) => ok(status, ""),
                    Err(e) => workspace_error(&e),
                },
                Err(e) => workspace_error(&e),
            },
            other => return Err(invalid("mode", format!("unknown mode `{other}`"))),
        };
        report(summary)
    }

    fn choices(_: Context, field: String, _: Vec<Answer>) -> Result<Vec<Choice>, MethodError> {
        Err(MethodError::Unsupported(format!("`{field}` is not a choice field")))
    }

    fn validate(_: Context, _: Vec<Answer>) -> Result<String, MethodError> {
        Ok("nothing to check".into())
    }

    fn setup(_: Context, answers: Vec<Answer>) -> Result<SetupResult, MethodError> {
        let mut settings = answers.clone();
        if setting(&answers, "mode") == "swap-endpoint" {
            let target = setting(&answers, "target").to_string();
            settings.retain(|a| a.field != "api_url");
            settings.push(Answer::new("api_url", target));
        }
        Ok(SetupResult { settings, notes: vec![] })
    }
}

export_method!(Plugin);
