//! One-off dynos and their rendezvous over TLS, end to end: the API over plain HTTP with a
//! blocking client, the rendezvous with a tokio-rustls client that trusts a test CA made with
//! the `openssl` CLI.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use fake_heroku::{
    EXIT_STATUS_SUFFIX, FakeHeroku, LEGACY_EXIT_STATUS_SUFFIX, RunRecord, RunScript, Script, Seed, SeedAccount,
    SeedRelease, ServeOptions, TlsFiles, schema,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const ACCEPT: &str = "application/vnd.heroku+json; version=3";
const KEY: &str = "ada-key";
const ADA: &str = "ada@example.com";

/// A test CA and a server certificate it signed, for `IP:127.0.0.1` and `DNS:localhost`.
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Certs {
    fn tls(&self) -> TlsFiles {
        TlsFiles { cert: self.cert.clone(), key: self.key.clone() }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl CLI runs");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// Made once per test binary.
fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fake-heroku-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a directory for the certificates");
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=fake-heroku test CA"]);
        openssl(&dir, &ca);
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
        openssl(&dir, &csr);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("writes the extensions");
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        );
        Certs { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") }
    })
}

/// Ada owns `hello-app` (at v1, with `web.1` up) and `empty-app` (never released).
fn seed() -> Seed {
    Seed {
        accounts: vec![SeedAccount {
            email: ADA.into(),
            api_key: KEY.into(),
            apps: vec!["hello-app".into(), "empty-app".into()],
            releases: vec![SeedRelease { app: "hello-app".into(), ..SeedRelease::default() }],
            ..SeedAccount::default()
        }],
    }
}

fn start_tls() -> FakeHeroku {
    FakeHeroku::start_with(seed(), ServeOptions { tls: Some(certs().tls()), ..ServeOptions::default() })
        .expect("the fake starts with TLS")
}

/// A Platform API call: (status, JSON body).
fn api(base: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).proxy(None).build().into();
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("Accept", ACCEPT)
        .header("Authorization", format!("Bearer {KEY}"))
        .header("Content-Type", "application/json");
    let response = match body {
        Some(body) => agent.run(request.body(body.to_string()).expect("builds")),
        None => agent.run(request.body(ureq::SendBody::none()).expect("builds")),
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("a body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn create(heroku: &FakeHeroku, body: Value) -> (u16, Value) {
    api(&heroku.url(), "POST", "/apps/hello-app/dynos", Some(body))
}

/// Creates an attached dyno that must succeed; returns it.
fn create_attached(heroku: &FakeHeroku, command: &str, force_no_tty: bool) -> Value {
    let (status, dyno) =
        create(heroku, json!({"command": command, "attach": true, "force_no_tty": force_no_tty, "type": "run"}));
    assert_eq!(status, 201, "{dyno}");
    dyno
}

fn dyno_names(heroku: &FakeHeroku) -> Vec<String> {
    let (status, dynos) = api(&heroku.url(), "GET", "/apps/hello-app/dynos", None);
    assert_eq!(status, 200);
    dynos.as_array().into_iter().flatten().filter_map(|d| d["name"].as_str().map(str::to_string)).collect()
}

/// `rendezvous://HOST:PORT/SECRET` → (HOST, PORT, SECRET).
fn parse_attach_url(url: &str) -> (String, u16, String) {
    let rest = url.strip_prefix("rendezvous://").unwrap_or_else(|| panic!("not a rendezvous URL: {url}"));
    let (authority, secret) = rest.split_once('/').expect("a path");
    let (host, port) = authority.rsplit_once(':').expect("a port");
    (host.to_string(), port.parse().expect("a port number"), secret.to_string())
}

fn connector() -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&certs().ca).expect("the CA reads") {
        roots.add(cert.expect("the CA parses")).expect("the CA is usable");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// Opens TLS to the fake's rendezvous port, checking the certificate for `server_name`.
async fn connect(port: u16, server_name: &str) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("the rendezvous port accepts");
    let name = ServerName::try_from(server_name.to_string()).expect("a server name");
    connector().connect(name, tcp).await.expect("the TLS handshake succeeds")
}

/// Attaches as the official CLI does (`SECRET\r\n`, plus `extra` in the same write) and reads
/// everything until the fake closes.
async fn attach_and_read(url: &str, extra: &[u8]) -> Vec<u8> {
    let (_, port, secret) = parse_attach_url(url);
    let mut tls = connect(port, "127.0.0.1").await;
    let mut first = format!("{secret}\r\n").into_bytes();
    first.extend_from_slice(extra);
    tls.write_all(&first).await.expect("writes");
    tls.flush().await.expect("flushes");
    let mut received = Vec::new();
    tls.read_to_end(&mut received).await.expect("reads until close_notify");
    received
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

#[tokio::test]
async fn an_attached_run_streams_its_output_and_exit_status_over_tls() {
    let heroku = start_tls();
    let port = heroku.rendezvous_port().expect("a rendezvous port");
    assert_ne!(Some(port), heroku.url().rsplit(':').next().and_then(|p| p.parse().ok()));
    heroku.script(Script {
        runs: vec![RunScript {
            command: Some("bin/migrate --all".into()),
            output: vec!["Migrating...".into(), "done".into()],
            status: 3,
            ..RunScript::default()
        }],
        ..Script::default()
    });
    let command = format!("bin/migrate --all{EXIT_STATUS_SUFFIX}");
    let body = json!({
        "command": command,
        "attach": true,
        "env": {"TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"},
        "force_no_tty": false,
        "size": "standard-1X",
        "type": "run",
        "time_to_live": 1800,
    });
    let (status, dyno) = create(&heroku, body);
    assert_eq!(status, 201, "{dyno}");
    let name = dyno["name"].as_str().expect("a name").to_string();
    assert!(name.starts_with("run.") && name.len() == 8 && name[4..].bytes().all(|b| b.is_ascii_digit()), "{name}");
    assert_eq!(dyno["type"], "run");
    assert_eq!(dyno["state"], "starting");
    assert_eq!(dyno["command"], command.as_str());
    assert_eq!(dyno["size"], "standard-1X");
    assert_eq!(dyno["app"]["name"], "hello-app");
    assert_eq!(dyno["release"]["version"], 1);
    let (_, release) = api(&heroku.url(), "GET", "/apps/hello-app/releases/1", None);
    assert_eq!(dyno["release"]["id"], release["id"]);
    for field in ["id", "created_at", "updated_at"] {
        assert!(dyno[field].is_string(), "the dyno lacks {field}: {dyno}");
    }
    let url = dyno["attach_url"].as_str().expect("an attach_url").to_string();
    let (host, url_port, secret) = parse_attach_url(&url);
    assert_eq!((host.as_str(), url_port), ("127.0.0.1", port));
    assert!(secret.len() >= 32, "{secret}");
    // Listed while it waits for its client, with the release's own dynos.
    assert_eq!(dyno_names(&heroku), ["web.1".to_string(), name.clone()]);

    let received = attach_and_read(&url, b"").await;
    assert_eq!(text(&received), "rendezvous\r\nMigrating...\r\ndone\r\n\u{FFFF} heroku-command-exit-status: 3\r\n");
    let env = [("COLUMNS", "80"), ("LINES", "24"), ("TERM", "xterm-256color")];
    assert_eq!(
        heroku.runs(),
        [RunRecord {
            app: "hello-app".into(),
            id: dyno["id"].as_str().expect("id").into(),
            name,
            command: command.clone(),
            base_command: "bin/migrate --all".into(),
            exit_status_suffix: true,
            attach: true,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            size: Some("standard-1X".into()),
            dyno_type: Some("run".into()),
            force_no_tty: Some(false),
            time_to_live: Some(1800),
            attach_url: Some(url.clone()),
            attached: true,
            finished: true,
            input: Vec::new(),
        }]
    );
    // Gone from the list once its session has ended.
    assert_eq!(dyno_names(&heroku), ["web.1"]);

    // The secret serves one session; a wrong one serves none.
    assert!(attach_and_read(&url, b"").await.is_empty());
    let wrong = url.replace(&secret, "0123456789abcdef0123456789abcdef");
    assert!(attach_and_read(&wrong, b"").await.is_empty());
    assert_eq!(heroku.refused_rendezvous(), [secret, "0123456789abcdef0123456789abcdef".to_string()]);
    if let Err(errors) = schema::check_all(&heroku.requests()) {
        panic!("dyno create breaks the schema: {errors:#?}");
    }
}

#[tokio::test]
async fn input_is_echoed_until_eot_or_a_half_close() {
    let heroku = start_tls();
    let echo = |command: &str, output: &[&str]| RunScript {
        command: Some(command.into()),
        output: output.iter().map(|l| l.to_string()).collect(),
        echo_input: true,
        ..RunScript::default()
    };
    heroku.script(Script { runs: vec![echo("cat", &["Type:"]), echo("bash", &[])], ..Script::default() });

    // Without a tty: `\n` line endings; the input ends with EOT, sent with the secret line.
    let dyno = create_attached(&heroku, &format!("cat{EXIT_STATUS_SUFFIX}"), true);
    let received = attach_and_read(dyno["attach_url"].as_str().expect("url"), b"hello\nworld\n\x04").await;
    assert_eq!(text(&received), "rendezvous\r\nType:\nhello\nworld\n\u{FFFF} heroku-command-exit-status: 0\n");
    assert_eq!(heroku.runs()[0].input, b"hello\nworld\n\x04");

    // With a tty: `\r\n`, echoed `\n` too; the input ends with a half-close, sent after the
    // acknowledgement arrived.
    let dyno = create_attached(&heroku, &format!("bash{EXIT_STATUS_SUFFIX}"), false);
    let (_, port, secret) = parse_attach_url(dyno["attach_url"].as_str().expect("url"));
    let mut tls = connect(port, "localhost").await;
    tls.write_all(format!("{secret}\r\n").as_bytes()).await.expect("writes");
    tls.flush().await.expect("flushes");
    let mut ack = [0u8; 12];
    tls.read_exact(&mut ack).await.expect("the acknowledgement");
    assert_eq!(&ack, b"rendezvous\r\n");
    assert!(heroku.runs()[1].attached && !heroku.runs()[1].finished);
    let (_, dynos) = api(&heroku.url(), "GET", "/apps/hello-app/dynos", None);
    assert_eq!(dynos[1]["state"], "up", "{dynos}");
    tls.write_all(b"ls\npwd\n").await.expect("writes");
    tls.shutdown().await.expect("half-closes");
    let mut rest = Vec::new();
    tls.read_to_end(&mut rest).await.expect("reads until close_notify");
    assert_eq!(text(&rest), "ls\r\npwd\r\n\u{FFFF} heroku-command-exit-status: 0\r\n");
    assert_eq!(heroku.runs()[1].input, b"ls\npwd\n");
    assert!(heroku.runs()[1].finished);
}

#[tokio::test]
async fn markers_can_be_split_left_out_or_in_the_older_form() {
    let heroku = start_tls();
    let run = |command: &str| RunScript { command: Some(command.into()), status: 5, ..RunScript::default() };
    heroku.script(Script {
        runs: vec![
            RunScript { split_marker: true, output: vec!["one".into()], ..run("split") },
            RunScript { no_marker: true, output: vec!["two".into()], ..run("dropped") },
            RunScript { crlf: Some(false), ..run("legacy") },
            run("bare"),
        ],
        ..Script::default()
    });
    let session = async |command: String| {
        let dyno = create_attached(&heroku, &command, false);
        text(&attach_and_read(dyno["attach_url"].as_str().expect("url"), b"").await)
    };
    let split = session(format!("split{EXIT_STATUS_SUFFIX}")).await;
    assert_eq!(split, "rendezvous\r\none\r\n\u{FFFF} heroku-command-exit-status: 5\r\n");
    assert_eq!(session(format!("dropped{EXIT_STATUS_SUFFIX}")).await, "rendezvous\r\ntwo\r\n");
    let legacy = session(format!("legacy{LEGACY_EXIT_STATUS_SUFFIX}")).await;
    assert_eq!(legacy, "rendezvous\r\nheroku-command-exit-status 5\n");
    // Without the suffix there is no echo to print a marker.
    assert_eq!(session("bare".into()).await, "rendezvous\r\n");
    let records = heroku.runs();
    let bases: Vec<(&str, bool)> = records.iter().map(|r| (r.base_command.as_str(), r.exit_status_suffix)).collect();
    assert_eq!(bases, [("split", true), ("dropped", true), ("legacy", true), ("bare", false)]);
    // An unscripted run prints nothing and exits 0.
    let default = session(format!("whoami{EXIT_STATUS_SUFFIX}")).await;
    assert_eq!(default, "rendezvous\r\n\u{FFFF} heroku-command-exit-status: 0\r\n");
}

#[tokio::test]
async fn conflicts_come_first_and_attach_urls_can_name_another_host() {
    let heroku = start_tls();
    heroku.script(Script {
        runs: vec![RunScript { conflicts: 2, attach_host: Some("127.0.0.2".into()), ..RunScript::default() }],
        ..Script::default()
    });
    let body = json!({"command": "bash", "attach": true});
    for _ in 0..2 {
        let (status, error) = create(&heroku, body.clone());
        assert_eq!((status, error["id"].as_str()), (409, Some("conflict")), "{error}");
        assert!(error["message"].as_str().is_some_and(|m| m.contains("release is not ready")), "{error}");
    }
    assert!(heroku.runs().is_empty());
    let (status, dyno) = create(&heroku, body.clone());
    assert_eq!(status, 201, "{dyno}");
    let (host, port, _) = parse_attach_url(dyno["attach_url"].as_str().expect("url"));
    assert_eq!((host.as_str(), Some(port)), ("127.0.0.2", heroku.rendezvous_port()));
    // The script is used up: the next run is the default one.
    let (_, next) = create(&heroku, body);
    assert!(next["attach_url"].as_str().is_some_and(|u| u.starts_with("rendezvous://127.0.0.1:")));
    assert_eq!(heroku.runs().len(), 2);
    assert!(heroku.runs().iter().all(|r| !r.attached));
}

#[tokio::test]
async fn detached_runs_need_no_tls_but_attached_ones_do() {
    let heroku = FakeHeroku::start(seed()).expect("starts without TLS");
    assert_eq!(heroku.rendezvous_port(), None);
    let (status, error) = create(&heroku, json!({"command": "bash", "attach": true}));
    assert_eq!((status, error["id"].as_str()), (501, Some("not_implemented")), "{error}");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("rendezvous is not available")), "{error}");

    let (status, dyno) = create(&heroku, json!({"command": "bin/worker", "size": "basic"}));
    assert_eq!(status, 201, "{dyno}");
    assert_eq!(dyno["attach_url"], Value::Null);
    assert_eq!(dyno_names(&heroku), ["web.1"], "a detached run is over at once");
    let run = &heroku.runs()[0];
    assert!(!run.attach && run.finished && !run.attached);
}

#[tokio::test]
async fn dyno_creates_are_validated() {
    let heroku = start_tls();
    for body in [
        json!({}),
        json!({"command": ""}),
        json!({"command": 7}),
        json!({"command": "ls", "env": {"COLUMNS": 80}}),
        json!({"command": "ls", "env": {"NOT-A-NAME": "x"}}),
        json!({"command": "ls", "attach": "yes"}),
        json!({"command": "ls", "time_to_live": 0}),
        json!({"command": "ls", "time_to_live": 86_401}),
    ] {
        let (status, error) = create(&heroku, body.clone());
        assert_eq!((status, error["id"].as_str()), (422, Some("invalid_params")), "{body}: {error}");
    }
    let (status, error) = api(&heroku.url(), "POST", "/apps/empty-app/dynos", Some(json!({"command": "ls"})));
    assert_eq!((status, error["id"].as_str()), (422, Some("invalid_params")), "{error}");
    let (status, _) = api(&heroku.url(), "POST", "/apps/no-such-app/dynos", Some(json!({"command": "ls"})));
    assert_eq!(status, 404);
    assert!(heroku.runs().is_empty());
    let missing = &heroku.requests()[0];
    assert!(schema::check(missing).is_err_and(|e| e.contains("command")));
}

#[test]
fn unusable_tls_files_stop_the_fake_from_starting() {
    let missing = TlsFiles { cert: PathBuf::from("/nonexistent/cert.pem"), key: certs().key.clone() };
    let error = FakeHeroku::start_with(seed(), ServeOptions { tls: Some(missing), ..ServeOptions::default() })
        .expect_err("no certificate");
    assert!(format!("{error:#}").contains("/nonexistent/cert.pem"), "{error:#}");
    // The CA's certificate with the server's key: not a pair.
    let mismatched = TlsFiles { cert: certs().ca.clone(), key: certs().key.clone() };
    assert!(FakeHeroku::start_with(seed(), ServeOptions { tls: Some(mismatched), ..ServeOptions::default() }).is_err());
}

#[tokio::test]
async fn the_binary_serves_rendezvous_and_web_urls_with_its_flags() {
    let certs = certs();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-heroku"))
        .arg("--tls-cert")
        .arg(&certs.cert)
        .arg("--tls-key")
        .arg(&certs.key)
        .arg("--local-web-urls")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("a listening line");
    let url = line.trim_end().strip_prefix("fake-heroku listening on ").expect("the listening line").to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder().proxy(None).build().into();
    agent.post(format!("{url}/__fake/seed")).send(serde_json::to_string(&seed()).expect("JSON")).expect("seeds");
    let info: Value = serde_json::from_str(
        &agent.get(format!("{url}/__fake/info")).call().expect("info").body_mut().read_to_string().expect("a body"),
    )
    .expect("JSON");
    assert_eq!(info["url"], url.as_str());
    let port = info["rendezvous_port"].as_u64().expect("a rendezvous port");
    let (_, app) = api(&url, "GET", "/apps/hello-app", None);
    assert_eq!(app["web_url"], format!("{url}/__app/hello-app/"));

    let (status, dyno) = api(&url, "POST", "/apps/hello-app/dynos", Some(json!({"command": "ls", "attach": true})));
    assert_eq!(status, 201, "{dyno}");
    let attach_url = dyno["attach_url"].as_str().expect("url");
    assert!(attach_url.starts_with(&format!("rendezvous://127.0.0.1:{port}/")), "{attach_url}");
    assert_eq!(text(&attach_and_read(attach_url, b"").await), "rendezvous\r\n");
    let runs: Vec<RunRecord> = serde_json::from_str(
        &agent.get(format!("{url}/__fake/runs")).call().expect("runs").body_mut().read_to_string().expect("a body"),
    )
    .expect("RunRecords");
    assert!(runs[0].attached && runs[0].finished);

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs").success());
    assert!(child.wait().expect("exits").success());

    // A key without its certificate is a bad argument; an unusable certificate fails serving.
    let key = certs.key.display().to_string();
    let status = Command::new(env!("CARGO_BIN_EXE_fake-heroku")).args(["--tls-key", &key]).output().expect("runs");
    assert_eq!(status.status.code(), Some(2));
    let status = Command::new(env!("CARGO_BIN_EXE_fake-heroku"))
        .args(["--tls-cert", "/nonexistent/cert.pem", "--tls-key", &key])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert_eq!(status.status.code(), Some(1), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(status.stdout.is_empty(), "no listening line for a fake that cannot serve");
}
