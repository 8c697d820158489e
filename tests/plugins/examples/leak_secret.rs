//! Tries every way it has to get a secret's value into the log or its results. It may
//! hand the secret to `sh` as `TOKEN` (its binding says so), so what is left to stop it
//! is redaction of everything the program says.
use pier_plugin_sdk::*;
include!("common.rs");

struct Plugin;

impl Method for Plugin {
    fn describe() -> Description {
        let token = SecretBinding {
            secret: "api_key".into(),
            use_: SecretUse::ProgramEnv(SecretEnv { program: "sh".into(), variable: "TOKEN".into() }),
        };
        let permissions = Permissions {
            programs: vec![Program::new("sh", &[&["-c", "*"]]).with_env(&["TOKEN"])],
            secrets: vec![token],
            ..Permissions::none()
        };
        describe_with("leak-secret", permissions, vec![api_key_field()])
    }
    fn deploy(_: Context, _: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        let token = exec::EnvVar { name: "TOKEN".into(), value: EnvValue::Secret("api_key".into()) };
        let script = "echo \"plain $TOKEN\"; printf %s \"user:$TOKEN\" | base64; echo \"on stderr $TOKEN\" >&2";
        // Streamed to the log...
        let streamed = exec::run(&exec::Command {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![token.clone()],
            in_workspace: false,
            ssh_key: None,
            capture_stdout: false,
            timeout_ms: None,
        })
        .map_err(|e| MethodError::Provider(format!("{e:?}")))?;
        // ...and captured into the plugin's own memory, then logged and returned.
        let captured = exec::run(&exec::Command {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![token],
            in_workspace: false,
            ssh_key: None,
            capture_stdout: true,
            timeout_ms: None,
        })
        .map_err(|e| MethodError::Provider(format!("{e:?}")))?;
        log::info(&format!("captured: {}", captured.stdout));
        log::output(&captured.stdout);
        let tail = streamed.tail.join(" | ");
        Err(MethodError::DeployFailed(DeployFailure {
            reason: format!("captured {} / tail {tail}", captured.stdout.trim()),
            tail: streamed.tail,
        }))
    }
    unused_exports!();
}

export_method!(Plugin);
