//! Capability `secrets`: opaque handles to the server's secrets, and the redaction that
//! keeps their values out of everything Pier prints or stores.
//!
//! Architecture invariant: a plugin never receives a secret's plaintext. It names a
//! secret by handle (the secret's name); the host substitutes the value where the handle
//! is used (an HTTP header, a program's environment) and nowhere else.
//!
//! Every value that enters a [`Vault`] is registered with the process-wide redactor in
//! the forms programs print ([`forms`]: raw, base64, hex, percent-encoded, JSON-escaped),
//! matched with spaces and line breaks ignored. Every line the host logs, shows or stores
//! goes through [`redact`] after it is cleaned; streams (program and plugin output,
//! response streams) go through a [`Stream`], which redacts across their pieces.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aho_corasick::automaton::{Automaton as AcAutomaton, StateID};
use aho_corasick::{Anchored, MatchKind, StartKind};
use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::runtime::bindings::pier::deploy::secrets;

/// What replaces a secret in redacted text.
pub const REDACTED: &str = "[redacted]";

/// The secrets a call may use, by handle.
#[derive(Default)]
pub struct Vault {
    values: Mutex<BTreeMap<String, SecretString>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("handles", &self.handles()).finish()
    }
}

impl Vault {
    /// An empty vault.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the secret `handle`, and registers its value for redaction.
    pub fn insert(&self, handle: &str, value: SecretString) {
        register(value.expose_secret());
        self.lock().insert(handle.to_string(), value);
    }

    /// Forgets the secret `handle` (its value stays registered for redaction).
    pub fn remove(&self, handle: &str) {
        self.lock().remove(handle);
    }

    /// The secret named `handle`.
    pub fn get(&self, handle: &str) -> Option<SecretString> {
        self.lock().get(handle).cloned()
    }

    /// Whether `handle` names a secret.
    pub fn contains(&self, handle: &str) -> bool {
        self.lock().contains_key(handle)
    }

    /// The handles, sorted.
    pub fn handles(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SecretString>> {
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The per-call state of the `secrets` capability.
pub struct SecretsCap {
    vault: Arc<Vault>,
}

impl SecretsCap {
    /// Handles come from `vault`.
    pub fn new(vault: Arc<Vault>) -> Self {
        SecretsCap { vault }
    }
}

impl secrets::Host for SecretsCap {
    async fn handles(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.vault.handles())
    }
}

// ---------------------------------------------------------------------------------------
// Redaction.
//
// A secret is registered in many forms (see [`forms`]), each normalized the way the
// matcher sees text: spaces and line breaks, a `\` before `/`, and `od`'s offset column
// are skipped (see [`skip`]). One Aho-Corasick automaton over every registered form runs
// over the text byte by byte, skipping those bytes, and remembers where in the original
// text each byte it saw came from; every occurrence of a form becomes a span of the
// original text, spans are merged, and each is replaced by [`REDACTED`]. A stream keeps
// back the end of what it has read while that end could still begin a form: the
// automaton's state says how long that part is (the depth of the state).

/// Values shorter than this (in characters, spaces not counted) are not redacted at all,
/// and normalized forms shorter than this are dropped: they would mangle ordinary text.
pub const MIN_REDACTED_LEN: usize = 4;

/// Secrets shorter than this (in characters, spaces not counted) are refused at setup.
pub const MIN_SECRET_LEN: usize = 6;

/// The most text a stream holds back, in bytes. Past it (a prefix of a form followed by
/// this much space, or one long run of secrets) the stream's window closes: what is held
/// is redacted and passed on.
pub const MAX_HELD: usize = 64 << 10;

/// Whether `value` is too short to be redacted safely: fewer than [`MIN_SECRET_LEN`]
/// characters other than spaces.
pub fn too_short(value: &str) -> bool {
    value.chars().filter(|c| !c.is_whitespace()).take(MIN_SECRET_LEN).count() < MIN_SECRET_LEN
}

/// What the matcher does with the bytes at some position.
enum Skip {
    /// The byte is matched.
    No,
    /// These many bytes are skipped.
    Yes(usize),
    /// The text ends before it can tell; a stream waits for more.
    Undecided,
}

/// Spaces and line breaks: skipped, so wrapped and grouped forms match whole.
fn spacing(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Where the matcher is in a text, as far as skipping goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct At {
    /// The next byte begins a line.
    line_start: bool,
    /// The next byte follows a backslash that escapes it (in a run of backslashes, the
    /// first, third, ... escape the one after them).
    escaped: bool,
}

impl At {
    /// The start of a text.
    const START: At = At { line_start: true, escaped: false };

    /// What the matcher does with the bytes of `text` at `i`, and (unless it cannot tell
    /// yet) moves past them. Skipped are: spacing; a `\` that escapes a `/` (JSON's
    /// optional escape); at the start of a line, `od`'s offset column (seven octal digits
    /// and a space). With `last`, the text is known to end there: nothing is undecided.
    fn step(&mut self, text: &[u8], i: usize, last: bool) -> Skip {
        let b = text[i];
        let skip = if spacing(b) {
            Skip::Yes(1)
        } else if b == b'\\' && !self.escaped {
            match text.get(i + 1) {
                Some(b'/') => Skip::Yes(1),
                Some(_) => Skip::No,
                None => Skip::Undecided,
            }
        } else if self.line_start && (b'0'..=b'7').contains(&b) {
            let rest = &text[i..];
            let digits = rest.iter().take(7).take_while(|b| (b'0'..=b'7').contains(*b)).count();
            match rest.get(7) {
                _ if digits < rest.len().min(7) => Skip::No,
                None => Skip::Undecided,
                Some(b' ') => Skip::Yes(8),
                Some(_) => Skip::No,
            }
        } else {
            Skip::No
        };
        match skip {
            Skip::Undecided if !last => Skip::Undecided,
            Skip::Yes(n) => {
                self.line_start = text[i + n - 1] == b'\n';
                self.escaped = b == b'\\';
                skip
            }
            Skip::No | Skip::Undecided => {
                self.line_start = false;
                self.escaped = b == b'\\' && !self.escaped;
                Skip::No
            }
        }
    }

    /// Where the matcher is after `text`, having been at `self` before it (exact for the
    /// line start and the backslashes; an `od` column is not looked for).
    fn after(self, text: &[u8]) -> At {
        let Some(&last) = text.last() else { return self };
        let run = text.iter().rev().take_while(|b| **b == b'\\').count();
        let before = if run == text.len() { self.escaped } else { false };
        At { line_start: last == b'\n', escaped: before ^ (run % 2 == 1) }
    }
}

/// `text` as the matcher sees it from `at`: the bytes [`At::step`] skips removed.
fn view(text: &[u8], mut at: At) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match at.step(text, i, true) {
            Skip::Yes(n) => i += n,
            Skip::No | Skip::Undecided => {
                out.push(text[i]);
                i += 1;
            }
        }
    }
    out
}

/// Characters a percent-encoder leaves as they are, besides ASCII letters and digits,
/// and whether it writes a space as `+`: WHATWG form encoding (also with `%20`),
/// RFC 3986, RFC 3986 keeping `/` (a path, Python's `quote`), JavaScript's
/// `encodeURIComponent`.
const PERCENT_STYLES: [(&[u8], bool); 5] =
    [(b"*-._", true), (b"*-._", false), (b"-._~", false), (b"-._~/", false), (b"-_.!~*'()", false)];

fn percent(bytes: &[u8], keep: Option<&[u8]>, plus: bool, upper: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        match keep {
            Some(keep) if b.is_ascii_alphanumeric() || keep.contains(&b) => out.push(char::from(b)),
            Some(_) if b == b' ' && plus => out.push('+'),
            _ if upper => out.push_str(&format!("%{b:02X}")),
            _ => out.push_str(&format!("%{b:02x}")),
        }
    }
    out
}

/// Which characters a JSON encoder writes as `\uXXXX` besides control characters.
#[derive(Clone, Copy)]
enum JsonStyle {
    /// Only what JSON requires (`serde_json`, JavaScript).
    Plain,
    /// `<`, `>`, `&`, U+2028 and U+2029 (Go).
    Html,
    /// `<`, `>`, `&`, `'`, `+`, `` ` ``, `"` and U+2028/9 (.NET).
    Web,
}

fn json(value: &str, style: JsonStyle, non_ascii: bool, every: bool, upper: bool) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        let unicode = every
            || (non_ascii && !c.is_ascii())
            || (c < ' ' && !matches!(c, '\n' | '\r' | '\t' | '\u{8}' | '\u{c}'))
            || match style {
                JsonStyle::Plain => false,
                JsonStyle::Html => matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}'),
                JsonStyle::Web => matches!(c, '<' | '>' | '&' | '\'' | '+' | '`' | '"' | '\u{2028}' | '\u{2029}'),
            };
        if unicode {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&if upper { format!("\\u{unit:04X}") } else { format!("\\u{unit:04x}") });
            }
            continue;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c => out.push(c),
        }
    }
    out
}

/// The forms of `value` that must never appear, each as the matcher sees text (spacing
/// and the other skipped bytes removed):
/// - the value itself, and as it is once cleaned of control characters;
/// - every run of base64 characters (standard and URL-safe alphabets) that encodes only
///   bytes of the value, at each of the three alignments inside a longer encoded text
///   (padding falls outside such a run, so padded and unpadded texts both hold it);
/// - hex, lower and upper case;
/// - percent-encoded in the styles of [`PERCENT_STYLES`] and with every byte encoded,
///   with lower- and upper-case hex digits;
/// - JSON-escaped (`\"`, `\\`, control escapes), also with `\uXXXX` for non-ASCII
///   characters, for HTML-unsafe ones, or for every character, in either case (a `\/`
///   is matched as `/`, so the optional escape of `/` needs no form of its own);
/// - each line of 16 or more characters of a multi-line value (a private key).
///
/// Forms shorter than [`MIN_REDACTED_LEN`] are left out.
pub fn forms(value: &str) -> Vec<String> {
    let bytes = value.as_bytes();
    let mut all: Vec<String> = vec![value.to_string(), crate::caps::events::clean(value)];
    for engine in [&base64::engine::general_purpose::STANDARD_NO_PAD, &base64::engine::general_purpose::URL_SAFE_NO_PAD]
    {
        for offset in 0..3usize {
            let mut padded = vec![0u8; offset];
            padded.extend_from_slice(bytes);
            let encoded = engine.encode(&padded);
            let first = (8 * offset).div_ceil(6);
            let last = (8 * (offset + bytes.len())) / 6;
            if last > first {
                all.push(encoded[first..last].to_string());
            }
        }
    }
    all.push(hex::encode(bytes));
    all.push(hex::encode_upper(bytes));
    for upper in [false, true] {
        for (keep, plus) in PERCENT_STYLES {
            all.push(percent(bytes, Some(keep), plus, upper));
        }
        all.push(percent(bytes, None, false, upper));
        for style in [JsonStyle::Plain, JsonStyle::Html, JsonStyle::Web] {
            for non_ascii in [false, true] {
                all.push(json(value, style, non_ascii, false, upper));
            }
        }
        all.push(json(value, JsonStyle::Plain, false, true, upper));
    }
    all.extend(value.lines().map(str::trim).filter(|l| l.len() >= 16 && *l != value).map(str::to_string));
    let mut out = Vec::new();
    for form in &all {
        // A form may begin a line (where an `od` offset column is skipped) or not, follow
        // a backslash that escapes its first byte or not, and end in a backslash that
        // escapes a `/` after it (and is skipped) or not.
        for line_start in [false, true] {
            for escaped in [false, true] {
                let at = At { line_start, escaped };
                let before_slash = view(&[form.as_bytes(), b"/"].concat(), at);
                for seen in [view(form.as_bytes(), at), before_slash[..before_slash.len() - 1].to_vec()] {
                    let seen = String::from_utf8_lossy(&seen).into_owned();
                    if seen.chars().count() >= MIN_REDACTED_LEN {
                        out.push(seen);
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Whether `text` holds `value` in any of its [`forms`], as the redactor would find it.
pub fn exposes(text: &str, value: &str) -> bool {
    let seen = String::from_utf8_lossy(&view(text.as_bytes(), At::START)).into_owned();
    forms(value).iter().any(|form| seen.contains(form.as_str()))
}

/// The automaton over every registered form.
enum Automaton {
    Dfa(aho_corasick::dfa::DFA),
    /// For very many or very long forms, where a DFA would be large.
    Nfa(aho_corasick::nfa::contiguous::NFA),
}

/// Forms of this many bytes in all or more get the smaller, slower automaton.
const DFA_PATTERN_BYTES: usize = 16 << 10;

struct Matcher {
    automaton: Automaton,
    /// For each state (which stands for the longest end of the text read so far that
    /// begins a form), the length of the longest end that could still grow into a form:
    /// how much a stream must hold back.
    hold: HashMap<StateID, u32>,
    /// The longest form, in bytes.
    longest: usize,
}

impl Matcher {
    fn new(patterns: &[Vec<u8>]) -> Result<Matcher, aho_corasick::BuildError> {
        let total: usize = patterns.iter().map(Vec::len).sum();
        let automaton = if total < DFA_PATTERN_BYTES {
            Automaton::Dfa(
                aho_corasick::dfa::DFA::builder()
                    .match_kind(MatchKind::Standard)
                    .start_kind(StartKind::Unanchored)
                    .prefilter(false)
                    .build(patterns)?,
            )
        } else {
            Automaton::Nfa(
                aho_corasick::nfa::contiguous::NFA::builder()
                    .match_kind(MatchKind::Standard)
                    .prefilter(false)
                    .build(patterns)?,
            )
        };
        let hold = match &automaton {
            Automaton::Dfa(a) => holds(a, patterns),
            Automaton::Nfa(a) => holds(a, patterns),
        };
        Ok(Matcher { automaton, hold, longest: patterns.iter().map(Vec::len).max().unwrap_or(0) })
    }
}

/// The hold length of every state that stands for the beginning of a form (any other
/// state holds nothing). Walking each form from the start state passes through the
/// states of its beginnings, one deeper at each byte; a state passed through on the way
/// to a longer form can still grow and holds its depth; one that only ends a form holds
/// what the longest shorter end of its text holds (the state of that text less its
/// first byte, found by walking it from the start).
fn holds<A: AcAutomaton>(a: &A, patterns: &[Vec<u8>]) -> HashMap<StateID, u32> {
    let start = a.start_state(Anchored::No).expect("the automaton is built for unanchored searches");
    let walk = |bytes: &[u8]| bytes.iter().fold(start, |s, b| a.next_state(Anchored::No, s, *b));
    let mut hold: HashMap<StateID, u32> = HashMap::new();
    let mut ends: Vec<(StateID, &[u8])> = Vec::new();
    for pattern in patterns {
        let mut state = start;
        for (depth, b) in pattern.iter().enumerate() {
            hold.insert(state, depth as u32);
            state = a.next_state(Anchored::No, state, *b);
        }
        ends.push((state, pattern));
    }
    // Shorter forms first: the state a form's end falls back to is shallower.
    ends.sort_by_key(|(_, p)| p.len());
    for (state, pattern) in ends {
        if hold.contains_key(&state) {
            continue;
        }
        let shorter = walk(&pattern[1..]);
        let h = hold.get(&shorter).copied().unwrap_or(0);
        hold.insert(state, h);
    }
    hold
}

/// Where one scan of a text (or a stream) is: the automaton's state and where in the text
/// each of the last matched bytes came from.
struct Scan {
    matcher: Arc<Matcher>,
    state: StateID,
    /// Matched bytes so far.
    seen: usize,
    /// Offsets of the last matched bytes (a ring, at least as long as the longest form).
    from: Vec<usize>,
    skipping: At,
    /// Offset of the next byte to read.
    at: usize,
}

impl Scan {
    /// A scan from offset `at` (where the matcher is at `skipping`), of a text of which
    /// about `len` bytes are to come.
    fn new(matcher: Arc<Matcher>, at: usize, skipping: At, len: usize) -> Scan {
        let size = matcher.longest.min(len).max(1).next_power_of_two();
        let state = match &matcher.automaton {
            Automaton::Dfa(a) => a.start_state(Anchored::No),
            Automaton::Nfa(a) => a.start_state(Anchored::No),
        }
        .expect("the automaton is built for unanchored searches");
        Scan { matcher, state, seen: 0, from: vec![0; size], skipping, at }
    }

    /// Reads `text` (whose first byte is at offset `base`) from `self.at` on, adding
    /// every occurrence of a form to `spans` (merged, sorted, none starting before
    /// `floor`). Unless `last`, stops before bytes it cannot yet tell whether to skip.
    fn read(&mut self, text: &[u8], base: usize, floor: usize, last: bool, spans: &mut Vec<(usize, usize)>) {
        let matcher = self.matcher.clone();
        match &matcher.automaton {
            Automaton::Dfa(a) => self.read_with(a, text, base, floor, last, spans),
            Automaton::Nfa(a) => self.read_with(a, text, base, floor, last, spans),
        }
    }

    fn read_with<A: AcAutomaton>(
        &mut self,
        a: &A,
        text: &[u8],
        base: usize,
        floor: usize,
        last: bool,
        spans: &mut Vec<(usize, usize)>,
    ) {
        if self.from.len() < self.matcher.longest {
            self.from.resize(self.matcher.longest.next_power_of_two(), 0);
        }
        let mask = self.from.len() - 1;
        let mut i = self.at - base;
        while i < text.len() {
            match self.skipping.step(text, i, last) {
                Skip::Yes(n) => {
                    i += n;
                    continue;
                }
                Skip::Undecided => break,
                Skip::No => {}
            }
            self.state = a.next_state(Anchored::No, self.state, text[i]);
            self.from[self.seen & mask] = base + i;
            self.seen += 1;
            if a.is_special(self.state) && a.is_match(self.state) {
                let state = self.state;
                let len = (0..a.match_len(state)).map(|k| a.pattern_len(a.match_pattern(state, k))).max().unwrap_or(1);
                let mut start = self.from[(self.seen - len) & mask].max(floor);
                while let Some(&(s, e)) = spans.last() {
                    if start > e {
                        break;
                    }
                    start = start.min(s);
                    spans.pop();
                }
                spans.push((start, base + i + 1));
            }
            i += 1;
        }
        self.at = base + i;
    }

    /// The offset where the part that could still grow into a form begins (or where
    /// reading stopped).
    fn hold(&self) -> usize {
        let d = self.matcher.hold.get(&self.state).map_or(0, |d| *d as usize).min(self.seen);
        if d == 0 { self.at } else { self.from[(self.seen - d) & (self.from.len() - 1)] }
    }
}

/// `text[..upto]` (whose first byte is at offset `base`) with every span replaced by
/// [`REDACTED`] (once more after each line break a span held, so lines stay lines).
fn replace(text: &[u8], base: usize, spans: &[(usize, usize)], upto: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(upto + 16);
    let mut at = 0;
    for &(s, e) in spans.iter().take_while(|(_, e)| *e - base <= upto) {
        let (s, e) = (s - base, e - base);
        out.extend_from_slice(&text[at..s]);
        out.extend_from_slice(REDACTED.as_bytes());
        for _ in text[s..e].iter().filter(|b| **b == b'\n') {
            out.push(b'\n');
            out.extend_from_slice(REDACTED.as_bytes());
        }
        at = e;
    }
    out.extend_from_slice(&text[at..upto]);
    out
}

fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A set of secret values and the matcher over their forms. The process has one
/// ([`redactor`]), which [`register`], [`redact`] and [`redact_bytes`] use.
pub struct Redactor {
    inner: RwLock<RedactorState>,
}

struct RedactorState {
    patterns: BTreeSet<Vec<u8>>,
    matcher: Option<Arc<Matcher>>,
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor::new()
    }
}

static REDACTOR: Redactor = Redactor::new();

/// The process-wide redactor.
pub fn redactor() -> &'static Redactor {
    &REDACTOR
}

impl Redactor {
    /// A redactor that knows no secret.
    pub const fn new() -> Redactor {
        Redactor { inner: RwLock::new(RedactorState { patterns: BTreeSet::new(), matcher: None }) }
    }

    /// Registers a secret value: from now on every one of its [`forms`] is redacted.
    /// Values with fewer than [`MIN_REDACTED_LEN`] characters (spaces not counted) are
    /// ignored.
    pub fn register(&self, value: &str) {
        if value.chars().filter(|c| !c.is_whitespace()).count() < MIN_REDACTED_LEN {
            return;
        }
        let forms = forms(value);
        let mut state = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let before = state.patterns.len();
        state.patterns.extend(forms.into_iter().map(String::into_bytes));
        if state.patterns.len() == before {
            return;
        }
        let patterns: Vec<Vec<u8>> = state.patterns.iter().cloned().collect();
        match Matcher::new(&patterns) {
            Ok(matcher) => state.matcher = Some(Arc::new(matcher)),
            // Keep redacting what was registered before rather than nothing.
            Err(e) => tracing::error!("the redactor could not take a new secret: {e}"),
        }
    }

    fn matcher(&self) -> Option<Arc<Matcher>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).matcher.clone()
    }

    /// The longest registered form, in bytes: the most a stream holds back, spacing
    /// not counted.
    pub fn longest(&self) -> usize {
        self.matcher().map_or(0, |m| m.longest)
    }

    /// `text` with every registered form of every secret replaced by [`REDACTED`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.redact_bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(bytes) => Cow::Owned(into_string(bytes)),
        }
    }

    /// `bytes` with every registered form of every secret replaced by [`REDACTED`].
    pub fn redact_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let Some(matcher) = self.matcher() else { return Cow::Borrowed(bytes) };
        let mut spans = Vec::new();
        Scan::new(matcher, 0, At::START, bytes.len()).read(bytes, 0, 0, true, &mut spans);
        if spans.is_empty() {
            return Cow::Borrowed(bytes);
        }
        Cow::Owned(replace(bytes, 0, &spans, bytes.len()))
    }

    /// A stream to redact across the pieces it arrives in.
    pub fn stream(&self) -> Stream<'_> {
        Stream { redactor: self, held: Vec::new(), base: 0, skipping: At::START, scan: None, spans: Vec::new() }
    }
}

/// Redacts text or bytes that arrive in pieces (writes, chunks, lines), across their
/// boundaries: [`Stream::push`] passes on only what can no longer turn out to be part of
/// a form of a secret, and holds back the rest (at most the longest form, spacing not
/// counted, and never more than [`MAX_HELD`] bytes) until more arrives or
/// [`Stream::finish`]. What is passed on is final: a form that began in it was
/// redacted there, and the rest of such a form is redacted when it arrives.
pub struct Stream<'r> {
    redactor: &'r Redactor,
    /// What has arrived and not been passed on; its first byte is at offset `base`.
    held: Vec<u8>,
    base: usize,
    /// Where the matcher is at the start of `held`.
    skipping: At,
    scan: Option<Scan>,
    /// Occurrences in `held`.
    spans: Vec<(usize, usize)>,
}

impl Stream<'_> {
    /// Takes the next piece; returns what may be passed on now, redacted.
    pub fn push(&mut self, piece: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(piece);
        self.read(false);
        let Some(scan) = &self.scan else { return self.release(self.base + self.held.len()) };
        // What could still grow into a form may begin in what was passed on already (inside
        // an occurrence passed on whole): hold from here, the rest is redacted when it comes.
        let mut upto = scan.hold().max(self.base);
        if let Some(&(_, e)) = self.spans.iter().find(|(s, e)| *s < upto && upto < *e) {
            // Inside an occurrence: pass it on whole; what follows is redacted too.
            upto = e;
        }
        if self.base + self.held.len() - upto > MAX_HELD {
            self.read(true);
            upto = self.base + self.held.len();
        }
        self.release(upto)
    }

    /// Ends the stream: returns what was held back, redacted.
    pub fn finish(&mut self) -> Vec<u8> {
        self.read(true);
        let out = self.release(self.base + self.held.len());
        self.scan = None;
        self.skipping = At::START;
        out
    }

    /// Bytes held back now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Reads what has arrived, with the redactor's current matcher (starting over on
    /// what is held if a secret was registered since).
    fn read(&mut self, last: bool) {
        let Some(matcher) = self.redactor.matcher() else {
            self.scan = None;
            return;
        };
        if !self.scan.as_ref().is_some_and(|s| Arc::ptr_eq(&s.matcher, &matcher)) {
            self.spans.clear();
            self.scan = Some(Scan::new(matcher, self.base, self.skipping, usize::MAX));
        }
        if let Some(scan) = &mut self.scan {
            scan.read(&self.held, self.base, self.base, last, &mut self.spans);
        }
    }

    /// Passes on what is held up to offset `upto`, redacted.
    fn release(&mut self, upto: usize) -> Vec<u8> {
        let n = upto - self.base;
        let out = replace(&self.held, self.base, &self.spans, n);
        self.spans.retain(|(_, e)| *e > upto);
        self.skipping = self.skipping.after(&self.held[..n]);
        self.held.drain(..n);
        self.base = upto;
        out
    }
}

/// Registers a secret value with the process-wide redactor: from now on [`redact`]
/// removes it in all its [`forms`].
pub fn register(value: &str) {
    REDACTOR.register(value);
}

/// `text` with every registered secret, in every form, replaced by [`REDACTED`].
pub fn redact(text: &str) -> Cow<'_, str> {
    REDACTOR.redact(text)
}

/// `bytes` with every registered secret replaced by [`REDACTED`]; see [`redact`].
pub fn redact_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    REDACTOR.redact_bytes(bytes)
}

/// A 256-bit key for [`seal`] and [`open`].
pub struct SealingKey(Zeroizing<[u8; 32]>);

impl SealingKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SealingKey(Zeroizing::new(bytes))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        SealingKey(bytes)
    }

    /// The key's bytes, for writing it to its file.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Why sealed bytes could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    /// Too short to hold a nonce and a tag.
    #[error("sealed value is truncated")]
    Truncated,
    /// Wrong key, or the bytes or their associated data were changed.
    #[error("sealed value does not authenticate: wrong key, or the value was tampered with or moved")]
    Unauthentic,
}

const NONCE_LEN: usize = 12;

/// Encrypts `plaintext` with AES-256-GCM under `key`, binding it to `associated`
/// (for example the server and secret name, so sealed values cannot be swapped).
/// Returns nonce then ciphertext and tag.
pub fn seal(key: &SealingKey, associated: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new_from_slice(key.0.as_ref()).expect("key is 32 bytes");
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: associated })
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    out
}

/// Decrypts what [`seal`] produced with the same key and associated data.
pub fn open(key: &SealingKey, associated: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(OpenError::Truncated);
    }
    let cipher = Aes256Gcm::new_from_slice(key.0.as_ref()).expect("key is 32 bytes");
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: associated })
        .map(Zeroizing::new)
        .map_err(|_| OpenError::Unauthentic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_encoded_forms_are_redacted() {
        let secret = "s3cr3t/value+with spaces";
        register(secret);
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("user:{secret}"));
        let url: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        for text in [format!("key={secret}"), format!("Basic {b64}"), format!("q={url}")] {
            let out = redact(&text);
            assert!(out.contains(REDACTED), "not redacted: {text} -> {out}");
            assert!(!out.contains(secret), "{out}");
        }
        assert_eq!(redact("nothing to see"), "nothing to see");
    }

    #[test]
    fn base64_at_every_alignment() {
        let secret = "another-secret-value-42";
        register(secret);
        for prefix in ["", "a", "ab", "abc"] {
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{prefix}{secret}"));
            assert!(redact(&encoded).contains(REDACTED), "prefix {prefix:?}: {encoded}");
        }
    }

    const KEY: &str = "heroku-api-key-ada-5f0c2b7e9d";

    fn with(secrets: &[&str]) -> Redactor {
        let r = Redactor::new();
        secrets.iter().for_each(|s| r.register(s));
        r
    }

    fn wrap(text: &str, width: usize) -> String {
        text.as_bytes().chunks(width).map(|c| String::from_utf8_lossy(c).into_owned() + "\n").collect()
    }

    /// `od -An -tx1` (with `offsets`: `od -tx1`): 16 bytes a line, a space before each.
    fn od(bytes: &[u8], offsets: bool) -> String {
        let mut out = String::new();
        for (i, line) in bytes.chunks(16).enumerate() {
            if offsets {
                out.push_str(&format!("{:07o}", i * 16));
            }
            line.iter().for_each(|b| out.push_str(&format!(" {b:02x}")));
            out.push('\n');
        }
        if offsets {
            out.push_str(&format!("{:07o}\n", bytes.len()));
        }
        out
    }

    #[test]
    fn every_printed_form_is_redacted() {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
        let tricky = "pa\"ss/wörd<&>\\x+ 9";
        let r = with(&[KEY, tricky]);
        let mut texts: Vec<(String, String)> = Vec::new();
        for secret in [KEY, tricky] {
            let bytes = secret.as_bytes();
            texts.push(("raw".into(), format!("key={secret}.")));
            for prefix in ["", "u", "us", "user:"] {
                let plain = format!("{prefix}{secret}");
                for (name, engine) in [
                    ("std", &STANDARD),
                    ("std-nopad", &STANDARD_NO_PAD),
                    ("url", &URL_SAFE),
                    ("url-nopad", &URL_SAFE_NO_PAD),
                ] {
                    let encoded = engine.encode(&plain);
                    texts.push((format!("base64 {name} {prefix:?}"), format!("Basic {encoded}")));
                    texts.push((format!("base64 -w 20 {name} {prefix:?}"), wrap(&encoded, 20)));
                    texts.push((
                        format!("base64 -w 76 CRLF {name} {prefix:?}"),
                        wrap(&encoded, 7).replace('\n', "\r\n"),
                    ));
                }
            }
            texts.push(("hex".into(), hex::encode(bytes)));
            texts.push(("HEX".into(), hex::encode_upper(bytes)));
            texts.push(("xxd -p -c 4".into(), wrap(&hex::encode(bytes), 8)));
            texts.push(("od -An -tx1".into(), od(bytes, false)));
            texts.push(("od -tx1".into(), od(bytes, true)));
            texts.push(("od upper".into(), od(bytes, false).to_uppercase()));
            let form: String = url::form_urlencoded::byte_serialize(bytes).collect();
            texts.push(("form".into(), format!("q={form}&x=1")));
            texts.push(("form lower".into(), form.to_lowercase()));
            texts.push(("%20".into(), form.replace('+', "%20")));
            texts.push(("every byte".into(), bytes.iter().map(|b| format!("%{b:02X}")).collect()));
            let json = serde_json::to_string(secret).unwrap();
            texts.push(("json".into(), format!("{{\"token\":{json}}}")));
            texts.push(("json \\/".into(), json.replace('/', "\\/")));
            let all: String = secret.encode_utf16().map(|u| format!("\\u{u:04x}")).collect();
            texts.push(("json every \\u".into(), all.clone()));
            texts.push(("json every \\U".into(), all.to_uppercase().replace("\\U", "\\u")));
            let ascii: String = secret
                .chars()
                .map(|c| {
                    let one = serde_json::to_string(&c.to_string()).unwrap();
                    if c.is_ascii() { one[1..one.len() - 1].to_string() } else { format!("\\u{:04x}", c as u32) }
                })
                .collect();
            texts.push(("json ascii".into(), ascii));
            let go = json.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026");
            texts.push(("json go".into(), go));
            texts.push((
                "escape inside, once cleaned".into(),
                crate::caps::events::clean(&format!("{}\x1b[0m{}", &secret[..3], &secret[3..])),
            ));
        }
        for (name, text) in &texts {
            let out = r.redact(text);
            assert!(out.contains(REDACTED), "{name}: not redacted: {text:?} -> {out:?}");
            for secret in [KEY, tricky] {
                assert!(!out.contains(secret), "{name}: {out:?}");
                assert!(!exposes(&out, secret), "{name}: a form of {secret:?} is left in {out:?}");
            }
            assert!(exposes(text, KEY) || exposes(text, tricky), "{name}: exposes misses {text:?}");
            assert_eq!(out.matches('\n').count(), text.matches('\n').count(), "{name}: lines stay lines");
        }
    }

    #[test]
    fn text_without_a_secret_is_unchanged() {
        let r = with(&[KEY, "s3cr3t/value+with spaces"]);
        for text in ["nothing to see", "heroku-api-key-ada-5f0c2b7e9 (one short)", "", "\n\n", "0000000 68 65\n", "a\\"]
        {
            assert_eq!(r.redact(text), text);
        }
        assert_eq!(Redactor::new().redact("anything"), "anything");
    }

    #[test]
    fn a_stream_holds_back_what_could_begin_a_secret() {
        let r = with(&[KEY]);
        let mut stream = r.stream();
        let mut out = stream.push(b"first line\nkey: heroku-api-");
        assert_eq!(out, b"first line\nkey: ", "the part that could begin the key waits");
        out.extend(stream.push(b"key-ada-5f0c2b7e9d and more\n"));
        out.extend(stream.finish());
        assert_eq!(String::from_utf8(out).unwrap(), "first line\nkey: [redacted] and more\n");

        // Split anywhere, in any number of pieces.
        let text = format!("a {KEY} b {} c\n", hex::encode(KEY));
        for cut in 0..text.len() {
            let mut stream = r.stream();
            let mut out = stream.push(&text.as_bytes()[..cut]);
            out.extend(stream.push(&text.as_bytes()[cut..]));
            out.extend(stream.finish());
            assert_eq!(String::from_utf8(out).unwrap(), "a [redacted] b [redacted] c\n", "cut at {cut}");
        }
        let mut stream = r.stream();
        let mut out = Vec::new();
        for b in text.as_bytes() {
            out.extend(stream.push(&[*b]));
        }
        out.extend(stream.finish());
        assert_eq!(String::from_utf8(out).unwrap(), "a [redacted] b [redacted] c\n", "byte by byte");
    }

    #[test]
    fn a_stream_decides_skipped_bytes_only_when_it_sees_them() {
        let r = with(&[KEY]);
        let escaped = serde_json::to_string(&format!("{KEY}/x")).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("??>{KEY}")).replace('/', "\\/");
        let od = od(KEY.as_bytes(), true);
        for text in [escaped, b64, od] {
            for cut in 0..text.len() {
                let mut stream = r.stream();
                let mut out = stream.push(&text.as_bytes()[..cut]);
                out.extend(stream.push(&text.as_bytes()[cut..]));
                out.extend(stream.finish());
                let out = String::from_utf8(out).unwrap();
                assert!(!exposes(&out, KEY), "cut at {cut}: {out:?}");
            }
        }
    }

    #[test]
    fn a_stream_holds_back_a_bounded_amount() {
        let r = with(&[KEY]);
        let mut stream = r.stream();
        assert!(stream.push(b"heroku").is_empty());
        let out = stream.push(&vec![b' '; MAX_HELD - 100]);
        assert!(out.is_empty() && stream.held() == MAX_HELD - 94, "held while it could still be the key");
        let out = stream.push(&[b' '; 200]);
        assert_eq!(out.len(), MAX_HELD + 106, "past the bound the window closes");
        assert_eq!(stream.held(), 0);
        assert!(stream.push(b"no key here\n").ends_with(b"no key here\n"));
    }

    #[test]
    fn many_long_secrets_take_the_nfa_and_are_redacted_alike() {
        use secrecy::ExposeSecret as _;
        let keys: Vec<String> = (0..3)
            .map(|i| crate::caps::keys::generate(&format!("k{i}"), "test").unwrap().0.expose_secret().to_string())
            .collect();
        let r = with(&[KEY]);
        keys.iter().for_each(|k| r.register(k));
        assert!(matches!(r.matcher().map(|m| matches!(m.automaton, Automaton::Nfa(_))), Some(true)));
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("x:{KEY}"));
        let body_line = keys[1].lines().nth(1).unwrap().to_string();
        let texts = [format!("a {KEY} b\n"), wrap(&b64, 13), od(KEY.as_bytes(), true), keys[2].clone(), body_line];
        for text in &texts {
            let whole = r.redact(text).into_owned();
            assert!(whole.contains(REDACTED) && !exposes(&whole, KEY), "{whole:?}");
            assert!(keys.iter().all(|k| !whole.contains(k.as_str())), "{whole:?}");
            for cut in (0..text.len()).step_by(7) {
                let mut stream = r.stream();
                let mut out = stream.push(&text.as_bytes()[..cut]);
                out.extend(stream.push(&text.as_bytes()[cut..]));
                out.extend(stream.finish());
                let out = String::from_utf8(out).unwrap();
                assert!(!exposes(&out, KEY) && keys.iter().all(|k| !exposes(&out, k)), "cut at {cut}: {out:?}");
            }
        }
    }

    #[test]
    fn secrets_too_short_to_redact() {
        assert!(too_short("12345") && too_short(" a b c d e ") && too_short(""));
        assert!(!too_short("123456") && !too_short("héllo!"));
        let r = with(&["abc"]);
        assert_eq!(r.redact("abc abc"), "abc abc", "values under the floor are not registered");
    }

    #[test]
    fn seal_binds_key_and_associated_data() {
        let key = SealingKey::generate();
        let sealed = seal(&key, b"prod/api_key", b"hunter22");
        assert_eq!(open(&key, b"prod/api_key", &sealed).unwrap().as_slice(), b"hunter22");
        assert_eq!(open(&key, b"prod/ssh_key", &sealed), Err(OpenError::Unauthentic));
        assert_eq!(open(&SealingKey::generate(), b"prod/api_key", &sealed), Err(OpenError::Unauthentic));
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert_eq!(open(&key, b"prod/api_key", &tampered), Err(OpenError::Unauthentic));
        assert_eq!(open(&key, b"prod/api_key", &sealed[..10]), Err(OpenError::Truncated));
    }
}
