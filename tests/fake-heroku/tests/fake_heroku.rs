//! End-to-end tests of the fake Heroku over real HTTP on 127.0.0.1, from plain synchronous
//! tests with a blocking client.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Stdio};

use fake_heroku::{
    BuildScript, DynoScript, FailRule, FakeHeroku, FinalStatus, RateLimitSetting, ReleaseScript, RequestKind,
    RollbackRecord, Script, Seed, SeedAccount, SeedRelease, ServeOptions, schema,
};
use serde_json::{Value, json};

const ACCEPT: &str = "application/vnd.heroku+json; version=3";
const KEY: &str = "ada-key";
const ADA: &str = "ada@example.com";
// Throwaway keys made with `ssh-keygen` for these tests.
const ED25519: &str = "ssh-ed25519 \
    AAAAC3NzaC1lZDI1NTE5AAAAIBOyygmwvkiESQH86h5qAhUePzjbLkklvM3nw3nd7xcE ada@example.com";
const ED25519_FINGERPRINT: &str = "SHA256:sNjZJxNwwyG5Mtmwo2lkYdwUYgUiA42eEdfn8Nei/b4";
const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCxvFyLTUr3s+CzZu2GJzHkKlSR8kx6attuMjvkng\
    ksEmjJVrcfhIYJVFdn42/3Myen9H1yc9yZz0LP64/Pk9vD9gKJ43BR2D2npC3tm9bX73bFtw+RKsPzlRtUC6iCUJlz4G\
    pnTUG6KnE87cj7uvxE3f/BcJ1jf39BCBzTV6yxyQ== rsa@example.com";

fn account(email: &str, key: &str) -> SeedAccount {
    SeedAccount { email: email.into(), api_key: key.into(), ..SeedAccount::default() }
}

/// Ada owns `hello-app` and `other`; Bob owns `bobs-app`; Tess needs two-factor; Sam is
/// suspended.
fn seed() -> Seed {
    Seed {
        accounts: vec![
            SeedAccount {
                apps: vec!["hello-app".into(), "other".into()],
                name: Some("Ada Lovelace".into()),
                ..account(ADA, KEY)
            },
            SeedAccount { apps: vec!["bobs-app".into()], ..account("bob@example.com", "bob-key") },
            SeedAccount { two_factor_required: true, ..account("tess@example.com", "tess-key") },
            SeedAccount { suspended: true, ..account("sam@example.com", "sam-key") },
        ],
    }
}

fn start() -> FakeHeroku {
    FakeHeroku::start(seed()).expect("the fake starts")
}

/// An answer, fully read.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn remaining(&self) -> u32 {
        self.header("ratelimit-remaining")
            .expect("RateLimit-Remaining is sent")
            .parse()
            .expect("RateLimit-Remaining is a number")
    }

    /// Asserts a Platform API error: status, JSON content type and `{id, message, url}`.
    fn assert_error(&self, status: u16, id: &str) {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        let body = self.json();
        assert_eq!(body["id"], id, "body: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(body["url"].as_str().is_some_and(|u| u.starts_with("https://")));
    }
}

/// A blocking client for one fake.
struct Client {
    agent: ureq::Agent,
    base: String,
}

impl Client {
    fn new(heroku: &FakeHeroku) -> Client {
        Client::for_url(&heroku.url())
    }

    fn for_url(base: &str) -> Client {
        let agent =
            ureq::Agent::config_builder().http_status_as_error(false).proxy(None).max_redirects(0).build().into();
        Client { agent, base: base.to_string() }
    }

    /// Sends a request; `url` is a path on the fake or a full URL.
    fn send(&self, method: &str, url: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Answer {
        let url = if url.starts_with("http") { url.to_string() } else { format!("{}{url}", self.base) };
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = match body {
            Some(body) => self.agent.run(builder.body(body).expect("request builds")),
            None => self.agent.run(builder.body(ureq::SendBody::none()).expect("request builds")),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {url} failed: {e}"));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        let body = response.body_mut().with_config().limit(64 * 1024 * 1024).read_to_vec().expect("body reads");
        Answer { status, headers, body }
    }

    /// A Platform API call as a well-behaved client makes it.
    fn api(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> Answer {
        self.api_with(method, path, key, body, &[])
    }

    fn api_with(&self, method: &str, path: &str, key: &str, body: Option<Value>, extra: &[(&str, &str)]) -> Answer {
        let auth = format!("Bearer {key}");
        let mut headers = vec![("Accept", ACCEPT), ("Authorization", auth.as_str())];
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        headers.extend_from_slice(extra);
        self.send(method, path, &headers, body.map(|b| b.to_string().into_bytes()))
    }

    fn get(&self, path: &str) -> Answer {
        self.api("GET", path, KEY, None)
    }
}

#[test]
fn api_requests_without_the_accept_header_get_406_before_auth() {
    let heroku = start();
    let client = Client::new(&heroku);
    for headers in [
        vec![("Authorization", "Bearer ada-key")],
        vec![("Authorization", "Bearer wrong"), ("Accept", "application/json")],
    ] {
        let answer = client.send("GET", "/account", &headers, None);
        answer.assert_error(406, "not_acceptable");
        assert!(answer.header("ratelimit-remaining").is_some());
    }
    let recorded = heroku.requests();
    assert_eq!(recorded.len(), 2);
    assert!(recorded.iter().all(|r| r.status == 406 && r.kind == RequestKind::Api));
}

#[test]
fn unknown_or_missing_api_keys_get_401() {
    let heroku = start();
    let client = Client::new(&heroku);
    let answer = client.api("GET", "/account", "not-a-key", None);
    answer.assert_error(401, "unauthorized");
    assert_eq!(answer.json()["message"], "Invalid credentials provided.");
    client.send("GET", "/apps", &[("Accept", ACCEPT)], None).assert_error(401, "unauthorized");
}

#[test]
fn two_factor_and_suspended_accounts_get_403() {
    let heroku = start();
    let client = Client::new(&heroku);
    client.api("GET", "/account", "tess-key", None).assert_error(403, "two_factor");
    client.api("GET", "/apps", "sam-key", None).assert_error(403, "suspended");
}

#[test]
fn account_info_and_rate_limit_remaining_decreasing() {
    let heroku = start();
    let client = Client::new(&heroku);
    let first = client.get("/account");
    assert_eq!(first.status, 200);
    assert_eq!(first.header("content-type"), Some("application/json"));
    let account = first.json();
    assert_eq!(account["email"], ADA);
    assert_eq!(account["name"], "Ada Lovelace");
    assert_eq!(account["two_factor_authentication"], false);
    for field in ["id", "created_at", "updated_at", "verified"] {
        assert!(!account[field].is_null(), "account lacks {field}");
    }
    assert_eq!(first.remaining(), 4499);
    let second = client.get("/apps/nope");
    assert_eq!(second.remaining(), 4498, "errors cost a request too");
    // Another account has its own bucket.
    let bob = client.api("GET", "/account", "bob-key", None);
    assert_eq!(bob.remaining(), 4499);
    assert_eq!(client.get("/account").remaining(), 4497);
}

#[test]
fn scripted_rate_limits_answer_429_with_retry_after() {
    let heroku = start();
    let client = Client::new(&heroku);
    heroku.script(Script { rate_limit_next: 2, retry_after_seconds: Some(7), ..Script::default() });
    for _ in 0..2 {
        let answer = client.get("/account");
        answer.assert_error(429, "rate_limit");
        assert_eq!(answer.header("retry-after"), Some("7"));
        assert_eq!(answer.remaining(), 0);
    }
    assert_eq!(client.get("/account").status, 200);

    heroku.script(Script {
        set_rate_limit_remaining: vec![RateLimitSetting { email: ADA.into(), remaining: 1 }],
        ..Script::default()
    });
    let last = client.get("/account");
    assert_eq!((last.status, last.remaining()), (200, 0));
    let limited = client.get("/account");
    limited.assert_error(429, "rate_limit");
    assert!(
        limited.json()["message"].as_str().is_some_and(|m| m.starts_with("Your account reached the API rate limit"))
    );
    assert_eq!(limited.header("retry-after"), Some("7"));
    assert_eq!(limited.remaining(), 0);
    // Bob is unaffected.
    assert_eq!(client.api("GET", "/account", "bob-key", None).status, 200);
}

#[test]
fn apps_are_paged_by_range_and_next_range() {
    let heroku = FakeHeroku::start(Seed { accounts: vec![SeedAccount { generated_apps: 450, ..account(ADA, KEY) }] })
        .expect("starts");
    let client = Client::new(&heroku);
    let mut range = "name ..; max=200".to_string();
    let mut pages = Vec::new();
    let mut names = Vec::new();
    loop {
        let answer = client.api_with("GET", "/apps", KEY, None, &[("Range", &range)]);
        assert_eq!(answer.header("accept-ranges"), Some("id, name"));
        let page = answer.json();
        let page = page.as_array().expect("a JSON array");
        names.extend(page.iter().map(|app| app["name"].as_str().unwrap_or("").to_string()));
        pages.push((answer.status, page.len(), answer.header("next-range").map(str::to_string)));
        match answer.header("next-range") {
            Some(next) => range = next.to_string(),
            None => break,
        }
        assert!(pages.len() < 10, "paging does not end");
    }
    assert_eq!(
        pages,
        vec![
            (206, 200, Some("name ]app-0200..; max=200".to_string())),
            (206, 200, Some("name ]app-0400..; max=200".to_string())),
            (200, 50, None),
        ]
    );
    let expected: Vec<String> = (1..=450).map(|i| format!("app-{i:04}")).collect();
    assert_eq!(names, expected);

    // The first page's Content-Range, and an app's shape.
    let first = client.api_with("GET", "/apps", KEY, None, &[("Range", "name ..; max=200")]);
    assert_eq!(first.header("content-range"), Some("name app-0001..app-0200; max=200"));
    let app = &first.json()[0];
    assert_eq!(app["web_url"], "https://app-0001.herokuapp.com/");
    assert_eq!(app["owner"]["email"], ADA);
    assert_eq!(app["stack"]["name"], "heroku-24");
    assert_eq!(app["region"]["name"], "us");

    // Without a Range: the default page of 200; a small max; a bad header.
    let default = client.get("/apps");
    assert_eq!((default.status, default.json().as_array().map(Vec::len)), (206, Some(200)));
    let small = client.api_with("GET", "/apps", KEY, None, &[("Range", "id ..; max=1000")]);
    assert_eq!((small.status, small.json().as_array().map(Vec::len)), (200, Some(450)));
    client.api_with("GET", "/apps", KEY, None, &[("Range", "size ..; max=10")]).assert_error(400, "bad_request");
}

#[test]
fn an_unknown_or_foreign_app_is_404() {
    let heroku = start();
    let client = Client::new(&heroku);
    let own = client.get("/apps/hello-app");
    assert_eq!(own.status, 200);
    let app = own.json();
    assert_eq!(app["name"], "hello-app");
    let by_id = client.get(&format!("/apps/{}", app["id"].as_str().unwrap_or("")));
    assert_eq!(by_id.json()["name"], "hello-app");
    for path in ["/apps/no-such-app", "/apps/bobs-app"] {
        let answer = client.get(path);
        answer.assert_error(404, "not_found");
        assert_eq!(answer.json()["message"], "Couldn't find that app.");
    }
    // Ada's list holds only her apps.
    let names: Vec<Value> = client.get("/apps").json().as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = names.iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"hello-app") && names.contains(&"other"));
    // An endpoint Heroku has but the fake does not implement, and one Heroku does not have.
    client.get("/apps/hello-app/config-vars").assert_error(501, "not_implemented");
    client.get("/no-such-endpoint").assert_error(404, "not_found");
}

#[test]
fn keys_are_validated_added_once_and_listed() {
    let heroku = start();
    let client = Client::new(&heroku);
    let created = client.api("POST", "/account/keys", KEY, Some(json!({"public_key": ED25519})));
    assert_eq!(created.status, 201, "{}", created.text());
    let key = created.json();
    assert_eq!(key["email"], ADA);
    assert_eq!(key["comment"], "ada@example.com");
    assert_eq!(key["fingerprint"], ED25519_FINGERPRINT);
    assert_eq!(key["public_key"], ED25519);
    for field in ["id", "created_at", "updated_at"] {
        assert!(key[field].is_string(), "key lacks {field}");
    }

    for bad in [
        json!({"public_key": "ssh-ed25519 not-base64!"}),
        json!({"public_key": "hello"}),
        json!({"public_key": "-----BEGIN OPENSSH PRIVATE KEY-----"}),
        json!({}),
    ] {
        client.api("POST", "/account/keys", KEY, Some(bad)).assert_error(422, "invalid_params");
    }
    let duplicate = client.api("POST", "/account/keys", KEY, Some(json!({"public_key": ED25519})));
    duplicate.assert_error(422, "invalid_params");
    assert_eq!(duplicate.json()["message"], "Key already exists.");
    assert_eq!(client.api("POST", "/account/keys", KEY, Some(json!({"public_key": RSA}))).status, 201);

    let listed = client.get("/account/keys");
    assert_eq!(listed.status, 200);
    assert_eq!(listed.header("accept-ranges"), Some("id"));
    let fingerprints: Vec<String> = listed
        .json()
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["fingerprint"].as_str().map(str::to_string))
        .collect();
    assert_eq!(fingerprints.len(), 2);
    assert!(fingerprints.contains(&ED25519_FINGERPRINT.to_string()));
    let by_id = client.get(&format!("/account/keys/{}", key["id"].as_str().unwrap_or("")));
    assert_eq!(by_id.json()["fingerprint"], ED25519_FINGERPRINT);

    let registered = heroku.keys(ADA);
    assert_eq!(registered.len(), 2);
    assert_eq!(registered[0].fingerprint, ED25519_FINGERPRINT);
    assert!(heroku.keys("bob@example.com").is_empty());
    assert!(client.api("GET", "/account/keys", "bob-key", None).json().as_array().is_some_and(Vec::is_empty));
}

#[test]
fn keys_are_deleted_by_id_or_fingerprint() {
    let heroku = start();
    let client = Client::new(&heroku);
    let ed25519 = client.api("POST", "/account/keys", KEY, Some(json!({"public_key": ED25519}))).json();
    let rsa = client.api("POST", "/account/keys", KEY, Some(json!({"public_key": RSA}))).json();
    let ed25519_id = ed25519["id"].as_str().expect("id").to_string();

    // Bob cannot delete Ada's key; an unknown key is 404.
    client.api("DELETE", &format!("/account/keys/{ed25519_id}"), "bob-key", None).assert_error(404, "not_found");
    let unknown = client.api("DELETE", "/account/keys/01234567-89ab-cdef-0123-456789abcdef", KEY, None);
    unknown.assert_error(404, "not_found");
    assert_eq!(unknown.json()["message"], "Couldn't find that key.");

    let deleted = client.api("DELETE", &format!("/account/keys/{ed25519_id}"), KEY, None);
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(deleted.json(), ed25519);
    assert_eq!(heroku.keys(ADA).len(), 1);
    client.api("DELETE", &format!("/account/keys/{ed25519_id}"), KEY, None).assert_error(404, "not_found");
    client.get(&format!("/account/keys/{ed25519_id}")).assert_error(404, "not_found");

    // By fingerprint, percent-encoded as a path segment (base64 may hold `/` and `+`).
    let fingerprint = rsa["fingerprint"].as_str().expect("fingerprint").replace('/', "%2F").replace('+', "%2B");
    let deleted = client.api("DELETE", &format!("/account/keys/{fingerprint}"), KEY, None);
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(deleted.json()["id"], rsa["id"]);
    assert!(heroku.keys(ADA).is_empty());
    assert!(client.get("/account/keys").json().as_array().is_some_and(Vec::is_empty));
    // A deleted key can be added again.
    assert_eq!(client.api("POST", "/account/keys", KEY, Some(json!({"public_key": ED25519}))).status, 201);
    if let Err(errors) = schema::check_all(&heroku.requests()) {
        panic!("key deletion breaks the schema: {errors:#?}");
    }
}

/// What a deploy observed.
struct Deploy {
    build_statuses: Vec<String>,
    build: Value,
    build_output: String,
    release_statuses: Vec<String>,
    release: Option<Value>,
    release_output: Option<String>,
}

/// Deploys `tarball` to `hello-app` the way Pier does: source, upload, build, stream, poll the
/// build, poll the release, stream the release phase.
fn deploy(heroku: &FakeHeroku, client: &Client, tarball: &[u8]) -> Deploy {
    let source = client.api("POST", "/sources", KEY, None);
    assert_eq!(source.status, 201, "{}", source.text());
    let source = source.json();
    let put_url = source["source_blob"]["put_url"].as_str().expect("put_url");
    let get_url = source["source_blob"]["get_url"].as_str().expect("get_url");
    assert!(put_url.starts_with(&format!("{}/__blobs/", heroku.url())));
    assert!(put_url.contains("?signature="));

    let put = client.send("PUT", put_url, &[("Content-Type", "")], Some(tarball.to_vec()));
    assert_eq!((put.status, put.body.len()), (200, 0));
    let fetched = client.send("GET", get_url, &[], None);
    assert_eq!((fetched.status, fetched.body.as_slice()), (200, tarball));

    let sha = "0123456789abcdef0123456789abcdef01234567";
    let created = client.api(
        "POST",
        "/apps/hello-app/builds",
        KEY,
        Some(json!({"source_blob": {"url": get_url, "version": sha}})),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    assert_eq!(created["status"], "pending");
    assert_eq!(created["release"], Value::Null);
    assert_eq!(created["source_blob"]["url"], get_url);
    assert_eq!(created["source_blob"]["version"], sha);
    assert_eq!(created["app"]["name"], "hello-app");
    assert_eq!(created["user"]["email"], ADA);
    let build_id = created["id"].as_str().expect("build id").to_string();
    let stream_url = created["output_stream_url"].as_str().expect("stream url").to_string();
    assert_eq!(stream_url, format!("{}/__streams/builds/{build_id}", heroku.url()));

    // The stream may 404 at first; then it is served whole.
    let mut build_output = None;
    for _ in 0..10 {
        let answer = client.send("GET", &stream_url, &[], None);
        match answer.status {
            404 => continue,
            200 => {
                assert_eq!(answer.header("content-type"), Some("text/plain; charset=utf-8"));
                assert_eq!(answer.header("transfer-encoding"), Some("chunked"));
                build_output = Some(answer.text());
                break;
            }
            other => panic!("stream answered {other}"),
        }
    }
    let build_output = build_output.expect("the stream was served");

    let mut build_statuses = Vec::new();
    let build = loop {
        let answer = client.get(&format!("/apps/hello-app/builds/{build_id}"));
        assert_eq!(answer.status, 200);
        let build = answer.json();
        let status = build["status"].as_str().unwrap_or("").to_string();
        build_statuses.push(status.clone());
        if status != "pending" {
            break build;
        }
        assert!(build_statuses.len() < 10, "the build never finishes");
    };

    let mut release_statuses = Vec::new();
    let mut release = None;
    let mut release_output = None;
    if let Some(release_id) = build["release"]["id"].as_str() {
        let path = format!("/apps/hello-app/releases/{release_id}");
        let finished = loop {
            let answer = client.get(&path);
            assert_eq!(answer.status, 200);
            let release = answer.json();
            let status = release["status"].as_str().unwrap_or("").to_string();
            release_statuses.push(status.clone());
            if status != "pending" {
                break release;
            }
            assert!(release_statuses.len() < 10, "the release never finishes");
        };
        if let Some(url) = finished["output_stream_url"].as_str() {
            let answer = client.send("GET", url, &[], None);
            assert_eq!(answer.status, 200);
            release_output = Some(answer.text());
        }
        release = Some(finished);
    }
    Deploy { build_statuses, build, build_output, release_statuses, release, release_output }
}

#[test]
fn a_deploy_goes_through_sources_build_and_release_phase() {
    let heroku = start();
    heroku.script(Script {
        next_build: Some(BuildScript { stream_404s: 2, ..BuildScript::default() }),
        ..Script::default()
    });
    let client = Client::new(&heroku);
    let tarball = b"\x1f\x8b pretend this is a gzipped tarball".to_vec();
    let deploy = deploy(&heroku, &client, &tarball);

    assert_eq!(deploy.build_statuses, ["pending", "succeeded"]);
    assert!(deploy.build_output.contains("-----> Building on the Heroku-24 stack"));
    assert!(deploy.build_output.contains("Released v1"));
    assert!(deploy.build["slug"]["id"].is_string());
    assert_eq!(deploy.release_statuses, ["pending", "succeeded"]);
    let release = deploy.release.expect("a release");
    assert_eq!(release["version"], 1);
    assert_eq!(release["description"], "Deploy 01234567");
    assert_eq!(release["current"], true);
    assert_eq!(release["slug"]["id"], deploy.build["slug"]["id"]);
    assert_eq!(release["app"]["name"], "hello-app");
    assert!(deploy.release_output.expect("a release phase").contains("Migrating database... done"));

    // The stream answered 404 twice first; the upload is kept; builds() shows the build.
    let streams: Vec<u16> = heroku
        .requests()
        .iter()
        .filter(|r| r.kind == RequestKind::Stream && r.path.contains("/builds/"))
        .map(|r| r.status)
        .collect();
    assert_eq!(streams, [404, 404, 200]);
    let put = heroku
        .requests()
        .into_iter()
        .find(|r| r.kind == RequestKind::Blob && r.method == "PUT")
        .expect("the upload was recorded");
    assert_eq!(put.body_len, tarball.len());
    let blob_id = put.path.trim_start_matches("/__blobs/").to_string();
    assert_eq!(heroku.blob(&blob_id), Some(tarball));
    assert_eq!(heroku.builds().len(), 1);
    assert_eq!(heroku.builds()[0]["status"], "succeeded");

    // A second deploy is v2, and the app reports it released.
    let second = self::deploy(&heroku, &client, b"second");
    assert_eq!(second.release.expect("a release")["version"], 2);
    assert!(client.get("/apps/hello-app").json()["released_at"].is_string());
}

#[test]
fn a_failed_build_has_no_release() {
    let heroku = start();
    heroku.script(Script {
        next_build: Some(BuildScript {
            status: FinalStatus::Failed,
            output: Some(vec!["-----> Building".into(), " !     Push failed".into()]),
            build_polls_pending: 3,
            ..BuildScript::default()
        }),
        ..Script::default()
    });
    let client = Client::new(&heroku);
    let deploy = deploy(&heroku, &client, b"tarball");
    assert_eq!(deploy.build_statuses, ["pending", "pending", "pending", "failed"]);
    assert_eq!(deploy.build["release"], Value::Null);
    assert_eq!(deploy.build_output, "-----> Building\n !     Push failed\n");
    assert!(deploy.release.is_none());
}

#[test]
fn a_failed_release_phase_is_reported() {
    let heroku = start();
    heroku.script(Script {
        next_build: Some(BuildScript {
            release: ReleaseScript {
                status: FinalStatus::Failed,
                release_polls_pending: 2,
                ..ReleaseScript::default()
            },
            ..BuildScript::default()
        }),
        ..Script::default()
    });
    let client = Client::new(&heroku);
    let deploy = deploy(&heroku, &client, b"tarball");
    assert_eq!(deploy.build_statuses, ["pending", "succeeded"]);
    assert_eq!(deploy.release_statuses, ["pending", "pending", "failed"]);
    let release = deploy.release.expect("a release");
    assert_eq!(release["current"], false);
    assert!(deploy.release_output.expect("release output").contains("Migrating database... failed"));
}

#[test]
fn releases_without_a_release_phase_have_no_stream() {
    let heroku = start();
    heroku.script(Script {
        next_build: Some(BuildScript {
            build_polls_pending: 0,
            release: ReleaseScript { release_phase: false, release_polls_pending: 0, ..ReleaseScript::default() },
            ..BuildScript::default()
        }),
        ..Script::default()
    });
    let client = Client::new(&heroku);
    let deploy = deploy(&heroku, &client, b"tarball");
    assert_eq!(deploy.build_statuses, ["succeeded"]);
    assert_eq!(deploy.release_statuses, ["succeeded"]);
    assert_eq!(deploy.release.expect("release")["output_stream_url"], Value::Null);
    assert!(deploy.release_output.is_none());
}

/// Ada's `hello-app` with v1 and v3 succeeded and v2 failed (its release phase failed).
fn start_with_releases() -> FakeHeroku {
    let release = |status| SeedRelease { app: "hello-app".into(), status, ..SeedRelease::default() };
    let mut seed = seed();
    seed.accounts[0].releases =
        vec![release(FinalStatus::Succeeded), release(FinalStatus::Failed), release(FinalStatus::Succeeded)];
    FakeHeroku::start(seed).expect("the fake starts")
}

fn versions(list: &Value) -> Vec<u64> {
    list.as_array().into_iter().flatten().filter_map(|r| r["version"].as_u64()).collect()
}

#[test]
fn seeded_releases_are_listed_by_version_and_the_newest_succeeded_is_current() {
    let heroku = start_with_releases();
    let client = Client::new(&heroku);
    let listed = client.get("/apps/hello-app/releases");
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(listed.header("accept-ranges"), Some("version, id"));
    assert_eq!(listed.header("content-range"), Some("version 1..3; max=200"));
    let releases = listed.json();
    assert_eq!(versions(&releases), [1, 2, 3]);
    let statuses: Vec<&str> = releases.as_array().into_iter().flatten().filter_map(|r| r["status"].as_str()).collect();
    assert_eq!(statuses, ["succeeded", "failed", "succeeded"]);
    let current: Vec<bool> = releases.as_array().into_iter().flatten().filter_map(|r| r["current"].as_bool()).collect();
    assert_eq!(current, [false, false, true]);
    let v1 = &releases[0];
    assert!(v1["description"].as_str().is_some_and(|d| d.starts_with("Deploy ") && d.len() == 15), "{v1}");
    assert!(v1["slug"]["id"].is_string());
    assert_eq!(v1["output_stream_url"], Value::Null);
    assert_eq!(v1["eligible_for_rollback"], true);
    assert_eq!(releases[1]["eligible_for_rollback"], false);
    assert_eq!(v1["user"]["email"], ADA);
    assert_eq!(v1["app"]["name"], "hello-app");
    assert_eq!(heroku.releases("hello-app"), releases.as_array().cloned().unwrap_or_default());

    // Info by id, by version and by `vN`; unknown versions and other apps' releases are 404.
    let id = v1["id"].as_str().expect("id");
    for identity in [id, "1", "v1"] {
        let info = client.get(&format!("/apps/hello-app/releases/{identity}"));
        assert_eq!((info.status, info.json()["version"].as_u64()), (200, Some(1)), "{identity}");
    }
    client.get("/apps/hello-app/releases/4").assert_error(404, "not_found");
    client.get(&format!("/apps/other/releases/{id}")).assert_error(404, "not_found");
    assert!(client.get("/apps/other/releases").json().as_array().is_some_and(Vec::is_empty));
    client.get("/apps/bobs-app/releases").assert_error(404, "not_found");

    // The current release's dynos are up at once; the app says when it was released.
    let dynos = client.get("/apps/hello-app/dynos").json();
    assert_eq!((dynos[0]["name"].as_str(), dynos[0]["state"].as_str()), (Some("web.1"), Some("up")));
    assert_eq!(dynos[0]["release"]["version"], 3);
    assert!(client.get("/apps/hello-app").json()["released_at"].is_string());
}

#[test]
fn releases_are_paged_by_version_numerically_newest_first_as_the_cli_asks() {
    let release = SeedRelease { app: "hello-app".into(), ..SeedRelease::default() };
    let mut seed = seed();
    seed.accounts[0].releases = vec![release; 12];
    let heroku = FakeHeroku::start(seed).expect("starts");
    let client = Client::new(&heroku);
    let first =
        client.api_with("GET", "/apps/hello-app/releases", KEY, None, &[("Range", "version ..; max=10, order=desc")]);
    assert_eq!(first.status, 206);
    assert_eq!(versions(&first.json()), [12, 11, 10, 9, 8, 7, 6, 5, 4, 3]);
    assert_eq!(first.header("next-range"), Some("version ]3..; max=10, order=desc"));
    let next = first.header("next-range").expect("next-range").to_string();
    let second = client.api_with("GET", "/apps/hello-app/releases", KEY, None, &[("Range", &next)]);
    assert_eq!((second.status, versions(&second.json())), (200, vec![2, 1]));
    let bounded = client.api_with("GET", "/apps/hello-app/releases", KEY, None, &[("Range", "version 9..10")]);
    assert_eq!(versions(&bounded.json()), [9, 10]);
    let by_id = client.api_with("GET", "/apps/hello-app/releases", KEY, None, &[("Range", "id ..; max=3")]);
    assert_eq!((by_id.status, by_id.json().as_array().map(Vec::len)), (206, Some(3)));
}

#[test]
fn a_rollback_makes_a_new_current_release_with_the_old_slug() {
    let heroku = start_with_releases();
    let client = Client::new(&heroku);
    let v1 = client.get("/apps/hello-app/releases/1").json();
    let v1_id = v1["id"].as_str().expect("id").to_string();
    // Let v3's dynos come up, so that the rollback's new dynos can be told from them.
    assert_eq!(client.get("/apps/hello-app/dynos").json()[0]["release"]["version"], 3);

    let rolled = client.api_with(
        "POST",
        "/apps/hello-app/releases",
        KEY,
        Some(json!({"release": v1_id})),
        &[("Accept", "application/vnd.heroku+json; version=3.sdk")],
    );
    assert_eq!(rolled.status, 201, "{}", rolled.text());
    let v4 = rolled.json();
    assert_eq!(v4["version"], 4);
    assert_eq!(v4["description"], "Rollback to v1");
    assert_eq!(v4["status"], "succeeded");
    assert_eq!(v4["current"], true);
    assert_eq!(v4["slug"], v1["slug"]);
    assert_eq!(v4["output_stream_url"], Value::Null, "v1 had no release phase");
    let releases = client.get("/apps/hello-app/releases").json();
    assert_eq!(versions(&releases), [1, 2, 3, 4]);
    assert_eq!(releases[2]["current"], false);
    assert_eq!(
        heroku.rollbacks(),
        [RollbackRecord {
            app: "hello-app".into(),
            to_id: v1_id.clone(),
            to_version: 1,
            release_id: v4["id"].as_str().expect("id").into(),
            version: 4,
        }]
    );

    // The new release's web.1 starts, then is up.
    let states: Vec<(u64, String)> = (0..2)
        .map(|_| {
            let dyno = client.get("/apps/hello-app/dynos").json()[0].clone();
            (dyno["release"]["version"].as_u64().unwrap_or(0), dyno["state"].as_str().unwrap_or("").to_string())
        })
        .collect();
    assert_eq!(states, [(4, "starting".to_string()), (4, "up".to_string())]);

    // Unknown, failed and malformed targets; a version is accepted too.
    let unknown = client.api(
        "POST",
        "/apps/hello-app/releases",
        KEY,
        Some(json!({"release": "01234567-89ab-cdef-0123-456789abcdef"})),
    );
    unknown.assert_error(404, "not_found");
    client
        .api("POST", "/apps/hello-app/releases", KEY, Some(json!({"release": "2"})))
        .assert_error(422, "invalid_params");
    client
        .api("POST", "/apps/hello-app/releases", KEY, Some(json!({"release": true})))
        .assert_error(422, "invalid_params");
    client.api("POST", "/apps/hello-app/releases", KEY, Some(json!({}))).assert_error(422, "invalid_params");
    client.api("POST", "/apps/bobs-app/releases", KEY, Some(json!({"release": v1_id}))).assert_error(404, "not_found");
    let v5 = client.api("POST", "/apps/hello-app/releases", KEY, Some(json!({"release": 3})));
    assert_eq!((v5.status, v5.json()["description"].as_str()), (201, Some("Rollback to v3")));
    assert_eq!(heroku.rollbacks().len(), 2);

    // A scripted rollback: its release phase fails, and it is not current.
    heroku.script(Script {
        next_rollback: Some(ReleaseScript { status: FinalStatus::Failed, ..ReleaseScript::default() }),
        ..Script::default()
    });
    let v6 = client.api("POST", "/apps/hello-app/releases", KEY, Some(json!({"release": v1_id}))).json();
    assert_eq!((v6["version"].as_u64(), v6["status"].as_str()), (Some(6), Some("pending")));
    let stream = v6["output_stream_url"].as_str().expect("a release phase").to_string();
    let polled: Vec<String> = (0..2)
        .map(|_| client.get("/apps/hello-app/releases/6").json()["status"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(polled, ["pending", "failed"]);
    assert!(client.send("GET", &stream, &[], None).text().contains("Migrating database... failed"));
    let current: Vec<u64> = client
        .get("/apps/hello-app/releases")
        .json()
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["current"] == true)
        .filter_map(|r| r["version"].as_u64())
        .collect();
    assert_eq!(current, [5]);

    let api: Vec<_> = heroku.requests().into_iter().filter(|r| r.status < 400).collect();
    if let Err(errors) = schema::check_all(&api) {
        panic!("rollbacks break the schema: {errors:#?}");
    }
    let missing = heroku.requests().into_iter().find(|r| r.body == Some(json!({}))).expect("the empty rollback");
    assert!(schema::check(&missing).is_err());
}

#[test]
fn a_release_made_by_a_build_is_listed_once_the_build_has_succeeded() {
    let heroku = start();
    let client = Client::new(&heroku);
    let source = client.api("POST", "/sources", KEY, None).json();
    let put_url = source["source_blob"]["put_url"].as_str().expect("put_url");
    let get_url = source["source_blob"]["get_url"].as_str().expect("get_url");
    client.send("PUT", put_url, &[], Some(b"tarball".to_vec()));
    let build =
        client.api("POST", "/apps/hello-app/builds", KEY, Some(json!({"source_blob": {"url": get_url}}))).json();
    assert!(client.get("/apps/hello-app/releases").json().as_array().is_some_and(Vec::is_empty));
    client.get("/apps/hello-app/releases/1").assert_error(404, "not_found");
    let path = format!("/apps/hello-app/builds/{}", build["id"].as_str().expect("id"));
    while client.get(&path).json()["status"] == "pending" {}
    assert_eq!(versions(&client.get("/apps/hello-app/releases").json()), [1]);
}

#[test]
fn seeding_a_release_of_someone_elses_app_is_refused() {
    let mut seed = seed();
    seed.accounts[1].releases = vec![SeedRelease { app: "hello-app".into(), ..SeedRelease::default() }];
    assert!(FakeHeroku::start(seed).is_err());
    let heroku = start();
    let more = Seed {
        accounts: vec![SeedAccount {
            releases: vec![SeedRelease {
                app: "hello-app".into(),
                dynos: vec![DynoScript { name: "worker.1".into(), state: "crashed".into(), polls_starting: 0 }],
                ..SeedRelease::default()
            }],
            ..account(ADA, KEY)
        }],
    };
    heroku.seed(&more).expect("Ada's own app");
    let client = Client::new(&heroku);
    assert_eq!(client.get("/apps/hello-app/dynos").json()[0]["state"], "crashed");
}

#[test]
fn with_local_web_urls_the_fake_serves_each_app_with_scripted_statuses() {
    let heroku = FakeHeroku::start_with(seed(), ServeOptions { local_web_urls: true, ..ServeOptions::default() })
        .expect("starts");
    let client = Client::new(&heroku);
    let web_url = client.get("/apps/hello-app").json()["web_url"].as_str().expect("web_url").to_string();
    assert_eq!(web_url, format!("{}/__app/hello-app/", heroku.url()));
    // The build output names the same URL.
    let deploy = deploy(&heroku, &client, b"tarball");
    assert!(deploy.build_output.contains(&format!("       {web_url} deployed to Heroku\n")), "{}", deploy.build_output);

    heroku.script(Script { web: vec![503, 502], ..Script::default() });
    let statuses: Vec<u16> = ["", "health", "a/b?x=1", ""]
        .iter()
        .map(|path| client.send("GET", &format!("{web_url}{path}"), &[], None).status)
        .collect();
    assert_eq!(statuses, [503, 502, 200, 200]);
    let up = client.send("GET", &web_url, &[], None);
    assert_eq!(
        (up.header("content-type"), up.text().as_str()),
        (Some("text/plain; charset=utf-8"), "hello-app is up\n")
    );
    assert_eq!(client.send("GET", &format!("{}/__app/no-such-app/", heroku.url()), &[], None).status, 404);
    let web: Vec<(String, u16)> =
        heroku.requests().into_iter().filter(|r| r.kind == RequestKind::Web).map(|r| (r.path, r.status)).collect();
    assert_eq!(web[0], ("/__app/hello-app/".to_string(), 503));
    assert_eq!(web[2], ("/__app/hello-app/a/b".to_string(), 200));
    assert_eq!(web.len(), 6);
    assert!(schema::check_all(&heroku.requests()).is_ok());

    // Statuses outside 100..=599 are refused; without the option web_url is Heroku's.
    let bad = client.send("POST", "/__fake/script", &[], Some(br#"{"web": [99]}"#.to_vec()));
    assert_eq!(bad.status, 422, "{}", bad.text());
    let plain = start();
    assert_eq!(Client::new(&plain).get("/apps/hello-app").json()["web_url"], "https://hello-app.herokuapp.com/");
}

#[test]
fn builds_need_a_source_blob_url_that_was_uploaded() {
    let heroku = start();
    let client = Client::new(&heroku);
    for body in [json!({}), json!({"source_blob": {"version": "abc"}})] {
        client.api("POST", "/apps/hello-app/builds", KEY, Some(body)).assert_error(422, "invalid_params");
    }
    client
        .api("POST", "/apps/bobs-app/builds", KEY, Some(json!({"source_blob": {"url": "http://x/y"}})))
        .assert_error(404, "not_found");

    // A source created but never uploaded: the build is created, then fails.
    let source = client.api("POST", "/sources", KEY, None).json();
    let get_url = source["source_blob"]["get_url"].as_str().expect("get_url");
    let created = client.api(
        "POST",
        "/apps/hello-app/builds",
        KEY,
        Some(json!({"source_blob": {"url": get_url, "version": "abc"}})),
    );
    assert_eq!(created.status, 201);
    let build = created.json();
    let path = format!("/apps/hello-app/builds/{}", build["id"].as_str().unwrap_or(""));
    assert_eq!(client.get(&path).json()["status"], "pending");
    let failed = client.get(&path).json();
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["release"], Value::Null);
    let output = client.send("GET", build["output_stream_url"].as_str().unwrap_or(""), &[], None).text();
    assert!(output.contains("could not be fetched"), "{output}");

    // An upload whose checksum does not match fails the same way.
    let source = client.api("POST", "/sources", KEY, None).json();
    let put = client.send("PUT", source["source_blob"]["put_url"].as_str().unwrap_or(""), &[], Some(b"bytes".to_vec()));
    assert_eq!(put.status, 200);
    let wrong = format!("SHA256:{}", "0".repeat(64));
    let created = client
        .api(
            "POST",
            "/apps/hello-app/builds",
            KEY,
            Some(json!({"source_blob": {
                "url": source["source_blob"]["get_url"], "checksum": wrong
            }})),
        )
        .json();
    let path = format!("/apps/hello-app/builds/{}", created["id"].as_str().unwrap_or(""));
    client.get(&path);
    assert_eq!(client.get(&path).json()["status"], "failed");
}

#[test]
fn blob_urls_need_their_own_signature() {
    let heroku = start();
    let client = Client::new(&heroku);
    let source = client.api("POST", "/sources", KEY, None).json();
    let put_url = source["source_blob"]["put_url"].as_str().expect("put_url");
    let get_url = source["source_blob"]["get_url"].as_str().expect("get_url");
    // Nothing uploaded yet.
    assert_eq!(client.send("GET", get_url, &[], None).status, 404);
    // The GET URL does not allow a PUT, nor the PUT URL a GET.
    assert_eq!(client.send("PUT", get_url, &[], Some(b"x".to_vec())).status, 403);
    assert_eq!(client.send("PUT", put_url, &[], Some(b"x".to_vec())).status, 200);
    assert_eq!(client.send("GET", put_url, &[], None).status, 403);
    let unsigned = get_url.split('?').next().unwrap_or("");
    assert_eq!(client.send("GET", unsigned, &[], None).status, 403);
    assert_eq!(client.send("GET", get_url, &[], None).body, b"x");
}

#[test]
fn fail_next_answers_scripted_errors_then_recovers() {
    let heroku = start();
    heroku.script(Script {
        fail_next: vec![
            FailRule {
                method: "GET".into(),
                path: "/apps".into(),
                status: 503,
                id: "unavailable".into(),
                message: "Heroku is down for maintenance".into(),
                times: 2,
                retry_after: Some(3),
            },
            FailRule {
                method: "POST".into(),
                path: "/apps/*".into(),
                status: 500,
                id: "internal_server_error".into(),
                message: "boom".into(),
                times: 1,
                retry_after: None,
            },
        ],
        ..Script::default()
    });
    let client = Client::new(&heroku);
    for _ in 0..2 {
        let answer = client.get("/apps");
        answer.assert_error(503, "unavailable");
        assert_eq!(answer.json()["message"], "Heroku is down for maintenance");
        assert_eq!(answer.header("retry-after"), Some("3"));
        assert!(answer.header("ratelimit-remaining").is_some());
    }
    assert_eq!(client.get("/apps").status, 200);
    assert_eq!(client.get("/apps/hello-app").status, 200, "exact paths only");
    client.api("POST", "/apps/hello-app/builds", KEY, Some(json!({}))).assert_error(500, "internal_server_error");
    client.api("POST", "/apps/hello-app/builds", KEY, Some(json!({}))).assert_error(422, "invalid_params");
    let statuses: Vec<u16> = heroku.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200, 200, 500, 422]);
}

#[test]
fn the_schema_checker_accepts_a_deploy_and_rejects_bad_requests() {
    let heroku = start();
    let client = Client::new(&heroku);
    assert_eq!(client.get("/account").status, 200);
    assert_eq!(client.api_with("GET", "/apps", KEY, None, &[("Range", "name ..; max=200")]).status, 200);
    assert_eq!(client.api("POST", "/account/keys", KEY, Some(json!({"public_key": ED25519}))).status, 201);
    deploy(&heroku, &client, b"tarball");
    let happy = heroku.requests();
    assert!(happy.iter().any(|r| r.kind == RequestKind::Blob));
    assert!(happy.iter().any(|r| r.kind == RequestKind::Stream));
    if let Err(errors) = schema::check_all(&happy) {
        panic!("the happy flow breaks the schema: {errors:#?}");
    }

    // A made-up path, a build without source_blob, a request without Accept.
    let before = heroku.requests().len();
    client.get("/apps/hello-app/made-up");
    client.api("POST", "/apps/hello-app/builds", KEY, Some(json!({"buildpacks": []})));
    client.send("GET", "/account", &[("Authorization", "Bearer ada-key")], None);
    let bad = &heroku.requests()[before..];
    assert_eq!(bad.len(), 3);
    for request in bad {
        let error = schema::check(request).expect_err("should be refused");
        assert!(error.contains(&request.path), "{error}");
    }
    let errors = schema::check_all(&heroku.requests()).expect_err("three bad requests");
    assert_eq!(errors.len(), 3);
}

#[test]
fn recorded_requests_keep_headers_bodies_and_queries() {
    let heroku = start();
    let client = Client::new(&heroku);
    client.api_with(
        "POST",
        "/account/keys?source=test",
        KEY,
        Some(json!({"public_key": ED25519})),
        &[("User-Agent", "pier-test/1.0")],
    );
    let recorded = heroku.requests();
    let request = &recorded[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/account/keys");
    assert_eq!(request.query.as_deref(), Some("source=test"));
    assert_eq!(request.header("Accept"), Some(ACCEPT));
    assert_eq!(request.header("user-agent"), Some("pier-test/1.0"));
    assert_eq!(request.header("authorization"), Some("Bearer ada-key"));
    assert_eq!(request.body, Some(json!({"public_key": ED25519})));
    assert_eq!(request.body_len, json!({"public_key": ED25519}).to_string().len());
    assert_eq!(request.status, 201);
    // Serialisable for shell scripts.
    let round_trip: fake_heroku::RecordedRequest =
        serde_json::from_value(serde_json::to_value(request).expect("serialises")).expect("deserialises");
    assert_eq!(&round_trip, request);
}

#[test]
fn the_binary_serves_until_sigterm_and_takes_control_calls() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-heroku"))
        .args(["--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("a listening line");
    let url = line
        .trim_end()
        .strip_prefix("fake-heroku listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    {
        let client = Client::for_url(&url);
        client.api("GET", "/account", KEY, None).assert_error(401, "unauthorized");
        let seeded = client.send(
            "POST",
            "/__fake/seed",
            &[("Content-Type", "application/json")],
            Some(serde_json::to_vec(&seed()).expect("seed serialises")),
        );
        assert_eq!(seeded.status, 200, "{}", seeded.text());
        let account = client.get("/account");
        assert_eq!(account.status, 200);
        assert_eq!(account.json()["email"], ADA);

        let scripted = client.send(
            "POST",
            "/__fake/script",
            &[],
            Some(br#"{"fail_next": [{"method": "GET", "path": "/account", "status": 502}]}"#.to_vec()),
        );
        assert_eq!(scripted.status, 200, "{}", scripted.text());
        client.get("/account").assert_error(502, "unavailable");
        let typo = client.send("POST", "/__fake/script", &[], Some(br#"{"fial_next": []}"#.to_vec()));
        assert_eq!(typo.status, 400);

        client.api("POST", "/account/keys", KEY, Some(json!({"public_key": ED25519})));
        let keys = client.send("GET", "/__fake/keys?email=ada%40example.com", &[], None).json();
        assert_eq!(keys[0]["fingerprint"], ED25519_FINGERPRINT);

        let requests = client.send("GET", "/__fake/requests", &[], None).json();
        let statuses: Vec<u64> =
            requests.as_array().expect("an array").iter().filter_map(|r| r["status"].as_u64()).collect();
        assert_eq!(statuses, [401, 200, 502, 201], "control calls are not recorded");
    }

    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(killed.success());
    let status = child.wait().expect("the binary exits");
    assert!(status.success(), "exit status {status}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("stdout reads");
    assert_eq!(rest, "", "stdout holds only the listening line");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("stderr reads");
    }
    assert!(stderr.contains("GET /account -> 200"), "{stderr}");
}

/// A `fake-heroku` binary serving on a free port, killed when dropped (on a failed assertion).
struct Served {
    child: std::process::Child,
    url: String,
}

impl Served {
    fn start() -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fake-heroku"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("a listening line");
        let url = line
            .trim_end()
            .strip_prefix("fake-heroku listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Served { child, url }
    }

    /// Stops the server with SIGTERM and checks that it exits cleanly.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs").success());
        let status = self.child.wait().expect("the binary exits");
        assert!(status.success(), "exit status {status}");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `fake-heroku ARGS...` to completion: (exit code, stdout, stderr).
fn run_fake(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_fake-heroku"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    let code = output.status.code().expect("the binary exits with a code");
    (code, String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn client_subcommands_seed_script_and_list_requests_of_a_running_binary() {
    let served = Served::start();
    let url = served.url.clone();
    let client = Client::for_url(&url);

    let seed_json = serde_json::to_string(&seed()).expect("seed serialises");
    let (code, stdout, stderr) = run_fake(&["seed", "--url", &url, &seed_json]);
    assert_eq!((code, stdout.as_str()), (0, ""), "stderr: {stderr}");
    assert_eq!(client.get("/account").status, 200);

    let (code, _, stderr) = run_fake(&["script", "--url", &url, r#"{"rate_limit_next":1}"#]);
    assert_eq!(code, 0, "stderr: {stderr}");
    client.get("/account").assert_error(429, "rate_limit");
    assert_eq!(client.get("/account").status, 200);

    // `@FILE`, and a base URL with a trailing slash.
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fake-heroku-script-{}.json", std::process::id()));
    std::fs::write(&file, r#"{"fail_next": [{"method": "GET", "path": "/apps", "status": 503}]}"#).expect("writes");
    let at_file = format!("@{}", file.display());
    let (code, _, stderr) = run_fake(&["script", "--url", &format!("{url}/"), &at_file]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, 0, "stderr: {stderr}");
    client.get("/apps").assert_error(503, "unavailable");

    // Refused scripts and seeds: the server's answer on stderr, exit 1.
    let (code, stdout, stderr) = run_fake(&["script", "--url", &url, r#"{"fial_next": []}"#]);
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert!(stderr.contains("400") && stderr.contains("not a script"), "{stderr}");
    let (code, _, stderr) = run_fake(&[
        "script",
        "--url",
        &url,
        r#"{"set_rate_limit_remaining": [{"email": "nobody@example.com", "remaining": 0}]}"#,
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("422"), "{stderr}");
    let (code, _, stderr) = run_fake(&["seed", "--url", &url, "not json"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not a seed"), "{stderr}");
    let missing = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fake-heroku-no-such-file.json");
    let (code, _, stderr) = run_fake(&["seed", "--url", &url, &format!("@{}", missing.display())]);
    assert_eq!(code, 2, "an unreadable @FILE is a bad argument: {stderr}");

    let (code, stdout, stderr) = run_fake(&["requests", "--url", &url]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(stdout.ends_with('\n') && stdout.lines().count() == 1, "{stdout:?}");
    let requests: Value = serde_json::from_str(&stdout).expect("requests print as JSON");
    let seen: Vec<(&str, &str, u64)> = requests
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| {
            (
                r["method"].as_str().expect("method"),
                r["path"].as_str().expect("path"),
                r["status"].as_u64().expect("status"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("GET", "/account", 200), ("GET", "/account", 429), ("GET", "/account", 200), ("GET", "/apps", 503)],
        "control calls are not recorded"
    );
    // Typed, as the library sees them.
    let typed: Vec<fake_heroku::RecordedRequest> = serde_json::from_str(&stdout).expect("RecordedRequests");
    assert_eq!(typed[1].header("authorization"), Some("Bearer ada-key"));

    // `localhost` is loopback too.
    let port = url.rsplit(':').next().expect("a port");
    let (code, stdout, stderr) = run_fake(&["requests", "--url", &format!("http://localhost:{port}")]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).expect("JSON"), requests);

    served.stop();
    // Nothing listens any more: a failed call exits 1.
    let (code, _, stderr) = run_fake(&["requests", "--url", &url]);
    assert_eq!(code, 1, "{stderr}");
}

#[test]
fn the_binary_refuses_non_loopback_urls_and_bad_arguments_with_exit_2() {
    for url in [
        "http://example.com",
        "https://127.0.0.1:8080",
        "http://127.0.0.1.example.com:8080",
        "http://127.0.0.1:8080@example.com",
        "http://10.0.0.1:8080",
        "127.0.0.1:8080",
    ] {
        for args in
            [vec!["script", "--url", url, "{}"], vec!["seed", "--url", url, "{}"], vec!["requests", "--url", url]]
        {
            let (code, stdout, stderr) = run_fake(&args);
            assert_eq!((code, stdout.as_str()), (2, ""), "{args:?}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
            assert!(stderr.contains("loopback") && stderr.contains(url), "{stderr}");
        }
    }
    for args in [
        vec!["--port", "nope"],
        vec!["--bogus"],
        vec!["--seed"],
        vec!["script", "{}"],
        vec!["script", "--url", "http://127.0.0.1:1"],
        vec!["requests"],
        vec!["--port", "0", "requests", "--url", "http://127.0.0.1:1"],
    ] {
        let (code, stdout, stderr) = run_fake(&args);
        assert_eq!((code, stdout.as_str()), (2, ""), "{args:?}: {stderr}");
    }
    let missing = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fake-heroku-no-such-seed.json");
    let (code, _, stderr) = run_fake(&["--seed", &missing.display().to_string()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot read seed file"), "{stderr}");
}
