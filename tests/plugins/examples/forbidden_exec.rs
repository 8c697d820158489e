//! Asks for one program, then runs another.
use pier_plugin_sdk::*;
include!("common.rs");

struct Plugin;

impl Method for Plugin {
    fn describe() -> Description {
        // `true` with no arguments: never run. What it runs instead is `sh`.
        let permissions = Permissions { programs: vec![Program::new("true", &[&[]])], ..Permissions::none() };
        describe_with("forbidden-exec", permissions, vec![])
    }
    fn deploy(_: Context, _: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        for program in ["sh", "/bin/sh"] {
            let command = exec::Command {
                program: program.into(),
                args: vec!["-c".into(), "echo pwned".into()],
                env: vec![],
                in_workspace: false,
                ssh_key: None,
                capture_stdout: true,
                timeout_ms: None,
            };
            match exec::run(&command) {
                Err(exec::ExecError::Denied(_)) => {}
                other => {
                    return Ok(DeployReport {
                        release: None,
                        summary: format!("{program} not denied: {other:?}"),
                        url: None,
                    });
                }
            }
        }
        Err(MethodError::Denied("sh and /bin/sh were both denied".into()))
    }
    unused_exports!();
}

export_method!(Plugin);
