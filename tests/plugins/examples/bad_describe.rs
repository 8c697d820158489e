//! Describes a form with the same field twice.
use pier_plugin_sdk::*;
include!("common.rs");

struct Plugin;

impl Method for Plugin {
    fn describe() -> Description {
        let field = Field::new("token", "Token", "", FieldKind::Secret, true);
        describe_with("bad-describe", Permissions::none(), vec![field.clone(), field])
    }
    fn deploy(_: Context, _: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        Err(unused("deploy"))
    }
    unused_exports!();
}

export_method!(Plugin);
