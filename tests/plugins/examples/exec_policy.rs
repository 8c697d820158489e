//! Declares a few programs with narrow argument patterns and one environment name, then
//! runs what its `mode` setting says: ways out of those patterns (shell through a git
//! alias, `GIT_SSH_COMMAND`, git config from the environment, `PATH`, `LD_PRELOAD`, a
//! variable it did not declare), reads and writes outside its scratch space (the `target`
//! setting), and their benign twins. The deploy summary says what happened, as
//! `ok CODE[: STDOUT]`, `denied: ...`, `not-found: ...`, `timeout` or `failed: ...`.
use pier_plugin_sdk::*;
include!("common.rs");

struct Plugin;

/// Where an escape would leave its mark, relative to the program's working directory.
const MARK: &str = "PWNED";
/// A remote `git push` reaches over ssh, so that an ssh command would run.
const SSH_REMOTE: &str = "pier@127.0.0.1:escape.git";

fn text(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: EnvValue::Text(value.into()) }
}

fn run(program: &str, args: &[&str], env: Vec<EnvVar>, in_workspace: bool, capture_stdout: bool) -> String {
    exec_outcome(exec::run(&exec::Command {
        program: program.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env,
        in_workspace,
        ssh_key: None,
        capture_stdout,
        timeout_ms: Some(30_000),
    }))
}

impl Method for Plugin {
    fn describe() -> Description {
        let env = ["FOO"];
        let permissions = Permissions {
            programs: vec![
                Program::new("git", &[&["push", "*", "*"], &["--version"]]).with_env(&env),
                Program::new("cat", &[&["*"]]).with_env(&env),
                Program::new("touch", &[&["*"]]).with_env(&env),
                Program::new("printenv", &[&["*"]]).with_env(&env),
            ],
            ..Permissions::none()
        };
        let target = Field::new("target", "Target", "A path some modes read or write.", FieldKind::Text, false);
        describe_with("exec-policy", permissions, vec![mode_field(), target])
    }

    fn deploy(_: Context, settings: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        let target = setting(&settings, "target");
        let touch_mark = format!("touch {MARK}");
        let summary = match setting(&settings, "mode") {
            // Hostile: each must be denied before anything runs.
            "git-alias" => run("git", &["-c", &format!("alias.x=!{touch_mark}"), "x"], vec![], true, false),
            "git-ssh-command" => {
                run("git", &["push", SSH_REMOTE, "HEAD"], vec![text("GIT_SSH_COMMAND", &touch_mark)], true, false)
            }
            "git-config-env" => {
                let env = vec![
                    text("GIT_CONFIG_COUNT", "2"),
                    text("GIT_CONFIG_KEY_0", "core.fsmonitor"),
                    text("GIT_CONFIG_VALUE_0", &touch_mark),
                    text("GIT_CONFIG_KEY_1", "core.sshCommand"),
                    text("GIT_CONFIG_VALUE_1", &touch_mark),
                ];
                run("git", &["push", SSH_REMOTE, "HEAD"], env, true, false)
            }
            "path-env" => run("git", &["--version"], vec![text("PATH", "/tmp")], true, false),
            "ld-preload" => run("git", &["--version"], vec![text("LD_PRELOAD", "/tmp/x.so")], true, false),
            "undeclared-env" => run("git", &["--version"], vec![text("BAR", "1")], true, false),
            // Benign twins.
            "declared-env" => run("printenv", &["FOO"], vec![text("FOO", "bar")], false, true),
            "git-version" => run("git", &["--version"], vec![], false, false),
            "touch-scratch" => run("touch", &["x"], vec![], false, false),
            "cat-workspace" => run("cat", &[target], vec![], true, true),
            // Outside the scratch space: Landlock's to refuse.
            "cat-target" => run("cat", &[target], vec![], false, true),
            "touch-target" => run("touch", &[target], vec![], false, false),
            "home" => run("printenv", &["HOME"], vec![], false, true),
            other => return Err(invalid("mode", format!("unknown mode `{other}`"))),
        };
        report(summary)
    }

    unused_exports!();
}

export_method!(Plugin);
