//! Preparing deploy commands: the Heroku CLI's credentials, and `heroku run` made to pass
//! exit codes through.

use pier_plugin_sdk::*;

use crate::{API_KEY, APP, DEFAULT_API};

/// Adds `--exit-code` to every `heroku run` that lacks it (`-x` counts), so a failing
/// one-off dyno (a migration, say) fails the command. Returns the command and whether it
/// changed.
pub fn add_exit_code(command: &str) -> (String, bool) {
    let mut out = String::with_capacity(command.len() + 12);
    let mut changed = false;
    let mut rest = command;
    while let Some(at) = find_heroku_run(rest) {
        let (before, after) = rest.split_at(at + "heroku run".len());
        out.push_str(before);
        let invocation_end = after.find(['\n', ';', '&', '|']).unwrap_or(after.len());
        let args: Vec<&str> = after[..invocation_end].split_whitespace().take_while(|a| *a != "--").collect();
        if !args.iter().any(|a| *a == "--exit-code" || *a == "-x" || a.starts_with("--exit-code=")) {
            out.push_str(" --exit-code");
            changed = true;
        }
        rest = after;
    }
    out.push_str(rest);
    (out, changed)
}

/// Byte offset of the next `heroku run` invocation: `heroku` as a word, one space, `run`
/// as a word (so not `heroku run:detached`, which has no exit code to pass on).
fn find_heroku_run(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(found) = text[from..].find("heroku run") {
        let at = from + found;
        let end = at + "heroku run".len();
        let word_before = at == 0 || matches!(bytes[at - 1], b' ' | b'\t' | b';' | b'&' | b'|' | b'(' | b'\n' | b'`');
        let word_after = matches!(bytes.get(end), None | Some(b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b')'));
        if word_before && word_after {
            return Some(at);
        }
        from = end;
    }
    None
}

/// Whether a command uses the `heroku` program.
fn uses_heroku(command: &str) -> bool {
    command
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')' | '`'))
        .any(|word| word == "heroku")
}

pub fn prepare(ctx: &Context, settings: &[Answer], commands: Vec<String>) -> Result<CommandPlan, MethodError> {
    let app = required(settings, APP, "the app")?;
    let api = endpoint(ctx, "api")?;
    let mut env = vec![
        EnvVar { name: "HEROKU_API_KEY".into(), value: EnvValue::Secret(API_KEY.into()) },
        EnvVar { name: "HEROKU_APP".into(), value: EnvValue::Text(app.into()) },
    ];
    if api != DEFAULT_API {
        env.push(EnvVar { name: "HEROKU_HOST".into(), value: EnvValue::Text(api.into()) });
    }
    let mut notes = Vec::new();
    let mut rewritten = Vec::with_capacity(commands.len());
    let mut needs_cli = false;
    for (i, command) in commands.iter().enumerate() {
        needs_cli |= uses_heroku(command);
        let (new, changed) = add_exit_code(command);
        if changed {
            notes.push(format!(
                "command {}: added --exit-code to `heroku run` so a failure in the dyno fails the deploy",
                i + 1
            ));
        }
        rewritten.push(new);
    }
    let tools = if needs_cli {
        vec![Tool { program: "heroku".into(), install_hint: "npm install -g heroku".into() }]
    } else {
        vec![]
    };
    Ok(CommandPlan { env, commands: rewritten, notes, tools })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_is_added_once_where_missing() {
        let cases = [
            ("heroku run rake db:migrate", "heroku run --exit-code rake db:migrate", true),
            ("heroku run --exit-code rake db:migrate", "heroku run --exit-code rake db:migrate", false),
            ("heroku run -x -- rake db:migrate", "heroku run -x -- rake db:migrate", false),
            ("heroku run:detached rake jobs", "heroku run:detached rake jobs", false),
            ("echo heroku runs", "echo heroku runs", false),
            (
                "heroku run a && heroku run -x b; heroku run c",
                "heroku run --exit-code a && heroku run -x b; heroku run --exit-code c",
                true,
            ),
            ("heroku run -- sh -c 'exit 3' -x", "heroku run --exit-code -- sh -c 'exit 3' -x", true),
        ];
        for (input, expected, changed) in cases {
            assert_eq!(add_exit_code(input), (expected.to_string(), changed), "{input}");
        }
    }

    #[test]
    fn heroku_use_is_detected_as_a_word() {
        assert!(uses_heroku("heroku ps"));
        assert!(uses_heroku("cd x && heroku run y"));
        assert!(!uses_heroku("echo deploying-to-heroku"));
    }
}
