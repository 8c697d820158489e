//! Built against the frozen pier:deploy@0.1.0, whose `prepare-commands` could rewrite
//! the user's deploy commands and set their environment freely. Its `mode` setting says
//! how: unchanged (`same`), `--exit-code` after `heroku run` (`flag`), or with shell
//! smuggled in (`append`, `semicolon`, `flag-value`), or with an environment that points
//! programs elsewhere (`env-path`, `env-text`) or only names what the server has
//! (`env-ok`). Its deploy runs `git --version` in mode `exec` (a 0.1.0 plugin declared no
//! argument patterns, so that is denied) and otherwise only says it ran.
wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "pier:deploy/plugin" });
include!("legacy_common.rs");

struct Plugin;

/// What the deploy logs, so tests can tell whether it ran.
const RAN: &str = "legacy-rewrite deploy ran";

/// `command` with `insert` right after a leading `heroku run`; other commands unchanged.
fn after_heroku_run(command: &str, insert: &str) -> String {
    match command.strip_prefix("heroku run") {
        Some(rest) => format!("heroku run{insert}{rest}"),
        None => command.to_string(),
    }
}

fn text(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: EnvValue::Text(value.into()) }
}

impl Guest for Plugin {
    fn describe() -> Description {
        let permissions =
            Permissions { endpoints: vec![api_endpoint()], origins: vec![], programs: vec!["git".into()] };
        let fields = vec![
            field("app", "App", FieldKind::Text, false),
            field("api_url", "API URL", FieldKind::Text, true),
            field("api_key", "API key", FieldKind::Secret, false),
            field("mode", "Mode", FieldKind::Text, false),
        ];
        describe_with("legacy-rewrite", permissions, fields)
    }

    fn choices(_: Context, field: String, _: Vec<Answer>) -> Result<Vec<Choice>, MethodError> {
        Err(MethodError::Unsupported(format!("`{field}` is not a choice field")))
    }

    fn validate(_: Context, _: Vec<Answer>) -> Result<String, MethodError> {
        Ok("nothing to check".into())
    }

    fn setup(_: Context, answers: Vec<Answer>) -> Result<SetupResult, MethodError> {
        Ok(SetupResult { settings: answers, notes: vec![] })
    }

    fn deploy(_: Context, settings: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        events::log(events::Level::Info, RAN);
        if setting(&settings, "mode") != "exec" {
            return report("deployed");
        }
        let git = exec::Command {
            program: "git".into(),
            args: vec!["--version".into()],
            env: vec![],
            in_workspace: false,
            ssh_key: None,
            capture_stdout: true,
            timeout_ms: Some(30_000),
        };
        report(exec_outcome(exec::run(&git)))
    }

    fn prepare_commands(
        ctx: Context,
        settings: Vec<Answer>,
        commands: Vec<String>,
    ) -> Result<CommandPlan, MethodError> {
        let rewrite = |f: &dyn Fn(&str) -> String| commands.iter().map(|c| f(c)).collect::<Vec<_>>();
        let mut env = vec![];
        let commands = match setting(&settings, "mode") {
            "same" | "exec" | "" => commands.clone(),
            "flag" => rewrite(&|c| after_heroku_run(c, " --exit-code")),
            "append" => rewrite(&|c| format!("{c}; touch pwned")),
            "semicolon" => rewrite(&|c| match c.strip_prefix("heroku run") {
                Some(rest) => format!("heroku run;touch pwned#{rest}"),
                None => c.to_string(),
            }),
            "flag-value" => rewrite(&|c| after_heroku_run(c, " --x=$(touch pwned)")),
            "env-path" => {
                env.push(text("PATH", "/tmp"));
                commands.clone()
            }
            "env-text" => {
                env.push(text("HEROKU_HOST", "http://evil.example"));
                commands.clone()
            }
            "env-ok" => {
                env.push(text("HEROKU_APP", setting(&settings, "app")));
                env.push(EnvVar { name: "HEROKU_API_KEY".into(), value: EnvValue::Secret("api_key".into()) });
                env.push(text("HEROKU_HOST", endpoint(&ctx, "api")?));
                commands.clone()
            }
            other => return Err(invalid("mode", format!("unknown mode `{other}`"))),
        };
        Ok(CommandPlan { env, commands, notes: vec![], tools: vec![] })
    }
}

export!(Plugin);
