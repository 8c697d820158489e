//! Output a person can read, through the `pier` binary: a deploy always says who asked
//! for it.

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
