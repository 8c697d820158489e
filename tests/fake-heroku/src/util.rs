//! Small helpers: replies, error bodies, ids, timestamps, header parsing.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The media type and version every Platform API request must accept.
pub const HEROKU_ACCEPT: &str = "application/vnd.heroku+json; version=3";

/// A reply computed while holding the state lock, turned into an HTTP response afterwards.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: ReplyBody,
}

/// A reply's body.
#[derive(Debug)]
pub enum ReplyBody {
    /// A body sent in one piece.
    Bytes(Vec<u8>),
    /// A `text/plain` body sent as a chunked stream, one chunk per line.
    Lines(Vec<String>),
}

impl Reply {
    /// A reply with a JSON body.
    pub fn json(status: StatusCode, value: &Value) -> Reply {
        Reply {
            status,
            headers: vec![(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body: ReplyBody::Bytes(value.to_string().into_bytes()),
        }
    }

    /// A reply with a plain-text body.
    pub fn text(status: StatusCode, text: &str) -> Reply {
        Reply {
            status,
            headers: vec![(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))],
            body: ReplyBody::Bytes(text.as_bytes().to_vec()),
        }
    }

    /// A reply with an empty body.
    pub fn empty(status: StatusCode) -> Reply {
        Reply { status, headers: Vec::new(), body: ReplyBody::Bytes(Vec::new()) }
    }

    /// Adds a header; a value that is not a valid header value is left out.
    pub fn with_header(mut self, name: &'static str, value: &str) -> Reply {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((HeaderName::from_static(name), value));
        }
        self
    }
}

/// A Platform API error: JSON `{id, message, url}` with `Content-Type: application/json`.
pub fn api_error(status: StatusCode, id: &str, message: &str) -> Reply {
    let anchor = match id {
        "rate_limit" => "rate-limits",
        "not_acceptable" => "clients",
        "invalid_range" | "bad_request" if message.contains("Range") => "ranges",
        _ => "error-responses",
    };
    Reply::json(
        status,
        &json!({
            "id": id,
            "message": message,
            "url": format!("https://devcenter.heroku.com/articles/platform-api-reference#{anchor}"),
        }),
    )
}

/// A stable UUID-shaped id derived from a namespace and a name (SHA-256 based, marked as an
/// RFC 9562 version 8 "custom" UUID).
pub fn derived_uuid(namespace: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("{namespace}\0{name}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Now, as an RFC 3339 UTC timestamp with second precision (`2024-05-01T12:00:00Z`), the
/// format the Platform API uses.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    rfc3339(secs)
}

/// Formats seconds since the Unix epoch as an RFC 3339 UTC timestamp.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Whether an `Accept` header value accepts the Platform API v3 media type
/// (`application/vnd.heroku+json; version=3`, parameters in any spacing; variants such as
/// `version=3.some-variant` are accepted as Heroku does).
pub fn accepts_heroku_v3(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media_type = parts.next().unwrap_or_default();
        if !media_type.eq_ignore_ascii_case("application/vnd.heroku+json") {
            return false;
        }
        parts.any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            let value = value.trim().trim_matches('"');
            name.trim().eq_ignore_ascii_case("version") && (value == "3" || value.starts_with("3."))
        })
    })
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`); invalid escapes are kept
/// as they are.
pub fn percent_decode(input: &str, plus_is_space: bool) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of `name` in a query string (`a=1&b=2`), percent-decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key, true) == name).then(|| percent_decode(value, true))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn derived_uuids_are_stable_and_uuid_shaped() {
        let a = derived_uuid("app", "hello-app");
        assert_eq!(a, derived_uuid("app", "hello-app"));
        assert_ne!(a, derived_uuid("app", "other"));
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'8');
    }

    #[test]
    fn accept_header_variants() {
        assert!(accepts_heroku_v3("application/vnd.heroku+json; version=3"));
        assert!(accepts_heroku_v3("application/vnd.heroku+json;version=3"));
        assert!(accepts_heroku_v3("text/html, application/vnd.heroku+json; version=3.sdk"));
        assert!(!accepts_heroku_v3("application/json"));
        assert!(!accepts_heroku_v3("application/vnd.heroku+json"));
        assert!(!accepts_heroku_v3("application/vnd.heroku+json; version=2"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("ada%40example.com", false), "ada@example.com");
        assert_eq!(percent_decode("a+b%2", true), "a b%2");
        assert_eq!(percent_decode("%zz%", false), "%zz%");
        assert_eq!(query_param(Some("x=1&email=ada%40example.com"), "email").as_deref(), Some("ada@example.com"));
        assert_eq!(query_param(Some("x=1"), "email"), None);
    }
}
