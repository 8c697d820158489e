//! Where a plugin's requests may connect: names resolving to internal addresses, IP
//! literals the user did not write, header bounds and open response streams. Each hostile
//! case has a benign twin that must still work.
//!
//! The library tests share one tokio runtime and one Pier runtime whose resolver
//! overrides send `api.example.test` to 127.0.0.1, `meta.test` to 169.254.169.254 and
//! `localhost` to 127.0.0.1, so no test asks real DNS. The provider is a small HTTP/1.1
//! server on loopback that counts every request it gets; a request is counted before it is
//! answered, so whatever a call sent is counted once the call returns.

mod common;

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use common::{commit_app, plugin, run, tempdir};
use pier::caps::Grant;
use pier::caps::events::MemorySink;
use pier::caps::secrets::Vault;
use pier::runtime::bindings::{EndpointSource, Permissions};
use pier::runtime::{Answer, BuildInfo, CallEnv, Context, Limits, Runtime};

static TOKIO: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
});

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    let mut limits = Limits { deploy_time: Duration::from_secs(60), ..Limits::default() };
    limits.http.resolve = BTreeMap::from([
        ("api.example.test".to_string(), vec!["127.0.0.1".parse().unwrap()]),
        ("meta.test".to_string(), vec!["169.254.169.254".parse().unwrap()]),
        ("localhost".to_string(), vec!["127.0.0.1".parse().unwrap()]),
    ]);
    Runtime::new(limits, Some(common::cache_dir())).expect("runtime")
});

/// The refusal of a literal loopback address the user did not write.
const LOOPBACK_LITERAL: &str = "denied: 127.0.0.1 is a loopback address, which plugins may not reach (only an \
                                address that the user wrote as the endpoint may be private)";

fn build() -> BuildInfo {
    BuildInfo {
        deploy_id: "d-addresses".into(),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        branch: "main".into(),
        build_id: Some("1".into()),
        trigger: pier::runtime::bindings::Trigger::Manual,
    }
}

/// Deploys test plugin `name` with `settings`, under the grant of its permissions as
/// `adjust` leaves them (the test's stand-in for a plugin declaring other fixed defaults
/// or origins), with a checkout holding a README. Returns the deploy summary.
fn deploy_with(name: &str, settings: &[(&str, &str)], adjust: impl FnOnce(&mut Permissions)) -> String {
    let dir = tempdir();
    let workspace = dir.path().join("checkout");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::write(workspace.join("README"), "to upload\n").unwrap();
    TOKIO.block_on(async {
        let runtime = &*RUNTIME;
        let loaded = runtime.load_file(Path::new(plugin(name))).unwrap_or_else(|e| panic!("load {name}: {e}"));
        let description = loaded.describe(runtime).await.unwrap_or_else(|e| panic!("describe {name}: {e}"));
        let mut permissions = description.permissions.clone();
        adjust(&mut permissions);
        let values: BTreeMap<String, String> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (grant, endpoints) = Grant::for_contract(loaded.contract(), &permissions, &values, &|_| None)
            .unwrap_or_else(|e| panic!("grant of {name}: {e}"));
        let sink = Arc::new(MemorySink::default());
        let env = CallEnv::new(grant, Arc::new(Vault::new()), sink.clone())
            .with_workspace(common::workspace(&workspace))
            .with_scratch(dir.path().to_path_buf());
        let ctx = Context { endpoints, server: "addresses".into() };
        let answers: Vec<Answer> =
            settings.iter().map(|(k, v)| Answer { field: k.to_string(), value: v.to_string() }).collect();
        match loaded.deploy(runtime, &env, &ctx, &answers, &build()).await {
            Ok(Ok(report)) => report.summary,
            other => panic!("{name} with {settings:?}: expected a deploy report, got {other:?}"),
        }
    })
}

/// Deploys `name` with `settings` under the grant of its own permissions.
fn deploy(name: &str, settings: &[(&str, &str)]) -> String {
    deploy_with(name, settings, |_| {})
}

/// An HTTP/1.1 server on 127.0.0.1 that records the path of every request, then answers
/// 200 with `{}`.
struct Provider {
    url: String,
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Provider {
    fn start() -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the loopback provider");
        let port = listener.local_addr().expect("its address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = record.clone();
                std::thread::spawn(move || serve(stream, &record));
            }
        });
        Provider { url: format!("http://127.0.0.1:{port}"), port, seen }
    }

    /// The paths of the requests received so far.
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// `http://HOST:PORT` of this provider under another host name.
    fn as_host(&self, host: &str) -> String {
        format!("http://{host}:{}", self.port)
    }
}

/// Serves one connection, recording each request's path in `seen`.
fn serve(stream: TcpStream, seen: &Mutex<Vec<String>>) {
    common::loopback::serve(stream, |request| {
        seen.lock().unwrap().push(request.path);
        (Some("application/json"), "{}".to_string())
    });
}

/// Makes endpoint `api`'s only source the fixed default `url`.
fn fixed_default(url: String) -> impl FnOnce(&mut Permissions) {
    move |permissions| {
        for endpoint in &mut permissions.endpoints {
            endpoint.sources = vec![EndpointSource::Fixed(url.clone())];
        }
    }
}

// ---------------------------------------------------------------------------------------
// Names that resolve to internal addresses
// ---------------------------------------------------------------------------------------

#[test]
fn a_name_the_user_wrote_that_resolves_to_loopback_is_refused() {
    let provider = Provider::start();
    let url = provider.as_host("api.example.test");
    let summary = deploy("addresses", &[("api_url", &url), ("mode", "get")]);
    assert_eq!(
        summary,
        "denied: api.example.test resolves to 127.0.0.1, a loopback address, which plugins may not reach (only an \
         address or `localhost` that the user wrote as the endpoint may be private)"
    );
    assert_eq!(provider.seen(), Vec::<String>::new(), "nothing may reach the server");

    // The benign twins: the user writes the address, or `localhost`.
    assert_eq!(deploy("addresses", &[("api_url", &provider.url), ("mode", "get")]), "ok 200: {}");
    assert_eq!(deploy("addresses", &[("api_url", &provider.as_host("localhost")), ("mode", "get")]), "ok 200: {}");
    assert_eq!(provider.seen(), ["/ping", "/ping"]);
}

#[test]
fn a_name_resolving_to_the_metadata_address_is_refused_before_connecting() {
    // A connection attempt to 169.254.169.254 would end in `connection` or `timeout`.
    let summary = deploy("addresses", &[("api_url", "http://meta.test"), ("mode", "get")]);
    assert_eq!(
        summary,
        "denied: meta.test resolves to 169.254.169.254, a link-local address, which plugins may not reach (only an \
         address or `localhost` that the user wrote as the endpoint may be private)"
    );
}

#[test]
fn localhost_as_a_fixed_default_is_refused() {
    let provider = Provider::start();
    let summary = deploy_with("addresses", &[("mode", "get")], fixed_default(provider.as_host("localhost")));
    assert!(summary.starts_with("denied: localhost resolves to 127.0.0.1, a loopback address"), "{summary}");
    assert_eq!(provider.seen(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------
// IP literals the user did not write
// ---------------------------------------------------------------------------------------

#[test]
fn an_ip_literal_from_a_fixed_default_is_refused() {
    // The plugin's own fixed default, `http://127.0.0.1:1`: refusing it is not a
    // connection error.
    assert_eq!(deploy("addresses", &[("mode", "get")]), LOOPBACK_LITERAL);
    // The same with the provider's address as the fixed default: nothing reaches it.
    let provider = Provider::start();
    let summary = deploy_with("addresses", &[("mode", "get")], fixed_default(provider.url.clone()));
    assert_eq!(summary, LOOPBACK_LITERAL);
    assert_eq!(provider.seen(), Vec::<String>::new());
    // The benign twin: the user writes that address.
    assert_eq!(deploy("addresses", &[("api_url", &provider.url), ("mode", "get")]), "ok 200: {}");
    assert_eq!(provider.seen(), ["/ping"]);
}

#[test]
fn an_ip_literal_on_an_extra_origin_is_refused() {
    let api = Provider::start();
    // The plugin's own extra origin, `http://127.0.0.1:2`: the same host as the endpoint
    // the user wrote, another port.
    let settings = [("api_url", api.url.as_str()), ("mode", "target"), ("target", "http://127.0.0.1:2/x")];
    assert_eq!(deploy("addresses", &settings), LOOPBACK_LITERAL);
    // The same with another provider's address as the extra origin.
    let other = Provider::start();
    let target = format!("{}/x", other.url);
    let settings = [("api_url", api.url.as_str()), ("mode", "target"), ("target", target.as_str())];
    let origin = other.url.clone();
    assert_eq!(deploy_with("addresses", &settings, move |p| p.origins = vec![origin]), LOOPBACK_LITERAL);
    assert_eq!(other.seen(), Vec::<String>::new());
    // The benign twin: the same request to the endpoint the user wrote.
    let target = format!("{}/x", api.url);
    let settings = [("api_url", api.url.as_str()), ("mode", "target"), ("target", target.as_str())];
    assert_eq!(deploy("addresses", &settings), "ok 200: {}");
    assert_eq!(api.seen(), ["/x"]);
}

#[test]
fn a_workspace_upload_is_held_to_the_same_addresses() {
    let api = Provider::start();
    let settings = [("api_url", api.url.as_str()), ("mode", "upload"), ("target", "http://127.0.0.1:2/upload")];
    assert_eq!(deploy("addresses", &settings), LOOPBACK_LITERAL);
    let named = api.as_host("api.example.test");
    let target = format!("{named}/upload");
    let settings = [("api_url", named.as_str()), ("mode", "upload"), ("target", target.as_str())];
    let summary = deploy("addresses", &settings);
    assert!(summary.starts_with("denied: api.example.test resolves to 127.0.0.1, a loopback address"), "{summary}");
    assert_eq!(api.seen(), Vec::<String>::new());
    // The benign twin: an upload to the endpoint the user wrote.
    let target = format!("{}/upload", api.url);
    let settings = [("api_url", api.url.as_str()), ("mode", "upload"), ("target", target.as_str())];
    assert_eq!(deploy("addresses", &settings), "ok 200");
    assert_eq!(api.seen(), ["/upload"]);
}

#[test]
fn a_legacy_plugin_is_held_to_the_same_addresses() {
    let provider = Provider::start();
    let named = provider.as_host("api.example.test");
    let summary = deploy("legacy-addresses", &[("api_url", &named), ("mode", "get")]);
    assert!(summary.starts_with("denied: api.example.test resolves to 127.0.0.1, a loopback address"), "{summary}");
    let settings = [("api_url", provider.url.as_str()), ("mode", "target"), ("target", "http://127.0.0.1:2/x")];
    assert_eq!(deploy("legacy-addresses", &settings), LOOPBACK_LITERAL);
    assert_eq!(provider.seen(), Vec::<String>::new());
    // The benign twins.
    assert_eq!(deploy("legacy-addresses", &[("api_url", &provider.url), ("mode", "get")]), "ok 200: {}");
    let localhost = provider.as_host("localhost");
    assert_eq!(deploy("legacy-addresses", &[("api_url", &localhost), ("mode", "get")]), "ok 200: {}");
    assert_eq!(provider.seen(), ["/ping", "/ping"]);
}

// ---------------------------------------------------------------------------------------
// Header bounds and response streams
// ---------------------------------------------------------------------------------------

#[test]
fn too_many_headers_are_an_invalid_request_and_the_next_request_works() {
    let provider = Provider::start();
    let summary = deploy("addresses", &[("api_url", &provider.url), ("mode", "headers")]);
    assert_eq!(
        summary,
        "invalid-request: a request may carry at most 100 headers, and this one has 30000 | ok 200: {}"
    );
    assert_eq!(provider.seen(), ["/after"]);
}

#[test]
fn a_huge_header_is_an_invalid_request_and_the_next_request_works() {
    let provider = Provider::start();
    let summary = deploy("addresses", &[("api_url", &provider.url), ("mode", "big-header")]);
    assert_eq!(
        summary,
        "invalid-request: a request's header names and values may total at most 65536 bytes, and this one's total \
         1048581 | ok 200: {}"
    );
    assert_eq!(provider.seen(), ["/after"]);
}

/// What `streams` mode reports when the 17th stream is refused and one more opens after a
/// drop.
const STREAMS: &str = "opened 16; then denied: at most 16 response streams may be open at once in a call; drop \
                       one before opening another; after dropping one: ok 200";

#[test]
fn at_most_sixteen_response_streams_are_open_at_once() {
    for name in ["addresses", "legacy-addresses"] {
        let provider = Provider::start();
        assert_eq!(deploy(name, &[("api_url", &provider.url), ("mode", "streams")]), STREAMS, "{name}");
        // The refused one was never sent: 16, then one after the drop.
        assert_eq!(provider.seen().len(), 17, "{name}");
    }
}

// ---------------------------------------------------------------------------------------
// The CLI: PIER_RESOLVE
// ---------------------------------------------------------------------------------------

#[test]
fn pier_resolve_overrides_are_checked_like_any_other_address() {
    let provider = Provider::start();
    let home = tempdir();
    let pier = || common::pier(home.path());
    run(pier().arg("init"), 0);
    std::fs::create_dir_all(home.path().join("plugins")).unwrap();
    std::fs::copy(plugin("addresses"), home.path().join("plugins/addresses.wasm")).unwrap();
    run(pier().args(["plugins", "add", "plugins/addresses.wasm", "--yes"]), 0);
    commit_app(home.path());
    let named = format!("api_url={}", provider.as_host("api.example.test"));
    run(
        pier()
            .args(["server", "add", "--method", "addresses", "--name", "Api", "--strategy", "manual"])
            .args(["--set", &named, "--set", "mode=get"]),
        0,
    );
    let (out, _) = run(pier().args(["deploy", "api"]).env("PIER_RESOLVE", "api.example.test=127.0.0.1"), 0);
    assert!(out.contains("denied: api.example.test resolves to 127.0.0.1, a loopback address"), "{out}");
    assert_eq!(provider.seen(), Vec::<String>::new(), "nothing may reach the server");

    let (_, err) = run(pier().args(["deploy", "api"]).env("PIER_RESOLVE", "api.example.test"), 2);
    assert!(err.contains("PIER_RESOLVE"), "{err}");

    // The benign twin: the user writes the address itself.
    run(pier().args(["server", "edit", "api", "--set", &format!("api_url={}", provider.url)]), 0);
    let (out, _) = run(pier().args(["deploy", "api"]).env("PIER_RESOLVE", "api.example.test=127.0.0.1"), 0);
    assert!(out.contains("ok 200"), "{out}");
    assert_eq!(provider.seen(), ["/ping"]);
}

#[test]
fn setup_cannot_point_an_endpoint_at_an_internal_address_the_user_did_not_give() {
    let provider = Provider::start();
    let home = tempdir();
    let pier = || common::pier(home.path());
    run(pier().arg("init"), 0);
    std::fs::create_dir_all(home.path().join("plugins")).unwrap();
    std::fs::copy(plugin("addresses"), home.path().join("plugins/addresses.wasm")).unwrap();
    run(pier().args(["plugins", "add", "plugins/addresses.wasm", "--yes"]), 0);
    let add = |name: &str, api_url: &str, target: &str| {
        let mut cmd = pier();
        cmd.args(["server", "add", "--method", "addresses", "--name", name, "--strategy", "manual"]).args([
            "--set",
            &format!("api_url={api_url}"),
            "--set",
            "mode=swap-endpoint",
            "--set",
            &format!("target={target}"),
        ]);
        cmd
    };
    let before = std::fs::read_to_string(home.path().join("pier.toml")).unwrap();
    let (_, err) = run(&mut add("Swap", "https://api.example.com", "http://169.254.169.254/latest"), 3);
    assert!(err.contains("`api_url`") && err.contains("169.254.169.254 is a link-local address"), "{err}");
    assert_eq!(std::fs::read_to_string(home.path().join("pier.toml")).unwrap(), before, "nothing is saved");
    // The benign twin: setup keeps the address the user gave (the same origin).
    let (_, err) = run(&mut add("Same", &provider.url, &format!("{}/other", provider.url)), 0);
    assert!(!err.contains("did not give"), "{err}");
    assert!(std::fs::read_to_string(home.path().join("pier.toml")).unwrap().contains("[servers.same]"));
}
