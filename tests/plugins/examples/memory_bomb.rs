//! Allocates without end in `deploy`.
use pier_plugin_sdk::*;
include!("common.rs");

struct Plugin;

impl Method for Plugin {
    fn describe() -> Description {
        describe_with("memory-bomb", Permissions::none(), vec![])
    }
    fn deploy(_: Context, _: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
        }
    }
    unused_exports!();
}

export_method!(Plugin);
