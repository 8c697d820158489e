//! Recurses without end in `deploy`. Only scalars are passed, so the frames live on the
//! WebAssembly call stack (not Rust's shadow stack in linear memory) and the host's
//! stack limit is what stops it.
use pier_plugin_sdk::*;
include!("common.rs");

struct Plugin;

fn dive(depth: u64) -> u64 {
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    dive(depth + 1).wrapping_mul(3).wrapping_add(depth)
}

impl Method for Plugin {
    fn describe() -> Description {
        describe_with("deep-recursion", Permissions::none(), vec![])
    }
    fn deploy(_: Context, _: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        let n = dive(0);
        Ok(DeployReport { release: None, summary: format!("{n}"), url: None })
    }
    unused_exports!();
}

export_method!(Plugin);
