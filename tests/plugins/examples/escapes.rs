//! A valid plugin whose every string the host shows holds terminal controls: cursor
//! moves, line erases, a carriage return, a hyperlink (OSC 8), a backspace, a
//! right-to-left override, a screen clear. The host must show them inert.
use pier_plugin_sdk::*;
include!("common.rs");

struct Plugin;

impl Method for Plugin {
    fn describe() -> Description {
        let permissions = Permissions {
            endpoints: vec![api_endpoint()],
            programs: vec![Program::new("true", &[&[]])],
            commands: CommandSupport {
                tools: vec![Tool { program: "heroku".into(), install_hint: "npm install -g heroku\u{1b}[2J".into() }],
                ..CommandSupport::none()
            },
            ..Permissions::none()
        };
        let flavour = Field::new(
            "flavour",
            "Flavour\u{1b}[31m red\u{8}",
            "Pick one\u{8}\u{8}\u{8} \u{1b}[31mnow",
            FieldKind::Choice,
            false,
        );
        Description {
            name: "escapes".into(),
            title: "Nice\u{1b}[2K\u{1b}[1A\rplugin".into(),
            version: "0.1.0".into(),
            summary: "A \u{1b}]8;;http://evil.example\u{7}link\u{1b}]8;;\u{7} to \u{202e}txt.exe".into(),
            fields: vec![api_url_field(), flavour],
            permissions,
        }
    }

    fn choices(_: Context, field: String, _: Vec<Answer>) -> Result<Vec<Choice>, MethodError> {
        match field.as_str() {
            "flavour" => Ok(vec![
                Choice { value: "plain".into(), label: "Plain\u{1b}[1A\u{1b}[2K".into() },
                Choice { value: "red".into(), label: "\u{1b}[31mRed\u{1b}[0m".into() },
            ]),
            other => Err(MethodError::Unsupported(format!("`{other}` is not a choice field"))),
        }
    }

    fn validate(_: Context, _: Vec<Answer>) -> Result<String, MethodError> {
        Ok("all good\u{1b}[1A\u{1b}[2K\rreally".into())
    }

    fn setup(_: Context, answers: Vec<Answer>) -> Result<SetupResult, MethodError> {
        Ok(SetupResult { settings: answers, notes: vec!["note\u{1b}[2J\u{7}".into()] })
    }

    fn deploy(_: Context, _: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        Err(MethodError::DeployFailed(DeployFailure {
            reason: "bad\u{1b}[2Kthing".into(),
            tail: vec!["line\u{1b}[0m\r".into()],
        }))
    }
}

export_method!(Plugin);
