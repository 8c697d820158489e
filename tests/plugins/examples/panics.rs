//! Panics in `deploy`; in `run`, prints a Python-style traceback to stderr and traps
//! without a Rust panic message, as a componentize-py plugin's uncaught exception does.
use pier_plugin_sdk::*;
include!("common.rs");

struct Plugin;

impl Method for Plugin {
    fn describe() -> Description {
        describe_with("panics", Permissions::none(), vec![])
    }
    fn deploy(_: Context, _: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        let settings: Vec<u32> = Vec::new();
        panic!("the plugin gave up: {} settings", settings.len());
    }
    fn run(_: Context, _: Vec<Answer>, _: RunRequest) -> Result<i32, MethodError> {
        eprintln!("Traceback (most recent call last):");
        eprintln!("  File \"app.py\", line 12, in run");
        eprintln!("ZeroDivisionError: division by zero");
        std::process::abort()
    }
    unused_exports!();
}

export_method!(Plugin);
