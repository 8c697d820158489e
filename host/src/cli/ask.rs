//! Asking the user: prompts on a terminal, never without one.
//!
//! Without a terminal on stdin, nothing is asked: every missing answer is collected and
//! the command fails once, naming each missing flag.

use std::io::IsTerminal as _;
use std::time::Duration;

use dialoguer::theme::ColorfulTheme;
use secrecy::SecretString;

use super::CliError;

/// Whether prompts may be shown: stdin and stderr are terminals.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Whether stderr wants colour.
pub fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn theme() -> ColorfulTheme {
    if color() {
        ColorfulTheme::default()
    } else {
        ColorfulTheme {
            defaults_style: console::Style::new(),
            prompt_style: console::Style::new(),
            prompt_prefix: console::style("?".to_string()),
            success_prefix: console::style("✔".to_string()),
            error_prefix: console::style("✘".to_string()),
            values_style: console::Style::new(),
            active_item_style: console::Style::new(),
            inactive_item_style: console::Style::new(),
            active_item_prefix: console::style(">".to_string()),
            picked_item_prefix: console::style(">".to_string()),
            fuzzy_match_highlight_style: console::Style::new(),
            ..ColorfulTheme::default()
        }
    }
}

fn prompt_error(e: dialoguer::Error) -> CliError {
    CliError::Usage(format!("prompt failed: {e}"))
}

/// Asks for a line of text; `default` is used on an empty answer.
pub fn text(label: &str, default: Option<&str>, optional: bool) -> Result<String, CliError> {
    let theme = theme();
    let mut input = dialoguer::Input::<String>::with_theme(&theme).with_prompt(label).allow_empty(optional);
    if let Some(d) = default {
        input = input.default(d.to_string());
    }
    input.interact_text().map_err(prompt_error)
}

/// Asks for a secret without echoing it.
pub fn secret(label: &str) -> Result<SecretString, CliError> {
    let theme = theme();
    dialoguer::Password::with_theme(&theme).with_prompt(label).interact().map(SecretString::from).map_err(prompt_error)
}

/// Asks yes or no.
pub fn confirm(label: &str, default: bool) -> Result<bool, CliError> {
    let theme = theme();
    dialoguer::Confirm::with_theme(&theme).with_prompt(label).default(default).interact().map_err(prompt_error)
}

/// Asks to pick one of `items` (type to filter); returns its index.
pub fn select(label: &str, items: &[String], default: usize) -> Result<usize, CliError> {
    let theme = theme();
    dialoguer::FuzzySelect::with_theme(&theme)
        .with_prompt(label)
        .items(items)
        .default(default)
        .max_length(12)
        .interact()
        .map_err(prompt_error)
}

/// A spinner on stderr while `work` runs, when stderr is a terminal.
pub async fn spin<T>(message: &str, work: impl Future<Output = T>) -> T {
    if !std::io::stderr().is_terminal() {
        return work.await;
    }
    let bar = indicatif::ProgressBar::new_spinner().with_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    let out = work.await;
    bar.finish_and_clear();
    out
}
