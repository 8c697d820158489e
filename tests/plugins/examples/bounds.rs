//! Pushes the host's per-call bounds on requests, response streams and workspace blobs,
//! as its `mode` setting says. Each mode's deploy summary says exactly what happened:
//! how many requests, streams or blobs succeeded, and the first error, as one line.
use pier_plugin_sdk::*;
include!("common.rs");

struct Plugin;

fn get(url: &str) -> api::Request {
    api::Request::get(url).timeout_ms(10_000)
}

/// A GET of `base/PATH` with the headers `(name, value)`, then a plain GET of `base/after`
/// in the same call: `OUTCOME; after: OUTCOME`.
fn with_headers(base: &str, path: &str, headers: impl Iterator<Item = (String, String)>) -> String {
    let request = headers.fold(get(&format!("{base}/{path}")), |r, (name, value)| r.header(&name, &value));
    let first = http_outcome(&request.send());
    let after = http_outcome(&get(&format!("{base}/after")).send());
    format!("{first}; after: {after}")
}

/// Opens up to `n` response streams to `base/stream/I`, holding them all, until the first
/// error.
fn open_streams(base: &str, n: usize) -> (Vec<http::ResponseStream>, Option<http::HttpError>) {
    let mut streams = Vec::new();
    for i in 0..n {
        match get(&format!("{base}/stream/{i}")).open() {
            Ok(stream) => streams.push(stream),
            Err(e) => return (streams, Some(e)),
        }
    }
    (streams, None)
}

/// `opened N`, then `; then ERROR` if one ended it.
fn opened(streams: &[http::ResponseStream], error: &Option<http::HttpError>) -> String {
    match error {
        Some(e) => format!("opened {}; then {}", streams.len(), http_error(e)),
        None => format!("opened {}", streams.len()),
    }
}

/// Packs the workspace up to `n` times, holding every blob, until the first error.
fn pack_all(n: usize) -> (Vec<workspace::Blob>, Option<workspace::WorkspaceError>) {
    let mut blobs = Vec::new();
    for _ in 0..n {
        match workspace::pack() {
            Ok(blob) => blobs.push(blob),
            Err(e) => return (blobs, Some(e)),
        }
    }
    (blobs, None)
}

impl Method for Plugin {
    fn describe() -> Description {
        let permissions = Permissions { endpoints: vec![api_endpoint()], ..Permissions::none() };
        describe_with("bounds", permissions, vec![api_url_field(), mode_field()])
    }

    fn deploy(ctx: Context, settings: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        let base = endpoint(&ctx, "api")?.to_string();
        let summary = match setting(&settings, "mode") {
            // Hostile: more headers, or more header bytes, than a request may carry.
            "headers-30000" => {
                with_headers(&base, "headers", (0..30_000).map(|i| (format!("x-h-{i}"), format!("v{i}"))))
            }
            "header-1mib" => with_headers(&base, "big", std::iter::once(("x-big".into(), "a".repeat(1 << 20)))),
            // Benign: the most headers a request may carry, and one large header under 64 KiB.
            "headers-100" => with_headers(&base, "headers", (0..100).map(|i| (format!("x-h-{i}"), format!("v{i}")))),
            "header-60kib" => with_headers(&base, "big", std::iter::once(("x-big".into(), "a".repeat(60 << 10)))),
            // Hostile: holds as many open response streams as the host gives.
            "streams-1000" => {
                let (streams, error) = open_streams(&base, 1000);
                opened(&streams, &error)
            }
            // Benign: sixteen streams, then one dropped and another opened.
            "streams-16" => {
                let (mut streams, error) = open_streams(&base, 16);
                if error.is_some() {
                    opened(&streams, &error)
                } else {
                    drop(streams.pop());
                    let again = match get(&format!("{base}/stream/again")).open() {
                        Ok(stream) => ok(stream.status(), ""),
                        Err(e) => http_error(&e),
                    };
                    format!("opened 16; dropped one; reopened: {again}")
                }
            }
            // Hostile: holds as many packed copies of the checkout as the host gives.
            "blobs-40" => {
                let (blobs, error) = pack_all(40);
                match error {
                    Some(e) => format!("packed {}; then {}", blobs.len(), workspace_error(&e)),
                    None => format!("packed {}", blobs.len()),
                }
            }
            // Benign: a blob packed, dropped, and packed again.
            "blob-again" => match workspace::pack() {
                Ok(blob) => {
                    let first = blob.size();
                    drop(blob);
                    match workspace::pack() {
                        Ok(again) => format!("packed {first}; dropped it; packed {}", again.size()),
                        Err(e) => format!("packed {first}; dropped it; then {}", workspace_error(&e)),
                    }
                }
                Err(e) => workspace_error(&e),
            },
            other => return Err(invalid("mode", format!("unknown mode `{other}`"))),
        };
        report(summary)
    }

    accepting_exports!();
}

export_method!(Plugin);
