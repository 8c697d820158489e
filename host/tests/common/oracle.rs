//! A search for secrets that never asks the redactor: what came out is decoded in every
//! way a program might have encoded a secret (base64 at every alignment, hex, percent
//! escapes, JSON escapes), and the decoded bytes are searched, spacing ignored.

/// Spaces and line breaks removed.
fn squeeze(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().copied().filter(|b| !b.is_ascii_whitespace() && *b != 0x0b).collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn base64_value(c: u8, url: bool) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' if !url => Some(62),
        b'/' if !url => Some(63),
        b'-' if url => Some(62),
        b'_' if url => Some(63),
        _ => None,
    }
}

/// Every decoding of every run of base64 characters in `text`, from each of its first
/// four characters (so every alignment of an encoding that starts inside the run).
fn base64_decodings(text: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for url in [false, true] {
        let values: Vec<Option<u8>> = text.iter().map(|c| base64_value(*c, url)).collect();
        let mut i = 0;
        while i < values.len() {
            if values[i].is_none() {
                i += 1;
                continue;
            }
            let start = i;
            while i < values.len() && values[i].is_some() {
                i += 1;
            }
            for from in start..(start + 4).min(i) {
                let (mut bits, mut n, mut bytes) = (0u32, 0, Vec::new());
                for v in &values[from..i] {
                    bits = (bits << 6) | u32::from(v.expect("in the run"));
                    n += 6;
                    if n >= 8 {
                        n -= 8;
                        bytes.push((bits >> n) as u8);
                        bits &= (1 << n) - 1;
                    }
                }
                out.push(bytes);
            }
        }
    }
    out
}

/// Every decoding of every run of hex digits in `text`, from its first and second digit.
fn hex_decodings(text: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if !text[i].is_ascii_hexdigit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < text.len() && text[i].is_ascii_hexdigit() {
            i += 1;
        }
        for from in start..(start + 2).min(i) {
            let digits = &text[from..i];
            let bytes = digits
                .chunks_exact(2)
                .map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("hex digits"), 16).expect("hex"))
                .collect();
            out.push(bytes);
        }
    }
    out
}

/// `%XX` decoded (and `+` as a space, if `plus`).
fn percent_decoded(text: &[u8], plus: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'%' && i + 2 < text.len() && text[i + 1].is_ascii_hexdigit() && text[i + 2].is_ascii_hexdigit() {
            let hex = std::str::from_utf8(&text[i + 1..i + 3]).expect("hex digits");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(if plus && text[i] == b'+' { b' ' } else { text[i] });
            i += 1;
        }
    }
    out
}

/// JSON string escapes undone, leniently (anything that is not an escape stays).
fn json_unescaped(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut units: Vec<u16> = Vec::new();
    let flush = |units: &mut Vec<u16>, out: &mut String| {
        out.extend(char::decode_utf16(units.drain(..)).map(|c| c.unwrap_or('\u{fffd}')));
    };
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            let simple = match chars[i + 1] {
                '"' => Some('"'),
                '\\' => Some('\\'),
                '/' => Some('/'),
                'n' => Some('\n'),
                'r' => Some('\r'),
                't' => Some('\t'),
                'b' => Some('\u{8}'),
                'f' => Some('\u{c}'),
                _ => None,
            };
            if let Some(c) = simple {
                flush(&mut units, &mut out);
                out.push(c);
                i += 2;
                continue;
            }
            if chars[i + 1] == 'u' && i + 6 <= chars.len() {
                let hex: String = chars[i + 2..i + 6].iter().collect();
                if let Ok(unit) = u16::from_str_radix(&hex, 16) {
                    units.push(unit);
                    i += 6;
                    continue;
                }
            }
        }
        flush(&mut units, &mut out);
        out.push(chars[i]);
        i += 1;
    }
    flush(&mut units, &mut out);
    out
}

/// Whether `text` still holds `secret`: raw, or once decoded in any of the ways above
/// (spaces and line breaks ignored throughout).
pub fn leaks(text: &str, secret: &str) -> bool {
    let needle = squeeze(secret.as_bytes());
    let flat = squeeze(text.as_bytes());
    if contains(&flat, &needle) {
        return true;
    }
    let mut decoded: Vec<Vec<u8>> = base64_decodings(&flat);
    decoded.extend(base64_decodings(&squeeze(text.replace("\\/", "/").as_bytes())));
    decoded.extend(hex_decodings(&flat));
    // `od -tx1`: each line begins with its offset, seven octal digits.
    let without_offsets: String = text
        .lines()
        .map(|line| match line.split_once(' ') {
            Some((offset, rest)) if offset.len() == 7 && offset.bytes().all(|b| (b'0'..=b'7').contains(&b)) => rest,
            _ => line,
        })
        .collect();
    decoded.extend(hex_decodings(&squeeze(without_offsets.as_bytes())));
    // Decoded from the start, and from just after each `%` or `\\` (which may belong to
    // the text before an encoding rather than to it).
    let starts = std::iter::once(0)
        .chain(flat.iter().enumerate().filter(|(_, b)| **b == b'%' || **b == b'\\').map(|(i, _)| i + 1));
    for start in starts {
        let rest = &flat[start.min(flat.len())..];
        decoded.push(percent_decoded(rest, false));
        decoded.push(percent_decoded(rest, true));
        decoded.push(json_unescaped(&String::from_utf8_lossy(rest)).into_bytes());
    }
    decoded.iter().any(|d| contains(&squeeze(d), &needle))
}
