//! Runtime benchmarks: `cargo bench -p pier --bench runtime`.
//!
//! A plain harness (no framework): each case runs a warm-up, then timed iterations, and
//! prints the median and the 10th/90th percentiles. Figures go in BENCHMARKS.md.
//!
//! `PIER_BENCH_PLUGIN=path/to/large.wasm` adds cold loads of that component with each
//! compiler, and its `describe` under each (a componentize-py or componentize-js plugin).
//! `PIER_BENCH_ONLY=TEXT` runs only the cases whose name contains TEXT.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pier::caps::Grant;
use pier::caps::secrets::Vault;
use pier::runtime::bindings::Trigger;
use pier::runtime::{Answer, BuildInfo, CallEnv, Compilation, Context, Limits, Runtime};

fn measure(name: &str, iterations: usize, mut run: impl FnMut() -> Duration) {
    if !wanted(name) {
        return;
    }
    for _ in 0..iterations.div_ceil(10).max(1) {
        run();
    }
    let mut times: Vec<Duration> = (0..iterations).map(|_| run()).collect();
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "{name:<44} median {:>12.3?}   p10 {:>12.3?}   p90 {:>12.3?}   (n={iterations})",
        at(0.5),
        at(0.1),
        at(0.9)
    );
}

/// Whether the case `name` runs: `PIER_BENCH_ONLY=TEXT` runs only those whose name
/// contains TEXT.
fn wanted(name: &str) -> bool {
    std::env::var("PIER_BENCH_ONLY").map_or(true, |only| name.contains(&only))
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn main() {
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let plugin_path = Path::new(pier_test_plugin_artifacts::EVERYTHING);
    let cache = tempfile::tempdir().unwrap();
    let uncached = |compilation| Runtime::new(Limits::default(), None).unwrap().with_compilation(compilation);
    let (cranelift, winch) = (uncached(Compilation::Optimized), uncached(Compilation::Baseline));
    let cached = Runtime::new(Limits::default(), Some(cache.path().to_path_buf())).unwrap();
    // The first load compiles with Winch and optimises in the background: wait for it, so
    // that the loads below are of the Cranelift artifact.
    cached.load_file(plugin_path).unwrap();
    cached.finish_background();
    assert_eq!(cached.load_file(plugin_path).unwrap().file().compiler, "cranelift");
    let size = std::fs::metadata(plugin_path).unwrap().len();

    measure(&format!("load, cold compile, Cranelift ({} KiB component)", size >> 10), 20, || {
        timed(|| drop(cranelift.load_file(plugin_path).unwrap()))
    });
    measure(&format!("load, cold compile, Winch ({} KiB component)", size >> 10), 20, || {
        timed(|| drop(winch.load_file(plugin_path).unwrap()))
    });
    measure("load, from the on-disk cache", 200, || timed(|| drop(cached.load_file(plugin_path).unwrap())));
    measure("load, built-in heroku (embedded artifact)", 200, || {
        timed(|| drop(cached.load_builtin("heroku").unwrap()))
    });

    let plugin = cached.load_file(plugin_path).unwrap();
    measure("instantiate + describe", 2000, || timed(|| drop(tokio.block_on(plugin.describe(&cached)).unwrap())));
    let baseline = winch.load_file(plugin_path).unwrap();
    measure("instantiate + describe, Winch", 2000, || {
        timed(|| drop(tokio.block_on(baseline.describe(&winch)).unwrap()))
    });

    if let Some(large) = std::env::var_os("PIER_BENCH_PLUGIN") {
        let large = Path::new(&large);
        let mb = std::fs::metadata(large).unwrap().len() as f64 / 1e6;
        for (name, runtime) in [("Cranelift", &cranelift), ("Winch", &winch)] {
            measure(&format!("load, cold compile, {name} ({mb:.1} MB)"), 3, || {
                timed(|| drop(runtime.load_file(large).unwrap()))
            });
            let case = format!("instantiate + describe, {name} ({mb:.1} MB)");
            if !wanted(&case) {
                continue;
            }
            let plugin = runtime.load_file(large).unwrap();
            measure(&case, 50, || timed(|| drop(tokio.block_on(plugin.describe(runtime)).unwrap())));
        }
    }

    if !wanted("guest -> host round trip") {
        return;
    }
    let calls_plugin = cached.load_file(Path::new(pier_test_plugin_artifacts::HOST_CALLS)).unwrap();
    let description = tokio.block_on(calls_plugin.describe(&cached)).unwrap();
    let (grant, endpoints) = Grant::for_call(&description.permissions, &Default::default(), &|_| None).unwrap();
    let env = CallEnv::new(grant, Arc::new(Vault::new()), Arc::new(pier::caps::events::NullSink));
    let ctx = Context { endpoints, server: "bench".into() };
    let build = BuildInfo {
        deploy_id: "bench".into(),
        commit: "0".repeat(40),
        branch: "main".into(),
        build_id: None,
        trigger: Trigger::Manual,
    };
    let deploy_with = |calls: u64| {
        let settings = [Answer { field: "calls".into(), value: calls.to_string() }];
        timed(|| drop(tokio.block_on(calls_plugin.deploy(&cached, &env, &ctx, &settings, &build)).unwrap().unwrap()))
    };
    const CALLS: u64 = 100_000;
    let mut per_call = Vec::new();
    for _ in 0..20 {
        let many = deploy_with(CALLS);
        let one = deploy_with(0);
        per_call.push(many.saturating_sub(one) / CALLS as u32);
    }
    per_call.sort();
    println!(
        "{:<44} median {:>12.3?}   (one host call, from {CALLS} calls per deploy)",
        "guest -> host round trip", per_call[10]
    );
}
