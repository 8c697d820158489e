//! Built against the frozen pier:deploy@0.1.0, which had no secret bindings: its API key
//! may go in any header to its endpoint `api`, and nowhere else, not even to the origin it
//! declares. Its `mode` setting says which to try; the deploy summary says what happened.
wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "pier:deploy/plugin" });
include!("legacy_common.rs");

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Description {
        let permissions = Permissions {
            endpoints: vec![api_endpoint()],
            origins: vec!["http://127.0.0.1:1".into()],
            programs: vec![],
        };
        let fields = vec![
            field("api_url", "API URL", FieldKind::Text, true),
            field("api_key", "API key", FieldKind::Secret, true),
            field("mode", "Mode", FieldKind::Text, false),
        ];
        describe_with("legacy-secret", permissions, fields)
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
        let (url, header) = match setting(&settings, "mode") {
            "any-header" => (format!("{base}/any"), secret_header("X-Anything", "", "api_key")),
            "extra-origin" => {
                ("http://127.0.0.1:1/x".to_string(), secret_header("Authorization", "Bearer ", "api_key"))
            }
            other => return Err(invalid("mode", format!("unknown mode `{other}`"))),
        };
        report(http_outcome(&http::send(&request(http::Method::Get, &url, vec![header], None))))
    }

    fn prepare_commands(_: Context, _: Vec<Answer>, commands: Vec<String>) -> Result<CommandPlan, MethodError> {
        Ok(CommandPlan { env: vec![], commands, notes: vec![], tools: vec![] })
    }
}

export!(Plugin);
