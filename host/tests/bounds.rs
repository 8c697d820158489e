//! Bounds on what one call may use, one test per bound, each hostile case with a benign
//! twin:
//!
//! - a call's store: at most 100 core instances, 100 tables and 10 memories, and table
//!   elements (8 bytes each) counted against the 512 MiB instance memory limit, shared
//!   with linear memory. "Bombs" append core instances of a module of large tables to a
//!   real plugin; the CLI must stop them with a plugin fault (exit 3) naming the limit,
//!   before they take memory (peak resident memory of the `pier` process under 1 GiB);
//! - `describe`: at most 1 MiB of text;
//! - `http`: at most 100 headers and 64 KiB of header names and values per request, and
//!   at most 16 open response streams per call;
//! - `workspace`: the live blobs of one call together at most the blob limit;
//!
//! and no plugin input panics the host: the call, and the process, go on.
//!
//! The library tests share one tokio runtime and one Pier runtime (blob tests make their
//! own, with a small blob limit); the CLI tests run the real `pier` binary. The provider
//! is a small HTTP/1.1 server on loopback that records every request it gets.

mod common;

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex, mpsc};
use std::time::Duration;

use common::bomb::{self, Bomb};
use common::{Measured, plugin, run, tempdir};
use pier::caps::Grant;
use pier::caps::events::MemorySink;
use pier::caps::secrets::Vault;
use pier::runtime::{Answer, BuildInfo, CallEnv, Context, Limits, Runtime};

// ---------------------------------------------------------------------------------------
// Shared fixtures
// ---------------------------------------------------------------------------------------

measure_trampoline!();

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// One tokio runtime for every library test, so that the Pier runtime's HTTP client
/// always lives on the runtime that made its connections.
static TOKIO: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
});

/// The Pier runtime of the request and stream tests.
static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| runtime(Limits::default().max_blob));

/// A Pier runtime whose live blobs may hold `max_blob` bytes.
fn runtime(max_blob: u64) -> Runtime {
    let limits = Limits { deploy_time: Duration::from_secs(120), max_blob, ..Limits::default() };
    Runtime::new(limits, Some(common::cache_dir())).expect("runtime")
}

fn build() -> BuildInfo {
    BuildInfo {
        deploy_id: "d-bounds".into(),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        branch: "main".into(),
        build_id: Some("1".into()),
        trigger: pier::runtime::bindings::Trigger::Manual,
    }
}

/// The text of a panic payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// Deploys test plugin `name` on `runtime` with `settings` (which also resolve its
/// endpoints), no secrets and the checkout `workspace`, under the grant its own
/// permissions give. Returns the deploy summary; a method error, a fault or a panic of
/// the host fails the test, naming which.
fn deploy(runtime: &Runtime, name: &str, settings: &[(&str, &str)], workspace: &Path) -> String {
    let scratch = tempdir();
    let call = std::panic::AssertUnwindSafe(|| {
        TOKIO.block_on(async {
            let loaded = runtime.load_file(Path::new(plugin(name))).unwrap_or_else(|e| panic!("load {name}: {e}"));
            let description = loaded.describe(runtime).await.unwrap_or_else(|e| panic!("describe {name}: {e}"));
            let values: BTreeMap<String, String> =
                settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let (grant, endpoints) =
                Grant::for_contract(loaded.contract(), &description.permissions, &values, &|_| None)
                    .unwrap_or_else(|e| panic!("grant of {name}: {e}"));
            let sink = Arc::new(MemorySink::default());
            let env = CallEnv::new(grant, Arc::new(Vault::new()), sink)
                .with_workspace(common::workspace(workspace))
                .with_scratch(scratch.path().to_path_buf());
            let ctx = Context { endpoints, server: "bounds".into() };
            let answers: Vec<Answer> =
                settings.iter().map(|(k, v)| Answer { field: k.to_string(), value: v.to_string() }).collect();
            loaded.deploy(runtime, &env, &ctx, &answers, &build()).await
        })
    });
    match std::panic::catch_unwind(call) {
        Err(payload) => panic!("the host panicked on {name} with {settings:?}: {}", panic_text(&*payload)),
        Ok(Ok(Ok(report))) => report.summary,
        Ok(other) => panic!("{name} with {settings:?}: expected a deploy report, got {other:?}"),
    }
}

/// One request the loopback provider received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
}

/// An HTTP/1.1 server on 127.0.0.1 that records every request, then answers 200: a short
/// body for `/stream/...`, an empty one otherwise. A request is recorded before it is
/// answered, so whatever a call sent is in [`Provider::seen`] once the call returns.
struct Provider {
    url: String,
    seen: Mutex<mpsc::Receiver<Seen>>,
}

impl Provider {
    fn start() -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the loopback provider");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let tx = tx.clone();
                std::thread::spawn(move || serve(stream, &tx));
            }
        });
        Provider { url, seen: Mutex::new(rx) }
    }

    /// The requests received since the last call.
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().try_iter().collect()
    }
}

/// Serves one connection, recording each request in `tx`.
fn serve(stream: TcpStream, tx: &mpsc::Sender<Seen>) {
    common::loopback::serve(stream, |request| {
        let answer = if request.path.starts_with("/stream/") { "streamed body\n" } else { "" };
        let _ = tx.send(Seen { path: request.path, headers: request.headers });
        (None, answer.to_string())
    });
}

/// The paths of `seen` that start with `prefix`.
fn paths<'a>(seen: &'a [Seen], prefix: &str) -> Vec<&'a str> {
    seen.iter().map(|s| s.path.as_str()).filter(|p| p.starts_with(prefix)).collect()
}

/// Deploys `name` in `mode` against `provider`, with an empty checkout.
fn send(name: &str, provider: &Provider, mode: &str) -> String {
    let dir = tempdir();
    deploy(&RUNTIME, name, &[("api_url", &provider.url), ("mode", mode)], dir.path())
}

// ---------------------------------------------------------------------------------------
// The store: core instances, tables, memories, table elements (CLI, memory measured)
// ---------------------------------------------------------------------------------------

/// Measured `pier` runs take turns, so that two runs of a host that lets a bomb through
/// never add up on one machine.
static MEASURED: Mutex<()> = Mutex::new(());

/// `pier plugins inspect FILE` in a fresh home, measured.
fn inspect_measured(file: &Path) -> Measured {
    let home = tempdir();
    let _turn = MEASURED.lock().unwrap_or_else(|e| e.into_inner());
    common::pier_measured(home.path(), &["plugins", "inspect", &file.display().to_string()], &[])
}

/// `what` must have been stopped: peak resident memory under 1 GiB, a plugin fault
/// (exit 3) whose message contains `message`, and no host panic.
fn assert_stopped(what: &str, m: &Measured, message: &str) {
    let summary = format!(
        "{what}: exit {:?} (signal {:?}), peak resident memory {} MiB\nstderr:\n{}",
        m.code,
        m.signal,
        m.max_rss / MIB,
        m.stderr
    );
    assert!(m.max_rss < GIB, "peak resident memory over 1 GiB: {summary}");
    assert!(!m.stderr.contains("panicked"), "the host panicked: {summary}");
    assert_eq!(m.code, Some(3), "not a plugin fault: {summary}");
    assert!(m.stderr.contains(message), "the message does not contain {message:?}: {summary}");
}

/// `what` must have loaded and described: exit 0, the plugin's title shown, peak resident
/// memory under 1 GiB.
fn assert_loads(what: &str, m: &Measured, title: &str) {
    let summary = format!(
        "{what}: exit {:?} (signal {:?}), peak resident memory {} MiB\nstderr:\n{}",
        m.code,
        m.signal,
        m.max_rss / MIB,
        m.stderr
    );
    assert_eq!(m.code, Some(0), "{summary}");
    assert!(m.stdout.contains(title), "{summary}\nstdout:\n{}", m.stdout);
    assert!(m.max_rss < GIB, "{summary}");
}

/// `name` with `bomb` appended, inspected and measured.
fn inspect_bomb(name: &str, bomb: &Bomb) -> Measured {
    let dir = tempdir();
    let file = bomb::write(dir.path(), "bomb.wasm", name, bomb);
    let m = inspect_measured(&file);
    eprintln!(
        "{name} with {bomb:?} ({} MB of table): exit {:?}, peak resident memory {} MiB",
        bomb.table_bytes() / 1_000_000,
        m.code,
        m.max_rss / MIB
    );
    m
}

/// 40 instances of 100 tables of 100,000 elements, each filled by a start function:
/// 400 million entries, 3.2 GB written if instantiated.
const RSS_BOMB: Bomb = Bomb { instances: 40, tables: 100, elements: 100_000, memory_pages: 0, fill: true };

/// The benign twin: one extra instance of 2 tables of 1,000 elements.
const SMALL: Bomb = Bomb::tables(1, 2, 1_000);

#[test]
fn a_table_bomb_is_stopped_before_it_takes_memory() {
    let m = inspect_bomb("notify", &RSS_BOMB);
    assert_stopped("notify with a table bomb", &m, "limit");
}

#[test]
fn a_legacy_table_bomb_is_stopped_before_it_takes_memory() {
    let m = inspect_bomb("legacy-notify", &RSS_BOMB);
    assert_stopped("legacy-notify with a table bomb", &m, "limit");
}

#[test]
fn a_plugin_with_a_small_extra_module_still_loads() {
    assert_loads("notify with a small extra module", &inspect_bomb("notify", &SMALL), "Notify (notify)");
    assert_loads("legacy-notify with a small extra module", &inspect_bomb("legacy-notify", &SMALL), "(notify)");
}

#[test]
fn more_than_100_core_instances_are_refused() {
    // The plugin instantiates 3 core modules of its own: 103 in all.
    let m = inspect_bomb("notify", &Bomb::tables(100, 0, 0));
    assert_stopped("notify with 100 more core instances", &m, "limit");
    // The benign twin: 80 more, 83 in all.
    let m = inspect_bomb("notify", &Bomb::tables(80, 0, 0));
    assert_loads("notify with 80 more core instances", &m, "Notify (notify)");
}

#[test]
fn more_than_100_tables_are_refused() {
    // The plugin defines 2 tables of its own: 122 in all, of one element each.
    let m = inspect_bomb("notify", &Bomb::tables(2, 60, 1));
    assert_stopped("notify with 120 more tables", &m, "limit");
    // The benign twin: 62 in all.
    let m = inspect_bomb("notify", &Bomb::tables(1, 60, 1));
    assert_loads("notify with 60 more tables", &m, "Notify (notify)");
}

#[test]
fn more_than_10_memories_are_refused() {
    // The plugin defines 1 memory of its own: 11 in all, of one page each.
    let memories = |instances| Bomb { memory_pages: 1, ..Bomb::tables(instances, 0, 0) };
    let m = inspect_bomb("notify", &memories(10));
    assert_stopped("notify with 10 more memories", &m, "limit");
    // The benign twin: 5 in all.
    let m = inspect_bomb("notify", &memories(4));
    assert_loads("notify with 4 more memories", &m, "Notify (notify)");
}

#[test]
fn a_few_huge_tables_count_against_the_memory_limit() {
    // 8 tables of 10,000,000 elements: 640 MB of table, over the 512 MiB limit.
    let m = inspect_bomb("notify", &Bomb::tables(1, 8, 10_000_000));
    assert_stopped("notify with 640 MB of table", &m, "limit");
}

#[test]
fn tables_and_linear_memory_share_one_limit() {
    // 480 MB of table and 65.5 MB of linear memory: each under 512 MiB, together over.
    let shared = |tables| Bomb { memory_pages: 1_000, ..Bomb::tables(1, tables, 10_000_000) };
    let m = inspect_bomb("notify", &shared(6));
    assert_stopped("notify with 480 MB of table and 65.5 MB of memory", &m, "limit");
    // The benign twin: 160 MB of table and 65.5 MB of memory fit.
    let m = inspect_bomb("notify", &shared(2));
    assert_loads("notify with 160 MB of table and 65.5 MB of memory", &m, "Notify (notify)");
}

// ---------------------------------------------------------------------------------------
// describe: at most 1 MiB of text
// ---------------------------------------------------------------------------------------

/// Runs `pier conformance TARGET --json`: (exit code, failed check ids, reasons by id).
fn conformance(target: &str) -> (Option<i32>, Vec<String>, BTreeMap<String, String>) {
    let home = tempdir();
    let output = common::pier(home.path()).args(["conformance", target, "--json"]).output().expect("run pier");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    let checks = report["checks"].as_array().cloned().unwrap_or_default();
    let failed = checks.iter().filter(|c| c["status"] == "fail").map(|c| c["id"].as_str().unwrap().to_string());
    let reasons = checks.iter().map(|c| {
        (c["id"].as_str().unwrap_or_default().to_string(), c["reason"].as_str().unwrap_or_default().to_string())
    });
    (output.status.code(), failed.collect(), reasons.collect())
}

#[test]
fn a_description_over_1_mib_is_refused() {
    let m = inspect_measured(Path::new(plugin("conf-big-describe")));
    assert_stopped("conf-big-describe (a 2 MiB field help)", &m, "over the limit of 1 MiB");
    // The benign twin: the same plugin with a one-line help.
    assert_loads("notify", &inspect_measured(Path::new(plugin("notify"))), "Notify (notify)");
}

#[test]
fn the_conformance_runner_refuses_a_description_over_1_mib() {
    let (code, failed, reasons) = conformance(plugin("conf-big-describe"));
    assert_eq!(failed, ["describe.size"], "{reasons:#?}");
    assert_eq!(code, Some(3));
    let reason = &reasons["describe.size"];
    assert!(reason.contains("over the limit of 1 MiB"), "{reason}");
}

#[test]
fn the_conformance_runner_fails_only_the_resource_check_of_a_bomb() {
    let dir = tempdir();
    let file = bomb::write(dir.path(), "bomb.wasm", "notify", &Bomb::tables(100, 0, 0));
    let (code, failed, reasons) = conformance(file.to_str().unwrap());
    assert_eq!(failed, ["limits.resources"], "{reasons:#?}");
    assert_eq!(code, Some(3));
    assert!(reasons["limits.resources"].contains("instance count too high"), "{reasons:#?}");
    // The benign twin: a few more instances pass every check.
    let file = bomb::write(dir.path(), "small.wasm", "notify", &Bomb::tables(3, 2, 1_000));
    let (code, failed, reasons) = conformance(file.to_str().unwrap());
    assert!(failed.is_empty(), "{reasons:#?}");
    assert_eq!(code, Some(0));
}

/// What `conf-bad-program`'s program name would create, were a shell to run it.
const PWNED: &str = "/tmp/pier-conformance-pwned";

#[test]
fn a_program_named_with_shell_is_refused_and_never_run() {
    let _ = std::fs::remove_file(PWNED);
    let (code, failed, reasons) = conformance(plugin("conf-bad-program"));
    assert_eq!(failed, ["describe.programs"], "{reasons:#?}");
    assert_eq!(code, Some(3));
    assert!(reasons["describe.programs"].contains("must be plain"), "{reasons:#?}");

    let home = tempdir();
    run(common::pier(home.path()).arg("init"), 0);
    let (_, err) = run(common::pier(home.path()).args(["plugins", "inspect", plugin("conf-bad-program")]), 3);
    assert!(err.contains("must be a plain name"), "{err}");
    let before = std::fs::read_to_string(home.path().join("pier.toml")).unwrap();
    run(common::pier(home.path()).args(["plugins", "add", plugin("conf-bad-program"), "--yes"]), 3);
    assert_eq!(std::fs::read_to_string(home.path().join("pier.toml")).unwrap(), before, "nothing is installed");
    assert!(!Path::new(PWNED).exists(), "a shell ran the program's name: {PWNED} exists");
}

// ---------------------------------------------------------------------------------------
// http: headers per request
// ---------------------------------------------------------------------------------------

/// `OUTCOME; after: OUTCOME` split in two.
fn then_after(summary: &str) -> (&str, &str) {
    summary.split_once("; after: ").unwrap_or_else(|| panic!("not `OUTCOME; after: OUTCOME`: {summary}"))
}

/// Hostile `mode` of `name` must be an invalid request that sends nothing to `path`, and
/// the call must go on: its next request, and a later deploy, work.
fn assert_invalid_request(name: &str, mode: &str, path: &str) {
    let provider = Provider::start();
    let summary = send(name, &provider, mode);
    let (first, after) = then_after(&summary);
    let seen = provider.seen();
    assert!(first.starts_with("invalid-request: "), "{name} {mode}: not an invalid request: {summary}");
    assert!(paths(&seen, path).is_empty(), "{name} {mode}: the request was sent: {:?}", paths(&seen, path));
    assert_eq!(after, "ok 200", "{name} {mode}: the call's next request: {summary}");
    assert_eq!(paths(&seen, "/after"), ["/after"]);
    assert_eq!(send(name, &provider, "headers-100"), "ok 200; after: ok 200", "{name}: a later deploy");
}

/// The benign twins: 100 small headers, and one header of 60 KiB, are sent as they are.
fn assert_headers_sent(name: &str) {
    let provider = Provider::start();
    assert_eq!(send(name, &provider, "headers-100"), "ok 200; after: ok 200", "{name}");
    let seen = provider.seen();
    let request = seen.iter().find(|s| s.path == "/headers").unwrap_or_else(|| panic!("{name}: {seen:?}"));
    let ours: Vec<&(String, String)> = request.headers.iter().filter(|(n, _)| n.starts_with("x-h-")).collect();
    assert_eq!(ours.len(), 100, "{name}: {:?}", request.headers);
    assert!(ours.iter().any(|(n, v)| n == "x-h-99" && v == "v99"), "{name}: {ours:?}");

    assert_eq!(send(name, &provider, "header-60kib"), "ok 200; after: ok 200", "{name}");
    let seen = provider.seen();
    let request = seen.iter().find(|s| s.path == "/big").unwrap_or_else(|| panic!("{name}: {seen:?}"));
    let big = request.headers.iter().find(|(n, _)| n == "x-big").map(|(_, v)| v.len());
    assert_eq!(big, Some(60 << 10), "{name}");
}

#[test]
fn a_request_with_30000_headers_is_invalid() {
    assert_invalid_request("bounds", "headers-30000", "/headers");
}

#[test]
fn a_request_with_a_1_mib_header_is_invalid() {
    assert_invalid_request("bounds", "header-1mib", "/big");
}

#[test]
fn a_hundred_headers_or_one_of_60_kib_are_sent() {
    assert_headers_sent("bounds");
}

#[test]
fn a_legacy_request_with_30000_headers_is_invalid() {
    assert_invalid_request("legacy-bounds", "headers-30000", "/headers");
}

#[test]
fn a_legacy_request_with_a_1_mib_header_is_invalid() {
    assert_invalid_request("legacy-bounds", "header-1mib", "/big");
}

#[test]
fn a_legacy_plugin_may_send_a_hundred_headers_or_one_of_60_kib() {
    assert_headers_sent("legacy-bounds");
}

// ---------------------------------------------------------------------------------------
// http: open response streams per call
// ---------------------------------------------------------------------------------------

/// Hostile `streams-1000` of `name`: 16 streams open, the 17th denied with a message
/// naming 16, and exactly 16 requests sent.
fn assert_streams_bounded(name: &str) {
    let provider = Provider::start();
    let summary = send(name, &provider, "streams-1000");
    let sent = paths(&provider.seen(), "/stream/").len();
    let denial = summary
        .strip_prefix("opened 16; then denied: ")
        .unwrap_or_else(|| panic!("{name}: expected 16 streams, then a denial: {summary} ({sent} requests sent)"));
    assert!(denial.contains("16"), "{name}: the denial does not name the limit: {denial}");
    assert_eq!(sent, 16, "{name}: requests the provider received");
}

/// The benign twin: 16 streams, one dropped, another opened.
fn assert_stream_reopened(name: &str) {
    let provider = Provider::start();
    assert_eq!(send(name, &provider, "streams-16"), "opened 16; dropped one; reopened: ok 200", "{name}");
    let seen = provider.seen();
    assert_eq!(paths(&seen, "/stream/").len(), 17, "{name}");
    assert_eq!(paths(&seen, "/stream/again"), ["/stream/again"], "{name}");
}

#[test]
fn the_17th_open_stream_is_denied_without_a_request() {
    assert_streams_bounded("bounds");
}

#[test]
fn a_dropped_stream_makes_room_for_another() {
    assert_stream_reopened("bounds");
}

#[test]
fn a_legacy_plugin_gets_16_open_streams() {
    assert_streams_bounded("legacy-bounds");
}

#[test]
fn a_legacy_plugin_may_drop_a_stream_and_open_another() {
    assert_stream_reopened("legacy-bounds");
}

// ---------------------------------------------------------------------------------------
// workspace: live blobs per call
// ---------------------------------------------------------------------------------------

/// A checkout whose packed size is about 64 KiB (incompressible bytes), and that size.
fn checkout() -> (tempfile::TempDir, u64) {
    let dir = tempdir();
    std::fs::write(dir.path().join("README"), "a checkout to pack\n").unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..64 << 10)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(dir.path().join("noise.bin"), noise).unwrap();
    let size =
        pier::caps::workspace::pack(&common::workspace(dir.path()), u64::MAX).expect("pack the checkout").bytes.len()
            as u64;
    (dir, size)
}

/// Deploys `name` in `mode` with the [`checkout`] and a blob limit of `limit(SIZE)`.
/// Returns (summary, packed size, limit).
fn pack(name: &str, mode: &str, limit: impl Fn(u64) -> u64) -> (String, u64, u64) {
    let (dir, size) = checkout();
    let max_blob = limit(size);
    let summary = deploy(&runtime(max_blob), name, &[("api_url", "http://127.0.0.1:9"), ("mode", mode)], dir.path());
    (summary, size, max_blob)
}

/// Hostile `blobs-40` of `name` with room for 5½ blobs: 5 packs, then `too-large(LIMIT)`.
fn assert_blobs_bounded(name: &str) {
    let (summary, size, limit) = pack(name, "blobs-40", |size| 5 * size + size / 2);
    assert_eq!(summary, format!("packed 5; then too-large: {limit}"), "{name}: blobs of {size} bytes");
}

/// The benign twin, with room for 1½ blobs: packed, dropped, packed again.
fn assert_blob_freed(name: &str) {
    let (summary, size, _) = pack(name, "blob-again", |size| size + size / 2);
    assert_eq!(summary, format!("packed {size}; dropped it; packed {size}"), "{name}");
}

#[test]
fn live_blobs_share_the_blob_limit() {
    assert_blobs_bounded("bounds");
}

#[test]
fn a_dropped_blob_frees_its_bytes() {
    assert_blob_freed("bounds");
}

#[test]
fn legacy_live_blobs_share_the_blob_limit() {
    assert_blobs_bounded("legacy-bounds");
}

#[test]
fn a_legacy_dropped_blob_frees_its_bytes() {
    assert_blob_freed("legacy-bounds");
}

// ---------------------------------------------------------------------------------------
// The CLI: hostile input ends a call, never the process
// ---------------------------------------------------------------------------------------

/// The summary of `pier deploy --json`'s result line.
fn result_summary(out: &str) -> String {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["type"] == "result")
        .and_then(|l| l["data"]["summary"].as_str().map(String::from))
        .unwrap_or_else(|| panic!("no result summary: {out}"))
}

#[test]
fn hostile_requests_fail_the_request_not_pier() {
    let provider = Provider::start();
    let home = tempdir();
    let dir = home.path();
    run(common::pier(dir).arg("init"), 0);
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
    std::fs::copy(plugin("bounds"), dir.join("plugins/bounds.wasm")).unwrap();
    run(common::pier(dir).args(["plugins", "add", "plugins/bounds.wasm", "--yes"]), 0);
    common::commit_app(dir);
    let api = format!("api_url={}", provider.url);
    run(
        common::pier(dir)
            .args(["server", "add", "--method", "bounds", "--name", "B", "--strategy", "manual", "--set", &api])
            .args(["--set", "mode=headers-100"]),
        0,
    );
    for mode in ["header-1mib", "headers-30000", "streams-1000", "headers-100"] {
        run(common::pier(dir).args(["server", "edit", "b", "--set", &format!("mode={mode}")]), 0);
        let output = common::pier(dir).args(["deploy", "b", "--json"]).output().expect("run pier");
        let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(!err.contains("panicked"), "{mode}: the host panicked:\n{err}");
        assert_eq!(output.status.code(), Some(0), "{mode}:\n{out}\n{err}");
        let summary = result_summary(&out);
        match mode {
            "headers-100" => assert_eq!(summary, "ok 200; after: ok 200"),
            "streams-1000" => assert!(summary.starts_with("opened 16; then denied: "), "{mode}: {summary}"),
            _ => {
                let (first, after) = then_after(&summary);
                assert!(first.starts_with("invalid-request: "), "{mode}: {summary}");
                assert_eq!(after, "ok 200", "{mode}: {summary}");
            }
        }
    }
}
