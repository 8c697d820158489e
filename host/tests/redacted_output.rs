//! Through the real `pier` binary: deploy commands that print the API key in the forms
//! programs print (raw, wrapped base64, `od` and `xxd` hex, percent-encoded, JSON-escaped,
//! split over writes and lines, cut by an escape sequence) leave no trace of it on stdout,
//! stderr, in the timeline, the logs or any file under `.pier/`.

mod common;

use common::oracle::leaks;
use common::{Project, run};

/// An API key with the characters that encoders treat differently.
const KEY: &str = r#"pk"9f/3a+b&c<d>\e=5d~2e!x"#;

/// The deploy commands, each printing the key (from `$HEROKU_API_KEY`) one way, with a
/// label that shows where its output went.
const COMMANDS: &[&str] = &[
    r#"printf 'raw: %s\n' "$HEROKU_API_KEY""#,
    r#"printf %s "$HEROKU_API_KEY" | base64 -w 20"#,
    r#"printf 'user:%s' "$HEROKU_API_KEY" | base64 -w 20"#,
    r#"printf 'ab%s' "$HEROKU_API_KEY" | base64 | tr '+/' '-_'"#,
    r#"printf %s "$HEROKU_API_KEY" | od -An -tx1"#,
    r#"printf %s "$HEROKU_API_KEY" | od -tx1"#,
    r#"printf %s "$HEROKU_API_KEY" | od -An -tx1 | tr a-f A-F"#,
    r#"if command -v xxd >/dev/null; then printf %s "$HEROKU_API_KEY" | xxd -p; else printf %s "$HEROKU_API_KEY" | od -An -tx1 -v | tr -d ' \n'; echo; fi"#,
    r#"printf %s "$HEROKU_API_KEY" | od -An -tx1 -v | tr -d ' \n' | sed 's/../%&/g'; echo"#,
    r#"printf %s "$HEROKU_API_KEY" | od -An -tx1 -v | tr -d ' \n' | sed 's/../%&/g' | tr a-f A-F; echo"#,
    r#"printf 'q=%s\n' "$HEROKU_API_KEY" | sed 's/%/%25/g; s/"/%22/g; s|/|%2F|g; s/+/%2B/g; s/&/%26/g; s/</%3C/g; s/>/%3E/g; s/\\/%5C/g; s/=/%3D/g; s/!/%21/g; s/^q%3D/percent: /'"#,
    r#"printf '{"json":"%s"}\n' "$(printf %s "$HEROKU_API_KEY" | sed 's/\\/\\\\/g; s/"/\\"/g')""#,
    r#"printf '{"php":"%s"}\n' "$(printf %s "$HEROKU_API_KEY" | sed 's/\\/\\\\/g; s/"/\\"/g; s|/|\\/|g')""#,
    r#"printf 'unicode: '; printf %s "$HEROKU_API_KEY" | od -An -tx1 -v | tr -d '\n' | sed 's/ \([0-9a-f][0-9a-f]\)/\\u00\1/g'; echo"#,
    r#"a=${HEROKU_API_KEY#????????????}; printf 'split: %s' "${HEROKU_API_KEY%"$a"}"; printf '%s end\n' "$a""#,
    r#"a=${HEROKU_API_KEY#????????????}; printf 'lines: %s\n' "${HEROKU_API_KEY%"$a"}"; printf '%s end\n' "$a""#,
    r#"a=${HEROKU_API_KEY#????????????}; printf 'escape: %s\033[0m%s\n' "${HEROKU_API_KEY%"$a"}" "$a""#,
    r#"a=${HEROKU_API_KEY#????????????}; printf 'stderr: %s' "${HEROKU_API_KEY%"$a"}" >&2; printf '%s end\n' "$a" >&2"#,
    // The deploy's log file as it is while the deploy runs (it goes into the timeline at the end).
    r#"cp ".pier/logs/$PIER_DEPLOY_ID.log" "log-while-running-$PIER_DEPLOY_ID.txt""#,
];

/// A project whose Heroku account has [`KEY`], with the app checked out and one manual
/// server `prod` whose deploy commands are [`COMMANDS`].
fn project() -> Project {
    let project = Project::with(vec![fake_heroku::SeedAccount { api_key: KEY.into(), ..common::ada() }]);
    let dir = project.dir();
    std::fs::write(dir.join("Procfile"), "web: python app.py\n").unwrap();
    common::commit_app(dir);
    run(project.add("Prod", &["--strategy", "manual", "--set", "app=hello-app"]).env("HEROKU_API_KEY", KEY), 0);
    project.commands(COMMANDS);
    project
}

/// `text` with escape sequences and control characters taken out, line by line.
fn shown(text: &str) -> String {
    text.lines().map(|l| pier::caps::events::clean(l) + "\n").collect()
}

/// Every file under `dir`, read as text.
fn files(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    out
}

#[test]
fn deploy_commands_printing_the_key_in_any_form_leave_no_trace() {
    let project = project();
    // The program that would print it, to be sure the oracle would see a leak.
    let sh = std::process::Command::new("sh")
        .arg("-c")
        .arg(COMMANDS[..COMMANDS.len() - 1].join("\n"))
        .env("HEROKU_API_KEY", KEY)
        .output()
        .unwrap();
    let printed = shown(&String::from_utf8_lossy(&[sh.stdout, sh.stderr].concat()));
    for line in &COMMANDS[..COMMANDS.len() - 1] {
        let one = std::process::Command::new("sh").arg("-c").arg(line).env("HEROKU_API_KEY", KEY).output().unwrap();
        let text = String::from_utf8_lossy(&[one.stdout, one.stderr].concat()).into_owned();
        // As a terminal shows it: escape sequences do their work, they are not text.
        let text = shown(&text);
        assert!(leaks(&text, KEY), "the oracle does not see the key in the output of {line}: {text:?}");
    }

    let (out, err) = run(project.pier().env("HEROKU_API_KEY", KEY).args(["deploy", "prod"]), 0);
    let (json_out, json_err) = run(project.pier().env("HEROKU_API_KEY", KEY).args(["deploy", "prod", "--json"]), 0);
    for label in
        ["raw: [redacted]", "split: [redacted] end", "lines: [redacted]", "[redacted] end", "escape: [redacted]"]
    {
        assert!(err.contains(label), "{label:?} not in\n{err}");
    }
    assert!(err.contains("{\"json\":\"[redacted]\"}") && err.contains("{\"php\":\"[redacted]\"}"), "{err}");
    assert!(err.contains("percent: [redacted]") && err.contains("unicode: [redacted]"), "{err}");
    assert!(err.contains("stderr: [redacted]"), "{err}");

    let timeline = run(project.pier().args(["timeline", "--json"]), 0).0;
    let ids: Vec<String> = serde_json::from_str::<serde_json::Value>(&timeline)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    let mut texts = vec![
        ("deploy stdout".to_string(), out),
        ("deploy stderr".to_string(), err),
        ("deploy --json stdout".to_string(), json_out),
        ("deploy --json stderr".to_string(), json_err),
        ("timeline --json".to_string(), timeline),
        ("timeline".to_string(), run(project.pier().arg("timeline"), 0).0),
    ];
    for id in &ids {
        texts.push((format!("timeline show {id}"), run(project.pier().args(["timeline", "show", id]), 0).0));
        texts.push((
            format!("timeline show {id} --json"),
            run(project.pier().args(["timeline", "show", id, "--json"]), 0).0,
        ));
    }
    let stored = files(&project.dir().join(".pier"));
    assert!(
        stored.iter().any(|(p, _)| p.ends_with("timeline.sqlite")),
        "{:?}",
        stored.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    texts.extend(stored);
    for id in &ids {
        let copy = project.read(&format!("log-while-running-{id}.txt"));
        assert!(copy.contains("lines: [redacted]"), "{copy}");
        texts.push((format!("the log file of {id} while it ran"), copy));
    }

    let (first, second) = KEY.split_at(12);
    for (place, text) in &texts {
        assert!(!leaks(text, KEY) && !leaks(&shown(text), KEY), "the key leaked into {place}:\n{text}");
        assert!(!text.contains(first) && !text.contains(second), "half of the key is in {place}:\n{text}");
    }
    // The logs hold the redacted output, not nothing.
    let log = texts.iter().find(|(p, _)| p.starts_with("timeline show") && !p.ends_with("--json")).unwrap();
    assert!(log.1.contains("lines: [redacted]"), "{}", log.1);
    assert!(leaks(&printed, KEY));
}
