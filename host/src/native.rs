//! Deploy commands a method runs itself (`command-support.native`), such as `heroku run
//! rake db:migrate` through the Heroku method's `run` export: no provider CLI, no Node
//! runtime, and the exit status is the remote command's.
//!
//! The host decides, never the plugin: a command is native only when the whole of the
//! user's text is one simple command that starts with a declared prefix, whose flags are
//! all declared, and in which the shell would expand nothing (no operators, redirections,
//! substitutions, variables, globs or `~`). Then its words are what the shell would pass,
//! and running them through the method is the same command. Anything else runs as
//! written, through `sh` and the provider's CLI ([`Native::AsWritten`] says why when the
//! prefix matched), so nothing the user wrote is ever reinterpreted.

use std::collections::{BTreeMap, BTreeSet};

use crate::commands::{Word, is_plain_word, words};
use crate::runtime::RunRequest;
use crate::runtime::bindings::{FlagMeaning, NativeCommand};

/// How one deploy command runs.
#[derive(Debug, Clone)]
pub enum Native {
    /// Through the method's `run`, with this request.
    Run(RunRequest),
    /// As written, through the shell, although it begins with a native prefix: why.
    AsWritten(String),
    /// As written: it does not begin with a native prefix.
    NotNative,
}

/// Characters the shell gives meaning to inside a word, outside quotes: a word holding
/// any of them unquoted is not native.
const EXPANDS: &[char] = &['$', '`', '<', '>', '*', '?', '[', ']', '{', '}', '~', '\\'];

/// Whether a word as written is expanded by the shell into something other than its text:
/// it is native only when every character the shell treats specially is inside single
/// quotes, or inside double quotes and not `$`, a backtick or a backslash.
fn shell_expands(raw: &str) -> bool {
    let mut quote = None;
    for c in raw.chars() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '$' | '`' | '\\') => return true,
            (Some(_), _) => {}
            (None, c) if EXPANDS.contains(&c) => return true,
            (None, _) => {}
        }
    }
    quote.is_some()
}

/// What a deploy command is, given the method's native commands and the server's
/// `settings`.
pub fn classify(command: &str, natives: &[NativeCommand], settings: &BTreeMap<String, String>) -> Native {
    let Some(all) = words(command) else { return Native::NotNative };
    // A trailing newline or comment is not a second command.
    let mut list: Vec<&Word> = all.iter().collect();
    while list.last().is_some_and(|w| w.operator && w.text == "\n") {
        list.pop();
    }
    let Some(native) = natives.iter().find(|n| {
        list.len() >= n.prefix.len()
            && list.iter().zip(&n.prefix).all(|(w, p)| !w.operator && w.text == *p && command[w.span.clone()] == **p)
    }) else {
        return Native::NotNative;
    };
    let shown = native.prefix.join(" ");
    if list.iter().any(|w| w.operator) {
        return Native::AsWritten(format!(
            "it is more than one `{shown}` command (it has shell operators), so it runs through the shell"
        ));
    }
    if let Some(w) = list.iter().find(|w| shell_expands(&command[w.span.clone()])) {
        return Native::AsWritten(format!(
            "the shell would expand `{}` (a variable, substitution, redirection or pattern), so it runs through the \
             shell",
            crate::caps::events::inert(&command[w.span.clone()])
        ));
    }
    let mut rest = list[native.prefix.len()..].iter().map(|w| w.text.as_str()).peekable();
    let mut request = RunRequest { command: vec![], env: vec![], size: None, process_type: None, tty: false };
    while let Some(&word) = rest.peek() {
        if word == "--" {
            rest.next();
            break;
        }
        if !word.starts_with('-') || word == "-" {
            break;
        }
        rest.next();
        let (name, inline) = match word.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (word, None),
        };
        let Some(flag) = native.options.iter().find(|f| f.names.iter().any(|n| n == name)) else {
            return Native::AsWritten(format!("Pier does not run `{shown}` with `{}` itself", inert_word(name)));
        };
        let takes_value = !matches!(flag.means, FlagMeaning::NoTty | FlagMeaning::Ignored);
        let value = if takes_value {
            match inline.or_else(|| rest.next().map(str::to_string)) {
                Some(v) => Some(v),
                None => return Native::AsWritten(format!("`{}` has no value", inert_word(name))),
            }
        } else if inline.is_some() {
            return Native::AsWritten(format!("`{}` takes no value", inert_word(name)));
        } else {
            None
        };
        let value = value.unwrap_or_default();
        match &flag.means {
            FlagMeaning::Size => request.size = Some(value),
            FlagMeaning::ProcessType => request.process_type = Some(value),
            FlagMeaning::Env => {
                for pair in value.split(';').filter(|p| !p.trim().is_empty()) {
                    match pair.split_once('=') {
                        Some((k, v)) if valid_env_name(k.trim()) => request.env.push((k.trim().into(), v.into())),
                        _ => {
                            return Native::AsWritten(format!(
                                "`{}` is not KEY=VALUE",
                                crate::caps::events::inert(pair)
                            ));
                        }
                    }
                }
            }
            FlagMeaning::NoTty | FlagMeaning::Ignored => {}
            FlagMeaning::Setting(field) => {
                if settings.get(field) != Some(&value) {
                    return Native::AsWritten(format!(
                        "`{} {}` is not this server's {field}",
                        inert_word(name),
                        crate::caps::events::inert(&value)
                    ));
                }
            }
        }
    }
    request.command = rest.map(str::to_string).collect();
    if request.command.is_empty() {
        return Native::AsWritten(format!("`{shown}` is given no command"));
    }
    Native::Run(request)
}

fn inert_word(word: &str) -> String {
    crate::caps::events::inert(word)
}

/// Whether `name` may be a variable of a one-off command: a letter or `_`, then letters,
/// digits and `_`.
pub fn valid_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks a declared native command: a prefix of plain words whose first is not a shell
/// keyword or runner (as for rules), flags spelled `-x` or `--name`, each spelling
/// declared once, and settings that are field ids of the form.
pub fn check_native(native: &NativeCommand, field_ids: &BTreeSet<&str>) -> Result<(), String> {
    let rule = crate::commands::Rule {
        prefix: native.prefix.clone(),
        flag: "--x".into(),
        unless: vec![],
        reason: "native".into(),
    };
    crate::commands::check_rule(&rule)?;
    debug_assert!(native.prefix.iter().all(|w| is_plain_word(w)));
    let mut seen = BTreeSet::new();
    for flag in &native.options {
        if flag.names.is_empty() {
            return Err("a flag has no names".into());
        }
        for name in &flag.names {
            if name.contains('=') || !crate::commands::is_flag(name) {
                return Err(format!("flag `{}` must be spelled -x or --name", inert_word(name)));
            }
            if !seen.insert(name.as_str()) {
                return Err(format!("flag `{name}` is declared twice"));
            }
        }
        if let FlagMeaning::Setting(field) = &flag.means
            && !field_ids.contains(field.as_str())
        {
            return Err(format!("flag `{}` names setting `{field}`, which is not a field id", flag.names[0]));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::NativeFlag;

    fn heroku() -> Vec<NativeCommand> {
        let flag = |names: &[&str], means| NativeFlag { names: names.iter().map(|n| n.to_string()).collect(), means };
        vec![NativeCommand {
            prefix: vec!["heroku".into(), "run".into()],
            options: vec![
                flag(&["--size", "-s"], FlagMeaning::Size),
                flag(&["--type"], FlagMeaning::ProcessType),
                flag(&["--env", "-e"], FlagMeaning::Env),
                flag(&["--exit-code", "-x"], FlagMeaning::Ignored),
                flag(&["--no-tty"], FlagMeaning::NoTty),
                flag(&["--app", "-a"], FlagMeaning::Setting("app".into())),
            ],
        }]
    }

    fn run(command: &str) -> Native {
        classify(command, &heroku(), &BTreeMap::from([("app".to_string(), "shop".to_string())]))
    }

    fn words_of(n: Native) -> Vec<String> {
        match n {
            Native::Run(r) => r.command,
            other => panic!("not native: {other:?}"),
        }
    }

    #[test]
    fn a_plain_heroku_run_is_native() {
        assert_eq!(words_of(run("heroku run rake db:migrate")), ["rake", "db:migrate"]);
        assert_eq!(words_of(run("heroku run -x -- rails runner 'puts 1'")), ["rails", "runner", "puts 1"]);
        assert_eq!(words_of(run("heroku run --app shop --no-tty -s standard-2x bin/task\n")), ["bin/task"]);
        let Native::Run(r) = run("heroku run --size=performance-m --type worker -e 'A=1;B=two' ./x") else { panic!() };
        assert_eq!(r.size.as_deref(), Some("performance-m"));
        assert_eq!(r.process_type.as_deref(), Some("worker"));
        assert_eq!(r.env, [("A".to_string(), "1".to_string()), ("B".to_string(), "two".to_string())]);
        // Flags end at the first word of the command: its own flags are its own.
        assert_eq!(words_of(run("heroku run ls -la --color")), ["ls", "-la", "--color"]);
    }

    #[test]
    fn anything_the_shell_would_change_runs_as_written() {
        for command in [
            "heroku run rake db:migrate && echo done",
            "heroku run rake db:migrate; true",
            "heroku run echo $HOME",
            "heroku run echo \"$HOME\"",
            "heroku run cat <input",
            "heroku run ls *.rb",
            "heroku run echo $(date)",
            "heroku run echo ~",
        ] {
            assert!(matches!(run(command), Native::AsWritten(_)), "{command}");
        }
        // Quoted, the same characters are plain text: still native.
        assert_eq!(words_of(run("heroku run echo '$HOME && *'")), ["echo", "$HOME && *"]);
        assert_eq!(words_of(run("heroku run rake db:migrate VERSION=3")), ["rake", "db:migrate", "VERSION=3"]);
    }

    #[test]
    fn unknown_flags_and_other_apps_run_as_written() {
        assert!(matches!(run("heroku run --remote staging rake x"), Native::AsWritten(m) if m.contains("--remote")));
        assert!(
            matches!(run("heroku run -a other rake x"), Native::AsWritten(m) if m.contains("not this server's app"))
        );
        assert!(matches!(run("heroku run --size"), Native::AsWritten(_)));
        assert!(matches!(run("heroku run"), Native::AsWritten(m) if m.contains("no command")));
        assert!(matches!(run("heroku run -e NOPE rake"), Native::AsWritten(_)));
    }

    #[test]
    fn other_commands_are_not_native() {
        for command in
            ["heroku run:detached rake x", "heroku ps", "echo heroku run x", "'heroku run' x", "sudo heroku run x"]
        {
            assert!(matches!(run(command), Native::NotNative), "{command}");
        }
        // A quoted prefix word is the same word to the shell, but not the declared text.
        assert!(matches!(run("\"heroku\" run rake"), Native::NotNative));
    }

    #[test]
    fn declarations_are_checked() {
        let ids = BTreeSet::from(["app"]);
        assert_eq!(check_native(&heroku()[0], &ids), Ok(()));
        let mut bad = heroku()[0].clone();
        bad.options[0].names.push("--size=x".into());
        assert!(check_native(&bad, &ids).is_err());
        let mut bad = heroku()[0].clone();
        bad.options.push(NativeFlag { names: vec!["-s".into()], means: FlagMeaning::Ignored });
        assert!(check_native(&bad, &ids).unwrap_err().contains("twice"));
        let mut bad = heroku()[0].clone();
        bad.prefix = vec!["eval".into()];
        assert!(check_native(&bad, &ids).is_err());
        assert!(check_native(&heroku()[0], &BTreeSet::new()).unwrap_err().contains("setting `app`"));
    }
}
