//! Panics in `deploy`.
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
    unused_exports!();
}

export_method!(Plugin);
