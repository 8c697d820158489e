//! Checks recorded requests against Heroku's published Platform API hyper-schema.
//!
//! The schema (`platform-api-schema.json`, from the MIT-licensed heroku-go repository; see
//! `SCHEMA-LICENSE.md`) lists every endpoint as a `link` with a `method`, an `href` template
//! such as `/apps/{(%23%2Fdefinitions%2Fapp%2Fdefinitions%2Fidentity)}/builds`, and for most
//! writes a request `schema` with `required` properties. [`check`] accepts an API request only
//! when:
//!
//! * it sends `Accept: application/vnd.heroku+json; version=3`;
//! * its method and path match a link (each `{...}` in a template matches exactly one
//!   non-empty path segment), or an entry of the small [`UNDOCUMENTED`] table;
//! * its JSON body carries every property the link's schema `required`s, every property that
//!   a present property's `$ref`'d object definition `required`s (one level down), and the
//!   extra properties of the [`EXTRA_REQUIRED`] table, which lists what Heroku enforces
//!   without the schema saying so. When several links share a method and path (for example
//!   release create and rollback), satisfying any one of them is enough.
//!
//! Blob, stream and app web requests are not Platform API calls and always pass.

use std::sync::OnceLock;

use serde_json::Value;

use crate::record::{RecordedRequest, RequestKind};
use crate::util::{HEROKU_ACCEPT, accepts_heroku_v3};

const SCHEMA_JSON: &str = include_str!("../platform-api-schema.json");

/// Endpoints Heroku serves but does not publish, as `(method, path template, required body
/// properties)`; `{}` in a template matches one path segment.
///
/// * `POST /account/keys {public_key}`: SSH git transport was switched off in 2022 and the
///   public schema now lists only `GET /account/keys`, but the official CLI's `keys:add` still
///   posts the key this way (the key now serves `heroku run` into private spaces), so Pier
///   registers keys as the CLI does.
/// * `DELETE /account/keys/{key_id_or_fingerprint}`: left out of the public schema for the
///   same reason, but the official CLI's `keys:remove` still deletes keys this way (by id).
pub const UNDOCUMENTED: &[(&str, &str, &[&str])] =
    &[("POST", "/account/keys", &["public_key"]), ("DELETE", "/account/keys/{}", &[])];

/// Body properties Heroku requires although the schema does not mark them `required`, as
/// `(method, path template, dotted property paths)`.
///
/// * Build create: the schema requires `source_blob` but not `source_blob.url`; a build
///   without a URL to fetch its source from is refused.
pub const EXTRA_REQUIRED: &[(&str, &str, &[&str])] = &[("POST", "/apps/{}/builds", &["source_blob.url"])];

/// One link of the schema, reduced to what the checks need.
#[derive(Debug)]
struct Link {
    method: String,
    /// The href with every `{...}` placeholder replaced by `{}`.
    template: String,
    /// Top-level required body properties.
    required: Vec<String>,
    /// For body properties whose `$ref`'d definition is an object with `required`:
    /// `(property, its required sub-properties)`.
    nested_required: Vec<(String, Vec<String>)>,
}

fn links() -> Result<&'static [Link], String> {
    static LINKS: OnceLock<Result<Vec<Link>, String>> = OnceLock::new();
    LINKS.get_or_init(|| load_links(SCHEMA_JSON)).as_ref().map(Vec::as_slice).map_err(Clone::clone)
}

fn load_links(text: &str) -> Result<Vec<Link>, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| format!("the bundled schema does not parse: {e}"))?;
    let mut all = Vec::new();
    let top_links = root.get("links").and_then(Value::as_array);
    let definition_links = root
        .get("definitions")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|defs| defs.values())
        .filter_map(|def| def.get("links").and_then(Value::as_array));
    for link in top_links.into_iter().chain(definition_links).flatten() {
        let (Some(method), Some(href)) =
            (link.get("method").and_then(Value::as_str), link.get("href").and_then(Value::as_str))
        else {
            continue;
        };
        if !href.starts_with('/') {
            continue;
        }
        let schema = link.get("schema");
        let required = string_list(schema.and_then(|s| s.get("required")));
        let mut nested_required = Vec::new();
        if let Some(properties) = schema.and_then(|s| s.get("properties")).and_then(Value::as_object) {
            for (name, property) in properties {
                let definition = resolve(&root, property);
                let sub_required = string_list(definition.get("required"));
                if !sub_required.is_empty() && is_object_type(definition) {
                    nested_required.push((name.clone(), sub_required));
                }
            }
        }
        all.push(Link {
            method: method.to_ascii_uppercase(),
            template: simplify_template(href),
            required,
            nested_required,
        });
    }
    if all.is_empty() {
        return Err("the bundled schema has no links".into());
    }
    Ok(all)
}

/// Follows a `$ref` (`#/definitions/...`) once; anything else is returned as is.
fn resolve<'a>(root: &'a Value, value: &'a Value) -> &'a Value {
    value
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|reference| reference.strip_prefix('#'))
        .and_then(|pointer| root.pointer(pointer))
        .unwrap_or(value)
}

fn is_object_type(value: &Value) -> bool {
    match value.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(types)) => types.iter().any(|t| t == "object"),
        _ => value.get("properties").is_some(),
    }
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// `/apps/{(%23...)}/builds` → `/apps/{}/builds`.
fn simplify_template(href: &str) -> String {
    let mut out = String::with_capacity(href.len());
    let mut depth = 0usize;
    for c in href.chars() {
        match c {
            '{' => {
                if depth == 0 {
                    out.push_str("{}");
                }
                depth += 1;
            }
            '}' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Whether `path` matches a simplified template: `{}` matches one non-empty segment.
fn template_matches(template: &str, path: &str) -> bool {
    let mut template_segments = template.split('/');
    let mut path_segments = path.split('/');
    loop {
        match (template_segments.next(), path_segments.next()) {
            (None, None) => return true,
            (Some("{}"), Some(segment)) if !segment.is_empty() => {}
            (Some(expected), Some(segment)) if expected == segment => {}
            _ => return false,
        }
    }
}

/// Whether the published schema (or [`UNDOCUMENTED`]) has an endpoint for `method` and
/// `path`, whatever the body.
pub(crate) fn has_endpoint(method: &str, path: &str) -> bool {
    let documented = links().is_ok_and(|links| {
        links.iter().any(|l| l.method.eq_ignore_ascii_case(method) && template_matches(&l.template, path))
    });
    documented || UNDOCUMENTED.iter().any(|(m, t, _)| m.eq_ignore_ascii_case(method) && template_matches(t, path))
}

/// Checks one recorded request: see the module documentation for the rules.
pub fn check(req: &RecordedRequest) -> Result<(), String> {
    if req.kind != RequestKind::Api {
        return Ok(());
    }
    let what = format!("{} {}", req.method, req.path);
    match req.header("accept") {
        Some(accept) if accepts_heroku_v3(accept) => {}
        Some(accept) => {
            return Err(format!("{what}: Accept is {accept:?}, not {HEROKU_ACCEPT:?}"));
        }
        None => {
            return Err(format!("{what}: no Accept header (Heroku wants {HEROKU_ACCEPT:?})"));
        }
    }

    let links = links()?;
    // Each candidate is the list of property paths its endpoint requires.
    let mut candidates: Vec<Vec<String>> = Vec::new();
    for link in links {
        if link.method.eq_ignore_ascii_case(&req.method) && template_matches(&link.template, &req.path) {
            let mut required = link.required.clone();
            for (property, sub_required) in &link.nested_required {
                if present(req.body.as_ref(), property) {
                    required.extend(sub_required.iter().map(|sub| format!("{property}.{sub}")));
                }
            }
            required.extend(extra_required(&req.method, &link.template));
            candidates.push(required);
        }
    }
    for (method, template, required) in UNDOCUMENTED {
        if method.eq_ignore_ascii_case(&req.method) && template_matches(template, &req.path) {
            candidates.push(required.iter().map(|r| r.to_string()).collect());
        }
    }
    if candidates.is_empty() {
        return Err(format!("{what}: no such endpoint in Heroku's Platform API schema"));
    }

    let mut first_missing = None;
    for required in &candidates {
        let missing: Vec<&str> =
            required.iter().filter(|path| !present(req.body.as_ref(), path)).map(String::as_str).collect();
        if missing.is_empty() {
            return Ok(());
        }
        first_missing.get_or_insert(missing.join(", "));
    }
    Err(format!("{what}: body lacks required {}", first_missing.unwrap_or_default()))
}

/// Checks every request; the errors name each failing request by its position.
pub fn check_all(reqs: &[RecordedRequest]) -> Result<(), Vec<String>> {
    let errors: Vec<String> =
        reqs.iter().enumerate().filter_map(|(i, req)| check(req).err().map(|e| format!("request #{i}: {e}"))).collect();
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

fn extra_required(method: &str, template: &str) -> Vec<String> {
    EXTRA_REQUIRED
        .iter()
        .filter(|(m, t, _)| m.eq_ignore_ascii_case(method) && *t == template)
        .flat_map(|(_, _, paths)| paths.iter().map(|p| p.to_string()))
        .collect()
}

/// Whether the dotted `path` names a non-null value in `body`.
fn present(body: Option<&Value>, path: &str) -> bool {
    let mut value = match body {
        Some(value) => value,
        None => return false,
    };
    for part in path.split('.') {
        match value.get(part) {
            Some(next) if !next.is_null() => value = next,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn api(method: &str, path: &str, body: Option<Value>) -> RecordedRequest {
        let mut headers = BTreeMap::new();
        headers.insert("accept".to_string(), "application/vnd.heroku+json; version=3".to_string());
        RecordedRequest {
            kind: RequestKind::Api,
            method: method.into(),
            path: path.into(),
            query: None,
            headers,
            body,
            body_len: 0,
            status: 200,
        }
    }

    #[test]
    fn the_bundled_schema_loads_every_link() {
        let links = links().expect("schema loads");
        assert!(links.len() > 300, "only {} links", links.len());
        assert!(links.iter().any(|l| l.method == "GET" && l.template == "/apps/{}/releases/{}"));
    }

    #[test]
    fn templates() {
        assert_eq!(
            simplify_template("/apps/{(%23%2Fdefinitions%2Fapp%2Fdefinitions%2Fidentity)}/builds"),
            "/apps/{}/builds"
        );
        assert!(template_matches("/apps/{}/builds", "/apps/x/builds"));
        assert!(!template_matches("/apps/{}/builds", "/apps//builds"));
        assert!(!template_matches("/apps/{}", "/apps/x/builds"));
        assert!(!template_matches("/apps", "/apps/"));
    }

    #[test]
    fn required_properties() {
        assert!(check(&api("GET", "/apps", None)).is_ok());
        assert!(check(&api("GET", "/apps/hello", None)).is_ok());
        assert!(check(&api("POST", "/apps/hello/builds", None)).is_err());
        assert!(check(&api("POST", "/apps/hello/builds", Some(json!({"source_blob": {"version": "abc"}})))).is_err());
        assert!(check(&api("POST", "/apps/hello/builds", Some(json!({"source_blob": {"url": "http://x/y"}})))).is_ok());
        // Release create needs `slug`, rollback needs `release`: either will do.
        assert!(check(&api("POST", "/apps/a/releases", Some(json!({"release": "r"})))).is_ok());
        assert!(check(&api("POST", "/apps/a/releases", Some(json!({})))).is_err());
        // Dyno create needs `command`; release list and key list need nothing.
        assert!(check(&api("POST", "/apps/a/dynos", Some(json!({"command": "bash", "attach": true})))).is_ok());
        assert!(check(&api("POST", "/apps/a/dynos", Some(json!({"attach": true})))).is_err());
        assert!(check(&api("GET", "/apps/a/releases", None)).is_ok());
        assert!(check(&api("GET", "/account/keys", None)).is_ok());
        // The undocumented key registration.
        assert!(check(&api("POST", "/account/keys", Some(json!({"public_key": "k"})))).is_ok());
        assert!(check(&api("POST", "/account/keys", Some(json!({})))).is_err());
        assert!(check(&api("GET", "/no/such/thing", None)).is_err());
        assert!(check(&api("DELETE", "/account/keys", None)).is_err());
        assert!(check(&api("DELETE", "/account/keys/01234567-89ab-cdef-0123-456789abcdef", None)).is_ok());
    }

    #[test]
    fn accept_header_is_checked_and_other_kinds_pass() {
        let mut req = api("GET", "/account", None);
        req.headers.remove("accept");
        assert!(check(&req).is_err());
        req.headers.insert("accept".into(), "application/json".into());
        assert!(check(&req).is_err());
        req.kind = RequestKind::Blob;
        assert!(check(&req).is_ok());
        assert_eq!(
            check_all(&[api("GET", "/account", None), api("GET", "/nope", None)]).expect_err("one bad").len(),
            1
        );
    }
}
