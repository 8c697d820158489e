//! `pier conformance` through the real binary: plugins that follow the contract pass,
//! and each deliberately broken plugin fails exactly the checks it should.

mod common;

use std::collections::BTreeSet;

use common::{pier, plugin, run, tempdir};

/// Runs the conformance runner on `target` and returns (exit code, failed check ids, JSON).
fn conformance(target: &str, extra_env: &[(&str, &str)]) -> (i32, BTreeSet<String>, serde_json::Value) {
    let home = tempdir();
    let output =
        pier(home.path()).args(["conformance", target, "--json"]).envs(extra_env.iter().copied()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    let failed = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    (output.status.code().unwrap(), failed, report)
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_builtin_heroku_method_conforms() {
    let (code, failed, report) = conformance("heroku", &[]);
    assert_eq!((code, failed), (0, set(&[])), "{report:#}");
    assert_eq!(report["passed"], true);
}

#[test]
fn a_conformant_plugin_passes_and_writes_junit() {
    let home = tempdir();
    let junit = home.path().join("conformance.xml");
    let (out, _) = run(pier(home.path()).args(["conformance", plugin("notify"), "--junit"]).arg(&junit), 0);
    assert!(out.contains("21 checks: 18 passed, 0 failed, 3 skipped"), "{out}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"<testsuite name="notify 0.1.0" tests="21" skipped="3" errors="0" failures="0">"#), "{xml}");
    assert!(xml.contains(r#"<testcase name="deploy.provider-failure""#), "{xml}");
}

#[test]
fn a_conformant_legacy_plugin_still_passes() {
    let (code, failed, report) = conformance(plugin("legacy-notify"), &[]);
    assert_eq!((code, failed), (0, set(&[])), "{report:#}");
    assert_eq!(report["contract"], "0.1.0");
}

#[test]
fn each_broken_plugin_fails_exactly_its_checks() {
    let cases: &[(&str, &[&str])] = &[
        ("swallows-failure", &["deploy.provider-failure"]),
        ("sloppy-form", &["validate.rejects-missing", "setup.rejects-missing", "answers.rejects-invalid"]),
        ("stateful", &["calls.repeatable"]),
        ("forbidden-exec", &["permissions.exec"]),
        ("forbidden-http", &["validate.rejects-missing", "setup.rejects-missing", "permissions.http"]),
        ("conf-rewrite", &["commands.plan"]),
        ("conf-env", &["permissions.exec-env"]),
        ("conf-args", &["permissions.exec-args"]),
        ("conf-secret", &["secrets.bound"]),
        ("conf-controls", &["describe.inert"]),
        ("memory-bomb", &["limits.resources"]),
    ];
    for (name, expected) in cases {
        let (code, failed, report) = conformance(plugin(name), &[]);
        assert_eq!(failed, set(expected), "{name}: {report:#}");
        assert_eq!(code, 3, "{name}");
        for check in report["checks"].as_array().unwrap() {
            if check["status"] != "pass" {
                assert!(!check["reason"].as_str().unwrap_or_default().is_empty(), "{name}: {check}");
            }
        }
    }
}

#[test]
fn a_plugin_that_never_returns_fails_the_limits_check() {
    let (code, failed, report) = conformance(plugin("iloop"), &[("PIER_LIMIT_SECONDS", "1")]);
    assert_eq!((code, failed), (3, set(&["limits.default"])), "{report:#}");
    let reason =
        report["checks"].as_array().unwrap().iter().find(|c| c["id"] == "limits.default").unwrap()["reason"].clone();
    assert!(reason.as_str().unwrap().contains("ran past its time limit"), "{reason}");
}

#[test]
fn a_plugin_that_hangs_fails_within_the_timeout_and_shows_where() {
    let home = tempdir();
    let (out, err) = run(pier(home.path()).args(["conformance", plugin("iloop"), "--timeout", "1", "--json"]), 3);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let reason = report["checks"].as_array().unwrap().iter().find(|c| c["id"] == "limits.default").unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("ran past its time limit of 1s in `deploy`"), "{reason}");
    // Each call is named on stderr as it starts, so a hang shows where it is.
    for call in ["describe", "validate", "setup", "deploy"] {
        assert!(err.contains(&format!(": calling {call}\n")), "{call}: {err}");
    }
    let (_, err) = run(pier(home.path()).args(["conformance", plugin("iloop"), "--timeout", "0"]), 2);
    assert!(err.contains("--timeout"), "{err}");
}

/// The Heroku method's happy path, as the fake provider's script.
const HEROKU_RESPONSES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/conformance/heroku.json");

fn status(report: &serde_json::Value, id: &str) -> String {
    let check = report["checks"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap();
    check["status"].as_str().unwrap().to_string()
}

#[test]
fn scripted_responses_check_the_happy_path() {
    let (code, failed, report) = conformance("heroku", &[]);
    assert_eq!((code, failed), (0, set(&[])));
    assert_eq!(status(&report, "deploy.succeeds"), "skip", "no script, no happy path");

    let home = tempdir();
    let with = |file: &std::path::Path| {
        let out =
            pier(home.path()).args(["conformance", "heroku", "--json", "--responses"]).arg(file).output().unwrap();
        (out.status.code().unwrap(), serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap())
    };
    let (code, report) = with(std::path::Path::new(HEROKU_RESPONSES));
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(status(&report, "deploy.succeeds"), "pass", "{report:#}");

    // The failing twin: the same script with a build that fails.
    let text = std::fs::read_to_string(HEROKU_RESPONSES).unwrap().replace(
        r#""status": "succeeded", "output_stream_url": null, "release": { "id": "release-2" }"#,
        r#""status": "failed", "output_stream_url": null, "release": null"#,
    );
    assert!(text.contains(r#""status": "failed""#), "the script still has its build");
    let failing = home.path().join("failing.json");
    std::fs::write(&failing, text).unwrap();
    let (code, report) = with(&failing);
    assert_eq!(code, 3, "{report:#}");
    assert_eq!(status(&report, "deploy.succeeds"), "fail", "{report:#}");

    // A file that is not a script is bad input, named.
    std::fs::write(home.path().join("bad.json"), r#"{"responses": [{"method": "GET"}]}"#).unwrap();
    let (_, err) =
        run(pier(home.path()).args(["conformance", "heroku", "--responses", "bad.json"]).current_dir(home.path()), 2);
    assert!(err.contains("--responses bad.json") && err.contains("missing field `path`"), "{err}");
}

#[test]
fn a_file_that_is_not_a_plugin_is_bad_input_not_a_failed_check() {
    let home = tempdir();
    std::fs::write(home.path().join("x.wasm"), "nope").unwrap();
    let (_, err) = run(pier(home.path()).args(["conformance", "x.wasm"]), 2);
    assert!(err.contains("is not a WebAssembly file"), "{err}");
}

#[test]
fn every_request_goes_to_the_fake_provider_whatever_its_origin() {
    // conf-origin reports to https://collector.pier.invalid, a name that never resolves,
    // and traps unless an answer comes back: it passes only if that request was diverted.
    let (code, failed, report) = conformance(plugin("conf-origin"), &[]);
    assert_eq!((code, failed), (0, set(&[])), "{report:#}");
}
