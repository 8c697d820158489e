//! `Range` / `Next-Range` paging of list endpoints, as the Platform API does it.
//!
//! Heroku documents ("Platform API Reference", section Ranges): a list request may send
//! `Range: id ..; max=10`; a truncated list answers `206 Partial Content` with a `Next-Range`
//! header, which the client sends back verbatim as the next `Range`; the default page size is
//! 200 and the maximum 1000. Heroku's own error message for a bad header shows the parameter
//! syntax: "Invalid `Range` header. Please use format like `id ..; max=10, order=desc`."
//!
//! What this fake accepts (`Range` request header):
//!
//! ```text
//! Range: [FIELD] [ [']'] START ] .. [ END ['['] ] [; PARAM [, PARAM]... ] [;]
//! PARAM: max=N | order=asc | order=desc
//! ```
//!
//! * `FIELD` is one of the list's `Accept-Ranges` fields; when left out (a bare `]x..`) the
//!   list's default field is used. Without any `Range` header the default field is used too.
//! * `START..` is inclusive, `]START..` exclusive; `..END` inclusive, `..END[` exclusive; an
//!   empty START or END is unbounded (so `id ]..` is the whole list, as some clients send).
//! * Keys compare as strings, except for fields whose values are numbers (a release's
//!   `version`), which order and range numerically (`version 2..10`).
//! * `max` defaults to 200; values above 1000 are capped at 1000; 0 or junk is an error.
//! * Parameters may be separated by `;` or `,`; a trailing `;` is fine.
//!
//! What it answers:
//!
//! * Always `Accept-Ranges: FIELD1, FIELD2` (the fields the list supports).
//! * When the page is not empty, `Content-Range: FIELD FIRST..LAST; max=N`.
//! * When items remain after the page: status 206 and
//!   `Next-Range: FIELD ]LAST..[END]; max=N[, order=desc]` (the field is named so that the
//!   header, sent back verbatim, is unambiguous). On the last page: status 200, no
//!   `Next-Range`.
//! * A header that does not parse, or names a field the list does not support, answers
//!   `400 bad_request` with Heroku's message.

use std::cmp::Ordering;

/// Default page size (Heroku's).
pub const DEFAULT_MAX: usize = 200;
/// Largest page size Heroku serves.
pub const MAX_MAX: usize = 1000;

/// A parsed `Range` request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSpec {
    pub field: String,
    pub start: Option<Bound>,
    pub end: Option<Bound>,
    pub max: usize,
    pub desc: bool,
}

/// One end of a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub value: String,
    pub exclusive: bool,
}

/// Heroku's message for a `Range` header it cannot use.
pub const INVALID_RANGE_MESSAGE: &str = "Invalid `Range` header. Please use format like `id ..; max=10, order=desc`.";

/// Parses a `Range` header for a list that supports `fields` (the first is the default).
pub fn parse(header: Option<&str>, fields: &[&str]) -> Result<RangeSpec, String> {
    let default_field = fields.first().copied().unwrap_or("id");
    let mut spec =
        RangeSpec { field: default_field.to_string(), start: None, end: None, max: DEFAULT_MAX, desc: false };
    let Some(header) = header else {
        return Ok(spec);
    };
    let (head, params) = header.split_once(';').unwrap_or((header, ""));
    let head = head.trim();

    let range_part = match head.split_once(char::is_whitespace) {
        _ if head.is_empty() => "",
        _ if head.starts_with(']') || head.starts_with("..") => head,
        Some((field, rest)) => {
            spec.field = field.to_string();
            rest.trim()
        }
        None if head.contains("..") => head,
        None => {
            spec.field = head.to_string();
            ""
        }
    };
    if !fields.contains(&spec.field.as_str()) {
        return Err(format!("{INVALID_RANGE_MESSAGE} This list can be ranged by: {}.", fields.join(", ")));
    }
    if !range_part.is_empty() {
        let Some((start, end)) = range_part.split_once("..") else {
            return Err(INVALID_RANGE_MESSAGE.to_string());
        };
        let (start, start_exclusive) = match start.strip_prefix(']') {
            Some(rest) => (rest, true),
            None => (start, false),
        };
        let (end, end_exclusive) = match end.strip_suffix('[') {
            Some(rest) => (rest, true),
            None => (end, false),
        };
        if start.contains(char::is_whitespace) || end.contains(char::is_whitespace) {
            return Err(INVALID_RANGE_MESSAGE.to_string());
        }
        spec.start = (!start.is_empty()).then(|| Bound { value: start.to_string(), exclusive: start_exclusive });
        spec.end = (!end.is_empty()).then(|| Bound { value: end.to_string(), exclusive: end_exclusive });
    }

    for param in params.split([';', ',']).map(str::trim) {
        if param.is_empty() {
            continue;
        }
        let (name, value) = param
            .split_once('=')
            .map(|(n, v)| (n.trim(), v.trim()))
            .ok_or_else(|| INVALID_RANGE_MESSAGE.to_string())?;
        match name {
            "max" => {
                let max: usize = value.parse().map_err(|_| INVALID_RANGE_MESSAGE.to_string())?;
                if max == 0 {
                    return Err(INVALID_RANGE_MESSAGE.to_string());
                }
                spec.max = max.min(MAX_MAX);
            }
            "order" => match value {
                "asc" => spec.desc = false,
                "desc" => spec.desc = true,
                _ => return Err(INVALID_RANGE_MESSAGE.to_string()),
            },
            _ => return Err(INVALID_RANGE_MESSAGE.to_string()),
        }
    }
    Ok(spec)
}

/// One page of a list.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// `Content-Range` value, when the page is not empty.
    pub content_range: Option<String>,
    /// `Next-Range` value, when items remain.
    pub next_range: Option<String>,
}

/// Sorts `items` by `key` in the spec's order and cuts the page the spec asks for; keys
/// compare as strings.
pub fn page<T>(items: Vec<T>, key: impl Fn(&T) -> String, spec: &RangeSpec) -> Page<T> {
    page_by(items, key, str::cmp, spec)
}

/// Compares keys as unsigned integers (for ranges over `version`): a key that is not one
/// sorts after those that are, as a string.
pub fn numeric(a: &str, b: &str) -> Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// [`page`], with keys (and the range's bounds) compared by `compare`.
pub fn page_by<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    compare: impl Fn(&str, &str) -> Ordering,
    spec: &RangeSpec,
) -> Page<T> {
    items.sort_by(|a, b| compare(&key(a), &key(b)));
    if spec.desc {
        items.reverse();
    }
    // Position of a key relative to a bound, in the list's order.
    let order = |k: &str, bound: &str| -> Ordering {
        let ordering = compare(k, bound);
        if spec.desc { ordering.reverse() } else { ordering }
    };
    let in_range = |item: &T| {
        let k = key(item);
        let after_start = spec.start.as_ref().is_none_or(|b| match order(&k, &b.value) {
            Ordering::Greater => true,
            Ordering::Equal => !b.exclusive,
            Ordering::Less => false,
        });
        let before_end = spec.end.as_ref().is_none_or(|b| match order(&k, &b.value) {
            Ordering::Less => true,
            Ordering::Equal => !b.exclusive,
            Ordering::Greater => false,
        });
        after_start && before_end
    };
    let mut matching: Vec<T> = items.into_iter().filter(|item| in_range(item)).collect();
    let more = matching.len() > spec.max;
    matching.truncate(spec.max);

    let params = if spec.desc { format!("max={}, order=desc", spec.max) } else { format!("max={}", spec.max) };
    let first_last = matching.first().zip(matching.last()).map(|(first, last)| (key(first), key(last)));
    let content_range = first_last.as_ref().map(|(first, last)| format!("{} {first}..{last}; {params}", spec.field));
    let next_range = match (&first_last, more) {
        (Some((_, last)), true) => {
            let end = spec
                .end
                .as_ref()
                .map_or(String::new(), |b| format!("{}{}", b.value, if b.exclusive { "[" } else { "" }));
            Some(format!("{} ]{last}..{end}; {params}", spec.field))
        }
        _ => None,
    };
    Page { items: matching, content_range, next_range }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[&str] = &["id", "name"];

    fn names(n: usize) -> Vec<String> {
        (1..=n).rev().map(|i| format!("app-{i:04}")).collect()
    }

    #[test]
    fn parses_documented_forms() {
        let spec = parse(Some("id ..; max=10;"), FIELDS).expect("parses");
        assert_eq!((spec.field.as_str(), spec.max, spec.desc), ("id", 10, false));
        assert_eq!((spec.start, spec.end), (None, None));

        let spec = parse(Some("name ]app-0200..; max=200"), FIELDS).expect("parses");
        assert_eq!(spec.field, "name");
        assert_eq!(spec.start, Some(Bound { value: "app-0200".into(), exclusive: true }));

        let spec = parse(Some("id ..; max=10, order=desc"), FIELDS).expect("parses");
        assert!(spec.desc);
        let spec = parse(Some("id ]..; max=5000"), FIELDS).expect("parses");
        assert_eq!((spec.start, spec.max), (None, MAX_MAX));
        let spec = parse(Some("]b..; max=2"), FIELDS).expect("field-less");
        assert_eq!(spec.field, "id");
        let spec = parse(Some("name"), FIELDS).expect("field only");
        assert_eq!((spec.field.as_str(), spec.max), ("name", DEFAULT_MAX));
        assert_eq!(parse(None, FIELDS).expect("none").field, "id");
    }

    #[test]
    fn rejects_junk() {
        for bad in [
            "size ..; max=10",
            "name ..; max=0",
            "name ..; max=ten",
            "name ..; order=sideways",
            "name ..; limit=3",
            "name a b",
        ] {
            assert!(parse(Some(bad), FIELDS).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn pages_follow_next_range() {
        let spec = parse(Some("name ..; max=200"), FIELDS).expect("parses");
        let first = page(names(450), Clone::clone, &spec);
        assert_eq!(first.items.len(), 200);
        assert_eq!(first.items[0], "app-0001");
        assert_eq!(first.content_range.as_deref(), Some("name app-0001..app-0200; max=200"));
        let next = first.next_range.expect("more pages");
        assert_eq!(next, "name ]app-0200..; max=200");
        let second = page(names(450), Clone::clone, &parse(Some(&next), FIELDS).expect("next"));
        assert_eq!(second.items[0], "app-0201");
        let next = second.next_range.expect("more pages");
        let third = page(names(450), Clone::clone, &parse(Some(&next), FIELDS).expect("next"));
        assert_eq!(third.items.len(), 50);
        assert_eq!(third.next_range, None);
    }

    #[test]
    fn descending_and_bounded_ranges() {
        let spec = parse(Some("name ..; max=2, order=desc"), FIELDS).expect("parses");
        let first = page(names(5), Clone::clone, &spec);
        assert_eq!(first.items, vec!["app-0005", "app-0004"]);
        let next = first.next_range.expect("more");
        assert_eq!(next, "name ]app-0004..; max=2, order=desc");
        let second = page(names(5), Clone::clone, &parse(Some(&next), FIELDS).expect("ok"));
        assert_eq!(second.items, vec!["app-0003", "app-0002"]);

        let spec = parse(Some("name app-0002..app-0004["), FIELDS).expect("parses");
        let bounded = page(names(5), Clone::clone, &spec);
        assert_eq!(bounded.items, vec!["app-0002", "app-0003"]);
        assert_eq!(bounded.next_range, None);
    }

    #[test]
    fn numeric_keys_sort_as_numbers() {
        let versions: Vec<String> = [3, 10, 1, 2, 9].iter().map(u64::to_string).collect();
        let fields = &["version", "id"];
        let spec = parse(Some("version ..; max=2, order=desc"), fields).expect("parses");
        let first = page_by(versions.clone(), Clone::clone, numeric, &spec);
        assert_eq!(first.items, vec!["10", "9"]);
        assert_eq!(first.content_range.as_deref(), Some("version 10..9; max=2, order=desc"));
        let next = first.next_range.expect("more");
        let second = page_by(versions.clone(), Clone::clone, numeric, &parse(Some(&next), fields).expect("ok"));
        assert_eq!(second.items, vec!["3", "2"]);
        let spec = parse(Some("version 2..9"), fields).expect("parses");
        assert_eq!(page_by(versions, Clone::clone, numeric, &spec).items, vec!["2", "3", "9"]);
        assert_eq!(numeric("9", "10"), Ordering::Less);
        assert_eq!(numeric("x", "10"), Ordering::Greater);
    }
}
