//! Calls the cheapest host function (`secrets.handles`) as many times as its `calls`
//! setting says, for measuring the cost of a guest-to-host round trip.
use pier_plugin_sdk::*;
include!("common.rs");

struct Plugin;

impl Method for Plugin {
    fn describe() -> Description {
        describe_with("host-calls", Permissions::none(), vec![])
    }
    fn deploy(_: Context, settings: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        let calls: u64 = answer(&settings, "calls").and_then(|n| n.parse().ok()).unwrap_or(1);
        let mut seen = 0;
        for _ in 0..calls {
            seen += std::hint::black_box(secrets::handles()).len();
        }
        Ok(DeployReport { release: None, summary: format!("{calls} calls, {seen} handles"), url: None })
    }
    unused_exports!();
}

export_method!(Plugin);
