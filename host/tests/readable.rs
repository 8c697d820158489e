//! Output a person can read, through the `pier` binary: the timeline fits 100 columns, a
//! deploy is found by a part of its id, the server list shows the app's URL, counts are
//! in words, and a deploy always says who asked for it.

mod common;

use common::{Project, run};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The timeline's deploys, newest first.
fn deploys(project: &Project) -> Vec<serde_json::Value> {
    let (out, _) = run(project.pier().args(["timeline", "--json"]), 0);
    json(&out).as_array().expect("a list of deploys").clone()
}

fn width(line: &str) -> usize {
    line.chars().count()
}

#[test]
fn the_timeline_fits_100_columns() {
    let (project, _) = Project::with_app();
    let name = "A very long production server name, in Europe";
    run(&mut project.add(name, &["--strategy", "manual", "--set", "app=other-app"]), 0);
    let long = "a-very-long-production-server-name-in-europe";
    let mut edit = project.pier();
    edit.args(["server", "edit", long, "--add-command", "true", "--add-command", "true"]);
    run(&mut edit, 0);
    project.commands(&["true"]);
    run(project.pier().args(["deploy", "prod"]), 0);
    run(project.pier().args(["deploy", long, "--branch", "feature/a-rather-long-branch-name-too"]), 0);
    project.commands(&["exit 3", "true"]);
    run(project.pier().args(["deploy", "prod"]), 1);

    // Not a terminal: 100 columns.
    let (out, _) = run(project.pier().arg("timeline"), 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    for line in &lines {
        assert!(width(line) <= 100, "{} columns: {line}\n{out}", width(line));
    }
    assert!(lines[0].starts_with("DEPLOY ") && lines[0].contains("SERVER") && lines[0].contains("SUMMARY"), "{out}");
    // Every deploy's whole id is there, for `pier timeline show`.
    for d in deploys(&project) {
        let id = d["id"].as_str().unwrap();
        assert!(lines.iter().any(|l| l.starts_with(&format!("{id} "))), "{id}: {out}");
    }
    // The long alias and the long summary are cut with `…`.
    assert!(out.contains("a-very-long-pro…"), "{out}");
    assert!(!out.contains(long), "{out}");
    assert!(lines[1].contains(" failed ") && lines[1].ends_with('…'), "{out}");

    // `--json` and `timeline show` keep everything whole.
    let all = deploys(&project);
    let summaries: Vec<&str> = all.iter().map(|d| d["summary"].as_str().unwrap()).collect();
    assert_eq!(summaries[1], "released v1 of other-app; web.1 up; 2 commands passed");
    assert_eq!(summaries[2], "released v1 of hello-app; web.1 up; 1 command passed");
    assert!(summaries[0].contains("command 1 of 2 (`exit 3`) exited with 3"), "{summaries:?}");
}

#[test]
fn a_deploy_is_shown_by_the_end_or_the_beginning_of_its_id() {
    let (project, _) = Project::with_app();
    run(project.pier().args(["deploy", "prod"]), 0);
    run(project.pier().args(["deploy", "prod"]), 0);
    let ids: Vec<String> = deploys(&project).iter().map(|d| d["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 2);

    for id in &ids {
        let (_, random) = id.split_once('-').expect("ids are TIME-RANDOM");
        for part in [id.as_str(), random, &id[id.len() - 4..]] {
            let (out, _) = run(project.pier().args(["timeline", "show", part]), 0);
            assert!(out.starts_with(&format!("deploy {id} of prod (heroku)\n")), "{part}: {out}");
        }
        let (out, _) = run(project.pier().args(["timeline", "show", random, "--json"]), 0);
        assert_eq!(json(&out)["deploy"]["id"], id.as_str());
    }

    // A beginning both ids share names both: exit 2, listing them.
    let shared = ids[0].chars().zip(ids[1].chars()).take_while(|(a, b)| a == b).count();
    assert!(shared > 0, "{ids:?}");
    let (out, err) = run(project.pier().args(["timeline", "show", &ids[0][..shared]]), 2);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains(&format!("`{}` names 2 deploys", &ids[0][..shared])), "{err}");
    assert!(err.contains(&ids[0]) && err.contains(&ids[1]), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let (_, err) = run(project.pier().args(["timeline", "show", "zzzz"]), 2);
    assert!(err.contains("no deploy `zzzz` in the timeline"), "{err}");
}

#[test]
fn an_ambiguous_deploy_id_lists_a_few_candidates() {
    let (project, _) = Project::with_app();
    for _ in 0..7 {
        run(project.pier().args(["deploy", "prod"]), 0);
    }
    // The first digit of the time: shared by every deploy.
    let first = deploys(&project)[0]["id"].as_str().unwrap()[..1].to_string();
    let (_, err) = run(project.pier().args(["timeline", "show", &first]), 2);
    assert!(err.contains(&format!("`{first}` names 7 deploys (")), "{err}");
    assert!(err.contains(" and 2 more)"), "{err}");
}

#[test]
fn the_server_list_shows_the_url_of_the_app() {
    let (project, _) = Project::with_app();
    let url_of = |project: &Project| {
        let (out, _) = run(project.pier().args(["server", "list"]), 0);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("ALIAS ") && lines[0].ends_with(" URL"), "{out}");
        assert!(lines.iter().all(|l| width(l) <= 100), "{out}");
        let prod = lines.iter().find(|l| l.starts_with("prod ")).unwrap_or_else(|| panic!("{out}"));
        prod.split_whitespace().last().unwrap().to_string()
    };
    // Not deployed yet, no URL of its own: none known.
    assert_eq!(url_of(&project), "-");
    assert!(!project.dir().join(".pier").exists(), "listing servers made the state directory");

    // A failed deploy says nothing of where the app is.
    project.commands(&["false"]);
    run(project.pier().args(["deploy", "prod"]), 1);
    assert_eq!(url_of(&project), "-");

    project.commands(&[]);
    let (out, _) = run(project.pier().args(["deploy", "prod"]), 0);
    assert!(out.contains(" https://hello-app.herokuapp.com/ "), "{out}");
    assert_eq!(url_of(&project), "https://hello-app.herokuapp.com/");
    let (out, _) = run(project.pier().args(["server", "list", "--json"]), 0);
    assert_eq!(json(&out)[0]["last_deploy_url"], "https://hello-app.herokuapp.com/");
    let (out, _) = run(project.pier().args(["server", "show", "prod"]), 0);
    assert!(out.contains("url:       https://hello-app.herokuapp.com/ (as the last deploy reported it)"), "{out}");
    let id = deploys(&project)[0]["id"].as_str().unwrap().to_string();
    let (out, _) = run(project.pier().args(["timeline", "show", &id]), 0);
    assert!(out.contains("  url:      https://hello-app.herokuapp.com/\n"), "{out}");

    // The server's own URL comes first.
    run(project.pier().args(["server", "edit", "prod", "--url", "https://www.example.com/"]), 0);
    assert_eq!(url_of(&project), "https://www.example.com/");
    let (out, _) = run(project.pier().args(["server", "list", "--json"]), 0);
    assert_eq!(json(&out)[0]["url"], "https://www.example.com/");
    assert!(json(&out)[0].get("last_deploy_url").is_none(), "{out}");
}

#[test]
fn a_deploy_without_user_or_logname_names_the_system_user() {
    let (project, _) = Project::with_app();
    run(project.pier().args(["deploy", "prod"]).env_remove("USER").env_remove("LOGNAME"), 0);
    let system = nix::unistd::User::from_uid(nix::unistd::geteuid()).unwrap().expect("this user has a name").name;
    assert_eq!(deploys(&project)[0]["actor"], system.as_str());
    let id = deploys(&project)[0]["id"].as_str().unwrap().to_string();
    let (out, _) = run(project.pier().args(["timeline", "show", &id]), 0);
    assert!(out.contains(&format!("  trigger:  manual by {system}\n")), "{out}");

    run(project.pier().args(["deploy", "prod"]).env("USER", "grace").env_remove("LOGNAME"), 0);
    assert_eq!(deploys(&project)[0]["actor"], "grace");
}
