//! Its endpoint `api` takes its host from the environment variable `DEPLOY_API_HOST`; its
//! deploy asks `{api}/ping` and reports `ok STATUS`. A value that is more than a host
//! (a path, a query) must never reach it.
use pier_plugin_sdk::*;
include!("common.rs");

struct Plugin;

impl Method for Plugin {
    fn describe() -> Description {
        let source = EnvEndpoint { name: "DEPLOY_API_HOST".into(), bare_host: "http://{}".into() };
        let api = Endpoint { id: "api".into(), sources: vec![EndpointSource::Env(source)] };
        describe_with("env-host", Permissions { endpoints: vec![api], ..Permissions::none() }, vec![])
    }

    fn deploy(ctx: Context, _: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        let base = endpoint(&ctx, "api")?;
        match api::Request::get(&format!("{base}/ping")).timeout_ms(10_000).send() {
            Ok(response) => report(ok(response.status(), "")),
            Err(e) => Err(MethodError::Provider(http_error(&e))),
        }
    }

    accepting_exports!();
}

export_method!(Plugin);
