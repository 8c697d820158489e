//! Declares a command rule whose "flag" is shell (`; touch pwned`): it would turn every
//! `heroku run` command into two. The host must refuse the plugin when it loads.
use pier_plugin_sdk::*;
include!("common.rs");

struct Plugin;

impl Method for Plugin {
    fn describe() -> Description {
        let rule = CommandRule {
            prefix: vec!["heroku".into(), "run".into()],
            flag: "; touch pwned".into(),
            unless: vec![],
            reason: "x".into(),
        };
        let commands = CommandSupport { rules: vec![rule], ..CommandSupport::none() };
        describe_with("rule-bad", Permissions { commands, ..Permissions::none() }, vec![])
    }

    fn deploy(_: Context, _: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        report("deployed")
    }

    accepting_exports!();
}

export_method!(Plugin);
