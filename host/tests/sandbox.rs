//! Hostile and misbehaving plugins, all run in one process: each gets its exact outcome
//! and the host goes on serving calls.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pier::caps::Grant;
use pier::caps::events::{Event, MemorySink};
use pier::caps::secrets::Vault;
use pier::runtime::{
    BuildInfo, CallEnv, CallError, Compilation, Context, Limits, MethodError, Plugin, PluginFault, Runtime,
};
use secrecy::SecretString;

fn runtime() -> Runtime {
    let limits = Limits { max_memory: 64 << 20, deploy_time: Duration::from_secs(1), ..Limits::default() };
    Runtime::new(limits, Some(common::cache_dir())).unwrap()
}

/// The same limits, compiling with exactly one compiler.
fn runtime_compiled_by(compilation: Compilation) -> Runtime {
    runtime().with_compilation(compilation)
}

fn load(runtime: &Runtime, name: &str) -> Plugin {
    runtime.load_file(Path::new(common::plugin(name))).unwrap()
}

fn build() -> BuildInfo {
    BuildInfo {
        deploy_id: "d-1".into(),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        branch: "main".into(),
        build_id: Some("42".into()),
        trigger: pier::runtime::bindings::Trigger::Manual,
    }
}

/// The grant a plugin's own permissions give, with `values` as its settings.
async fn env_for(
    runtime: &Runtime,
    plugin: &Plugin,
    values: &[(&str, &str)],
    vault: Arc<Vault>,
) -> (CallEnv, Context, Arc<MemorySink>) {
    let description = plugin.describe(runtime).await.unwrap();
    let values = values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (grant, endpoints) = Grant::for_call(&description.permissions, &values, &|_| None).unwrap();
    let sink = Arc::new(MemorySink::default());
    let env = CallEnv::new(grant, vault, sink.clone());
    (env, Context { endpoints, server: "test".into() }, sink)
}

async fn deploy(
    runtime: &Runtime,
    name: &str,
) -> (Result<Result<pier::runtime::DeployReport, MethodError>, CallError>, Arc<MemorySink>) {
    let plugin = load(runtime, name);
    let expected = match runtime.compilation() {
        Compilation::Baseline => "winch",
        Compilation::Optimized => "cranelift",
        Compilation::Tiered => plugin.file().compiler,
    };
    assert_eq!(plugin.file().compiler, expected, "{name} ran as compiled by {expected}");
    let vault = Arc::new(Vault::new());
    vault.insert("api_key", SecretString::from("sk-live-0123456789abcdef"));
    let (env, ctx, sink) = env_for(runtime, &plugin, &[("api_url", "http://127.0.0.1:9")], vault).await;
    (plugin.deploy(runtime, &env, &ctx, &[], &build()).await, sink)
}

fn fault<T: std::fmt::Debug>(result: Result<Result<T, MethodError>, CallError>) -> PluginFault {
    match result {
        Err(CallError::Fault(fault)) => fault,
        other => panic!("expected a plugin fault, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn hostile_plugins_compiled_by_cranelift_get_exact_outcomes_and_the_host_survives_them_all() {
    hostile_plugins_get_exact_outcomes(runtime_compiled_by(Compilation::Optimized)).await;
}

/// The baseline compiler a first load uses is held by the same epoch deadline, memory,
/// stack and resource limits.
#[tokio::test(flavor = "current_thread")]
async fn hostile_plugins_compiled_by_winch_get_exact_outcomes_and_the_host_survives_them_all() {
    hostile_plugins_get_exact_outcomes(runtime_compiled_by(Compilation::Baseline)).await;
}

async fn hostile_plugins_get_exact_outcomes(runtime: Runtime) {
    // An endless loop is stopped at the wall-clock limit, and while it runs, the host
    // serves another call on the same thread.
    let started = Instant::now();
    let everything = load(&runtime, "everything");
    let (looped, described) = tokio::join!(deploy(&runtime, "iloop"), everything.describe(&runtime));
    assert_eq!(described.unwrap().name, "everything");
    match fault(looped.0) {
        PluginFault::TimeLimit { export: "deploy", limit, .. } => assert_eq!(limit, Duration::from_secs(1)),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "the loop was not stopped in time");

    match fault(deploy(&runtime, "memory-bomb").await.0) {
        PluginFault::MemoryLimit { export: "deploy", limit, .. } => assert_eq!(limit, 64 << 20),
        other => panic!("{other:?}"),
    }

    let recursion = fault(deploy(&runtime, "deep-recursion").await.0);
    assert!(matches!(recursion, PluginFault::StackOverflow { export: "deploy", .. }), "{recursion:?}");

    match fault(deploy(&runtime, "panics").await.0) {
        PluginFault::Trap { message, .. } => assert!(message.contains("the plugin gave up: 0 settings"), "{message}"),
        other => panic!("{other:?}"),
    }
    // A trap with no Rust panic (an uncaught Python exception) shows what the plugin
    // printed last, and its log has all of it at debug level.
    let plugin = load(&runtime, "panics");
    let (env, ctx, sink) = env_for(&runtime, &plugin, &[], Arc::new(Vault::new())).await;
    let request =
        pier::runtime::RunRequest { command: vec![], env: vec![], size: None, process_type: None, tty: false };
    match fault(plugin.run(&runtime, &env, &ctx, &[], &request).await) {
        PluginFault::Trap { message, export: "run", .. } => {
            assert!(message.contains("it printed last:"), "{message}");
            assert!(message.ends_with("ZeroDivisionError: division by zero"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let logged: Vec<String> = sink
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Log { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert!(logged.iter().any(|m| m.ends_with("printed: Traceback (most recent call last):")), "{logged:?}");

    // Denials are typed errors the plugin handles, not traps.
    match deploy(&runtime, "forbidden-http").await.0 {
        Ok(Err(MethodError::Denied(message))) => {
            assert_eq!(message, "http://127.0.0.2:9 is not granted to this plugin (granted: http://127.0.0.1:9)")
        }
        other => panic!("{other:?}"),
    }
    match deploy(&runtime, "forbidden-exec").await.0 {
        Ok(Err(MethodError::Denied(message))) => assert_eq!(message, "sh and /bin/sh were both denied"),
        other => panic!("{other:?}"),
    }

    // A secret the plugin pushes through a program's output, captured or streamed, raw or
    // base64-encoded, reaches neither the log nor the plugin.
    let (leaked, sink) = deploy(&runtime, "leak-secret").await;
    let failure = match leaked {
        Ok(Err(MethodError::DeployFailed(failure))) => failure,
        other => panic!("{other:?}"),
    };
    let everything_said = format!("{failure:?} {:?}", sink.events());
    assert!(!everything_said.contains("sk-live-0123456789abcdef"), "{everything_said}");
    assert!(!everything_said.contains("c2stbGl2ZS0wMTIzNDU2Nzg5YWJjZGVm"), "{everything_said}");
    assert!(failure.reason.contains("plain [redacted]"), "{}", failure.reason);
    assert!(sink.events().contains(&Event::Output { line: "on stderr [redacted]".into() }), "{:?}", sink.events());

    // After all of that, the same runtime still serves calls.
    assert_eq!(load(&runtime, "everything").describe(&runtime).await.unwrap().name, "everything");
}

/// More calls at once than the instance pool holds: the calls beyond it are allocated on
/// demand and stopped by the same deadline, and while the pool is full the host still
/// serves a describe.
#[tokio::test(flavor = "current_thread")]
async fn calls_beyond_the_instance_pool_get_the_same_outcomes() {
    let runtime = runtime();
    let everything = load(&runtime, "everything");
    let calls = pier::runtime::pool::INSTANCES as usize + 4;
    let started = Instant::now();
    let loops = futures_util::future::join_all((0..calls).map(|_| deploy(&runtime, "iloop")));
    let (looped, described) = tokio::join!(loops, everything.describe(&runtime));
    assert_eq!(described.unwrap().name, "everything");
    for (i, (result, _)) in looped.into_iter().enumerate() {
        match fault(result) {
            PluginFault::TimeLimit { export: "deploy", limit, .. } => assert_eq!(limit, Duration::from_secs(1)),
            other => panic!("call {i} of {calls}: {other:?}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(20), "the loops were not stopped in time");
    // The benign twin: the pool serves calls again once they have ended.
    assert_eq!(load(&runtime, "everything").describe(&runtime).await.unwrap().name, "everything");
}

/// A freed instance slot is reset before the next call takes it: what one deploy left in
/// memory is not there for the next, though the plugin reads all of its memory.
#[tokio::test(flavor = "current_thread")]
async fn a_call_never_sees_what_an_earlier_call_left_in_memory() {
    for compilation in [Compilation::Optimized, Compilation::Baseline] {
        let runtime = runtime_compiled_by(compilation);
        let plugin = load(&runtime, "remembers");
        let (env, ctx, _) = env_for(&runtime, &plugin, &[], Arc::new(Vault::new())).await;
        let mut reports = Vec::new();
        for commit in ["a", "b", "c"] {
            let build = BuildInfo { commit: commit.repeat(40), ..build() };
            let report = plugin.deploy(&runtime, &env, &ctx, &[], &build).await.unwrap().unwrap();
            reports.push(report.summary);
        }
        // Each call finds the commit it left (the search works), and no other.
        assert_eq!(reports, ["own=true earlier=", "own=true earlier=", "own=true earlier="], "{compilation:?}");
    }
}

/// After a plugin's first instance, `describe` no longer has every export's type checked
/// again (the check is made once, by the first instance): every test plugin gets the same
/// outcome from its first `describe` as from the ones after it, and a plugin whose
/// `describe` is not typed as the contract types it is refused every time, never read.
#[tokio::test(flavor = "current_thread")]
async fn describe_has_one_outcome_however_often_it_is_called() {
    let runtime = runtime();
    let mut described = 0;
    for (name, path) in pier_test_plugin_artifacts::ALL {
        let Ok(plugin) = runtime.load_file(Path::new(path)) else { continue };
        let first = format!("{:?}", plugin.describe_unchecked(&runtime).await);
        described += usize::from(first.starts_with("Ok("));
        for call in 2..=3 {
            let again = format!("{:?}", plugin.describe_unchecked(&runtime).await);
            assert_eq!(again, first, "{name}: call {call} of describe differs from the first");
        }
    }
    assert!(described > 20, "only {described} test plugins described themselves");
    for compilation in [Compilation::Optimized, Compilation::Baseline] {
        let runtime = runtime_compiled_by(compilation);
        let plugin = load(&runtime, "mistyped");
        for call in 1..=3 {
            match plugin.describe(&runtime).await {
                Err(CallError::Fault(PluginFault::Contract { export: "describe", message, .. })) => assert_eq!(
                    message,
                    "its exports do not have the types contract 0.3.0 gives them (failed to convert function to \
                     given type: type mismatch with results: expected `record` found `string`)",
                    "call {call}"
                ),
                other => panic!("{compilation:?}, call {call}: {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn describe_runs_with_nothing_granted() {
    let runtime = runtime();
    let plugin = load(&runtime, "forbidden-http");
    let description = plugin.describe(&runtime).await.unwrap();
    assert_eq!(description.permissions.endpoints[0].id, "api");
}

fn account(email: &str, api_key: &str) -> fake_heroku::SeedAccount {
    fake_heroku::SeedAccount { email: email.into(), api_key: api_key.into(), ..Default::default() }
}

#[tokio::test(flavor = "current_thread")]
async fn a_well_behaved_plugin_uses_every_capability() {
    let api_key = "fake-api-key-for-everything-0001";
    let fake =
        fake_heroku::FakeHeroku::start(fake_heroku::Seed { accounts: vec![account("ada@example.com", api_key)] })
            .unwrap();
    let limits = Limits { deploy_time: Duration::from_secs(30), ..Limits::default() };
    let runtime = Runtime::new(limits, Some(common::cache_dir())).unwrap();
    let plugin = load(&runtime, "everything");
    let vault = Arc::new(Vault::new());
    vault.insert("api_key", SecretString::from(api_key));
    let checkout = common::tempdir();
    std::fs::write(checkout.path().join("Procfile"), "web: python app.py").unwrap();
    std::fs::write(checkout.path().join("app.py"), "print('hello')").unwrap();
    let (mut env, ctx, sink) = env_for(&runtime, &plugin, &[("api_url", &fake.url())], vault.clone()).await;
    env.workspace = Some(common::workspace(checkout.path()));

    let report = plugin.deploy(&runtime, &env, &ctx, &[], &build()).await.unwrap().unwrap();
    let seen: serde_json::Value = serde_json::from_str(&report.summary).unwrap();

    // secrets: handles only.
    assert_eq!(seen["handles"], serde_json::json!(["api_key"]));
    // http: the handle in the header authenticated; without it the API refused.
    assert_eq!(seen["account"]["status"], 200);
    assert_eq!(seen["account"]["email"], "ada@example.com");
    assert_eq!(seen["anonymous_status"], 401);
    assert_eq!(seen["streamed"]["status"], 200);
    assert!(seen["streamed"]["bytes"].as_u64().unwrap() > 10);
    // keys: an OpenSSH ed25519 public key; the private key stayed in the host's vault.
    assert!(seen["key"]["public"].as_str().unwrap().starts_with("ssh-ed25519 AAAA"));
    assert_eq!(seen["key"]["same"], true);
    assert_eq!(seen["key"]["duplicate_refused"], true);
    assert!(vault.contains("deploy_key"));
    // exec: in the checkout, with the plugin's variable, and a private key file only the
    // owner can read, named by PIER_SSH_KEY and used by GIT_SSH_COMMAND. The environment
    // holds what the host composed and nothing of the test's own.
    assert_eq!(seen["exec_workspace"]["code"], 0);
    assert_eq!(seen["exec_workspace"]["stdout"], "hello from the plugin\nProcfile\napp.py\n");
    let with_key = seen["exec_key"]["stdout"].as_str().unwrap();
    assert!(with_key.starts_with("600\nok\n"), "{with_key}");
    let vars: Vec<&str> = with_key.lines().nth(2).unwrap().split_whitespace().collect();
    for var in &vars {
        assert!(
            ["GIT_SSH_COMMAND", "HOME", "LANG", "PATH", "PIER_SSH_KEY", "PWD", "SHLVL", "TMPDIR", "_", "OLDPWD"]
                .contains(var),
            "unexpected variable {var} in {vars:?}"
        );
    }
    // workspace: packed without .git and uploaded by the host.
    assert_eq!(seen["upload"]["status"], 200);
    let get_url = seen["upload"]["get_url"].as_str().unwrap();
    let blob_id = get_url.rsplit('/').next().unwrap().split('?').next().unwrap();
    let uploaded = fake.blob(blob_id).expect("blob uploaded");
    assert_eq!(uploaded.len() as u64, seen["blob"]["size"].as_u64().unwrap());
    assert_eq!(common::tar_names(&uploaded), ["Procfile", "app.py"]);
    // events: steps, logs and output lines joined across writes.
    let events = sink.events();
    assert!(events.contains(&Event::Step { title: "Everything".into() }));
    assert!(events.contains(&Event::Output { line: "second line".into() }), "{events:?}");
    // The API key went only where its handle was used.
    assert!(!format!("{events:?} {report:?}").contains(api_key));
    fake_heroku::schema::check_all(&fake.requests()).unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn host_calls_return_to_the_guest() {
    let runtime = runtime();
    let plugin = load(&runtime, "host-calls");
    let vault = Arc::new(Vault::new());
    vault.insert("one", SecretString::from("first-secret-value"));
    vault.insert("two", SecretString::from("second-secret-value"));
    let (env, ctx, _) = env_for(&runtime, &plugin, &[], vault).await;
    let settings = [pier::runtime::Answer { field: "calls".into(), value: "1000".into() }];
    let report = plugin.deploy(&runtime, &env, &ctx, &settings, &build()).await.unwrap().unwrap();
    assert_eq!(report.summary, "1000 calls, 2000 handles");
}

#[tokio::test(flavor = "current_thread")]
async fn the_artifact_cache_is_keyed_by_content_and_compiler_and_survives_corruption() {
    use pier::runtime::CacheOutcome;
    let cache = common::tempdir();
    let runtime = Runtime::new(Limits::default(), Some(cache.path().to_path_buf())).unwrap();
    let dir = common::tempdir();
    let path = dir.path().join("plugin.wasm");
    let artifacts = || {
        let mut names: Vec<String> =
            std::fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    };

    // The first load compiles with Winch and runs at once; Cranelift follows in the
    // background, and once its artifact is stored, loads use it.
    std::fs::copy(common::plugin("iloop"), &path).unwrap();
    let first = runtime.load_file(&path).unwrap();
    assert_eq!((first.file().cache, first.file().compiler), (CacheOutcome::Compiled, "winch"));
    assert_eq!(first.describe(&runtime).await.unwrap().name, "iloop");
    runtime.finish_background();
    let later = runtime.load_file(&path).unwrap();
    assert_eq!((later.file().cache, later.file().compiler), (CacheOutcome::Hit, "cranelift"));
    assert_eq!(later.describe(&runtime).await.unwrap().name, "iloop");
    let stored = artifacts();
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(stored.iter().any(|n| n.contains("-cranelift-")) && stored.iter().any(|n| n.contains("-winch-")));

    // Each compiler finds only its own artifact: Winch is served the Winch artifact, and
    // with only that one in the cache, Cranelift compiles.
    let winch = Runtime::new(Limits::default(), Some(cache.path().to_path_buf()))
        .unwrap()
        .with_compilation(Compilation::Baseline);
    let baseline = winch.load_file(&path).unwrap();
    assert_eq!((baseline.file().cache, baseline.file().compiler), (CacheOutcome::Hit, "winch"));
    for name in stored.iter().filter(|n| n.contains("-cranelift-")) {
        std::fs::remove_file(cache.path().join(name)).unwrap();
    }
    let cranelift = Runtime::new(Limits::default(), Some(cache.path().to_path_buf()))
        .unwrap()
        .with_compilation(Compilation::Optimized);
    let optimized = cranelift.load_file(&path).unwrap();
    assert_eq!((optimized.file().cache, optimized.file().compiler), (CacheOutcome::Compiled, "cranelift"));
    cranelift.finish_background();
    assert_eq!(artifacts(), stored, "the same two artifacts, one per compiler");

    // The same path with other contents is never served the old artifact.
    std::fs::copy(common::plugin("panics"), &path).unwrap();
    let changed = cranelift.load_file(&path).unwrap();
    assert_eq!(changed.file().cache, CacheOutcome::Compiled);
    assert_eq!(changed.describe(&cranelift).await.unwrap().name, "panics");

    // A corrupt artifact is compiled again and replaced. (Loaded artifacts are mapped
    // from their files, which the cache only ever replaces by renaming: drop them before
    // writing over the files in place.)
    drop((first, later, baseline, optimized, changed));
    cranelift.finish_background();
    let all = artifacts();
    assert_eq!(all.len(), 3, "{all:?}");
    for artifact in &all {
        std::fs::write(cache.path().join(artifact), b"not an artifact").unwrap();
    }
    let again = cranelift.load_file(&path).unwrap();
    assert_eq!(again.file().cache, CacheOutcome::Compiled);
    assert_eq!(again.describe(&cranelift).await.unwrap().name, "panics");
    assert_eq!(cranelift.load_file(&path).unwrap().file().cache, CacheOutcome::Hit);
}

#[tokio::test(flavor = "current_thread")]
async fn a_plugin_winch_cannot_compile_is_compiled_by_cranelift_at_once() {
    let component = std::fs::read(common::plugin("notify")).unwrap();
    let dir = common::tempdir();
    let path = dir.path().join("tail-call.wasm");
    std::fs::write(&path, common::bomb::with_tail_call(&component)).unwrap();

    let tiered = Runtime::new(Limits::default(), None).unwrap();
    let plugin = tiered.load_file(&path).unwrap();
    assert_eq!(plugin.file().compiler, "cranelift");
    assert_eq!(plugin.describe(&tiered).await.unwrap().name, "notify");
    // Winch alone refuses it, naming why.
    let winch = Runtime::new(Limits::default(), None).unwrap().with_compilation(Compilation::Baseline);
    let error = winch.load_file(&path).err().expect("Winch cannot compile a tail call");
    assert!(matches!(error.kind, pier::runtime::LoadErrorKind::Invalid(_)), "{error}");
    assert!(error.to_string().contains("tail call"), "{error}");
    // Its benign twin, the plugin as built, is compiled by Winch.
    let plugin = tiered.load_file(Path::new(common::plugin("notify"))).unwrap();
    assert_eq!(plugin.file().compiler, "winch");
}

#[test]
fn compiling_past_the_compile_time_limit_gives_up() {
    // No cache, so the plugin must compile; no time at all, so it cannot finish in time.
    let limits = Limits { compile_time: Duration::ZERO, ..Limits::default() };
    let runtime = Runtime::new(limits, None).unwrap();
    let error = runtime.load_file(Path::new(common::plugin("notify"))).err().expect("the load gives up");
    assert!(matches!(error.kind, pier::runtime::LoadErrorKind::CompileTime { .. }), "{error}");
    assert!(error.to_string().contains("to compile"), "{error}");
    // The same plugin within the default limit loads.
    let runtime = Runtime::new(Limits::default(), None).unwrap();
    runtime.load_file(Path::new(common::plugin("notify"))).expect("loads within the limit");
}
