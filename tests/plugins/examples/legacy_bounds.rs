//! `bounds` built against the frozen pier:deploy@0.1.0, which has the same `http` (with
//! response streams) and `workspace` capabilities: the same modes, the same summaries.
wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "pier:deploy/plugin" });
include!("legacy_common.rs");

struct Plugin;

fn get(url: &str, headers: Vec<http::Header>) -> http::Request {
    request(http::Method::Get, url, headers, None)
}

/// A GET of `base/PATH` with the headers `(name, value)`, then a plain GET of `base/after`
/// in the same call: `OUTCOME; after: OUTCOME`.
fn with_headers(base: &str, path: &str, headers: impl Iterator<Item = (String, String)>) -> String {
    let headers = headers.map(|(name, value)| text_header(&name, &value)).collect();
    let first = http_outcome(&http::send(&get(&format!("{base}/{path}"), headers)));
    let after = http_outcome(&http::send(&get(&format!("{base}/after"), vec![])));
    format!("{first}; after: {after}")
}

/// Opens up to `n` response streams to `base/stream/I`, holding them all, until the first
/// error.
fn open_streams(base: &str, n: usize) -> (Vec<http::ResponseStream>, Option<http::HttpError>) {
    let mut streams = Vec::new();
    for i in 0..n {
        match http::open(&get(&format!("{base}/stream/{i}"), vec![])) {
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

/// A workspace error as one line.
fn workspace_error(error: &workspace::WorkspaceError) -> String {
    match error {
        workspace::WorkspaceError::Unavailable => "unavailable".into(),
        workspace::WorkspaceError::TooLarge(n) => format!("too-large: {n}"),
        workspace::WorkspaceError::Io(m) => format!("io: {m}"),
        workspace::WorkspaceError::Upload(e) => http_error(e),
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

impl Guest for Plugin {
    fn describe() -> Description {
        let permissions = Permissions { endpoints: vec![api_endpoint()], origins: vec![], programs: vec![] };
        let fields =
            vec![field("api_url", "API URL", FieldKind::Text, true), field("mode", "Mode", FieldKind::Text, false)];
        describe_with("legacy-bounds", permissions, fields)
    }

    fn choices(_: Context, field: String, _: Vec<Answer>) -> Result<Vec<Choice>, MethodError> {
        Err(MethodError::Unsupported(format!("`{field}` is not a choice field")))
    }

    fn validate(_: Context, _: Vec<Answer>) -> Result<String, MethodError> {
        Ok("nothing to check".into())
    }

    fn setup(_: Context, answers: Vec<Answer>) -> Result<SetupResult, MethodError> {
        Ok(SetupResult { settings: answers, notes: vec![] })
    }

    fn deploy(ctx: Context, settings: Vec<Answer>, _: BuildInfo) -> Result<DeployReport, MethodError> {
        let base = endpoint(&ctx, "api")?.to_string();
        let summary = match setting(&settings, "mode") {
            "headers-30000" => {
                with_headers(&base, "headers", (0..30_000).map(|i| (format!("x-h-{i}"), format!("v{i}"))))
            }
            "header-1mib" => with_headers(&base, "big", std::iter::once(("x-big".into(), "a".repeat(1 << 20)))),
            "headers-100" => with_headers(&base, "headers", (0..100).map(|i| (format!("x-h-{i}"), format!("v{i}")))),
            "header-60kib" => with_headers(&base, "big", std::iter::once(("x-big".into(), "a".repeat(60 << 10)))),
            "streams-1000" => {
                let (streams, error) = open_streams(&base, 1000);
                opened(&streams, &error)
            }
            "streams-16" => {
                let (mut streams, error) = open_streams(&base, 16);
                if error.is_some() {
                    opened(&streams, &error)
                } else {
                    drop(streams.pop());
                    let again = match http::open(&get(&format!("{base}/stream/again"), vec![])) {
                        Ok(stream) => ok(stream.status(), ""),
                        Err(e) => http_error(&e),
                    };
                    format!("opened 16; dropped one; reopened: {again}")
                }
            }
            "blobs-40" => {
                let (blobs, error) = pack_all(40);
                match error {
                    Some(e) => format!("packed {}; then {}", blobs.len(), workspace_error(&e)),
                    None => format!("packed {}", blobs.len()),
                }
            }
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

    fn prepare_commands(_: Context, _: Vec<Answer>, commands: Vec<String>) -> Result<CommandPlan, MethodError> {
        Ok(CommandPlan { env: vec![], commands, notes: vec![], tools: vec![] })
    }
}

export!(Plugin);
