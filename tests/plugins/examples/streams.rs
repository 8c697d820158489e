//! Opens TLS streams (the `tls` capability), some where it may and some where it may not.
//! It may reach the host of its endpoint `api` (from the setting `api_url`) on any port,
//! and `*.example.com` only where an endpoint response sent it. Its `run` export reads the
//! command's words as a tiny script:
//!
//! - `connect HOST PORT`: connects there, writes `hello\n`, and passes everything the
//!   server sends, to its end, to `events.output`;
//! - `fetch-then-connect PATH`: GETs `{api}/PATH`, whose JSON field `attach_url` is
//!   `rendezvous://HOST:PORT/SECRET`, connects there, writes `SECRET\r\n`, and passes the
//!   rest on likewise;
//! - `input`: connects to the api's host on port `PORT` (a variable of the request),
//!   forwards the user's input to the stream, and passes the stream on likewise.
//!
//! Each returns exit 0, or 3 after logging the error (`Debug`) at level `error`.
use pier_plugin_sdk::events::Level;
use pier_plugin_sdk::*;
include!("common.rs");

struct Plugin;

type Outcome = Result<(), Box<dyn std::error::Error>>;

/// Passes everything `stream` reads, to its end, to `events.output`.
fn drain(stream: &tls::Connection) -> Outcome {
    while let Some(data) = stream.read()? {
        events::output(&String::from_utf8_lossy(&data));
    }
    Ok(())
}

fn connect(host: &str, port: &str) -> Outcome {
    let stream = tls::connect(host, port.parse()?, Some(5000))?;
    stream.write(b"hello\n")?;
    drain(&stream)
}

fn fetch_then_connect(ctx: &Context, path: &str) -> Outcome {
    let response = api::Request::get(&format!("{}/{path}", endpoint(ctx, "api")?)).timeout_ms(10_000).send()?;
    if !response.ok() {
        return Err(format!("HTTP {}", response.status()).into());
    }
    let body: serde_json::Value = response.json()?;
    let url = body["attach_url"].as_str().ok_or("the response has no attach_url")?;
    let (address, secret) =
        url.strip_prefix("rendezvous://").and_then(|rest| rest.split_once('/')).ok_or("not a rendezvous URL")?;
    let (host, port) = address.rsplit_once(':').ok_or("no port in the rendezvous URL")?;
    let stream = tls::connect(host, port.parse()?, Some(5000))?;
    stream.write(format!("{secret}\r\n").as_bytes())?;
    drain(&stream)
}

fn input(ctx: &Context, env: &[(String, String)]) -> Outcome {
    let port = env.iter().find(|(key, _)| key == "PORT").ok_or("no PORT in the request's environment")?;
    let stream = tls::connect(host_of(endpoint(ctx, "api")?), port.1.parse()?, Some(5000))?;
    stream.forward_input()?;
    drain(&stream)
}

/// The host of `url` (no IPv6 literals): between `://` and the next `/`, without a port.
fn host_of(url: &str) -> &str {
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest).split('/').next().unwrap_or_default();
    authority.rsplit_once(':').map_or(authority, |(host, _)| host)
}

impl Method for Plugin {
    fn describe() -> Description {
        let permissions = Permissions {
            endpoints: vec![api_endpoint()],
            streams: vec![StreamGrant::endpoint("api"), StreamGrant::host("*.example.com", None)],
            ..Permissions::none()
        };
        let api_url = Field::new("api_url", "API URL", "Where the provider's API is.", FieldKind::Text, false);
        describe_with("streams", permissions, vec![api_url.advanced()])
    }

    fn run(ctx: Context, _: Vec<Answer>, request: RunRequest) -> Result<i32, MethodError> {
        let words: Vec<&str> = request.command.iter().map(String::as_str).collect();
        let outcome = match words[..] {
            ["connect", host, port] => connect(host, port),
            ["fetch-then-connect", path] => fetch_then_connect(&ctx, path),
            ["input"] => input(&ctx, &request.env),
            _ => return Err(MethodError::Unsupported(format!("unknown command {:?}", request.command))),
        };
        match outcome {
            Ok(()) => Ok(0),
            Err(e) => {
                events::log(Level::Error, &format!("{e:?}"));
                Ok(3)
            }
        }
    }

    fn deploy(_: Context, _: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        report("streams deploy")
    }

    accepting_exports!();
}

export_method!(Plugin);
