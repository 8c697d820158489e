//! Redaction, as properties: for generated secrets, encodings and texts, no secret is
//! left after redaction, whether the text arrives whole, split into pieces or through the
//! output line assembler, and text holding no secret is left as it was.
//!
//! The oracle never asks the redactor: it decodes what came out (base64 at every
//! alignment, hex, percent-encoding, JSON escapes) and searches the decoded bytes.

mod common;

use base64::Engine as _;
use common::oracle::leaks;
use pier::caps::events::{OutputLines, clean};
use pier::caps::secrets::{REDACTED, Redactor, too_short};
use proptest::prelude::*;

/// How a program prints a secret.
#[derive(Debug, Clone)]
enum Encoding {
    Raw,
    Base64 { url: bool, pad: bool, before: Vec<u8>, after: Vec<u8>, wrap: Option<usize>, crlf: bool },
    Hex { upper: bool, spaced: bool, wrap: Option<usize> },
    Percent { style: usize, upper: bool },
    Json { style: usize },
}

fn encoding() -> impl Strategy<Value = Encoding> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..4);
    prop_oneof![
        Just(Encoding::Raw),
        (any::<bool>(), any::<bool>(), bytes(), bytes(), proptest::option::of(1usize..90), any::<bool>())
            .prop_map(|(url, pad, before, after, wrap, crlf)| Encoding::Base64 { url, pad, before, after, wrap, crlf }),
        (any::<bool>(), any::<bool>(), proptest::option::of(1usize..70))
            .prop_map(|(upper, spaced, wrap)| Encoding::Hex { upper, spaced, wrap }),
        (0usize..5, any::<bool>()).prop_map(|(style, upper)| Encoding::Percent { style, upper }),
        (0usize..5).prop_map(|style| Encoding::Json { style }),
    ]
}

/// Breaks `text` into lines of `width` characters (`\r\n` if `crlf`).
fn wrapped(text: &str, width: usize, crlf: bool) -> String {
    let chars: Vec<char> = text.chars().collect();
    let end = if crlf { "\r\n" } else { "\n" };
    chars.chunks(width).map(|c| c.iter().collect::<String>() + end).collect()
}

fn percent(bytes: &[u8], keep: &[u8], plus: bool, upper: bool) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() && !keep.is_empty() || keep.contains(&b) {
                char::from(b).to_string()
            } else if b == b' ' && plus {
                "+".to_string()
            } else if upper {
                format!("%{b:02X}")
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// `secret` printed in `encoding`, as the tools and libraries that print it would.
fn encode(secret: &str, encoding: &Encoding) -> String {
    let bytes = secret.as_bytes();
    match encoding {
        Encoding::Raw => secret.to_string(),
        Encoding::Base64 { url, pad, before, after, wrap, crlf } => {
            use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
            let engine = match (url, pad) {
                (false, true) => &STANDARD,
                (false, false) => &STANDARD_NO_PAD,
                (true, true) => &URL_SAFE,
                (true, false) => &URL_SAFE_NO_PAD,
            };
            let encoded = engine.encode([before.as_slice(), bytes, after.as_slice()].concat());
            match wrap {
                Some(width) => wrapped(&encoded, *width, *crlf),
                None => encoded,
            }
        }
        Encoding::Hex { upper, spaced, wrap } => {
            let digits: Vec<String> =
                bytes.iter().map(|b| if *upper { format!("{b:02X}") } else { format!("{b:02x}") }).collect();
            let per_line = wrap.unwrap_or(usize::MAX);
            if *spaced {
                // `od -An -tx1`: a space before each byte, `per_line` bytes a line.
                digits
                    .chunks(per_line.min(64))
                    .map(|l| l.iter().map(|d| format!(" {d}")).collect::<String>() + "\n")
                    .collect()
            } else {
                let all = digits.concat();
                match wrap {
                    Some(width) => wrapped(&all, *width, false),
                    None => all,
                }
            }
        }
        Encoding::Percent { style, upper } => match style {
            0 => url::form_urlencoded::byte_serialize(bytes).collect::<String>(),
            1 => url::form_urlencoded::byte_serialize(bytes).collect::<String>().replace('+', "%20"),
            2 => percent(bytes, b"-._~", false, *upper),
            3 => percent(bytes, b"-_.!~*'()", false, *upper),
            _ => percent(bytes, b"", false, *upper),
        },
        Encoding::Json { style } => {
            let plain = serde_json::to_string(secret).expect("a string serialises");
            let inner = &plain[1..plain.len() - 1];
            let unicode = |c: char, upper: bool| -> String {
                let mut units = [0u16; 2];
                c.encode_utf16(&mut units)
                    .iter()
                    .map(|u| if upper { format!("\\u{u:04X}") } else { format!("\\u{u:04x}") })
                    .collect()
            };
            match style {
                0 => plain,
                // PHP: `/` escaped too, and non-ASCII as \uXXXX.
                1 => secret
                    .chars()
                    .map(|c| match c {
                        '/' => "\\/".to_string(),
                        c if !c.is_ascii() => unicode(c, false),
                        c => {
                            let one = serde_json::to_string(&c.to_string()).expect("a string serialises");
                            one[1..one.len() - 1].to_string()
                        }
                    })
                    .collect(),
                // Python's default: non-ASCII as \uXXXX.
                2 => inner.chars().map(|c| if c.is_ascii() { c.to_string() } else { unicode(c, false) }).collect(),
                // Every character, upper-case hex (some Java encoders).
                3 => secret.chars().map(|c| unicode(c, true)).collect(),
                // Go: HTML-unsafe characters and the line and paragraph separators as \uXXXX.
                _ => inner
                    .replace('<', "\\u003c")
                    .replace('>', "\\u003e")
                    .replace('&', "\\u0026")
                    .replace('\u{2028}', "\\u2028")
                    .replace('\u{2029}', "\\u2029"),
            }
        }
    }
}

/// Secrets: printable characters, some spaces and some beyond ASCII.
fn secret() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            8 => proptest::char::range('!', '~'),
            1 => Just(' '),
            1 => proptest::sample::select(vec!['é', 'ß', 'Ω', '中', '😀', '\u{2028}']),
        ],
        6..40,
    )
    .prop_map(|chars| chars.into_iter().collect::<String>())
    .prop_filter("long enough to be accepted", |s| !too_short(s))
}

/// Text around a secret: words, numbers, punctuation, spaces and line breaks.
fn filler() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            6 => proptest::char::range('a', 'z'),
            2 => proptest::char::range('0', '9'),
            2 => proptest::sample::select(vec![' ', '\n', ':', '=', '"', '/', '+', '%', '\\', '-', '.', '{', '}']),
            1 => proptest::char::range('A', 'Z'),
        ],
        0..80,
    )
    .prop_map(|chars| chars.into_iter().collect::<String>())
}

/// `text` through a stream, split at `cuts` (positions on char boundaries).
fn streamed(r: &Redactor, text: &str, cuts: &[usize]) -> (Vec<String>, String) {
    let mut stream = r.stream();
    let mut pieces = Vec::new();
    let mut at = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (text.len() + 1)).collect();
    points.sort();
    for point in points.into_iter().chain([text.len()]) {
        let mut point = point.max(at);
        while !text.is_char_boundary(point) {
            point += 1;
        }
        pieces.push(String::from_utf8(stream.push(&text.as_bytes()[at..point])).expect("UTF-8 in, UTF-8 out"));
        at = point;
    }
    pieces.push(String::from_utf8(stream.finish()).expect("UTF-8 in, UTF-8 out"));
    let whole = pieces.concat();
    (pieces, whole)
}

/// `text` through the output line assembler, in pieces split at `cuts`.
fn as_lines(r: &Redactor, text: &str, cuts: &[usize]) -> Vec<String> {
    let mut lines = OutputLines::with(r);
    let mut out = Vec::new();
    let mut at = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (text.len() + 1)).collect();
    points.sort();
    for point in points.into_iter().chain([text.len()]) {
        let mut point = point.max(at);
        while !text.is_char_boundary(point) {
            point += 1;
        }
        out.extend(lines.push(&text[at..point]));
        at = point;
    }
    out.extend(lines.finish());
    out
}

/// Runs of the marker (with spacing between them) made one, for comparing redactions
/// that differ only in where one occurrence was seen to end.
fn squash(text: &str) -> String {
    let mut out = text.to_string();
    loop {
        let next = out.replace(&format!("{REDACTED}{REDACTED}"), REDACTED);
        if next == out {
            return out;
        }
        out = next;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_encoded_secret_survives_redaction(
        secret in secret(),
        other in secret(),
        encoding in encoding(),
        before in filler(),
        after in filler(),
        cuts in proptest::collection::vec(any::<usize>(), 0..4),
    ) {
        let r = Redactor::new();
        r.register(&secret);
        r.register(&other);
        let encoded = encode(&secret, &encoding);
        let text = format!("{before}{encoded}{after}");
        prop_assume!(!leaks(&format!("{before}{after}"), &secret));
        prop_assert!(leaks(&text, &secret), "the oracle must see the secret in {text:?}");

        let whole = r.redact(&text).into_owned();
        prop_assert!(!leaks(&whole, &secret), "left in {whole:?} (from {text:?})");

        // Split into pieces: nothing passed on holds the secret, and the result is the
        // redaction of the whole.
        let (pieces, streamed) = streamed(&r, &text, &cuts);
        prop_assert!(!leaks(&streamed, &secret), "left in {pieces:?} (from {text:?})");
        prop_assert_eq!(squash(&streamed), squash(&whole));

        // As program output: lines cleaned, then redacted across lines.
        let lines = as_lines(&r, &text, &cuts);
        let joined = lines.join("\n");
        prop_assert!(!leaks(&joined, &secret), "left in {lines:?} (from {text:?})");
    }

    #[test]
    fn text_without_a_secret_is_left_as_it_was(
        secrets in proptest::collection::vec(secret(), 1..4),
        text in filler(),
        more in filler(),
        cuts in proptest::collection::vec(any::<usize>(), 0..4),
    ) {
        let text = format!("{text}{more}");
        let r = Redactor::new();
        secrets.iter().for_each(|s| r.register(s));
        prop_assume!(secrets.iter().all(|s| !leaks(&text, s)));
        prop_assert_eq!(r.redact(&text), text.as_str());
        let (_, streamed) = streamed(&r, &text, &cuts);
        prop_assert_eq!(&streamed, &text);
        let lines = as_lines(&r, &text, &cuts);
        let cleaned: Vec<String> = text.split('\n').map(clean).collect();
        let expected: Vec<String> = if text.ends_with('\n') { cleaned[..cleaned.len() - 1].to_vec() } else { cleaned };
        prop_assert_eq!(lines, if text.is_empty() { Vec::new() } else { expected });
    }
}

/// The examples the properties generalise, with the oracle's own check that it sees each.
#[test]
fn the_oracle_sees_every_encoding_of_a_known_secret() {
    let secret = "pa ss/wörd\"<&>+x_9";
    let encodings = [
        Encoding::Raw,
        Encoding::Base64 { url: false, pad: true, before: b"u:".to_vec(), after: vec![], wrap: Some(20), crlf: false },
        Encoding::Base64 { url: true, pad: false, before: vec![1], after: vec![2, 3], wrap: None, crlf: false },
        Encoding::Hex { upper: true, spaced: true, wrap: Some(16) },
        Encoding::Hex { upper: false, spaced: false, wrap: Some(60) },
        Encoding::Percent { style: 0, upper: true },
        Encoding::Percent { style: 4, upper: false },
        Encoding::Json { style: 1 },
        Encoding::Json { style: 3 },
        Encoding::Json { style: 4 },
    ];
    let r = Redactor::new();
    r.register(secret);
    for encoding in &encodings {
        let text = format!("value: {}\n", encode(secret, encoding));
        assert!(leaks(&text, secret), "{encoding:?}: {text:?}");
        let out = r.redact(&text);
        assert!(!leaks(&out, secret), "{encoding:?}: {out:?}");
        assert!(out.contains(REDACTED));
    }
}
