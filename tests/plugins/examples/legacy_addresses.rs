//! `addresses` built against the frozen pier:deploy@0.1.0: requests to its endpoint `api`
//! (from the setting `api_url`), to the URL in its `target` setting (its declared extra
//! origin is `http://127.0.0.1:2`), and through more response streams than allowed. Its
//! `mode` setting says which; the deploy summary says what happened.
wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "pier:deploy/plugin" });
include!("legacy_common.rs");

struct Plugin;

fn get(url: &str) -> http::Request {
    request(http::Method::Get, url, vec![], None)
}

/// Opens streams to `url` until the host refuses one (at most `limit + 1`), then drops one
/// and opens another.
fn streams(url: &str, limit: usize) -> String {
    let mut open = Vec::new();
    let mut refused = String::from("none refused");
    for _ in 0..=limit {
        match http::open(&get(url)) {
            Ok(stream) => open.push(stream),
            Err(e) => {
                refused = http_error(&e);
                break;
            }
        }
    }
    let opened = open.len();
    open.pop();
    let again = match http::open(&get(url)) {
        Ok(stream) => format!("ok {}", stream.status()),
        Err(e) => http_error(&e),
    };
    format!("opened {opened}; then {refused}; after dropping one: {again}")
}

impl Guest for Plugin {
    fn describe() -> Description {
        let permissions = Permissions {
            endpoints: vec![api_endpoint()],
            origins: vec!["http://127.0.0.1:2".into()],
            programs: vec![],
        };
        let fields = vec![
            field("api_url", "API URL", FieldKind::Text, true),
            field("mode", "Mode", FieldKind::Text, false),
            field("target", "Target", FieldKind::Text, false),
        ];
        describe_with("legacy-addresses", permissions, fields)
    }

    fn choices(_: Context, _: String, _: Vec<Answer>) -> Result<Vec<Choice>, MethodError> {
        Err(unused("choices"))
    }

    fn validate(_: Context, _: Vec<Answer>) -> Result<String, MethodError> {
        Err(unused("validate"))
    }

    fn setup(_: Context, _: Vec<Answer>) -> Result<SetupResult, MethodError> {
        Err(unused("setup"))
    }

    fn deploy(ctx: Context, settings: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        let base = endpoint(&ctx, "api")?;
        let summary = match setting(&settings, "mode") {
            "get" => http_outcome(&http::send(&get(&format!("{base}/ping")))),
            "target" => http_outcome(&http::send(&get(setting(&settings, "target")))),
            "streams" => streams(&format!("{base}/stream"), 16),
            other => return Err(invalid("mode", format!("unknown mode `{other}`"))),
        };
        report(summary)
    }

    fn prepare_commands(_: Context, _: Vec<Answer>, commands: Vec<String>) -> Result<CommandPlan, MethodError> {
        Ok(CommandPlan { env: vec![], commands, notes: vec![], tools: vec![] })
    }
}

export!(Plugin);
