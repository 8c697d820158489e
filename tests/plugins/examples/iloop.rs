//! Loops forever in `deploy`.
use pier_plugin_sdk::*;
include!("common.rs");

struct Plugin;

impl Method for Plugin {
    fn describe() -> Description {
        describe_with("iloop", Permissions::none(), vec![])
    }
    fn deploy(_: Context, _: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
    unused_exports!();
}

export_method!(Plugin);
