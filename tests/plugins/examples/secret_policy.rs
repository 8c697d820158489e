//! Binds its API key to `Authorization: Bearer ` on its endpoint `api`, declares a fixed
//! origin and a wildcard one, then sends what its `mode` setting says: the key as bound,
//! in other headers, with another prefix or a suffix, to the other origins, and requests
//! to wildcard URLs of its own choosing or handed out by its endpoint. The deploy
//! summary says what happened, as `ok STATUS[: BODY]`, `denied: ...`, `connection: ...`
//! and so on.
use pier_plugin_sdk::*;
include!("common.rs");

struct Plugin;

const KEY: &str = "api_key";

fn get(url: &str) -> api::Request {
    api::Request::get(url).timeout_ms(10_000)
}

/// Asks the endpoint for an upload URL (`{"url": "..."}` at `/handout`).
fn handout(base: &str) -> Result<String, String> {
    let response = get(&format!("{base}/handout")).send().map_err(|e| http_error(&e))?;
    let body: serde_json::Value = response.json().map_err(|e| format!("failed: /handout answered no JSON: {e}"))?;
    body["url"].as_str().map(String::from).ok_or_else(|| "failed: /handout gave no `url`".to_string())
}

impl Method for Plugin {
    fn describe() -> Description {
        let permissions = Permissions {
            endpoints: vec![api_endpoint()],
            origins: vec!["http://127.0.0.1:1".into(), "http://*.uploads.test".into()],
            secrets: vec![SecretBinding::header(KEY, "api", "Authorization", "Bearer ")],
            ..Permissions::none()
        };
        describe_with("secret-policy", permissions, vec![api_url_field(), api_key_field(), mode_field()])
    }

    fn deploy(ctx: Context, settings: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        let base = endpoint(&ctx, "api")?.to_string();
        let send = |request: api::Request| http_outcome(&request.send());
        let summary = match setting(&settings, "mode") {
            // Benign: the binding exactly.
            "bound" => send(get(&format!("{base}/bound")).secret_header("Authorization", "Bearer ", KEY, "")),
            // Hostile: each must be denied before anything is sent.
            "user-agent" => send(get(&format!("{base}/user-agent")).secret_header("User-Agent", "", KEY, "")),
            "x-anything" => send(get(&format!("{base}/x-anything")).secret_header("X-Anything", "Bearer ", KEY, "")),
            "prefix" => send(get(&format!("{base}/prefix")).secret_header("Authorization", "Basic ", KEY, "")),
            "suffix" => send(get(&format!("{base}/suffix")).secret_header("Authorization", "Bearer ", KEY, "x")),
            "extra-origin" => send(get("http://127.0.0.1:1/x").secret_header("Authorization", "Bearer ", KEY, "")),
            "wildcard-secret" => {
                send(get("http://bucket.uploads.test/x").secret_header("Authorization", "Bearer ", KEY, ""))
            }
            "wildcard-unlisted" => send(get("http://evil.uploads.test/x")),
            // Benign: a wildcard URL the endpoint handed out.
            "wildcard-listed" => match handout(&base) {
                Ok(url) => send(get(&url)),
                Err(e) => e,
            },
            "wildcard-listed-upload" => match handout(&base) {
                Ok(url) => match workspace::pack() {
                    Ok(blob) => match workspace::upload(&blob, &url, &[]) {
                        Ok(status) => ok(status, ""),
                        Err(e) => workspace_error(&e),
                    },
                    Err(e) => workspace_error(&e),
                },
                Err(e) => e,
            },
            other => return Err(invalid("mode", format!("unknown mode `{other}`"))),
        };
        report(summary)
    }

    unused_exports!();
}

export_method!(Plugin);
