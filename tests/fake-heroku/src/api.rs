//! Platform API endpoints.
//!
//! Every API request goes through the same checks, in Heroku's order:
//!
//! 1. `Accept: application/vnd.heroku+json; version=3`, else `406 not_acceptable`;
//! 2. `Authorization: Bearer KEY` (or HTTP Basic with the key as password, as `.netrc` users
//!    send) naming a seeded account, else `401 unauthorized`;
//! 3. the account's flags: `403 two_factor`, `403 suspended`;
//! 4. rate limits: a scripted `rate_limit_next`, or an empty bucket, answers `429 rate_limit`;
//! 5. scripted `fail_next` rules;
//! 6. the endpoint itself; an endpoint the schema has but the fake does not implement answers
//!    `501 not_implemented`, anything else `404 not_found`.
//!
//! Every answer carries `RateLimit-Remaining` (the account's bucket, or a shared bucket for
//! requests that do not authenticate) and a `Request-Id`.

use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::paging;
use crate::record::RunRecord;
use crate::schema;
use crate::script::{BuildScript, FailRule};
use crate::state::{Build, Key, Release, Run, State};
use crate::transfer;
use crate::util::{HEROKU_ACCEPT, Reply, accepts_heroku_v3, api_error, derived_uuid, now_rfc3339};

/// A request, as the handlers see it.
pub struct Incoming<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl Incoming<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Answers one Platform API request.
pub fn handle(st: &mut State, req: &Incoming<'_>) -> Reply {
    let account = api_key(req).and_then(|key| st.account_by_key(&key));
    // Take a token from the bucket; an empty bucket stays at 0 and answers 429 below (after
    // the Accept and authentication checks, which come first on Heroku too).
    let bucket = match account {
        Some(index) => &mut st.accounts[index].remaining,
        None => &mut st.anonymous_remaining,
    };
    let bucket_was_empty = *bucket == 0;
    *bucket = bucket.saturating_sub(1);
    let remaining = *bucket;

    let reply = checked(st, req, account, bucket_was_empty);
    let remaining = if reply.status == StatusCode::TOO_MANY_REQUESTS { 0 } else { remaining };
    let request_id = st.new_id("request");
    reply.with_header("ratelimit-remaining", &remaining.to_string()).with_header("request-id", &request_id)
}

fn checked(st: &mut State, req: &Incoming<'_>, account: Option<usize>, bucket_was_empty: bool) -> Reply {
    if !req.header("accept").is_some_and(accepts_heroku_v3) {
        return api_error(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            &format!(
                "Please specify a version along with Heroku's API MIME type. For example, \
                 `Accept: {HEROKU_ACCEPT}`."
            ),
        );
    }
    let Some(account) = account else {
        return api_error(StatusCode::UNAUTHORIZED, "unauthorized", "Invalid credentials provided.");
    };
    if st.accounts[account].two_factor_required {
        return api_error(
            StatusCode::FORBIDDEN,
            "two_factor",
            "Invalid credentials provided. A second authentication factor or pre-authorization \
             is required for this request. Your account has either two-factor or a Heroku \
             Enterprise identity provider enabled.",
        );
    }
    if st.accounts[account].suspended {
        return api_error(StatusCode::FORBIDDEN, "suspended", "This account has been suspended.");
    }
    if st.script.rate_limit_next > 0 || bucket_was_empty {
        st.script.rate_limit_next = st.script.rate_limit_next.saturating_sub(1);
        let reply = api_error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit",
            "Your account reached the API rate limit. Please wait a few minutes before making \
             new requests.",
        );
        return match st.script.retry_after_seconds {
            Some(seconds) => reply.with_header("retry-after", &seconds.to_string()),
            None => reply,
        };
    }
    if let Some(rule) = st.script.take_failure(req.method, req.path) {
        return scripted_failure(&rule);
    }
    route(st, req, account)
}

/// The reply a `fail_next` rule scripts.
pub fn scripted_failure(rule: &FailRule) -> Reply {
    let status = StatusCode::from_u16(rule.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let reply = api_error(status, &rule.id, &rule.message);
    match rule.retry_after {
        Some(seconds) => reply.with_header("retry-after", &seconds.to_string()),
        None => reply,
    }
}

/// The API key a request authenticates with: `Bearer KEY`, or Basic with the key as password.
fn api_key(req: &Incoming<'_>) -> Option<String> {
    let value = req.header("authorization")?.trim();
    let (scheme, credentials) = value.split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(credentials.to_string())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(credentials).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        decoded.split_once(':').map(|(_, key)| key.to_string())
    } else {
        None
    }
}

fn route(st: &mut State, req: &Incoming<'_>, account: usize) -> Reply {
    let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    match (req.method, segments.as_slice()) {
        ("GET", ["account"]) => Reply::json(StatusCode::OK, &st.accounts[account].to_json()),
        ("GET", ["apps"]) => list_apps(st, req, account),
        ("GET", ["apps", app]) => match st.owned_app(account, app) {
            Some(app) => Reply::json(StatusCode::OK, &st.app_json(app)),
            None => app_not_found(),
        },
        ("GET", ["account", "keys"]) => list_keys(st, req, account),
        ("POST", ["account", "keys"]) => create_key(st, req, account),
        ("GET", ["account", "keys", identity]) => key_info(st, account, identity),
        ("DELETE", ["account", "keys", identity]) => delete_key(st, account, identity),
        ("POST", ["sources"]) => create_source(st),
        ("POST", ["apps", app, "builds"]) => match st.owned_app(account, app) {
            Some(app) => create_build(st, req, account, app),
            None => app_not_found(),
        },
        ("GET", ["apps", app, "builds", id]) => match st.owned_app(account, app) {
            Some(app) => build_info(st, app, id),
            None => app_not_found(),
        },
        ("GET", ["apps", app, "releases"]) => match st.owned_app(account, app) {
            Some(app) => list_releases(st, req, app),
            None => app_not_found(),
        },
        ("POST", ["apps", app, "releases"]) => match st.owned_app(account, app) {
            Some(app) => rollback(st, req, account, app),
            None => app_not_found(),
        },
        ("GET", ["apps", app, "releases", identity]) => match st.owned_app(account, app) {
            Some(app) => release_info(st, app, identity),
            None => app_not_found(),
        },
        ("POST", ["apps", app, "dynos"]) => match st.owned_app(account, app) {
            Some(app) => create_dyno(st, req, app),
            None => app_not_found(),
        },
        ("GET", ["apps", app, "dynos"]) => match st.owned_app(account, app) {
            Some(app) => {
                let listed = st.dynos_json(app);
                // Each list is one poll of the current release's dynos.
                if let Some(current) = st.current_release(app) {
                    let release = &mut st.releases[current];
                    release.dyno_polls = release.dyno_polls.saturating_add(1);
                }
                Reply::json(StatusCode::OK, &listed)
            }
            None => app_not_found(),
        },
        _ if schema::has_endpoint(req.method, req.path) => api_error(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            &format!("fake-heroku does not implement {} {} (it is in Heroku's schema)", req.method, req.path),
        ),
        _ => api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "The requested API endpoint was not found. Are you using the right HTTP verb (i.e. \
             `GET` vs. `POST`), and did you specify your intended version with the `Accept` \
             header?",
        ),
    }
}

fn app_not_found() -> Reply {
    api_error(StatusCode::NOT_FOUND, "not_found", "Couldn't find that app.")
}

/// Answers a paged list with Heroku's status codes and range headers.
fn paged_list(items: Vec<Value>, req: &Incoming<'_>, fields: &[&str]) -> Reply {
    let spec = match paging::parse(req.header("range"), fields) {
        Ok(spec) => spec,
        Err(message) => {
            return api_error(StatusCode::BAD_REQUEST, "bad_request", &message)
                .with_header("accept-ranges", &fields.join(", "));
        }
    };
    let field = spec.field.clone();
    let key = |item: &Value| match item.get(&field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let numeric = items.iter().all(|item| item.get(&field).is_some_and(Value::is_u64));
    let page =
        if numeric { paging::page_by(items, key, paging::numeric, &spec) } else { paging::page(items, key, &spec) };
    let status = if page.next_range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    let mut reply = Reply::json(status, &Value::Array(page.items)).with_header("accept-ranges", &fields.join(", "));
    if let Some(content_range) = &page.content_range {
        reply = reply.with_header("content-range", content_range);
    }
    if let Some(next_range) = &page.next_range {
        reply = reply.with_header("next-range", next_range);
    }
    reply
}

/// `GET /apps`: the account's apps, rangeable by `id` (the default) and `name`.
fn list_apps(st: &State, req: &Incoming<'_>, account: usize) -> Reply {
    let apps = (0..st.apps.len()).filter(|&i| st.apps[i].owner == account).map(|i| st.app_json(i)).collect();
    paged_list(apps, req, &["id", "name"])
}

/// `GET /account/keys`: the account's keys, rangeable by `id`.
fn list_keys(st: &State, req: &Incoming<'_>, account: usize) -> Reply {
    let email = &st.accounts[account].email;
    let keys = st.keys.iter().filter(|k| &k.email == email).filter_map(|k| serde_json::to_value(k).ok()).collect();
    paged_list(keys, req, &["id"])
}

/// The index of the account's key named by `identity` (path segment, percent-encoded): its id
/// or its `SHA256:` fingerprint.
fn find_key(st: &State, account: usize, identity: &str) -> Option<usize> {
    let email = &st.accounts[account].email;
    let identity = crate::util::percent_decode(identity, false);
    st.keys.iter().position(|k| &k.email == email && (k.id == identity || k.fingerprint == identity))
}

fn key_not_found() -> Reply {
    api_error(StatusCode::NOT_FOUND, "not_found", "Couldn't find that key.")
}

/// `GET /account/keys/{key_id_or_fingerprint}`.
fn key_info(st: &State, account: usize, identity: &str) -> Reply {
    match find_key(st, account, identity).and_then(|i| serde_json::to_value(&st.keys[i]).ok()) {
        Some(key) => Reply::json(StatusCode::OK, &key),
        None => key_not_found(),
    }
}

/// `DELETE /account/keys/{key_id_or_fingerprint}`: removes the key and answers it.
fn delete_key(st: &mut State, account: usize, identity: &str) -> Reply {
    let Some(index) = find_key(st, account, identity) else {
        return key_not_found();
    };
    let key = st.keys.remove(index);
    Reply::json(StatusCode::OK, &serde_json::to_value(&key).unwrap_or(Value::Null))
}

/// Parses a JSON object body; the error is the reply to send.
fn json_object(req: &Incoming<'_>) -> Result<serde_json::Map<String, Value>, Reply> {
    match serde_json::from_slice::<Value>(req.body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(api_error(StatusCode::BAD_REQUEST, "bad_request", "Request body must be a JSON object.")),
        Err(_) if req.body.iter().all(u8::is_ascii_whitespace) => Ok(serde_json::Map::new()),
        Err(_) => Err(api_error(StatusCode::BAD_REQUEST, "bad_request", "Request body is not valid JSON.")),
    }
}

/// `POST /account/keys {public_key}` (undocumented; what the CLI's `keys:add` sends).
fn create_key(st: &mut State, req: &Incoming<'_>, account: usize) -> Reply {
    let body = match json_object(req) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let Some(public_key) = body.get("public_key").and_then(Value::as_str) else {
        return api_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", "Missing required params: public_key.");
    };
    let parsed = match parse_public_key(public_key) {
        Ok(parsed) => parsed,
        Err(reason) => {
            return api_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_params",
                &format!("Invalid SSH public key: {reason}."),
            );
        }
    };
    if st.keys.iter().any(|k| k.fingerprint == parsed.fingerprint) {
        return api_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", "Key already exists.");
    }
    let now = now_rfc3339();
    let key = Key {
        comment: parsed.comment,
        created_at: now.clone(),
        email: st.accounts[account].email.clone(),
        fingerprint: parsed.fingerprint,
        id: st.new_id("key"),
        public_key: public_key.trim().to_string(),
        updated_at: now,
    };
    let json = serde_json::to_value(&key).unwrap_or(Value::Null);
    st.keys.push(key);
    Reply::json(StatusCode::CREATED, &json)
}

struct ParsedKey {
    fingerprint: String,
    comment: String,
}

const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Checks that `line` is an OpenSSH public key line (`TYPE BASE64 [COMMENT]`) whose decoded
/// blob starts with the same type, and computes its `SHA256:` fingerprint.
fn parse_public_key(line: &str) -> Result<ParsedKey, String> {
    let line = line.trim();
    if line.contains('\n') {
        return Err("expected a single line".into());
    }
    let mut parts = line.split_whitespace();
    let key_type = parts.next().ok_or("the key is empty")?;
    if !KEY_TYPES.contains(&key_type) {
        return Err(format!("unsupported key type {key_type:?}"));
    }
    let encoded = parts.next().ok_or("the key has no base64 body")?;
    let blob = STANDARD.decode(encoded).map_err(|_| "the key body is not valid base64".to_string())?;
    let type_len = blob
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .ok_or("the key body is too short")? as usize;
    let blob_type = blob.get(4..4 + type_len).ok_or("the key body is truncated")?;
    if blob_type != key_type.as_bytes() {
        return Err("the key body does not match its type".into());
    }
    if key_type == "ssh-ed25519" && blob.len() != 4 + type_len + 4 + 32 {
        return Err("an ssh-ed25519 key body must hold one 32-byte key".into());
    }
    let comment = parts.collect::<Vec<_>>().join(" ");
    Ok(ParsedKey { fingerprint: format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(&blob))), comment })
}

/// `POST /sources`: a pair of presigned-style URLs on the fake itself.
fn create_source(st: &mut State) -> Reply {
    let id = st.new_id("source");
    st.blobs.insert(id.clone(), None);
    Reply::json(
        StatusCode::CREATED,
        &json!({
            "source_blob": {
                "get_url": transfer::blob_url(st, &id, "GET"),
                "put_url": transfer::blob_url(st, &id, "PUT"),
            }
        }),
    )
}

/// `POST /apps/{app}/builds {source_blob: {url, version?, checksum?}, buildpacks?}`.
fn create_build(st: &mut State, req: &Incoming<'_>, account: usize, app: usize) -> Reply {
    let body = match json_object(req) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let Some(source_blob) = body.get("source_blob").and_then(Value::as_object) else {
        return api_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", "Missing required params: source_blob.");
    };
    let Some(url) = source_blob.get("url").and_then(Value::as_str) else {
        return api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
            "Missing required params: source_blob.url.",
        );
    };
    let optional_string = |name: &str| match source_blob.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
            &format!("source_blob.{name} must be a string."),
        )),
    };
    let (version, checksum, version_description) =
        match (optional_string("version"), optional_string("checksum"), optional_string("version_description")) {
            (Ok(v), Ok(c), Ok(d)) => (v, c, d),
            (Err(reply), _, _) | (_, Err(reply), _) | (_, _, Err(reply)) => return reply,
        };
    let expected_digest = match checksum.as_deref().map(|c| c.strip_prefix("SHA256:")) {
        None => None,
        Some(Some(hex)) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(hex.to_ascii_lowercase())
        }
        Some(_) => {
            return api_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_params",
                "source_blob.checksum must look like SHA256:<64 hex digits>.",
            );
        }
    };
    let buildpacks = match body.get("buildpacks") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::Array(list)) => Value::Array(list.clone()),
        Some(_) => {
            return api_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", "buildpacks must be an array.");
        }
    };

    // "Fetch" the source now, as Heroku's build would: it must be a blob uploaded to this fake.
    let source_error = match transfer::fetch_for_build(st, url) {
        Ok(bytes) => expected_digest.and_then(|expected| {
            let actual = hex::encode(Sha256::digest(bytes));
            (actual != expected).then(|| format!("the source's checksum is SHA256:{actual}, not SHA256:{expected}"))
        }),
        Err(reason) => Some(reason),
    };

    let script: BuildScript = st.script.next_builds.pop_front().unwrap_or_default();
    let final_status = if source_error.is_some() { crate::script::FinalStatus::Failed } else { script.status };
    let now = now_rfc3339();
    let build_id = st.new_id("build");
    let slug_id = st.new_id("slug");
    let release = if final_status == crate::script::FinalStatus::Succeeded {
        let release_id = st.new_id("release");
        st.apps[app].releases += 1;
        let number = st.apps[app].releases;
        // Heroku describes a Build API release as "Deploy" and the first 8 characters of the
        // source version.
        let description = match &version {
            Some(sha) if !sha.is_empty() => {
                format!("Deploy {}", sha.chars().take(8).collect::<String>())
            }
            _ => "Deploy".to_string(),
        };
        st.releases.push(Release {
            id: release_id,
            app,
            user: account,
            version: number,
            created_at: now.clone(),
            updated_at: now.clone(),
            description,
            slug_id: slug_id.clone(),
            final_status: script.release.status,
            polls: 0,
            polls_pending: script.release.release_polls_pending,
            release_phase: script.release.release_phase,
            output: script.release.output.clone(),
            dynos: script.release.dynos.clone(),
            dyno_polls: 0,
        });
        Some(st.releases.len() - 1)
    } else {
        None
    };
    let output = match &source_error {
        Some(reason) => Some(vec![
            "-----> Building on the Heroku-24 stack".to_string(),
            format!(" !     The source could not be fetched: {reason}"),
            " !     Push failed".to_string(),
        ]),
        None => script.output.clone(),
    };
    st.builds.push(Build {
        id: build_id,
        app,
        user: account,
        created_at: now.clone(),
        updated_at: now,
        source_blob: json!({
            "checksum": checksum,
            "url": url,
            "version": version,
            "version_description": version_description,
        }),
        buildpacks,
        final_status,
        polls: 0,
        polls_pending: script.build_polls_pending,
        stream_gets: 0,
        stream_404s: script.stream_404s,
        output,
        release,
        slug_id,
    });
    // The create answer always shows the build pending.
    let mut created = st.build_json(st.builds.len() - 1);
    created["status"] = json!("pending");
    created["release"] = Value::Null;
    created["slug"] = Value::Null;
    Reply::json(StatusCode::CREATED, &created)
}

/// `GET /apps/{app}/builds/{id}`: each GET is one poll; see [`State::build_status`].
fn build_info(st: &mut State, app: usize, id: &str) -> Reply {
    let Some(index) = st.builds.iter().position(|b| b.app == app && b.id == id) else {
        return api_error(StatusCode::NOT_FOUND, "not_found", "Couldn't find that build.");
    };
    let build = &mut st.builds[index];
    let was_pending = State::build_status(build) == "pending";
    build.polls = build.polls.saturating_add(1);
    if was_pending && State::build_status(build) != "pending" {
        build.updated_at = now_rfc3339();
    }
    Reply::json(StatusCode::OK, &st.build_json(index))
}

/// `GET /apps/{app}/releases/{id_or_version}`: each GET is one poll; see
/// [`State::release_status`].
fn release_info(st: &mut State, app: usize, identity: &str) -> Reply {
    let Some(index) = st.find_release(app, identity) else {
        return release_not_found();
    };
    let release = &mut st.releases[index];
    let was_pending = State::release_status(release) == "pending";
    release.polls = release.polls.saturating_add(1);
    if was_pending && State::release_status(release) != "pending" {
        release.updated_at = now_rfc3339();
    }
    Reply::json(StatusCode::OK, &st.release_json(index))
}

fn invalid_params(message: &str) -> Reply {
    api_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", message)
}

/// A body property that may be absent or null, else must be what `get` accepts (`expected`
/// names it in the 422).
fn optional<T>(
    body: &serde_json::Map<String, Value>,
    name: &str,
    expected: &str,
    get: impl Fn(&Value) -> Option<T>,
) -> Result<Option<T>, Reply> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => get(value).map(Some).ok_or_else(|| invalid_params(&format!("{name} must be {expected}."))),
    }
}

/// `POST /apps/{app}/dynos {command, attach?, env?, force_no_tty?, size?, type?,
/// time_to_live?}`: a one-off dyno of the app's current release (see [`crate::RunScript`]).
fn create_dyno(st: &mut State, req: &Incoming<'_>, app: usize) -> Reply {
    let body = match json_object(req) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let fields = (|| {
        let command = optional(&body, "command", "a non-empty string", |v| {
            v.as_str().filter(|c| !c.trim().is_empty()).map(str::to_string)
        })?
        .ok_or_else(|| invalid_params("Missing required params: command."))?;
        let attach = optional(&body, "attach", "a boolean", Value::as_bool)?.unwrap_or(false);
        let force_no_tty = optional(&body, "force_no_tty", "a boolean or null", Value::as_bool)?;
        let size = optional(&body, "size", "a string", |v| v.as_str().map(str::to_string))?;
        let dyno_type = optional(&body, "type", "a string", |v| v.as_str().map(str::to_string))?;
        let time_to_live = optional(&body, "time_to_live", "an integer from 1 to 86400 (seconds)", |v| {
            v.as_u64().filter(|t| (1..=86_400).contains(t))
        })?;
        let env = optional(&body, "env", "an object of strings with names made of word characters", |v| {
            let mut env = std::collections::BTreeMap::new();
            for (name, value) in v.as_object()? {
                // The schema's `^\w+$`.
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return None;
                }
                env.insert(name.clone(), value.as_str()?.to_string());
            }
            Some(env)
        })?
        .unwrap_or_default();
        Ok::<_, Reply>((command, attach, force_no_tty, size, dyno_type, time_to_live, env))
    })();
    let (command, attach, force_no_tty, size, dyno_type, time_to_live, env) = match fields {
        Ok(fields) => fields,
        Err(reply) => return reply,
    };
    let Some(release) = st.current_release(app) else {
        return invalid_params("This app has no release to run a dyno of yet: deploy it first.");
    };
    let port = match (attach, st.rendezvous_port) {
        (true, None) => {
            return api_error(
                StatusCode::NOT_IMPLEMENTED,
                "not_implemented",
                "fake-heroku: rendezvous is not available, so a dyno cannot be attached to: start the \
                 fake with TLS (ServeOptions::tls, or --tls-cert and --tls-key)",
            );
        }
        (_, port) => port,
    };
    let (base_command, suffix) = crate::rendezvous::split_exit_status_suffix(&command);
    let script = match st.script.take_run(&base_command) {
        Ok(script) => script,
        Err(()) => {
            return api_error(
                StatusCode::CONFLICT,
                "conflict",
                "The release is not ready yet: the dyno cannot be started. Please try again.",
            );
        }
    };
    let id = st.new_id("dyno");
    let name = format!("run.{}", 1000 + (st.runs.len() * 2657 + 234) % 9000);
    let (secret, attach_url) = match port {
        Some(port) if attach => {
            let secret = derived_uuid("rendezvous", &format!("{}\0{id}", st.signing_secret)).replace('-', "");
            let host = script.attach_host.clone().unwrap_or_else(|| "127.0.0.1".to_string());
            let url = format!("rendezvous://{host}:{port}/{secret}");
            (Some(secret), Some(url))
        }
        _ => (None, None),
    };
    let crlf = script.crlf.unwrap_or(force_no_tty != Some(true));
    let now = now_rfc3339();
    st.runs.push(Run {
        record: RunRecord {
            app: st.apps[app].name.clone(),
            id,
            name,
            command,
            base_command,
            exit_status_suffix: suffix.is_some(),
            attach,
            env,
            size,
            dyno_type,
            force_no_tty,
            time_to_live,
            attach_url,
            attached: false,
            // A detached run is over at once.
            finished: !attach,
            input: Vec::new(),
        },
        app,
        release,
        secret,
        script,
        legacy_suffix: suffix == Some(crate::rendezvous::Suffix::Legacy),
        crlf,
        created_at: now.clone(),
        updated_at: now,
    });
    Reply::json(StatusCode::CREATED, &st.run_json(st.runs.len() - 1))
}

fn release_not_found() -> Reply {
    api_error(StatusCode::NOT_FOUND, "not_found", "Couldn't find that release.")
}

/// `GET /apps/{app}/releases`: the app's releases, rangeable by `version` (the default) and
/// `id`. Listing is not a poll: statuses stay as the last GET of each release left them.
fn list_releases(st: &State, req: &Incoming<'_>, app: usize) -> Reply {
    paged_list(st.releases_json(app), req, &["version", "id"])
}

/// `POST /apps/{app}/releases {release}`: a rollback to the release named by its id (or,
/// leniently, its version as a number or a string), as a new release with the same slug.
/// A body with `slug` instead is a release create, which the fake does not implement.
fn rollback(st: &mut State, req: &Incoming<'_>, account: usize, app: usize) -> Reply {
    let body = match json_object(req) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let target = match body.get("release") {
        Some(Value::String(identity)) => st.find_release(app, identity),
        Some(Value::Number(version)) => st.find_release(app, &version.to_string()),
        Some(Value::Null) | None if body.get("slug").is_some_and(|s| !s.is_null()) => {
            return api_error(
                StatusCode::NOT_IMPLEMENTED,
                "not_implemented",
                "fake-heroku does not implement creating a release from a slug (only rollbacks)",
            );
        }
        Some(Value::Null) | None => {
            return api_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", "Missing required params: release.");
        }
        Some(_) => {
            return api_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", "release must be a release id.");
        }
    };
    let Some(target) = target else {
        return release_not_found();
    };
    if State::release_status(&st.releases[target]) != "succeeded" {
        return api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
            &format!("Release v{} is not eligible for rollback.", st.releases[target].version),
        );
    }
    let index = st.roll_back(app, account, target);
    Reply::json(StatusCode::CREATED, &st.release_json(index))
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    // Throwaway keys made with `ssh-keygen`; the fingerprints are what `ssh-keygen -l` printed.
    const ED25519: &str = "ssh-ed25519 \
        AAAAC3NzaC1lZDI1NTE5AAAAIBOyygmwvkiESQH86h5qAhUePzjbLkklvM3nw3nd7xcE ada@example.com";
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCxvFyLTUr3s+CzZu2GJzHkKlSR8kx6attuMjvkng\
        ksEmjJVrcfhIYJVFdn42/3Myen9H1yc9yZz0LP64/Pk9vD9gKJ43BR2D2npC3tm9bX73bFtw+RKsPzlRtUC6iCUJlz4G\
        pnTUG6KnE87cj7uvxE3f/BcJ1jf39BCBzTV6yxyQ== rsa@example.com";

    #[test]
    fn public_keys_are_validated_and_fingerprinted() {
        let parsed = parse_public_key(ED25519).expect("valid key");
        assert_eq!(parsed.comment, "ada@example.com");
        assert_eq!(parsed.fingerprint, "SHA256:sNjZJxNwwyG5Mtmwo2lkYdwUYgUiA42eEdfn8Nei/b4");
        let parsed = parse_public_key(RSA).expect("valid key");
        assert_eq!(parsed.fingerprint, "SHA256:fgBKH1H5x8z/NYOo5AuAq8X/KM33havYOZ9rrRpL6Lc");

        assert!(parse_public_key("").is_err());
        assert!(parse_public_key("ssh-foo AAAA").is_err());
        assert!(parse_public_key("ssh-ed25519 !!!").is_err());
        assert!(parse_public_key("ssh-ed25519").is_err());
        // A valid ed25519 body declared as RSA.
        let mismatched = ED25519.replacen("ssh-ed25519", "ssh-rsa", 1);
        assert!(parse_public_key(&mismatched).is_err());
        assert!(parse_public_key("-----BEGIN OPENSSH PRIVATE KEY-----").is_err());
    }
}
