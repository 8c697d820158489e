//! Runs a granted program that starts a child of its own, as its `mode` setting says:
//! `hang` (the program outlives its 1 s time limit, its child too) or `finish` (its child
//! ends first and the program reports it: the benign twin). The program is a stand-in the
//! tests put on `PATH`; `arg` is what its child sleeps, so the test can find it. The deploy
//! summary says how the run ended: `ok CODE[: STDOUT]`, `timeout`, ...
use pier_plugin_sdk::*;
include!("common.rs");

struct Plugin;

/// The stand-in program: `pier-forker ARG MODE`.
const PROGRAM: &str = "pier-forker";

impl Method for Plugin {
    fn describe() -> Description {
        let permissions = Permissions { programs: vec![Program::new(PROGRAM, &[&["*", "*"]])], ..Permissions::none() };
        let arg = Field::new("arg", "Argument", "What the program's child sleeps.", FieldKind::Text, false);
        describe_with("procs", permissions, vec![mode_field(), arg])
    }

    fn deploy(_: Context, settings: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        let mode = setting(&settings, "mode");
        let arg = setting(&settings, "arg");
        report(exec_outcome(exec::run(&exec::Command {
            program: PROGRAM.into(),
            args: vec![arg.into(), mode.into()],
            env: vec![],
            in_workspace: false,
            ssh_key: None,
            capture_stdout: true,
            timeout_ms: Some(1_000),
        })))
    }

    accepting_exports!();
}

export_method!(Plugin);
