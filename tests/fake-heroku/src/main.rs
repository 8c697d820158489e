//! `fake-heroku`: serve a fake Heroku Platform API on `127.0.0.1` for shell scripts and demos,
//! and drive a running one without curl.
//!
//! ```text
//! fake-heroku [--port N] [--seed FILE.json] [--local-web-urls]
//!             [--tls-cert PATH --tls-key PATH]   serve (the default)
//! fake-heroku seed     --url URL (JSON | @FILE)  POST a Seed to URL/__fake/seed
//! fake-heroku script   --url URL (JSON | @FILE)  POST a Script to URL/__fake/script
//! fake-heroku requests --url URL                 print URL/__fake/requests (a JSON array)
//! ```
//!
//! Serving prints exactly one line on stdout, `fake-heroku listening on http://127.0.0.1:PORT`,
//! then serves until SIGTERM or SIGINT, finishing the requests in flight. Logs go to stderr.
//! With `--tls-cert` and `--tls-key`, it also serves rendezvous over TLS on a second port of
//! 127.0.0.1 (logged to stderr; `GET URL/__fake/info` shows it, and attached dynos'
//! `attach_url`s name it); a certificate or key that cannot be used makes serving fail. The
//! client subcommands call the `/__fake/` control endpoints (see `fake_heroku::serve`); `URL` is
//! the one from the listening line and must be `http://127.0.0.1[:PORT]` or
//! `http://localhost[:PORT]`: this tool only talks to loopback.
//!
//! Exit codes: 0 after a signal or a control call answered 200; 1 when serving fails, or when a
//! control call fails or is answered otherwise (the answer goes to stderr); 2 for bad arguments,
//! a bad seed file, an unreadable `@FILE` or a URL that is not loopback.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use fake_heroku::{Seed, ServeOptions, TlsFiles};

/// Serve a fake Heroku Platform API on 127.0.0.1, or drive a running one.
///
/// Without a subcommand, serves: prints `fake-heroku listening on http://127.0.0.1:PORT`, then
/// serves until SIGTERM or SIGINT.
#[derive(Debug, Parser)]
#[command(name = "fake-heroku", args_conflicts_with_subcommands = true, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The port to listen on, on 127.0.0.1; 0 picks a free one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    port: u16,
    /// Start from this Seed (JSON) instead of an empty fake.
    #[arg(long, value_name = "FILE.json")]
    seed: Option<PathBuf>,
    /// Make the apps' web_url http://127.0.0.1:PORT/__app/APP/, served by the fake itself,
    /// instead of https://APP.herokuapp.com/.
    #[arg(long)]
    local_web_urls: bool,
    /// Also serve rendezvous (attaching to one-off dynos) over TLS on a second port of
    /// 127.0.0.1, with this certificate (chain) PEM file; needs --tls-key.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key PEM file of --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Merge a Seed into a running fake (POST URL/__fake/seed).
    Seed(Post),
    /// Queue a Script on a running fake (POST URL/__fake/script).
    Script(Post),
    /// Print the requests a running fake recorded, as a JSON array (GET URL/__fake/requests).
    Requests(Target),
}

#[derive(Debug, Args)]
struct Target {
    /// The running fake, as its listening line shows it: http://127.0.0.1:PORT (or
    /// http://localhost:PORT).
    #[arg(long, value_name = "URL")]
    url: String,
}

#[derive(Debug, Args)]
struct Post {
    #[command(flatten)]
    target: Target,
    /// The JSON text, or @FILE to read it from FILE.
    #[arg(value_name = "JSON")]
    json: String,
}

/// The largest answer the client subcommands read.
const MAX_ANSWER: u64 = 256 * 1024 * 1024;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => {
            let tls = cli.tls_cert.zip(cli.tls_key).map(|(cert, key)| TlsFiles { cert, key });
            serve(cli.port, cli.seed, ServeOptions { log: true, local_web_urls: cli.local_web_urls, tls })
        }
        Some(Command::Seed(post)) => client_post(&post, "seed"),
        Some(Command::Script(post)) => client_post(&post, "script"),
        Some(Command::Requests(target)) => client_requests(&target),
    }
}

fn serve(port: u16, seed_file: Option<PathBuf>, options: ServeOptions) -> ExitCode {
    let seed = match seed_file.map(|path| read_seed(&path)).transpose() {
        Ok(seed) => seed.unwrap_or_default(),
        Err(message) => {
            eprintln!("fake-heroku: {message}");
            return ExitCode::from(2);
        }
    };
    // Before the listening line: a fake that cannot serve rendezvous does not start.
    if let Some(Err(e)) = options.tls.as_ref().map(TlsFiles::check) {
        eprintln!("fake-heroku: {e:#}");
        return ExitCode::from(1);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("fake-heroku: cannot start a tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e}"))?;
        let addr = listener.local_addr()?;
        let shutdown = shutdown_signal()?;
        let mut stdout = std::io::stdout();
        writeln!(stdout, "fake-heroku listening on http://{addr}")?;
        stdout.flush()?;
        fake_heroku::serve(listener, seed, options, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-heroku: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn read_seed(path: &std::path::Path) -> Result<Seed, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read seed file {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("seed file {} is not a valid seed: {e}", path.display()))
}

/// Installs the SIGTERM and SIGINT handlers now (so that a signal sent right after the
/// listening line is printed is not fatal) and returns a future that resolves on either.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            eprintln!("fake-heroku: shutting down");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("fake-heroku: shutting down");
        })
    }
}

/// `seed` and `script`: POSTs the JSON to `URL/__fake/{call}`.
fn client_post(post: &Post, call: &str) -> ExitCode {
    let base = match loopback_base(&post.target.url) {
        Ok(base) => base,
        Err(message) => return usage_error(&message),
    };
    let body = match post.json.strip_prefix('@') {
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => return usage_error(&format!("cannot read {path}: {e}")),
        },
        None => post.json.clone().into_bytes(),
    };
    let url = format!("{base}/__fake/{call}");
    let response = agent().post(&url).header("Content-Type", "application/json").send(body);
    match answer("POST", &url, response) {
        Ok(_) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

/// `requests`: prints `URL/__fake/requests`.
fn client_requests(target: &Target) -> ExitCode {
    let base = match loopback_base(&target.url) {
        Ok(base) => base,
        Err(message) => return usage_error(&message),
    };
    let url = format!("{base}/__fake/requests");
    let body = match answer("GET", &url, agent().get(&url).call()) {
        Ok(body) => body,
        Err(code) => return code,
    };
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{}", body.trim_end()).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-heroku: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("fake-heroku: {message}");
    ExitCode::from(2)
}

/// A client that talks to the fake directly: never through a proxy from the environment,
/// following no redirects, with non-2xx answers as answers rather than errors.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// The body of a 200 answer; anything else is reported on stderr and becomes exit code 1.
fn answer(
    method: &str,
    url: &str,
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<String, ExitCode> {
    let failed = |message: String| {
        eprintln!("fake-heroku: {method} {url} {message}");
        ExitCode::from(1)
    };
    let mut response = response.map_err(|e| failed(format!("failed: {e}")))?;
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .map_err(|e| failed(format!("answered {status} with an unreadable body: {e}")))?;
    if status != ureq::http::StatusCode::OK {
        return Err(failed(format!("answered {status}: {}", body.trim_end())));
    }
    Ok(body)
}

/// Checks that `url` is `http://127.0.0.1[:PORT]` or `http://localhost[:PORT]`, a trailing `/`
/// allowed, and returns it without the slash.
fn loopback_base(url: &str) -> Result<String, String> {
    let refuse = || {
        format!(
            "refusing --url {url:?}: this tool only talks to loopback, \
             http://127.0.0.1[:PORT] or http://localhost[:PORT]"
        )
    };
    let rest = url.strip_prefix("http://").ok_or_else(refuse)?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if host != "127.0.0.1" && !host.eq_ignore_ascii_case("localhost") {
        return Err(refuse());
    }
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err())
    {
        return Err(refuse());
    }
    Ok(format!("http://{authority}"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn only_loopback_http_urls_are_accepted() {
        for (url, base) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
            ("http://localhost:1", "http://localhost:1"),
            ("http://LocalHost", "http://LocalHost"),
            ("http://127.0.0.1", "http://127.0.0.1"),
        ] {
            assert_eq!(loopback_base(url).as_deref(), Ok(base), "{url}");
        }
        for url in [
            "https://127.0.0.1:8080",
            "HTTP://127.0.0.1:8080",
            "127.0.0.1:8080",
            "http://example.com",
            "http://127.0.0.2:8080",
            "http://127.0.0.1.example.com:8080",
            "http://localhost.example.com",
            "http://127.0.0.1:8080@example.com",
            "http://user@127.0.0.1:8080",
            "http://127.0.0.1:8080/path",
            "http://127.0.0.1:8080?q",
            "http://127.0.0.1:",
            "http://127.0.0.1:+80",
            "http://127.0.0.1:65536",
            "http://[::1]:8080",
            "",
        ] {
            let error = loopback_base(url).expect_err(url);
            assert!(error.contains("loopback") && !error.contains('\n'), "{error}");
        }
    }
}
