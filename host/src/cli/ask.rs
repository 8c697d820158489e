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

/// Asks for a line of text until `check` accepts it, showing what `check` says is wrong;
/// `default` is used on an empty answer.
pub fn text_checked(
    label: &str,
    default: Option<&str>,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<String, CliError> {
    let _interruptible = interruptible();
    let theme = theme();
    let mut input = dialoguer::Input::<String>::with_theme(&theme)
        .with_prompt(label)
        .allow_empty(true)
        .validate_with(|answer: &String| check(answer));
    if let Some(d) = default {
        input = input.default(d.to_string());
    }
    input.interact_text().map_err(prompt_error)
}

/// Shows a field's help above its question.
pub fn help(text: &str) {
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    let style = if color() { console::Style::new().dim() } else { console::Style::new() };
    eprintln!("  {}", style.apply_to(crate::caps::events::inert(text)));
}

/// The terminal's modes when the first prompt was shown, for [`on_interrupt`].
static TERMINAL: std::sync::OnceLock<nix::libc::termios> = std::sync::OnceLock::new();

/// Ctrl-C during a prompt: the terminal's modes back as they were (a secret prompt turns
/// echo off), the cursor shown again (list prompts hide it), and exit 130, as the shell's
/// interrupted commands do. Only async-signal-safe calls.
extern "C" fn on_interrupt(_: nix::libc::c_int) {
    const SHOW_CURSOR: &[u8] = b"\x1b[?25h\n";
    // SAFETY: tcsetattr, write and _exit are async-signal-safe; `TERMINAL` is only read,
    // after it was set before this handler was installed.
    unsafe {
        if let Some(modes) = TERMINAL.get() {
            nix::libc::tcsetattr(0, nix::libc::TCSANOW, modes);
        }
        nix::libc::write(2, SHOW_CURSOR.as_ptr().cast(), SHOW_CURSOR.len());
        nix::libc::_exit(i32::from(crate::exit::Exit::Interrupted.code()));
    }
}

/// While it lives, Ctrl-C is handled by [`on_interrupt`]; the previous handling comes back
/// when it is dropped.
struct Interruptible {
    previous: Option<nix::sys::signal::SigAction>,
}

fn interruptible() -> Interruptible {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    TERMINAL.get_or_init(|| {
        // SAFETY: tcgetattr fills the struct it is given; it is only used if that worked.
        let mut modes: nix::libc::termios = unsafe { std::mem::zeroed() };
        unsafe { nix::libc::tcgetattr(0, &mut modes) };
        modes
    });
    let action = SigAction::new(SigHandler::Handler(on_interrupt), SaFlags::empty(), SigSet::empty());
    // SAFETY: the handler makes only async-signal-safe calls.
    let previous = unsafe { sigaction(Signal::SIGINT, &action) }.ok();
    Interruptible { previous }
}

impl Drop for Interruptible {
    fn drop(&mut self) {
        if let Some(previous) = &self.previous {
            // SAFETY: puts back the handling that was in place before.
            let _ = unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGINT, previous) };
        }
    }
}

/// Asks for a secret without echoing it.
pub fn secret(label: &str) -> Result<SecretString, CliError> {
    let _interruptible = interruptible();
    let theme = theme();
    dialoguer::Password::with_theme(&theme)
        .with_prompt(label)
        .allow_empty_password(true)
        .interact()
        .map(SecretString::from)
        .map_err(prompt_error)
}

/// Asks yes or no.
pub fn confirm(label: &str, default: bool) -> Result<bool, CliError> {
    let _interruptible = interruptible();
    let theme = theme();
    dialoguer::Confirm::with_theme(&theme).with_prompt(label).default(default).interact().map_err(prompt_error)
}

/// Asks to pick one of `items` (type to filter); returns its index.
pub fn select(label: &str, items: &[String], default: usize) -> Result<usize, CliError> {
    let _interruptible = interruptible();
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
