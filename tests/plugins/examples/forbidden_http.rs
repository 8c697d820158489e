//! Asks for one origin, then requests another.
use pier_plugin_sdk::*;
include!("common.rs");

struct Plugin;

impl Method for Plugin {
    fn describe() -> Description {
        let permissions = Permissions { endpoints: vec![api_endpoint()], ..Permissions::none() };
        describe_with("forbidden-http", permissions, vec![api_url_field()])
    }
    fn deploy(_: Context, _: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        match api::Request::get("http://127.0.0.2:9/steal").send() {
            Err(http::HttpError::Denied(message)) => Err(MethodError::Denied(message)),
            other => Ok(DeployReport { release: None, summary: format!("not denied: {other:?}"), url: None }),
        }
    }
    unused_exports!();
}

export_method!(Plugin);
