//! Uses every capability once, as a well-behaved plugin would, and reports what it saw as
//! JSON in its deploy summary. The provider is the fake Heroku.
use pier_plugin_sdk::*;
use serde_json::{Value, json};
include!("common.rs");

struct Plugin;

fn heroku(request: api::Request) -> api::Request {
    request.header("Accept", "application/vnd.heroku+json; version=3").bearer("api_key")
}

fn sh(script: &str, env: Vec<exec::EnvVar>, in_workspace: bool, ssh_key: Option<String>) -> Value {
    let command = exec::Command {
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
        env,
        in_workspace,
        ssh_key,
        capture_stdout: true,
        timeout_ms: Some(10_000),
    };
    match exec::run(&command) {
        Ok(exit) => json!({"code": exit.code, "stdout": exit.stdout}),
        Err(e) => json!({"error": format!("{e:?}")}),
    }
}

impl Method for Plugin {
    fn describe() -> Description {
        let permissions = Permissions {
            endpoints: vec![api_endpoint()],
            programs: vec![Program::new("sh", &[&["-c", "*"]]).with_env(&["GREETING"])],
            secrets: vec![
                SecretBinding::header("api_key", "api", "Authorization", "Bearer "),
                SecretBinding::ssh_key("deploy_key", "sh"),
            ],
            ..Permissions::none()
        };
        describe_with("everything", permissions, vec![api_url_field(), api_key_field()])
    }

    fn deploy(ctx: Context, _: Vec<Answer>, build: BuildInfo) -> Result<DeployReport, MethodError> {
        let base = endpoint(&ctx, "api")?.to_string();
        log::step("Everything");
        log::info(&format!("deploying {} of {}", build.commit, build.branch));
        log::output("first line\nsecond ");
        log::output("line\n");

        let handles = secrets::handles();
        let account = heroku(api::Request::get(&format!("{base}/account"))).send();
        let account = match account {
            Ok(r) => {
                json!({"status": r.status(), "email": r.json::<Value>().ok().and_then(|v| v["email"].as_str().map(String::from))})
            }
            Err(e) => json!({"error": api::describe_error(&e)}),
        };
        let anonymous = api::Request::get(&format!("{base}/account"))
            .header("Accept", "application/vnd.heroku+json; version=3")
            .send()
            .map(|r| r.status())
            .unwrap_or(0);

        let streamed = match heroku(api::Request::get(&format!("{base}/account"))).open() {
            Ok(stream) => {
                let mut bytes = 0;
                while let Ok(Some(chunk)) = stream.next() {
                    bytes += chunk.len();
                }
                json!({"status": stream.status(), "bytes": bytes})
            }
            Err(e) => json!({"error": api::describe_error(&e)}),
        };

        let key =
            keys::generate("deploy_key", "everything test").map_err(|e| MethodError::Provider(format!("{e:?}")))?;
        let public_again = keys::public_key("deploy_key").map_err(|e| MethodError::Provider(format!("{e:?}")))?;
        let duplicate = keys::generate("deploy_key", "again").is_err();

        let greeting = exec::EnvVar { name: "GREETING".into(), value: EnvValue::Text("hello from the plugin".into()) };
        let in_workspace = sh("echo \"$GREETING\"; ls", vec![greeting], true, None);
        let with_key = sh(
            "stat -c %a \"$PIER_SSH_KEY\"; case \"$GIT_SSH_COMMAND\" in *IdentitiesOnly=yes*) echo ok;; esac; env | cut -d= -f1 | sort | tr '\\n' ' '",
            vec![],
            false,
            Some("deploy_key".into()),
        );

        let blob = workspace::pack().map_err(|e| MethodError::Provider(format!("{e:?}")))?;
        let sources = heroku(api::Request::post(&format!("{base}/sources"))).send();
        let upload = match sources {
            Ok(r) if r.ok() => {
                let body: Value = r.json().unwrap_or_default();
                let put_url = body["source_blob"]["put_url"].as_str().unwrap_or_default().to_string();
                match workspace::upload(&blob, &put_url, &[]) {
                    Ok(status) => json!({"status": status, "get_url": body["source_blob"]["get_url"]}),
                    Err(e) => json!({"error": format!("{e:?}")}),
                }
            }
            Ok(r) => json!({"sources_status": r.status()}),
            Err(e) => json!({"error": api::describe_error(&e)}),
        };

        let report = json!({
            "handles": handles,
            "account": account,
            "anonymous_status": anonymous,
            "streamed": streamed,
            "key": {"public": key.public_key, "fingerprint": key.fingerprint, "same": key.public_key == public_again, "duplicate_refused": duplicate},
            "exec_workspace": in_workspace,
            "exec_key": with_key,
            "blob": {"size": blob.size(), "sha256": blob.sha256()},
            "upload": upload,
        });
        Ok(DeployReport { release: None, summary: report.to_string(), url: None })
    }

    unused_exports!();
}

export_method!(Plugin);
