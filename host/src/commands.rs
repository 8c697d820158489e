//! Shell words of deploy commands, and the only edits the host lets a plugin make to them.
//!
//! A server's deploy commands are shell text the user wrote (`heroku run rake db:migrate`),
//! run with `sh -c`. A deployment method may want a flag in them (`--exit-code` after
//! `heroku run`, so a failing one-off dyno fails the deploy). Plugins are hostile, so the host
//! never runs text a plugin wrote: it makes the edit itself, and the only edit it makes is to
//! insert a plain flag word ([`is_flag`]) right after the end of a word of the user's command.
//! A flag word has no character the shell treats specially, and it lands outside every quoted
//! string, comment and substitution, so the shell runs the user's command with one more argument
//! and nothing else changes.
//!
//! Two ways in:
//!
//! - Contract 0.2.0 plugins declare [`Rule`]s ("insert `--exit-code` after `heroku run` unless
//!   `-x` or `--exit-code` is already there"); [`check_rule`] vets them and [`apply`] carries
//!   them out.
//! - Contract 0.1.0 plugins return rewritten command text. [`accept_rewrite`] accepts it only
//!   when it is the user's command with flag words inserted, and then returns the host's own
//!   reconstruction of that edit, never the plugin's text.
//!
//! # The scanner
//!
//! [`words`] splits a command the way POSIX `sh` does, as far as it needs to and no further:
//!
//! - Words are separated by spaces and tabs (only those, as in `sh`). Single quotes, double
//!   quotes (where a backslash escapes `"`, `\`, `$` and a backtick, and is literal before
//!   anything else) and a backslash outside quotes are removed from a word's value.
//! - `;`, `;;`, `&`, `&&`, `|`, `||`, `(`, `)` and a newline are operator tokens, with or without
//!   spaces around them. `&` and `|` right after an unquoted `<` or `>` belong to the
//!   redirection (`2>&1`, `>|`), as in `sh`; other redirections stay inside their word (`>log`).
//! - An unquoted `#` at the start of a word begins a comment that runs to the end of the line.
//! - `$(...)`, `$((...))`, `${...}` and backticks are kept whole, unexpanded, inside the word that
//!   holds them: the text of their body is the word's text there, and nothing inside them is
//!   examined or edited. `$name` is kept literally too.
//! - A backslash-newline (line continuation) is accepted between words, after a blank.
//!
//! Anything the scanner cannot follow exactly as every `sh` would makes the whole command
//! unparseable (`None`) rather than guessed at: an unbalanced quote, a trailing backslash, a
//! heredoc (`<<`), a `case` command (its patterns end in an unbalanced `)`), bash's `$'...'`, a
//! line continuation inside a word or straight after an operator, a `#` straight after a
//! redirection, comments inside `$(...)`, quotes or backslashes inside backticks, quotes, braces,
//! parentheses or other unusual characters inside `${...}` or `$((...))`, and substitutions
//! nested more than 16 deep. An unparseable command is run as the user wrote it.
//!
//! # Where a rule matches
//!
//! A simple command is the run of words between operators. Its command word is its first word
//! after any leading reserved words that open a command (`!`, `{`, `if`, `then`, `else`, `elif`,
//! `while`, `until`, `do`) and then any leading assignments (`NAME=value`, unquoted name). A rule
//! matches a simple command when the words starting at its command word have exactly the rule's
//! prefix as their values (after quote removal, so `"heroku" run` counts: inserting after a
//! quoted word is as safe as after a bare one). So `heroku run x`, `cd app&&heroku run x`,
//! `(heroku run x)`, `FOO=1 heroku run x`, `if heroku run x; then` and `"heroku" run x` all match
//! `heroku run`; `heroku run:detached x`, `echo heroku run`, `'heroku run' x`, `sudo heroku run
//! x`, `$(heroku run x)` and `2>/dev/null heroku run x` do not. A function's name (`rake() {
//! ...; }`) is not a command word.
//!
//! # What this does not promise
//!
//! The guarantee is about the shell: it runs the user's commands with extra flag arguments, each
//! given to the program named by a prefix the rule (or, for 0.1.0, the user) chose. What a flag
//! then means is up to that program: `--require=x` or `--config=x` may be powerful, and a program
//! that runs its later arguments as a command (`env A=1 cmd`, `timeout 5 cmd`, `xargs cmd`) would
//! take a flag inserted before `cmd` for a command name. Which prefixes and flags a plugin may
//! declare is the caller's policy; the notes tell the user what was inserted.

use std::fmt;
use std::ops::Range;

/// One shell word (or operator) of a command and where it is in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The word's value after quote removal. Substitutions (`$(...)`, backticks, `${...}`,
    /// `$((...))`) and `$name` are kept as written, unexpanded. For an operator, its text.
    pub text: String,
    /// The byte range of the word in the original text, quotes included.
    pub span: Range<usize>,
    /// Whether this is an operator token: `;`, `;;`, `&&`, `||`, `|`, `&`, `(`, `)` or a newline.
    pub operator: bool,
}

/// A declared rule: insert `flag` after `prefix` at the start of a simple command, unless the
/// flag (or an `unless` flag) is already there.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    /// The words a simple command must start with, such as `["heroku", "run"]`
    /// (see [`is_plain_word`]).
    pub prefix: Vec<String>,
    /// The flag to insert right after the prefix (see [`is_flag`]).
    pub flag: String,
    /// Flags whose presence means the flag is not needed, such as `-x` for `--exit-code`.
    pub unless: Vec<String>,
    /// Why the flag is added, shown to the user when it is.
    pub reason: String,
}

/// What [`apply`] did to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The command to run: the user's text with zero or more flags inserted.
    pub command: String,
    /// One line per rule that inserted something, one if the command could not be parsed (and
    /// so was left as written), and one per rule ignored as invalid; without duplicates.
    pub notes: Vec<String>,
}

/// Why [`accept_rewrite`] refused a 0.1.0 plugin's rewritten command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RewriteError {
    /// The original command could not be parsed as shell words, so only an unchanged command
    /// is accepted.
    OriginalUnparseable,
    /// The returned command could not be parsed as shell words.
    ReturnedUnparseable,
    /// A word of the returned command (numbered from 1) is neither the original's next word nor
    /// a plain flag word, or it is an operator the original does not have there.
    UnexpectedWord {
        /// Its position among the returned command's words, from 1.
        position: usize,
        /// Its value.
        word: String,
    },
    /// A flag word was inserted where it would not surely be a plain argument: before the command
    /// word of a simple command (or before any word), after a function's name, or in a simple
    /// command whose command word is not a plain word ([`is_plain_word`]: it might expand to
    /// anything) or is a shell keyword (`for`, `}`...) or a builtin that runs its arguments
    /// (`eval`, `exec`, `command`...).
    MisplacedFlag {
        /// Its position among the returned command's words, from 1.
        position: usize,
        /// Its value.
        word: String,
    },
    /// The returned command ends before a word of the original.
    MissingWord {
        /// The first original word it lacks.
        word: String,
    },
}

impl fmt::Display for RewriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OriginalUnparseable => {
                f.write_str("the original command could not be parsed as shell words, so it may not be changed")
            }
            Self::ReturnedUnparseable => f.write_str("the returned command could not be parsed as shell words"),
            Self::UnexpectedWord { position, word } => write!(
                f,
                "word {position} of the returned command, {}, is not in the original command and is not a plain flag",
                shown(word)
            ),
            Self::MisplacedFlag { position, word } => write!(
                f,
                "word {position} of the returned command, the flag {}, is inserted where it would not surely be a plain \
                 argument (before a command name, or in a command whose name is not a plain word, is a shell keyword or \
                 is a builtin that runs its arguments)",
                shown(word)
            ),
            Self::MissingWord { word } => {
                write!(f, "the returned command lacks the original's word {}", shown(word))
            }
        }
    }
}

impl std::error::Error for RewriteError {}

/// The note [`apply`] gives when a command cannot be parsed.
pub const UNPARSEABLE_NOTE: &str = "command could not be parsed as shell words; rules not applied";

/// The most words a rule's prefix may have.
pub const MAX_PREFIX_WORDS: usize = 8;
/// The most `unless` flags a rule may have.
pub const MAX_UNLESS_FLAGS: usize = 16;
/// The longest prefix word or flag a rule may have, in bytes.
pub const MAX_RULE_WORD_LEN: usize = 128;
/// The longest reason a rule may give, in characters.
pub const MAX_REASON_CHARS: usize = 300;

/// How deeply `$(...)` may nest before the scanner gives up, so that hostile text cannot
/// exhaust the stack.
const MAX_NESTING: usize = 16;

/// Reserved words that may open a simple command before its command word.
const OPENERS: &[&str] = &["!", "{", "if", "then", "else", "elif", "while", "until", "do"];

/// Reserved words (of POSIX `sh` and bash), which are not programs and take no flags.
const RESERVED: &[&str] = &[
    "!", "{", "}", "if", "then", "else", "elif", "fi", "while", "until", "do", "done", "for", "in", "case", "esac",
    "function", "select", "coproc", "time",
];

/// Shell builtins that run their arguments as commands (or read them as code), so that a flag
/// inserted after them could be taken for a command name.
const RUNNERS: &[&str] = &["eval", "exec", "command", "builtin", ".", "source", "trap"];

/// Splits `command` into words and operators with their spans; `None` if it cannot be parsed
/// (unbalanced quotes, a trailing backslash, or a construct the scanner does not follow: see the
/// module docs). Comments are skipped; the newline ending one is still an operator.
pub fn words(command: &str) -> Option<Vec<Word>> {
    scan_list(command.as_bytes(), 0, 0, false).map(|(words, _)| words)
}

/// Whether `word` may be inserted into a command: `-x` (one ASCII letter or digit), `--name`
/// (an ASCII letter, then ASCII letters, digits and `-`), or `--name=value` where the value is
/// non-empty and only ASCII letters, digits and `._:/@+,-`. None of these characters means
/// anything to the shell, quoted or not.
pub fn is_flag(word: &str) -> bool {
    if let Some(rest) = word.strip_prefix("--") {
        let (name, value) = match rest.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (rest, None),
        };
        name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && value.is_none_or(|v| !v.is_empty() && v.bytes().all(is_flag_value_byte))
    } else {
        matches!(word.as_bytes(), [b'-', c] if c.is_ascii_alphanumeric())
    }
}

/// Whether `word` is plain enough to be a rule's prefix word (a program name or a subcommand):
/// non-empty, only ASCII letters, digits and `._:/@+-`, and not starting with `-`.
pub fn is_plain_word(word: &str) -> bool {
    !word.is_empty()
        && !word.starts_with('-')
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'@' | b'+' | b'-'))
}

/// Checks a rule's own shape: a prefix of 1 to [`MAX_PREFIX_WORDS`] plain words
/// ([`is_plain_word`]), the first neither a shell keyword (`for`, `time`...) nor a builtin that
/// runs its arguments (`eval`, `exec`, `command`, `builtin`, `.`, `source`, `trap`); a flag and
/// at most [`MAX_UNLESS_FLAGS`] `unless` flags that pass [`is_flag`]; each word at most
/// [`MAX_RULE_WORD_LEN`] bytes; and a reason of one line without control characters, at most
/// [`MAX_REASON_CHARS`] long. The error names what is wrong, with any plugin-supplied text
/// escaped.
pub fn check_rule(rule: &Rule) -> Result<(), String> {
    if rule.prefix.is_empty() {
        return Err("the rule has no prefix words".into());
    }
    if rule.prefix.len() > MAX_PREFIX_WORDS {
        return Err(format!(
            "the rule's prefix has {} words; at most {MAX_PREFIX_WORDS} are allowed",
            rule.prefix.len()
        ));
    }
    if let Some(word) = rule.prefix.iter().find(|w| !is_plain_word(w) || w.len() > MAX_RULE_WORD_LEN) {
        return Err(format!(
            "prefix word {} is not a plain word (ASCII letters, digits and ._:/@+- only, not starting with -, \
             at most {MAX_RULE_WORD_LEN} bytes)",
            shown(word)
        ));
    }
    if let Some(first) = rule.prefix.first().filter(|w| RESERVED.contains(&w.as_str()) || RUNNERS.contains(&w.as_str()))
    {
        return Err(format!(
            "prefix word {} is a shell keyword or a builtin that runs its arguments, so a flag after it would not be a flag",
            shown(first)
        ));
    }
    let bad_flag = |flag: &str| !is_flag(flag) || flag.len() > MAX_RULE_WORD_LEN;
    if bad_flag(&rule.flag) {
        return Err(format!("flag {} is not a plain flag (-x, --name or --name=value)", shown(&rule.flag)));
    }
    if rule.unless.len() > MAX_UNLESS_FLAGS {
        return Err(format!("the rule has {} unless flags; at most {MAX_UNLESS_FLAGS} are allowed", rule.unless.len()));
    }
    if let Some(flag) = rule.unless.iter().find(|f| bad_flag(f)) {
        return Err(format!("unless flag {} is not a plain flag (-x, --name or --name=value)", shown(flag)));
    }
    if rule.reason.trim().is_empty() {
        return Err("the rule gives no reason".into());
    }
    if rule.reason.chars().any(char::is_control) {
        return Err("the rule's reason contains control characters".into());
    }
    if rule.reason.chars().count() > MAX_REASON_CHARS {
        return Err(format!("the rule's reason is longer than {MAX_REASON_CHARS} characters"));
    }
    Ok(())
}

/// Applies `rules` to one user command.
///
/// Each rule that passes [`check_rule`] is tried at every simple command (see the module docs
/// for where it matches). Where it matches, ` FLAG` is inserted right after the last prefix
/// word, unless that simple command already has, before any `--` word, the flag itself, its
/// `--name=...` form (or `--name` alone when the flag is `--name=value`), any `unless` flag or
/// its `--name=...` form, or a flag an earlier rule inserted there that counts as one of these.
///
/// The notes say what was inserted where, with the rule's reason, once per rule; a command that
/// cannot be parsed is returned as written with [`UNPARSEABLE_NOTE`]. Rules that fail
/// [`check_rule`] are ignored, with a note.
pub fn apply(command: &str, rules: &[Rule]) -> Applied {
    let mut notes = Vec::new();
    let mut valid = Vec::with_capacity(rules.len());
    for rule in rules {
        match check_rule(rule) {
            Ok(()) => valid.push(rule),
            Err(why) => push_unique(&mut notes, format!("ignored an invalid command rule: {why}")),
        }
    }
    let unchanged = |notes| Applied { command: command.to_owned(), notes };
    if valid.is_empty() {
        return unchanged(notes);
    }
    let Some(words) = words(command) else {
        push_unique(&mut notes, UNPARSEABLE_NOTE.to_owned());
        return unchanged(notes);
    };

    let mut insertions: Vec<(usize, &str)> = Vec::new();
    for Simple { words: simple, command: start, .. } in simple_commands(&words, command) {
        let Some(start) = start else { continue };
        let mut inserted: Vec<&str> = Vec::new();
        for rule in &valid {
            let end = start + rule.prefix.len();
            let Some(prefix) = simple.get(start..end) else { continue };
            if !prefix.iter().zip(&rule.prefix).all(|(word, want)| word.text == *want) {
                continue;
            }
            let args = simple.get(end..).unwrap_or_default().iter().map(|w| w.text.as_str()).take_while(|w| *w != "--");
            let present =
                |word: &str| mentions(word, &rule.flag) || rule.unless.iter().any(|flag| mentions(word, flag));
            if args.chain(inserted.iter().copied()).any(present) {
                continue;
            }
            let Some(last) = prefix.last() else { continue };
            insertions.push((last.span.end, &rule.flag));
            inserted.push(&rule.flag);
            push_unique(
                &mut notes,
                format!("added `{}` to `{}`: {}", rule.flag, rule.prefix.join(" "), rule.reason.trim()),
            );
        }
    }
    insertions.sort_by_key(|&(at, _)| at);
    match with_insertions(command, &insertions) {
        Some(new) => Applied { command: new, notes },
        // Unreachable: spans always lie on character boundaries.
        None => unchanged(vec![UNPARSEABLE_NOTE.to_owned()]),
    }
}

/// Checks a contract 0.1.0 plugin's rewrite of `original`.
///
/// `returned` is accepted when it equals `original`, or when its words are the original's words
/// (same values, same operators) with flag words ([`is_flag`]) inserted, each after the command
/// word of its simple command or later. Never before a simple command's command word, never as
/// an operator, never after a function's name, and never in a simple command whose command word
/// is not a plain word ([`is_plain_word`], so that it cannot expand to something else), is a
/// shell keyword, or is a builtin that runs its arguments (`eval`, `exec`, `command`, `builtin`,
/// `.`, `source`, `trap`). Quoting, spacing and comments of the returned text are irrelevant: the
/// result is the host's reconstruction, `original` with ` FLAG` inserted right after the span end
/// of the original word each flag follows, never the plugin's text.
pub fn accept_rewrite(original: &str, returned: &str) -> Result<String, RewriteError> {
    if returned == original {
        return Ok(original.to_owned());
    }
    let old = words(original).ok_or(RewriteError::OriginalUnparseable)?;
    let new = words(returned).ok_or(RewriteError::ReturnedUnparseable)?;
    let may_follow = insertion_points(&old, original);
    let mut insertions: Vec<(usize, &str)> = Vec::new();
    let mut matched = 0;
    for (index, word) in new.iter().enumerate() {
        let position = index + 1;
        if old.get(matched).is_some_and(|o| o.operator == word.operator && o.text == word.text) {
            matched += 1;
            continue;
        }
        if word.operator || !is_flag(&word.text) {
            return Err(RewriteError::UnexpectedWord { position, word: word.text.clone() });
        }
        let after = matched.checked_sub(1).filter(|&i| may_follow.get(i) == Some(&true));
        let Some(after) = after.and_then(|i| old.get(i)) else {
            return Err(RewriteError::MisplacedFlag { position, word: word.text.clone() });
        };
        insertions.push((after.span.end, &word.text));
    }
    if let Some(missing) = old.get(matched) {
        return Err(RewriteError::MissingWord { word: missing.text.clone() });
    }
    with_insertions(original, &insertions).ok_or(RewriteError::OriginalUnparseable)
}

/// The command word of every simple command, in order (see the module docs), for checking which
/// programs the commands need. Reserved words (`if`, `for`, `done`, ...) are left out, values
/// are unexpanded (`$TOOL` stays `$TOOL`), and programs run inside substitutions are not seen.
/// Empty when the command cannot be parsed.
pub fn first_words(command: &str) -> Vec<String> {
    let Some(words) = words(command) else { return Vec::new() };
    simple_commands(&words, command)
        .into_iter()
        .filter_map(|simple| {
            let word = simple.words.get(simple.command?)?;
            (!RESERVED.contains(&raw(command, word))).then(|| word.text.clone())
        })
        .collect()
}

/// For each word of a parsed command, whether a flag may be inserted right after it: at or after
/// the command word of its simple command, where that word is plain and neither reserved nor a
/// builtin that runs its arguments.
fn insertion_points(words: &[Word], command: &str) -> Vec<bool> {
    let mut allowed = vec![false; words.len()];
    for simple in simple_commands(words, command) {
        let Some(start) = simple.command else { continue };
        let Some(name) = simple.words.get(start).map(|w| w.text.as_str()) else { continue };
        if !is_plain_word(name) || RESERVED.contains(&name) || RUNNERS.contains(&name) {
            continue;
        }
        for slot in allowed.iter_mut().skip(simple.offset + start).take(simple.words.len() - start) {
            *slot = true;
        }
    }
    allowed
}

/// One simple command of a parsed command: the words between two operators.
struct Simple<'a> {
    /// Its words.
    words: &'a [Word],
    /// The index of its first word among all the command's words.
    offset: usize,
    /// The index in `words` of its command word ([`command_start`]); `None` if it has none, or
    /// if it is a function's name (followed by `(`).
    command: Option<usize>,
}

/// The simple commands of a parsed command, in order.
fn simple_commands<'a>(words: &'a [Word], command: &str) -> Vec<Simple<'a>> {
    let mut all = Vec::new();
    let mut offset = 0;
    for simple in words.split(|w| w.operator) {
        let function_name = words.get(offset + simple.len()).is_some_and(|w| w.text == "(");
        let start = if function_name { None } else { command_start(simple, command) };
        all.push(Simple { words: simple, offset, command: start });
        offset += simple.len() + 1;
    }
    all
}

/// The index of a simple command's command word: past leading reserved words that open a
/// command, then past leading assignments. `None` if there is no such word.
fn command_start(simple: &[Word], command: &str) -> Option<usize> {
    let mut i = 0;
    while simple.get(i).is_some_and(|w| OPENERS.contains(&raw(command, w))) {
        i += 1;
    }
    while simple.get(i).is_some_and(|w| is_assignment(raw(command, w))) {
        i += 1;
    }
    (i < simple.len()).then_some(i)
}

/// A word as written, quotes included.
fn raw<'a>(command: &'a str, word: &Word) -> &'a str {
    command.get(word.span.clone()).unwrap_or_default()
}

/// Whether a word as written is an assignment: an unquoted name, then `=`.
fn is_assignment(raw: &str) -> bool {
    raw.split_once('=').is_some_and(|(name, _)| {
        name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// Whether `word` is `flag`, or names it: `--name=...` for `--name`, or `--name` (or
/// `--name=other`) for `--name=value`.
fn mentions(word: &str, flag: &str) -> bool {
    if word == flag {
        return true;
    }
    let Some(rest) = flag.strip_prefix("--") else { return false };
    let name = rest.split_once('=').map_or(rest, |(name, _)| name);
    word.strip_prefix("--")
        .and_then(|w| w.strip_prefix(name))
        .is_some_and(|tail| tail.is_empty() || tail.starts_with('='))
}

fn is_flag_value_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'@' | b'+' | b',' | b'-')
}

/// `text` with ` FLAG` inserted at each byte position, in order. `None` if a position is not a
/// character boundary (never the case for word spans).
fn with_insertions(text: &str, insertions: &[(usize, &str)]) -> Option<String> {
    let mut out = String::with_capacity(text.len() + insertions.iter().map(|(_, f)| f.len() + 1).sum::<usize>());
    let mut done = 0;
    for &(at, flag) in insertions {
        out.push_str(text.get(done..at)?);
        out.push(' ');
        out.push_str(flag);
        done = at;
    }
    out.push_str(text.get(done..)?);
    Some(out)
}

fn push_unique(notes: &mut Vec<String>, note: String) {
    if !notes.contains(&note) {
        notes.push(note);
    }
}

/// Plugin-supplied text for a message: escaped, quoted and cut short.
fn shown(text: &str) -> String {
    const MAX: usize = 60;
    let cut: String = text.chars().take(MAX).collect();
    if cut.len() < text.len() { format!("{cut:?}…") } else { format!("{cut:?}") }
}

// ---- the scanner ----

/// Scans words and operators from `pos`. At the top level it runs to the end of the text; nested
/// (the body of `$(`) it stops after the `)` that closes the substitution and returns the
/// position after it.
fn scan_list(src: &[u8], mut pos: usize, depth: usize, nested: bool) -> Option<(Vec<Word>, usize)> {
    let mut words = Vec::new();
    let mut parens = 0usize;
    // Whether the next word is in command position (where `case` would be reserved).
    let mut at_command = true;
    loop {
        let Some(&b) = src.get(pos) else {
            return if nested { None } else { Some((words, pos)) };
        };
        match b {
            b' ' | b'\t' => pos += 1,
            b'\\' if src.get(pos + 1) == Some(&b'\n') => {
                // A line continuation between words: only after a blank, so that it cannot join
                // two characters into an operator or an expansion.
                if pos > 0 && !matches!(src.get(pos - 1), Some(b' ' | b'\t' | b'\n')) {
                    return None;
                }
                pos += 2;
            }
            b'#' => {
                if nested {
                    // Shells disagree about comments inside `$(...)`.
                    return None;
                }
                while src.get(pos).is_some_and(|&c| c != b'\n') {
                    pos += 1;
                }
            }
            b'\n' | b';' | b'&' | b'|' | b'(' | b')' => {
                if nested && b == b')' {
                    if parens == 0 {
                        return Some((words, pos + 1));
                    }
                    parens -= 1;
                }
                if nested && b == b'(' {
                    parens += 1;
                }
                let len = if matches!(b, b';' | b'&' | b'|') && src.get(pos + 1) == Some(&b) { 2 } else { 1 };
                words.push(Word {
                    text: std::iter::repeat_n(char::from(b), len).collect(),
                    span: pos..pos + len,
                    operator: true,
                });
                pos += len;
                at_command = true;
            }
            _ => {
                let (word, end) = scan_word(src, pos, depth)?;
                if at_command {
                    let raw = src.get(pos..end).and_then(|r| std::str::from_utf8(r).ok()).unwrap_or_default();
                    if raw == "case" {
                        // Its patterns end in an unbalanced `)` and are not commands.
                        return None;
                    }
                    at_command = OPENERS.contains(&raw) || is_assignment(raw);
                }
                words.push(word);
                pos = end;
            }
        }
    }
}

/// Scans one word starting at `start` (not a blank, operator or comment). Returns it and the
/// position after it.
fn scan_word(src: &[u8], start: usize, depth: usize) -> Option<(Word, usize)> {
    let mut value = Vec::new();
    let mut pos = start;
    // The previous byte, when it was part of an unquoted redirection operator.
    let mut redirect: Option<u8> = None;
    while let Some(&b) = src.get(pos) {
        let mut next_redirect = None;
        match b {
            b' ' | b'\t' | b'\n' | b';' | b'(' | b')' => break,
            b'&' if matches!(redirect, Some(b'<' | b'>')) => {
                value.push(b);
                pos += 1;
                next_redirect = Some(b);
            }
            b'|' if redirect == Some(b'>') => {
                value.push(b);
                pos += 1;
                next_redirect = Some(b);
            }
            b'&' | b'|' => break,
            b'#' if redirect.is_some() => return None,
            b'<' if redirect == Some(b'<') => return None,
            b'<' | b'>' => {
                value.push(b);
                pos += 1;
                next_redirect = Some(b);
            }
            b'\'' => {
                let len = src.get(pos + 1..)?.iter().position(|&c| c == b'\'')?;
                value.extend_from_slice(src.get(pos + 1..pos + 1 + len)?);
                pos += len + 2;
            }
            b'"' => pos = scan_double(src, pos + 1, depth, &mut value)?,
            b'\\' => match src.get(pos + 1) {
                None | Some(b'\n') => return None,
                Some(&c) => {
                    value.push(c);
                    pos += 2;
                }
            },
            b'$' => pos = scan_dollar(src, pos, depth, false, &mut value)?,
            b'`' => pos = scan_backticks(src, pos, &mut value)?,
            _ => {
                value.push(b);
                pos += 1;
            }
        }
        redirect = next_redirect;
    }
    let text = String::from_utf8(value).ok()?;
    Some((Word { text, span: start..pos, operator: false }, pos))
}

/// Scans the rest of a double-quoted string from `pos` (just after the opening quote), adding
/// its value to `value`. Returns the position after the closing quote.
fn scan_double(src: &[u8], mut pos: usize, depth: usize, value: &mut Vec<u8>) -> Option<usize> {
    loop {
        match *src.get(pos)? {
            b'"' => return Some(pos + 1),
            b'\\' => match *src.get(pos + 1)? {
                c @ (b'$' | b'`' | b'"' | b'\\') => {
                    value.push(c);
                    pos += 2;
                }
                b'\n' => return None,
                _ => {
                    value.push(b'\\');
                    pos += 1;
                }
            },
            b'$' => pos = scan_dollar(src, pos, depth, true, value)?,
            b'`' => pos = scan_backticks(src, pos, value)?,
            c => {
                value.push(c);
                pos += 1;
            }
        }
    }
}

/// Scans what starts with the `$` at `pos`: a substitution is kept whole in `value`, any other
/// `$` is literal. Returns the position after it.
fn scan_dollar(src: &[u8], pos: usize, depth: usize, quoted: bool, value: &mut Vec<u8>) -> Option<usize> {
    let end = match src.get(pos + 1) {
        Some(b'(') if src.get(pos + 2) == Some(&b'(') => arithmetic_end(src, pos + 3)?,
        Some(b'(') => {
            if depth >= MAX_NESTING {
                return None;
            }
            scan_list(src, pos + 2, depth + 1, true)?.1
        }
        Some(b'{') => parameter_end(src, pos + 2)?,
        // bash's `$'...'` quoting, which other shells read differently.
        Some(b'\'') if !quoted => return None,
        _ => {
            value.push(b'$');
            return Some(pos + 1);
        }
    };
    value.extend_from_slice(src.get(pos..end)?);
    Some(end)
}

/// The position after the `))` closing an arithmetic expansion whose body starts at `pos`.
/// Only plain arithmetic is accepted, so that every shell finds the same end.
fn arithmetic_end(src: &[u8], mut pos: usize) -> Option<usize> {
    let mut parens = 0usize;
    loop {
        match *src.get(pos)? {
            b'(' => parens += 1,
            b')' if parens > 0 => parens -= 1,
            b')' => return (src.get(pos + 1) == Some(&b')')).then_some(pos + 2),
            c if c.is_ascii_alphanumeric() || b" \t_+-*/%<>=!&|^~?:,$#".contains(&c) => {}
            _ => return None,
        }
        pos += 1;
    }
}

/// The position after the `}` closing a parameter expansion whose body starts at `pos`. Only
/// plain bodies are accepted (no quotes, backslashes, braces, parentheses or backticks), so
/// that every shell finds the same end.
fn parameter_end(src: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        match *src.get(pos)? {
            b'}' => return Some(pos + 1),
            c if c.is_ascii_alphanumeric() || b" \t_:-=+?#%/*@!.,^~[]$".contains(&c) => pos += 1,
            _ => return None,
        }
    }
}

/// Scans a backtick substitution starting at `pos`, kept whole in `value`. Its body may not
/// hold quotes or backslashes, whose meaning there differs between shells. Returns the position
/// after the closing backtick.
fn scan_backticks(src: &[u8], pos: usize, value: &mut Vec<u8>) -> Option<usize> {
    let body = src.get(pos + 1..)?;
    let len = body.iter().position(|&c| matches!(c, b'`' | b'\'' | b'"' | b'\\'))?;
    if body.get(len) != Some(&b'`') {
        return None;
    }
    let end = pos + len + 2;
    value.extend_from_slice(src.get(pos..end)?);
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn rule(prefix: &str, flag: &str, unless: &[&str], reason: &str) -> Rule {
        Rule {
            prefix: prefix.split(' ').map(str::to_owned).collect(),
            flag: flag.to_owned(),
            unless: unless.iter().map(|s| s.to_string()).collect(),
            reason: reason.to_owned(),
        }
    }

    fn exit_code() -> Rule {
        rule("heroku run", "--exit-code", &["-x"], "a failure in the dyno fails the deploy")
    }

    const EXIT_NOTE: &str = "added `--exit-code` to `heroku run`: a failure in the dyno fails the deploy";

    fn applied(command: &str) -> String {
        apply(command, &[exit_code()]).command
    }

    fn values(command: &str) -> Option<Vec<String>> {
        words(command).map(|ws| ws.into_iter().map(|w| w.text).collect())
    }

    // ---- apply ----

    #[test]
    fn exit_code_is_added_after_heroku_run() {
        let out = apply("heroku run rake db:migrate", &[exit_code()]);
        assert_eq!(out.command, "heroku run --exit-code rake db:migrate");
        assert_eq!(out.notes, vec![EXIT_NOTE.to_owned()]);
        assert_eq!(applied("heroku run"), "heroku run --exit-code");
    }

    #[test]
    fn present_flags_leave_the_command_alone() {
        for command in [
            "heroku run --exit-code rake db:migrate",
            "heroku run -x rake db:migrate",
            "heroku run rake db:migrate -x",
            "heroku run --exit-code=true rake",
            "heroku run '-x' rake",
            "heroku run -a app --exit-code -- rake",
        ] {
            let out = apply(command, &[exit_code()]);
            assert_eq!(out, Applied { command: command.to_owned(), notes: vec![] }, "{command}");
        }
    }

    #[test]
    fn flags_after_a_double_dash_do_not_count() {
        assert_eq!(applied("heroku run -- sh -c 'exit 3' -x"), "heroku run --exit-code -- sh -c 'exit 3' -x");
        assert_eq!(applied("heroku run \"--\" --exit-code"), "heroku run --exit-code \"--\" --exit-code");
    }

    #[test]
    fn only_the_exact_prefix_at_a_command_start_matches() {
        for command in [
            "heroku run:detached x",
            "echo heroku run",
            "echo 'heroku run x'",
            "'heroku run' x",
            "heroku runs x",
            "heroku ps; echo run",
            "sudo heroku run x",
            "2>/dev/null heroku run x",
            "x=$(heroku run y)",
            "echo `heroku run y`",
            "echo \"$(true; heroku run y)\"",
            "HEROKU=1heroku run",
            "\\heroku\\ run x",
        ] {
            let out = apply(command, &[exit_code()]);
            assert_eq!(out, Applied { command: command.to_owned(), notes: vec![] }, "{command}");
        }
    }

    #[test]
    fn whitespace_and_quotes_around_the_prefix_are_kept() {
        assert_eq!(applied("heroku  run\tfoo"), "heroku  run --exit-code\tfoo");
        assert_eq!(applied("  heroku run"), "  heroku run --exit-code");
        assert_eq!(applied("\"heroku\" 'run' x"), "\"heroku\" 'run' --exit-code x");
        assert_eq!(applied("her\\oku r\"u\"n x"), "her\\oku r\"u\"n --exit-code x");
        assert_eq!(applied("echo \"a  b\" && heroku run x"), "echo \"a  b\" && heroku run --exit-code x");
    }

    #[test]
    fn every_simple_command_is_a_start() {
        assert_eq!(applied("a && heroku run b; heroku run -x c"), "a && heroku run --exit-code b; heroku run -x c");
        assert_eq!(applied("cd app&&heroku run x"), "cd app&&heroku run --exit-code x");
        assert_eq!(applied("x;heroku run y|heroku run z"), "x;heroku run --exit-code y|heroku run --exit-code z");
        assert_eq!(applied("a || heroku run b & heroku run"), "a || heroku run --exit-code b & heroku run --exit-code");
        assert_eq!(applied("echo a\nheroku run b"), "echo a\nheroku run --exit-code b");
        assert_eq!(applied("(heroku run b)"), "(heroku run --exit-code b)");
        assert_eq!(applied("(cd app; heroku run -x)"), "(cd app; heroku run -x)");
        let out = apply("heroku run a; heroku run b", &[exit_code()]);
        assert_eq!(out.command, "heroku run --exit-code a; heroku run --exit-code b");
        assert_eq!(out.notes, vec![EXIT_NOTE.to_owned()], "notes are not repeated");
    }

    #[test]
    fn assignments_and_opening_reserved_words_come_before_the_command_word() {
        assert_eq!(applied("FOO=1 heroku run x"), "FOO=1 heroku run --exit-code x");
        assert_eq!(applied("A=1 B='x y' heroku run"), "A=1 B='x y' heroku run --exit-code");
        assert_eq!(
            applied("if heroku run x; then heroku run y; fi"),
            "if heroku run --exit-code x; then heroku run --exit-code y; fi"
        );
        assert_eq!(applied("! heroku run x"), "! heroku run --exit-code x");
        assert_eq!(applied("{ heroku run x; }"), "{ heroku run --exit-code x; }");
        assert_eq!(applied("\"FOO=1\" heroku run x"), "\"FOO=1\" heroku run x", "a quoted word is no assignment");
        assert_eq!(applied("'if' heroku run x"), "'if' heroku run x", "a quoted word is not reserved");
    }

    #[test]
    fn redirections_do_not_end_a_command() {
        assert_eq!(applied("heroku run x 2>&1 -x"), "heroku run x 2>&1 -x");
        assert_eq!(applied("heroku run x >|log -x"), "heroku run x >|log -x");
        assert_eq!(applied("heroku run x 2>&1 | tee log"), "heroku run --exit-code x 2>&1 | tee log");
        assert_eq!(applied("heroku run >log x"), "heroku run --exit-code >log x");
    }

    #[test]
    fn comments_are_not_commands() {
        assert_eq!(applied("heroku run x # heroku run y"), "heroku run --exit-code x # heroku run y");
        assert_eq!(applied("# heroku run x"), "# heroku run x");
        assert_eq!(applied("heroku run x #-x"), "heroku run --exit-code x #-x");
        assert_eq!(applied("echo a;# heroku run\nheroku run b"), "echo a;# heroku run\nheroku run --exit-code b");
        assert_eq!(applied("echo a#b; heroku run c"), "echo a#b; heroku run --exit-code c");
    }

    #[test]
    fn substitutions_are_kept_whole() {
        assert_eq!(applied("V=$(cat v) heroku run x"), "V=$(cat v) heroku run --exit-code x");
        assert_eq!(applied("heroku run \"$(echo \")\"; -x)\""), "heroku run --exit-code \"$(echo \")\"; -x)\"");
        assert_eq!(applied("heroku run ${APP:-my app} x"), "heroku run --exit-code ${APP:-my app} x");
        assert_eq!(applied("heroku run $((1 + (2 * 3))) x"), "heroku run --exit-code $((1 + (2 * 3))) x");
        assert_eq!(applied("heroku run `date` x"), "heroku run --exit-code `date` x");
        assert_eq!(applied("echo $(a; b) && heroku run c"), "echo $(a; b) && heroku run --exit-code c");
    }

    #[test]
    fn line_continuations_between_words_are_followed() {
        assert_eq!(applied("heroku run \\\n  rake db:migrate"), "heroku run --exit-code \\\n  rake db:migrate");
        assert_eq!(applied("heroku run \\\n  -x rake"), "heroku run \\\n  -x rake");
    }

    #[test]
    fn unparseable_commands_are_left_as_written_with_a_note() {
        for command in [
            "heroku run 'unterminated",
            "heroku run \"unterminated",
            "heroku run x \\",
            "heroku run $(unterminated",
            "heroku run `unterminated",
            "heroku run x <<EOF\nbody\nEOF",
            "heroku run $'a\\'b'",
            "heroku run x\\\ny",
            "heroku run x >#y",
            "heroku run \"$(echo a # )\")\"",
            "heroku run $(case x in a) b;; esac)",
            "heroku run ${x:-\"a}\"}",
            "heroku run `echo \"a\"`",
        ] {
            let out = apply(command, &[exit_code()]);
            assert_eq!(out.command, command);
            assert_eq!(out.notes, vec![UNPARSEABLE_NOTE.to_owned()], "{command}");
        }
        assert_eq!(apply("heroku run 'x", &[]).notes, Vec::<String>::new(), "no rules, no note");
    }

    #[test]
    fn function_names_and_case_patterns_are_not_commands() {
        let trace = [rule("rake", "--trace", &[], "traces")];
        assert_eq!(apply("rake() { rake db:migrate; }", &trace).command, "rake() { rake --trace db:migrate; }");
        assert_eq!(apply("rake () (rake)", &trace).command, "rake () (rake --trace)");
        let out = apply("case $x in\nrake) rake;;\nesac", &trace);
        assert_eq!(out.notes, vec![UNPARSEABLE_NOTE.to_owned()]);
        assert_eq!(apply("echo case; rake", &trace).command, "echo case; rake --trace");
    }

    #[test]
    fn rules_combine_and_see_each_others_flags() {
        let app = rule("heroku", "--app=my-app", &["-a"], "the app is named");
        let again = rule("heroku run", "--exit-code", &[], "twice");
        let out = apply("heroku run x; heroku -a other ps", &[exit_code(), again, app]);
        assert_eq!(out.command, "heroku --app=my-app run --exit-code x; heroku -a other ps");
        assert_eq!(out.notes.len(), 2, "{:?}", out.notes);
        let out = apply("heroku --app x run y", &[rule("heroku", "--app=my-app", &[], "r")]);
        assert_eq!(out.command, "heroku --app x run y", "`--app` names `--app=my-app`");
        let out =
            apply("rake db:migrate", &[rule("rake", "-t", &[], "trace"), rule("rake db:migrate", "--trace", &[], "t")]);
        assert_eq!(out.command, "rake -t db:migrate --trace");
    }

    #[test]
    fn invalid_rules_are_ignored_with_a_note() {
        let hostile = [
            rule("heroku run", "--x=$(id)", &[], "r"),
            rule("heroku run", "-x; touch pwned", &[], "r"),
            rule("heroku run", "--exit-code", &["-x`id`"], "r"),
            rule("heroku;id", "--exit-code", &[], "r"),
            rule("heroku run", "--exit-code", &[], "r\u{1b}[2J"),
            Rule { prefix: vec![], flag: "-x".into(), unless: vec![], reason: "r".into() },
        ];
        for bad in hostile {
            let out = apply("heroku run x", std::slice::from_ref(&bad));
            assert_eq!(out.command, "heroku run x", "{bad:?}");
            assert_eq!(out.notes.len(), 1);
            assert!(out.notes[0].starts_with("ignored an invalid command rule: "), "{:?}", out.notes);
            assert!(!out.notes[0].contains('\u{1b}'));
        }
    }

    // ---- the pieces ----

    #[test]
    fn flags_are_plain() {
        for good in ["-x", "-1", "--exit-code", "--a", "--app=my-app", "--size=standard-2x", "--to=a@b.c:1/d,e+f_g"] {
            assert!(is_flag(good), "{good}");
        }
        for bad in [
            "",
            "-",
            "--",
            "x",
            "-xy",
            "-$",
            "---x",
            "--1x",
            "--x_y",
            "--x=",
            "--x=a=b",
            "--x=$(id)",
            "--x=`id`",
            "--x='a'",
            "--x=a b",
            "--x=a;b",
            "-x;",
            "--x\n",
            "--é",
            "--x=~",
            "--x=*",
            "--x=a|b",
        ] {
            assert!(!is_flag(bad), "{bad:?}");
        }
    }

    #[test]
    fn plain_words_are_program_names() {
        for good in ["heroku", "run", "./bin/deploy", "rake", "db:migrate", "npx", "a+b@1.0_x-y"] {
            assert!(is_plain_word(good), "{good}");
        }
        for bad in ["", "-x", "a b", "a;b", "$x", "a=b", "'a'", "a\\b", "é", "~", "a*", "(a)"] {
            assert!(!is_plain_word(bad), "{bad:?}");
        }
    }

    #[test]
    fn rule_errors_name_the_problem() {
        assert_eq!(check_rule(&exit_code()), Ok(()));
        let err = |r: Rule| check_rule(&r).unwrap_err();
        assert!(err(rule("heroku run", "--x=$(id)", &[], "r")).contains(r#""--x=$(id)""#));
        assert!(err(rule("heroku ru;n", "-x", &[], "r")).contains("prefix word \"ru;n\""));
        assert!(err(rule("heroku", "-x", &["-y z"], "r")).contains("unless flag \"-y z\""));
        assert!(err(rule("heroku", "-x", &[], "  ")).contains("no reason"));
        assert!(err(rule("heroku", "-x", &[], "a\nb")).contains("control"));
        assert!(err(rule("a b c d e f g h i", "-x", &[], "r")).contains("9 words"));
        assert!(err(rule("heroku", &format!("--{}", "a".repeat(200)), &[], "r")).contains('…'));
        for first in ["eval", "exec", "command", "builtin", ".", "source", "trap", "for", "case", "time", "fi", "done"]
        {
            assert!(err(rule(&format!("{first} x"), "-x", &[], "r")).contains("keyword"), "{first}");
        }
        assert_eq!(check_rule(&rule("heroku eval", "-x", &[], "r")), Ok(()));
    }

    #[test]
    fn words_have_values_and_spans() {
        let command = "a 'b c'\"d\\\"\"\\ e;f&&g||h|i&j\n(k)>&2 l#m # n";
        let ws = words(command).unwrap();
        let seen: Vec<(&str, &str, bool)> =
            ws.iter().map(|w| (w.text.as_str(), &command[w.span.clone()], w.operator)).collect();
        assert_eq!(
            seen,
            vec![
                ("a", "a", false),
                ("b cd\" e", "'b c'\"d\\\"\"\\ e", false),
                (";", ";", true),
                ("f", "f", false),
                ("&&", "&&", true),
                ("g", "g", false),
                ("||", "||", true),
                ("h", "h", false),
                ("|", "|", true),
                ("i", "i", false),
                ("&", "&", true),
                ("j", "j", false),
                ("\n", "\n", true),
                ("(", "(", true),
                ("k", "k", false),
                (")", ")", true),
                (">&2", ">&2", false),
                ("l#m", "l#m", false),
            ]
        );
        assert_eq!(values("\"a\\b\\$\\`\\\\\"'\\'"), Some(vec!["a\\b$`\\\\".to_owned()]));
        assert_eq!(values("a;;b"), Some(vec!["a".into(), ";;".into(), "b".into()]));
        assert_eq!(values("x=\"$(echo \"a b\")\" $y"), Some(vec!["x=$(echo \"a b\")".into(), "$y".into()]));
        assert_eq!(values("\"$'x'\" $\"y\""), Some(vec!["$'x'".into(), "$y".into()]));
        assert_eq!(values("é 'ü'"), Some(vec!["é".into(), "ü".into()]));
        assert_eq!(values(""), Some(vec![]));
        assert_eq!(values(" \\\n a"), Some(vec!["a".into()]));
        for bad in
            ["'", "\"", "\\", "a\\", "$(", "$(a", "`", "${", "${a", "$((1)", "$((1)+(2))", "a<<b", "$'a'", "\"\\\n\""]
        {
            assert_eq!(values(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn first_words_are_the_programs() {
        assert_eq!(
            first_words(
                "cd app && FOO=1 heroku run x | tee log; if heroku ps; then bundle exec rake; fi\n# git push\n"
            ),
            vec!["cd", "heroku", "tee", "heroku", "bundle"]
        );
        assert_eq!(first_words("for x in a b; do echo $x; done"), vec!["echo"]);
        assert_eq!(first_words("(cd x&&make)|\"my tool\""), vec!["cd", "make", "my tool"]);
        assert_eq!(first_words("A=1"), Vec::<String>::new());
        assert_eq!(first_words("echo 'x"), Vec::<String>::new());
        assert_eq!(first_words("deploy() { heroku ps; }; deploy"), vec!["heroku", "deploy"]);
    }

    // ---- accept_rewrite (contract 0.1.0) ----

    const MIGRATE: &str = "heroku run rake db:migrate";

    #[test]
    fn rewrites_that_only_insert_flags_are_rebuilt_by_the_host() {
        assert_eq!(
            accept_rewrite("heroku run rake", "heroku run --exit-code rake"),
            Ok("heroku run --exit-code rake".into())
        );
        assert_eq!(accept_rewrite(MIGRATE, MIGRATE), Ok(MIGRATE.into()));
        assert_eq!(accept_rewrite("echo 'x", "echo 'x"), Ok("echo 'x".into()), "identical is fine even unparsed");
        let original = "echo \"a  b\" && heroku run x";
        assert_eq!(
            accept_rewrite(original, "echo 'a  b' && heroku run --exit-code x"),
            Ok("echo \"a  b\" && heroku run --exit-code x".into()),
            "the original's quoting is kept byte for byte"
        );
        assert_eq!(
            accept_rewrite("heroku  run\tx", "heroku run \"--exit-code\" x   # plugin was here"),
            Ok("heroku  run --exit-code\tx".into())
        );
        assert_eq!(
            accept_rewrite("heroku run x; heroku run y", "heroku --app=a run -x x;heroku run -x -v y"),
            Ok("heroku --app=a run -x x; heroku run -x -v y".into())
        );
        assert_eq!(accept_rewrite("heroku run x", "heroku run x -x"), Ok("heroku run x -x".into()));
        assert_eq!(accept_rewrite("FOO=1 heroku run", "FOO=1 heroku -v run"), Ok("FOO=1 heroku -v run".into()));
    }

    #[test]
    fn rewrites_that_change_anything_else_are_refused() {
        use RewriteError::*;
        let unexpected = |position: usize, word: &str| Err(UnexpectedWord { position, word: word.to_owned() });
        assert_eq!(accept_rewrite(MIGRATE, "heroku run;id>pwned# rake db:migrate"), unexpected(3, ";"));
        assert_eq!(accept_rewrite(MIGRATE, &format!("{MIGRATE}; touch pwned")), unexpected(5, ";"));
        assert_eq!(accept_rewrite(MIGRATE, "heroku run --x=$(id) rake db:migrate"), unexpected(3, "--x=$(id)"));
        assert_eq!(accept_rewrite(MIGRATE, "heroku run rake db:migrate `id`"), unexpected(5, "`id`"));
        assert_eq!(accept_rewrite(MIGRATE, "heroku run db:migrate rake"), unexpected(3, "db:migrate"));
        assert_eq!(accept_rewrite(MIGRATE, "heroku run 'rake db:migrate'"), unexpected(3, "rake db:migrate"));
        assert_eq!(accept_rewrite(MIGRATE, "heroku run rake"), Err(MissingWord { word: "db:migrate".into() }));
        assert_eq!(
            accept_rewrite(MIGRATE, "--exit-code heroku run rake db:migrate"),
            Err(MisplacedFlag { position: 1, word: "--exit-code".into() })
        );
        assert_eq!(accept_rewrite("a && b", "a && -x b"), Err(MisplacedFlag { position: 3, word: "-x".into() }));
        assert_eq!(accept_rewrite("FOO=1 b", "FOO=1 -x b"), Err(MisplacedFlag { position: 2, word: "-x".into() }));
        assert_eq!(
            accept_rewrite("if a; then b; fi", "if -x a; then b; fi"),
            Err(MisplacedFlag { position: 2, word: "-x".into() })
        );
        assert_eq!(accept_rewrite("a -x -y", "a -y -x"), Err(MissingWord { word: "-y".into() }));
        assert_eq!(accept_rewrite("a; b", "a\nb"), unexpected(2, "\n"));
        assert_eq!(accept_rewrite("a", "a 'x"), Err(ReturnedUnparseable));
        assert_eq!(accept_rewrite("a 'x", "a -x 'x"), Err(OriginalUnparseable));
        assert_eq!(accept_rewrite("echo x", "echo x # hi\nid"), unexpected(3, "\n"));
        let misplaced = |position: usize, word: &str| Err(MisplacedFlag { position, word: word.to_owned() });
        assert_eq!(accept_rewrite("eval echo hi", "eval -x echo hi"), misplaced(2, "-x"));
        assert_eq!(accept_rewrite("a; exec b", "a; exec b -x"), misplaced(5, "-x"));
        assert_eq!(accept_rewrite("for x in a; do b; done", "for -x x in a; do b; done"), misplaced(2, "-x"));
        assert_eq!(accept_rewrite("{ a; }", "{ a; } -x"), misplaced(5, "-x"));
        assert_eq!(accept_rewrite("f() { a; }", "f -x() { a; }"), misplaced(2, "-x"));
        assert_eq!(accept_rewrite("f() { a; }", "f() { a -x; }"), Ok("f() { a -x; }".into()));
        assert_eq!(accept_rewrite("\"eval\" echo hi", "\"eval\" echo -x hi"), misplaced(3, "-x"));
        assert_eq!(accept_rewrite("$run echo hi", "$run -x echo hi"), misplaced(2, "-x"));
        assert_eq!(accept_rewrite("ev?l echo hi", "ev?l -x echo hi"), misplaced(2, "-x"));
        assert_eq!(accept_rewrite("{ev,}al echo hi", "{ev,}al -x echo hi"), misplaced(2, "-x"));
    }

    #[test]
    fn rewrite_errors_escape_what_the_plugin_wrote() {
        let err = accept_rewrite("a", "a \"\u{1b}]0;pwned\u{7}\"").unwrap_err().to_string();
        assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err}");
        let err = accept_rewrite("a", &format!("a {}", "b".repeat(10_000))).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        for unit in ["$(", "\"$(", "$( \"", "`", "${", "$((", "(", "'"] {
            let text = unit.repeat(50_000);
            let _ = words(&text);
            let _ = apply(&text, &[exit_code()]);
            let _ = accept_rewrite(&text, &format!("{text} -x"));
        }
        assert!(words(&format!("{}{}", "$(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING))).is_some());
        assert!(words(&format!("{}{}", "$(".repeat(MAX_NESTING + 1), ")".repeat(MAX_NESTING + 1))).is_none());
    }

    // ---- properties ----

    /// Tokens that generated commands are mostly made of: words rules look for, flags, balanced
    /// quotes and substitutions, and operators.
    const TOKENS: &[&str] = &[
        "heroku",
        "run",
        "heroku run ",
        "heroku run ",
        "heroku run ",
        "rake",
        "-x",
        "--exit-code",
        "--",
        "a",
        "FOO=1 ",
        "run:x",
        " ",
        " ",
        "  ",
        "\t",
        "\n",
        ";",
        "&",
        "&&",
        "|",
        "||",
        "#",
        "$",
        "(",
        ")",
        "${x}",
        "=",
        "{",
        "}",
        "<",
        ">",
        "!",
        "if ",
        "é",
        "'a b'",
        "'heroku run'",
        "\"a;b\"",
        "\"-x\"",
        "\"$(a \")\")\"",
        "$(heroku run a)",
        "`a`",
        "\\ ",
        "\\\"",
        " \\\n ",
        "\"heroku\"",
        "'run'",
    ];

    /// Tokens that generated commands sometimes hold: lone quotes and other characters that
    /// often make a command unparseable.
    const RARE: &[&str] = &["'", "\"", "\\", "`", "$(", "<<", "$'", "$((", "\"$(", "${"];

    /// Commands made of `tokens`, with now and then one of `rare`.
    fn command_from(
        tokens: &'static [&'static str],
        rare: &'static [&'static str],
        max: usize,
    ) -> impl Strategy<Value = String> {
        let token = prop_oneof![12 => prop::sample::select(tokens), 1 => prop::sample::select(rare)];
        prop::collection::vec(token, 0..max).prop_map(|parts| parts.concat())
    }

    fn test_rules() -> Vec<Rule> {
        vec![exit_code(), rule("rake", "--trace", &["-t"], "traces"), rule("a", "-v", &[], "verbose")]
    }

    fn is_flag_byte(b: u8) -> bool {
        is_flag_value_byte(b) || b == b'='
    }

    /// Whether `output` is `original` with zero or more ` FLAG` insertions, each FLAG accepted by
    /// `flag_ok` and each at one of `points` (byte positions of `original`).
    fn is_insertion_of(original: &str, output: &str, points: &[usize], flag_ok: &dyn Fn(&str) -> bool) -> bool {
        struct Search<'a> {
            old: &'a [u8],
            new: &'a [u8],
            points: &'a [usize],
            flag_ok: &'a dyn Fn(&str) -> bool,
            tried: HashSet<(usize, usize)>,
        }
        impl Search<'_> {
            fn from(&mut self, i: usize, j: usize) -> bool {
                if i == self.old.len() && j == self.new.len() {
                    return true;
                }
                if !self.tried.insert((i, j)) {
                    return false;
                }
                if self.points.contains(&i) && self.new.get(j) == Some(&b' ') {
                    let len = self.new[j + 1..].iter().take_while(|&&b| is_flag_byte(b)).count();
                    let flag = std::str::from_utf8(&self.new[j + 1..j + 1 + len]).unwrap();
                    if is_flag(flag) && (self.flag_ok)(flag) && self.from(i, j + 1 + len) {
                        return true;
                    }
                }
                i < self.old.len() && self.new.get(j) == Some(&self.old[i]) && self.from(i + 1, j + 1)
            }
        }
        let mut search =
            Search { old: original.as_bytes(), new: output.as_bytes(), points, flag_ok, tried: HashSet::new() };
        search.from(0, 0)
    }

    /// For each byte gap of a command with no `$` or backtick, whether it is outside quotes and
    /// comments and not just after an escaping backslash: a naive scanner written independently
    /// of the module's.
    fn naive_open_gaps(command: &str) -> Vec<bool> {
        #[derive(PartialEq)]
        enum State {
            Plain,
            Single,
            Double,
            Comment,
        }
        let bytes = command.as_bytes();
        let mut open = Vec::with_capacity(bytes.len() + 1);
        let (mut state, mut escaped, mut word_start) = (State::Plain, false, true);
        for &b in bytes {
            open.push(state == State::Plain && !escaped);
            match state {
                State::Plain if escaped => {
                    escaped = false;
                    if b != b'\n' {
                        word_start = false;
                    }
                }
                State::Plain => {
                    match b {
                        b'\\' => escaped = true,
                        b'\'' => state = State::Single,
                        b'"' => state = State::Double,
                        b'#' if word_start => state = State::Comment,
                        _ => {}
                    }
                    if b != b'\\' {
                        word_start = b" \t\n;&|()".contains(&b);
                    }
                }
                State::Single if b == b'\'' => state = State::Plain,
                State::Double if escaped => escaped = false,
                State::Double if b == b'\\' => escaped = true,
                State::Double if b == b'"' => state = State::Plain,
                State::Comment if b == b'\n' => {
                    state = State::Plain;
                    word_start = true;
                }
                _ => {}
            }
        }
        open.push(state == State::Plain && !escaped);
        open
    }

    /// Where the safety invariant lets a flag be inserted into `command`: just after a word, where
    /// the next byte ends the word, outside quotes and comments.
    fn safe_points(command: &str) -> Vec<usize> {
        let Some(ws) = words(command) else { return vec![] };
        let naive = (!command.contains(['$', '`'])).then(|| naive_open_gaps(command));
        let points: Vec<usize> = ws.iter().filter(|w| !w.operator).map(|w| w.span.end).collect();
        for &p in &points {
            let next = command.as_bytes().get(p);
            assert!(next.is_none_or(|b| b" \t\n;&|()".contains(b)), "word end {p} of {command:?} is mid-word");
            if let Some(naive) = &naive {
                assert!(naive[p], "word end {p} of {command:?} is quoted or commented by the naive scanner");
            }
        }
        points
    }

    fn check_apply_is_safe(command: &str, rules: &[Rule]) -> Applied {
        let out = apply(command, rules);
        let flags: Vec<&str> = rules.iter().map(|r| r.flag.as_str()).collect();
        let points = safe_points(command);
        assert!(
            is_insertion_of(command, &out.command, &points, &|f| flags.contains(&f)),
            "{command:?} became {:?}",
            out.command
        );
        if words(command).is_none() {
            assert_eq!(out.command, command);
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn apply_only_inserts_flags_at_word_ends(command in command_from(TOKENS, RARE, 24)) {
            let out = check_apply_is_safe(&command, &test_rules());
            prop_assert_eq!(out.command == command, out.notes.iter().all(|n| n == UNPARSEABLE_NOTE));
        }

        #[test]
        fn the_host_accepts_its_own_rewrites(command in command_from(TOKENS, RARE, 24)) {
            let out = apply(&command, &test_rules());
            prop_assert_eq!(accept_rewrite(&command, &out.command), Ok(out.command.clone()));
        }

        #[test]
        fn an_appended_command_is_refused(command in command_from(TOKENS, RARE, 24)) {
            if words(&command).is_none() {
                return Ok(());
            }
            let returned = format!("{command}; touch p");
            match accept_rewrite(&command, &returned) {
                Err(_) => {}
                // Only when the original ends in a comment, which swallows the addition.
                Ok(rebuilt) => {
                    prop_assert_eq!(&rebuilt, &command);
                    prop_assert_eq!(words(&returned), words(&command));
                }
            }
        }

        #[test]
        fn accepted_rewrites_only_insert_flags(
            command in command_from(TOKENS, RARE, 16),
            edits in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(EDITS)), 1..4),
        ) {
            let base = apply(&command, &test_rules()).command;
            let mut returned = base.clone();
            for (at, text) in edits {
                let mut at = at.index(returned.len() + 1);
                while !returned.is_char_boundary(at) {
                    at -= 1;
                }
                returned.insert_str(at, text);
            }
            if let Ok(rebuilt) = accept_rewrite(&command, &returned) {
                let points = safe_points(&command);
                prop_assert!(is_insertion_of(&command, &rebuilt, &points, &|_| true), "{:?} -> {:?}", returned, rebuilt);
            }
        }

        #[test]
        fn nothing_panics(text in any::<String>(), other in command_from(TOKENS, RARE, 24)) {
            for command in [&text, &other] {
                if let Some(ws) = words(command) {
                    let mut end = 0;
                    for w in &ws {
                        prop_assert!(w.span.start >= end && w.span.start < w.span.end && w.span.end <= command.len());
                        prop_assert!(command.get(w.span.clone()).is_some());
                        end = w.span.end;
                    }
                }
                let _ = first_words(command);
                let _ = check_apply_is_safe(command, &test_rules());
                for (original, returned) in [(command.as_str(), text.as_str()), (&text, command)] {
                    if let Ok(rebuilt) = accept_rewrite(original, returned) {
                        let points = safe_points(original);
                        prop_assert!(is_insertion_of(original, &rebuilt, &points, &|_| true));
                    }
                }
            }
        }

        #[test]
        fn words_agree_with_shlex(command in command_from(SHLEX_TOKENS, SHLEX_RARE, 20)) {
            let ours = values(&command);
            let theirs = shlex::split(&command);
            prop_assert_eq!(ours, theirs, "{:?}", command);
        }
    }

    /// What a hostile 0.1.0 plugin might insert.
    const EDITS: &[&str] = &[
        " --exit-code",
        " -x",
        "-x ",
        " --x=a",
        " --x=$(id)",
        ";",
        "; touch p",
        "&& id",
        "\n",
        " #",
        "'",
        "\"",
        " $(id)",
        "`id`",
        " rake",
        "heroku ",
        " \"--y\"",
        "\\",
        " ",
        "x",
    ];

    /// Commands without operators, comments or expansions, which `shlex` splits as `sh` does.
    const SHLEX_TOKENS: &[&str] = &[
        "a",
        "b",
        "-x",
        "=",
        ">",
        "é",
        " ",
        " ",
        "\t",
        "'a b'",
        "''",
        "\"a \\\" \\\\ \\b\"",
        "\"\"",
        "\\a",
        "\\ ",
        "\\\\",
    ];
    const SHLEX_RARE: &[&str] = &["'", "\"", "\\"];

    // ---- against a real shell ----

    /// Runs `command` with `/bin/sh`, with `heroku`, `run` and `qq` defined as functions that
    /// record their arguments, and nothing else runnable. Returns the records, sorted (background
    /// jobs may finish in any order), with any `--exit-code` right after `heroku run` dropped,
    /// and the exit status.
    fn sh_trace(command: &str) -> (Vec<String>, Option<i32>) {
        const PRELUDE: &str = r#"exec 3>&1 >/dev/null 2>&1
_US=$(printf '\037'); _RS=$(printf '\036')
_tr() { _t=$_RS$1; shift; for _a; do _t=$_t$_US$_a; done; printf '%s' "$_t" >&3; }
heroku() { _tr heroku "$@"; }
run() { _tr run "$@"; }
qq() { _tr qq "$@"; }
"#;
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{PRELUDE}{command}"))
            .env_clear()
            .env("PATH", "/nonexistent")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .expect("/bin/sh runs");
        let mut records: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split('\u{1e}')
            .filter(|r| !r.is_empty())
            .map(|r| {
                let mut fields: Vec<&str> = r.split('\u{1f}').collect();
                // The command may already pass `--exit-code` through an expansion (`$unset--exit-code`).
                while fields.len() > 2 && fields[..3] == ["heroku", "run", "--exit-code"] {
                    fields.remove(2);
                }
                fields.join("\u{1f}")
            })
            .collect();
        records.sort();
        (records, out.status.code())
    }

    /// Tokens for commands run by a real shell: they can call only the recording functions, and
    /// cannot define functions (no `(` without `$`) or touch files (no redirections).
    const SH_TOKENS: &[&str] = &[
        "heroku",
        "run",
        "qq",
        "-x",
        "--exit-code",
        "--",
        "heroku run ",
        "heroku run ",
        "heroku run ",
        "\"heroku\" run ",
        "qq=1 ",
        "! ",
        " ",
        " ",
        "\t",
        "\n",
        ";",
        "&&",
        "||",
        "|",
        "&",
        "#",
        ")",
        "=",
        "$qq",
        "${qq}",
        "'a b'",
        "'heroku run'",
        "\"a;b\"",
        "\"-x\"",
        "\"$(qq \")\")\"",
        "$(heroku run qq)",
        "`qq`",
        "\\ ",
        "\\\"",
        " \\\n ",
        "\\\n",
    ];
    const SH_RARE: &[&str] = &["'", "\"", "\\", "$(", "`"];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, max_global_rejects: 10_000, ..ProptestConfig::default() })]

        /// The shell runs the same programs with the same arguments, except for `--exit-code`
        /// after `heroku run`.
        #[test]
        fn the_shell_sees_only_the_inserted_flag(command in command_from(SH_TOKENS, SH_RARE, 20)) {
            if !std::path::Path::new("/bin/sh").exists() {
                return Ok(());
            }
            let out = apply(&command, &[exit_code()]);
            prop_assume!(out.command != command);
            prop_assert_eq!(sh_trace(&out.command), sh_trace(&command), "{:?} became {:?}", command, out.command);
        }
    }

    #[test]
    fn the_shell_runs_the_flag_where_expected() {
        if !std::path::Path::new("/bin/sh").exists() {
            return;
        }
        let cases = [
            ("qq 'heroku run' \"a;b\" && heroku run x; heroku run -- -x | qq $(heroku run y)", 2),
            ("(heroku run x) && (qq; heroku run y) | qq", 2),
            ("{ heroku run x; } ; if heroku run y; then heroku run z; fi", 3),
            ("qq 2>&1 | heroku run z >/dev/null 2>&1; heroku run x 2>&1 -x", 1),
            ("qq=1 heroku run $qq; ! heroku run -x", 1),
            ("qq \"$(qq \")\")\" ; heroku run x ${qq:-a b} $((1 + (2*3))) `qq`", 1),
            ("heroku run x #c\nheroku run y # heroku run z", 2),
            ("for qq in a b; do heroku run $qq; done", 1),
            ("heroku run \\\n  x \\\n  y", 1),
            ("qq() { heroku run \"$@\"; }; qq a; qq -x", 1),
            ("heroku run '--exit-code' ; heroku run \"-x\" ; \"heroku\" 'run' \"\"", 1),
        ];
        for (command, inserted) in cases {
            let out = apply(command, &[exit_code()]).command;
            assert_eq!(out.matches("--exit-code").count() - command.matches("--exit-code").count(), inserted, "{out}");
            let (records, status) = sh_trace(&out);
            assert!(!records.is_empty(), "{command}");
            assert_eq!((records, status), sh_trace(command), "{command:?} became {out:?}");
        }
    }
}
