//! The Python and JavaScript templates through the real binary: `pier plugins new --lang
//! python|js`, the build the generated README gives (componentize-py, componentize-js),
//! `pier conformance` with and without the template's scripted responses, and a Python
//! and a JavaScript plugin whose deploy waits with the SDK's `poll` and then raises: the
//! exception's name and message reach `pier deploy`'s output.
//!
//! The toolchains are installed by `tests/run` (or `tests/run --install`) under the target
//! directory, `tools/venv` (componentize-py) and `tools/node/node_modules`
//! (componentize-js); `PATH` and `PIER_TEST_NODE_MODULES` may point elsewhere. A build is
//! kept under `CARGO_TARGET_TMPDIR/language-plugins`, keyed by a digest of the project's
//! files and the toolchain, so each component builds once until its sources change.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Project, run};
use sha2::{Digest as _, Sha256};

/// Held by each test: each builds a component and compiles it on its first load, work that
/// already uses every core, so two at once only make each slower (and nearer the compile
/// time limit).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where `tests/run --install` puts the toolchains: `tools` in the target directory.
fn tools() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("the target directory").join("tools")
}

fn missing(what: &str) -> ! {
    panic!(
        "{what}: run `tests/run --install` (it installs componentize-py into {venv} and componentize-js into {node})",
        venv = tools().join("venv").display(),
        node = tools().join("node/node_modules").display(),
    )
}

/// The directory holding `componentize-py`: the one `tests/run --install` made, else on `PATH`.
fn componentize_py() -> PathBuf {
    let venv = tools().join("venv/bin");
    if venv.join("componentize-py").is_file() {
        return venv;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|d| d.join("componentize-py").is_file())
        .unwrap_or_else(|| missing("componentize-py is not installed"))
}

/// The `node_modules` holding componentize-js: `PIER_TEST_NODE_MODULES`, else the one
/// `tests/run --install` made.
fn node_modules() -> PathBuf {
    let dir =
        std::env::var_os("PIER_TEST_NODE_MODULES").map_or_else(|| tools().join("node/node_modules"), PathBuf::from);
    if !dir.join("@bytecodealliance/componentize-js/package.json").is_file() {
        missing(&format!("componentize-js is not installed in {}", dir.display()));
    }
    if Command::new("node").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        missing("node is not on PATH (the JavaScript template builds with Node.js 20 or later)");
    }
    dir
}

/// `pier plugins new NAME --lang LANG` in a fresh directory; returns it and the project.
fn new_project(name: &str, lang: &str) -> (tempfile::TempDir, PathBuf) {
    let work = common::tempdir();
    let (out, _) = run(common::pier(work.path()).args(["plugins", "new", name, "--lang", lang]), 0);
    assert!(out.starts_with(&format!("created plugin `{name}` in {name}")), "{out}");
    let project = work.path().join(name);
    (work, project)
}

/// A digest of the files under `dir` that the build reads (paths and contents) and of
/// `extra`.
fn digest(dir: &Path, extra: &str) -> String {
    fn walk(dir: &Path, base: &Path, files: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).expect("read the project") {
            let path = entry.expect("a directory entry").path();
            // What the build does not read.
            if path
                .file_name()
                .is_some_and(|n| ["node_modules", "README.md", "conformance.json"].iter().any(|x| n == *x))
            {
                continue;
            }
            if path.is_dir() {
                walk(&path, base, files);
            } else {
                let name = path.strip_prefix(base).expect("under the project").display().to_string();
                files.push((name, std::fs::read(&path).expect("read a project file")));
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    files.sort();
    let mut hash = Sha256::new();
    for (name, bytes) in &files {
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    }
    hash.update(extra.as_bytes());
    hex::encode(&hash.finalize()[..12])
}

/// Builds `project` (of method `name`) with `command` unless a build of the same files is
/// cached, and returns the component's path in the cache.
fn build(project: &Path, name: &str, toolchain: &str, command: &mut Command) -> PathBuf {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("language-plugins");
    std::fs::create_dir_all(&cache).expect("create the build cache");
    let cached = cache.join(format!("{name}-{}.wasm", digest(project, toolchain)));
    if cached.is_file() {
        return cached;
    }
    let started = std::time::Instant::now();
    let out = command.current_dir(project).output().expect("run the build");
    assert!(
        out.status.success(),
        "building {name} failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let built = project.join(format!("{name}.wasm"));
    let size = std::fs::metadata(&built).expect("the build wrote NAME.wasm").len();
    eprintln!("built {name}.wasm ({size} bytes) in {:.1} s", started.elapsed().as_secs_f64());
    // Copied, then renamed into place: a concurrent test run never sees half a file.
    let partial = cache.join(format!("{name}.{}.partial", std::process::id()));
    std::fs::copy(&built, &partial).expect("copy the component");
    std::fs::rename(&partial, &cached).expect("cache the component");
    // Builds of older sources of the same project are not needed again.
    for entry in std::fs::read_dir(&cache).expect("read the build cache").flatten() {
        let path = entry.path();
        let stale = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(&format!("{name}-")))
            .is_some_and(|rest| rest.len() == 24 + ".wasm".len() && rest.ends_with(".wasm"));
        if stale && path != cached {
            let _ = std::fs::remove_file(path);
        }
    }
    cached
}

/// Builds a Python project as its README says (`./build.sh`, componentize-py on `PATH`).
fn build_python(project: &Path, name: &str) -> PathBuf {
    let bin = componentize_py();
    let version = Command::new(bin.join("componentize-py")).arg("--version").output().expect("componentize-py");
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let path = std::env::join_paths(
        std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .expect("a PATH");
    build(project, name, &version, Command::new("./build.sh").env("PATH", path))
}

/// Builds a JavaScript project as its README says (`node build.mjs`, after `npm ci`, whose
/// `node_modules` is the shared one).
fn build_js(project: &Path, name: &str) -> PathBuf {
    let modules = node_modules();
    let package = std::fs::read_to_string(modules.join("@bytecodealliance/componentize-js/package.json"))
        .expect("componentize-js's package.json");
    let link = project.join("node_modules");
    if link.symlink_metadata().is_err() {
        std::os::unix::fs::symlink(&modules, &link).expect("link node_modules");
    }
    build(project, name, &package, Command::new("node").arg("build.mjs"))
}

/// Conformance of `wasm` passes as generated, and with the template's responses checks
/// the happy path too.
fn conforms(project: &Path, wasm: &Path) {
    let home = common::tempdir();
    let started = std::time::Instant::now();
    let (out, err) = run(common::pier(home.path()).arg("conformance").arg(wasm), 0);
    eprintln!("conformance of {} took {:.1} s", wasm.display(), started.elapsed().as_secs_f64());
    assert!(out.contains("0 failed"), "{out}\n{err}");
    let (out, _) = run(
        common::pier(home.path()).arg("conformance").arg(wasm).arg("--responses").arg(project.join("conformance.json")),
        0,
    );
    assert!(out.contains("pass  deploy.succeeds"), "{out}");
}

#[test]
fn the_python_template_builds_with_componentize_py_and_conforms() {
    let _one = one_at_a_time();
    let (work, project) = new_project("acme-py", "python");
    let (out, _) = run(common::pier(work.path()).args(["plugins", "new", "again", "--lang", "python"]), 0);
    assert!(
        out.contains("next: cd again && python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && ./build.sh && pier conformance again.wasm --responses conformance.json"),
        "{out}"
    );
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    assert!(readme.contains("./build.sh") && readme.contains("acme-py.wasm"), "{readme}");
    let wasm = build_python(&project, "acme-py");
    conforms(&project, &wasm);
}

#[test]
fn the_js_template_builds_with_componentize_js_and_conforms() {
    let _one = one_at_a_time();
    let (work, project) = new_project("acme-js", "js");
    let (out, _) = run(common::pier(work.path()).args(["plugins", "new", "again", "--lang", "js"]), 0);
    assert!(
        out.contains(
            "next: cd again && npm ci && node build.mjs && pier conformance again.wasm --responses conformance.json"
        ),
        "{out}"
    );
    let wasm = build_js(&project, "acme-js");
    conforms(&project, &wasm);
}

/// Checks that `output` says the plugin waited at least `seconds` (and not much longer)
/// over three checks.
fn waited(output: &str, seconds: f64) {
    let said = output
        .split("waited ")
        .nth(1)
        .and_then(|rest| rest.split(" s over 3 checks").next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no `waited N s over 3 checks` in:\n{output}"));
    assert!((seconds..seconds + 5.0).contains(&said), "waited {said} s, not about {seconds}:\n{output}");
}

/// Replaces `from` (which must be there) with `to` in `file`.
fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} has no `{from}`", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).unwrap();
}

/// Installs `wasm` as method `name` in a project with a server `hook` of it, and returns
/// the output of `pier deploy hook`, which must fail (exit 3: the plugin trapped).
fn deploy_fails(wasm: &Path, name: &str) -> (String, String) {
    let project = Project::new();
    let installed = project.dir().join(format!("plugins/{name}.wasm"));
    std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
    std::fs::copy(wasm, &installed).unwrap();
    run(project.pier().args(["plugins", "add", &format!("plugins/{name}.wasm"), "--yes"]), 0);
    let hook = format!("{}/hooks/deploy", project.fake.url());
    run(
        project
            .pier()
            .args(["server", "add", "--method", name, "--name", "Hook", "--strategy", "manual"])
            .args(["--set", &format!("url={hook}")]),
        0,
    );
    common::git(project.dir(), &["init", "-q", "-b", "main"]);
    std::fs::write(project.dir().join(".gitignore"), ".config/\n").unwrap();
    common::git(project.dir(), &["add", "-A"]);
    common::git(project.dir(), &["commit", "-q", "-m", "x"]);
    let started = std::time::Instant::now();
    let output = run(project.pier().args(["deploy", "hook"]), 3);
    eprintln!("pier deploy with {name} took {:.1} s", started.elapsed().as_secs_f64());
    output
}

#[test]
fn a_python_exception_is_named_in_the_deploy_output_after_a_poll() {
    let _one = one_at_a_time();
    let (_work, project) = new_project("acme-raises", "python");
    edit(
        &project.join("app.py"),
        "        pier.step(\"Notifying\")\n",
        "        import time\n        started = time.monotonic()\n        calls = []\n        \
         pier.poll(lambda: calls.append(1) or (True if len(calls) == 3 else None), interval=0.2, max_interval=1.0, timeout=20)\n        \
         pier.sleep(0.1)\n        \
         pier.info(f\"waited {time.monotonic() - started:.1f} s over {len(calls)} checks\")\n        \
         raise ValueError(\"the release went sideways\")\n",
    );
    let wasm = build_python(&project, "acme-raises");
    let (out, err) = deploy_fails(&wasm, "acme-raises");
    // The crash line names the exception, not componentize-py's own panic, and the
    // traceback, printed on stderr by the plugin, is in the deploy's log.
    exception_named(&out, &err, "Python", "ValueError");
}

/// A deploy that crashed on an uncaught `exception` of `language` after a poll: its crash
/// line (`out`) names the exception and its message, and its log (`err`) has what the
/// language's runtime printed about it; the poll waited 0.2 s then 0.4 s between its
/// three checks, then 0.1 s.
fn exception_named(out: &str, err: &str, language: &str, exception: &str) {
    assert!(out.contains("crashed in `deploy`"), "{out}");
    let named = format!("uncaught {language} exception: {exception}: the release went sideways");
    assert!(out.contains(&named), "{out}");
    assert!(err.contains(&format!("{exception}: the release went sideways")), "{err}");
    let all = format!("{out}\n{err}");
    waited(&all, 0.7);
    assert!(all.contains(exception), "{all}");
    assert!(all.contains("the release went sideways"), "{all}");
}

#[test]
fn a_javascript_exception_is_named_in_the_deploy_output_after_a_poll() {
    let _one = one_at_a_time();
    let (_work, project) = new_project("acme-throws", "js");
    edit(
        &project.join("src/plugin.js"),
        "    pier.step('Notifying');\n",
        "    const started = performance.now();\n    let calls = 0;\n    \
         pier.poll(() => (++calls === 3 ? true : undefined), { interval: 0.2, maxInterval: 1, timeout: 20 });\n    \
         pier.sleep(0.1);\n    \
         pier.info(`waited ${((performance.now() - started) / 1000).toFixed(1)} s over ${calls} checks`);\n    \
         throw new TypeError('the release went sideways');\n",
    );
    let wasm = build_js(&project, "acme-throws");
    let (out, err) = deploy_fails(&wasm, "acme-throws");
    // What the bindings print about the exception is in the deploy's log on stderr.
    exception_named(&out, &err, "JavaScript", "TypeError");
}
