//! The `tls` capability (contract 0.3.0) as a hostile plugin meets it, and the frozen
//! 0.2.0 contract it was added beside.
//!
//! The `streams` test plugin may open TLS streams to its endpoint's host on any port and
//! to `*.example.com`, each only where a response from its endpoint named the address. The
//! benign twins (a stream where the provider's answer pointed) are the Heroku method's
//! one-off dynos in `one_off.rs`, over the same capability.

mod common;

use common::{Project, plugin, run};

/// The bytes of the Heroku method as built against contract 0.2.0, kept as it was
/// released: it must keep loading, and deploying, under the same sandbox rules.
const HEROKU_0_2_0: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/heroku-0.2.0.wasm");

/// A project with the `streams` plugin installed and a server `s` of it whose API is the
/// fake Heroku (so its host is loopback, and the fake's rendezvous port is a TLS server).
fn project() -> Project {
    let project = Project::with_rendezvous();
    std::fs::create_dir_all(project.dir().join("plugins")).unwrap();
    std::fs::copy(plugin("streams"), project.dir().join("plugins/streams.wasm")).unwrap();
    run(project.pier().args(["plugins", "add", "plugins/streams.wasm", "--yes"]), 0);
    let api = format!("api_url={}", project.fake.url());
    run(
        project.pier().args([
            "server",
            "add",
            "--method",
            "streams",
            "--name",
            "S",
            "--strategy",
            "manual",
            "--set",
            &api,
        ]),
        0,
    );
    project
}

fn refused(project: &Project, words: &[&str], why: &str) {
    let (out, err) = run(project.pier().args(["run", "s", "--"]).args(words), 3);
    assert_eq!(out, "", "{words:?}");
    assert!(err.contains(why), "{words:?}: {err}");
}

#[test]
fn a_plugin_connects_only_where_its_provider_pointed() {
    let project = project();
    let port = project.fake.rendezvous_port().unwrap().to_string();
    // Its endpoint's host, but a port no response named: refused before connecting.
    refused(&project, &["connect", "127.0.0.1", &port], "reachable only where a response from the plugin's endpoints");
    assert!(project.fake.refused_rendezvous().is_empty(), "nothing reached the rendezvous server");
    // A host outside its grant, and a granted wildcard host no response named.
    refused(&project, &["connect", "127.0.0.3", &port], "is not among the hosts");
    refused(&project, &["connect", "evil.example.com", "443"], "reachable only where a response");
    // Names that are not host names.
    refused(&project, &["connect", "a b", "443"], "is not a host name");
}

#[test]
fn a_0_2_0_plugin_keeps_loading_and_passes_conformance() {
    let home = common::tempdir();
    let (out, _) = run(common::pier(home.path()).args(["plugins", "inspect", HEROKU_0_2_0, "--json"]), 0);
    let inspected = common::json(&out);
    assert_eq!(inspected["contract"], "0.2.0", "{inspected}");
    // The conformance runner sets it up and deploys it against its own provider.
    run(common::pier(home.path()).args(["conformance", HEROKU_0_2_0]), 0);
}
