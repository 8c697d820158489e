//! Every subcommand, argument, flag and choice of `pier` says in its help what it is for.

use clap::CommandFactory as _;

/// What under `cmd` (reached by `path`) has no help text.
fn undocumented(cmd: &clap::Command, path: &str, found: &mut Vec<String>) {
    let here = if path.is_empty() { cmd.get_name().to_string() } else { format!("{path} {}", cmd.get_name()) };
    for arg in cmd.get_arguments() {
        if arg.is_hide_set() || matches!(arg.get_id().as_str(), "help" | "version") {
            continue;
        }
        let name = match (arg.get_long(), arg.get_short()) {
            (Some(long), _) => format!("--{long}"),
            (None, Some(short)) => format!("-{short}"),
            (None, None) => format!("<{}>", arg.get_id()),
        };
        if arg.get_help().is_none() && arg.get_long_help().is_none() {
            found.push(format!("`{here} {name}` has no help"));
        }
        if arg.get_action().takes_values() {
            for value in arg.get_possible_values() {
                if !value.is_hide_set() && value.get_help().is_none() {
                    found.push(format!("value `{}` of `{here} {name}` has no help", value.get_name()));
                }
            }
        }
    }
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() {
            continue;
        }
        if sub.get_about().is_none() && sub.get_long_about().is_none() {
            found.push(format!("`{here} {}` has no help", sub.get_name()));
        }
        undocumented(sub, &here, found);
    }
}

#[test]
fn every_subcommand_and_flag_has_a_help_line() {
    let cli = pier::cli::Cli::command();
    assert!(cli.get_about().is_some(), "pier has no description");
    let mut found = Vec::new();
    undocumented(&cli, "", &mut found);
    assert!(found.is_empty(), "undocumented:\n{}", found.join("\n"));
    // The walk saw the tree: a command some levels down and its flags are there.
    let edit = cli.find_subcommand("server").and_then(|s| s.find_subcommand("edit")).expect("pier server edit");
    assert!(edit.get_arguments().any(|a| a.get_long() == Some("trust-host-key")));
}
