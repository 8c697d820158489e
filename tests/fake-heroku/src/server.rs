//! The HTTP server: dispatch, request recording, control endpoints, and the [`FakeHeroku`]
//! handle that runs it on a thread of its own.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use anyhow::Context as _;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::api::{self, Incoming};
use crate::record::{RecordedRequest, RequestKind, RollbackRecord, RunRecord};
use crate::rendezvous::{self, TlsFiles};
use crate::script::Script;
use crate::state::{Key, Seed, State};
use crate::transfer::{self, Upload};
use crate::util::{Reply, ReplyBody, api_error, query_param};

/// Largest request body the fake reads (source tarballs included).
const MAX_BODY: usize = 256 * 1024 * 1024;

/// How the server behaves beyond its state.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Log one line per request to stderr.
    pub log: bool,
    /// Make the apps' `web_url` `http://127.0.0.1:PORT/__app/APP/`, served by the fake itself
    /// (statuses scripted with [`Script::web`]), instead of `https://APP.herokuapp.com/`.
    pub local_web_urls: bool,
    /// Serve rendezvous (attaching to one-off dynos, see [`crate::RunScript`]) over TLS with
    /// this certificate and key, on a second port of `127.0.0.1`. Without it, creating an
    /// attached dyno answers `501 not_implemented`.
    pub tls: Option<TlsFiles>,
}

/// State shared between the server, its rendezvous sessions and its handle.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) log: bool,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A fake Heroku running on `127.0.0.1`, on a thread with its own tokio runtime, for use from
/// plain synchronous tests. Dropping it stops the server.
///
/// ```no_run
/// use fake_heroku::{FakeHeroku, Seed, SeedAccount};
///
/// let heroku = FakeHeroku::start(Seed {
///     accounts: vec![SeedAccount {
///         email: "ada@example.com".into(),
///         api_key: "key".into(),
///         apps: vec!["hello-app".into()],
///         ..SeedAccount::default()
///     }],
/// })?;
/// println!("Heroku API at {}", heroku.url());
/// # anyhow::Ok(())
/// ```
#[derive(Debug)]
pub struct FakeHeroku {
    url: String,
    rendezvous_port: Option<u16>,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHeroku {
    /// Seeds a fake and starts serving it on `127.0.0.1` on a free port, with the default
    /// [`ServeOptions`].
    ///
    /// Logs one line per request to stderr when the environment sets `FAKE_HEROKU_LOG=1`.
    pub fn start(seed: Seed) -> anyhow::Result<FakeHeroku> {
        FakeHeroku::start_with(seed, ServeOptions::default())
    }

    /// Seeds a fake and starts serving it on `127.0.0.1` on a free port, with `options`.
    ///
    /// Logs one line per request to stderr when `options.log` is set or the environment sets
    /// `FAKE_HEROKU_LOG=1`. Fails when `options.tls` names files that do not make a usable
    /// certificate and key.
    ///
    /// ```no_run
    /// use fake_heroku::{FakeHeroku, Seed, ServeOptions, TlsFiles};
    ///
    /// // A certificate for IP:127.0.0.1 and DNS:localhost, signed by the test's own CA.
    /// let tls = TlsFiles { cert: "server.pem".into(), key: "server.key".into() };
    /// let options = ServeOptions { tls: Some(tls), local_web_urls: true, ..ServeOptions::default() };
    /// let heroku = FakeHeroku::start_with(Seed::default(), options)?;
    /// println!("API at {}, rendezvous on port {:?}", heroku.url(), heroku.rendezvous_port());
    /// # anyhow::Ok(())
    /// ```
    pub fn start_with(seed: Seed, options: ServeOptions) -> anyhow::Result<FakeHeroku> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("cannot bind a port on 127.0.0.1")?;
        listener.set_nonblocking(true).context("cannot make the listener non-blocking")?;
        let addr = listener.local_addr().context("the listener has no address")?;
        let log = options.log || std::env::var_os("FAKE_HEROKU_LOG").is_some_and(|v| v == "1");
        let options = ServeOptions { log, ..options };
        let rendezvous = match &options.tls {
            Some(files) => {
                let acceptor = rendezvous::acceptor(files)?;
                let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
                    .context("cannot bind a rendezvous port on 127.0.0.1")?;
                listener.set_nonblocking(true).context("cannot make the rendezvous listener non-blocking")?;
                Some((acceptor, listener))
            }
            None => None,
        };
        let rendezvous_port = match &rendezvous {
            Some((_, listener)) => {
                Some(listener.local_addr().context("the rendezvous listener has no address")?.port())
            }
            None => None,
        };
        let shared = Arc::new(Shared::new(addr, &seed, &options, rendezvous_port).map_err(anyhow::Error::msg)?);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot build a tokio runtime")?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = router(shared.clone());
        let sessions = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fake-heroku-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(e) => {
                            eprintln!("fake-heroku: cannot listen: {e}");
                            return;
                        }
                    };
                    let rendezvous = match rendezvous.map(|(a, l)| tokio::net::TcpListener::from_std(l).map(|l| (a, l)))
                    {
                        Some(Ok((acceptor, listener))) => Some((acceptor, listener)),
                        Some(Err(e)) => {
                            eprintln!("fake-heroku: cannot listen for rendezvous: {e}");
                            return;
                        }
                        None => None,
                    };
                    let rendezvous = async move {
                        match rendezvous {
                            Some((acceptor, listener)) => rendezvous::serve(listener, acceptor, sessions).await,
                            None => std::future::pending().await,
                        }
                    };
                    // Stop at once on shutdown: open connections are dropped with the runtime.
                    tokio::select! {
                        result = axum::serve(listener, app) => {
                            if let Err(e) = result {
                                eprintln!("fake-heroku: server stopped: {e}");
                            }
                        }
                        () = rendezvous => {}
                        _ = stopped => {}
                    }
                });
            })
            .context("cannot start the server thread")?;
        Ok(FakeHeroku {
            url: format!("http://{addr}"),
            rendezvous_port,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The port on `127.0.0.1` that serves rendezvous over TLS, when the fake was started with
    /// [`ServeOptions::tls`]. Attached dynos' `attach_url`s name it.
    pub fn rendezvous_port(&self) -> Option<u16> {
        self.rendezvous_port
    }

    /// The one-off dynos created so far, in order, with what became of their sessions.
    pub fn runs(&self) -> Vec<RunRecord> {
        self.shared.lock().runs.iter().map(|r| r.record.clone()).collect()
    }

    /// The first lines of the rendezvous connections that were refused (a wrong secret, or
    /// the secret of a run whose client had attached already), in order.
    pub fn refused_rendezvous(&self) -> Vec<String> {
        self.shared.lock().refused_rendezvous.clone()
    }

    /// The server's base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Every request received so far, in order, failed ones included; control calls
    /// (`/__fake/...`) are left out.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Queues scripted behaviour (see [`Script`]).
    ///
    /// # Panics
    ///
    /// When the script names an account that was not seeded, or a `fail_next` status outside
    /// 400..=599: a test's own mistake, reported at once.
    pub fn script(&self, s: Script) {
        if let Err(message) = self.shared.lock().apply_script(s) {
            panic!("fake-heroku: bad script: {message}");
        }
    }

    /// Merges more accounts and apps in (see [`Seed`]).
    pub fn seed(&self, seed: &Seed) -> anyhow::Result<()> {
        self.shared.lock().apply_seed(seed).map_err(anyhow::Error::msg)
    }

    /// The SSH keys registered for the account `email` and not deleted since, oldest first.
    pub fn keys(&self, email: &str) -> Vec<Key> {
        self.shared.lock().keys.iter().filter(|k| k.email == email).cloned().collect()
    }

    /// The bytes uploaded to a source's `put_url`, by source id (the `{id}` in
    /// `/__blobs/{id}`); `None` if nothing was uploaded.
    pub fn blob(&self, id: &str) -> Option<Vec<u8>> {
        self.shared.lock().blobs.get(id).cloned().flatten()
    }

    /// Every upload to a source's `put_url` so far, in order, with its tarball's members
    /// (names, kinds, modes and contents).
    pub fn uploads(&self) -> Vec<Upload> {
        self.shared.lock().uploads.clone()
    }

    /// The builds created so far, as the API shows them now (reading them is not a poll).
    pub fn builds(&self) -> Vec<Value> {
        let state = self.shared.lock();
        (0..state.builds.len()).map(|i| state.build_json(i)).collect()
    }

    /// The releases of the app named `app` that clients can see, oldest first, as the API
    /// shows them now (reading them is not a poll); empty for an unknown app.
    pub fn releases(&self, app: &str) -> Vec<Value> {
        let state = self.shared.lock();
        state.apps.iter().position(|a| a.name == app).map(|app| state.releases_json(app)).unwrap_or_default()
    }

    /// The rollbacks carried out so far, in order.
    pub fn rollbacks(&self) -> Vec<RollbackRecord> {
        self.shared.lock().rollbacks.clone()
    }
}

impl Drop for FakeHeroku {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn new(
        addr: SocketAddr,
        seed: &Seed,
        options: &ServeOptions,
        rendezvous_port: Option<u16>,
    ) -> Result<Shared, String> {
        let mut state = State::new(format!("http://{addr}"));
        state.local_web_urls = options.local_web_urls;
        state.rendezvous_port = rendezvous_port;
        state.apply_seed(seed)?;
        Ok(Shared { state: Mutex::new(state), log: options.log })
    }
}

/// Serves a seeded fake on `listener` until `shutdown` resolves, then finishes the requests in
/// flight. This is what the `fake-heroku` binary runs.
///
/// Besides the Platform API, the server answers control calls, which need no authentication
/// and are not recorded:
///
/// * `POST /__fake/seed` — a [`Seed`] JSON, merged in;
/// * `POST /__fake/script` — a [`Script`] JSON, queued;
/// * `GET /__fake/requests` — the [`RecordedRequest`]s as a JSON array;
/// * `GET /__fake/keys?email=EMAIL` — the account's [`Key`]s as a JSON array;
/// * `GET /__fake/builds` — the builds as the API shows them now;
/// * `GET /__fake/releases?app=APP` — the app's releases as the API shows them now;
/// * `GET /__fake/rollbacks` — the [`RollbackRecord`]s as a JSON array;
/// * `GET /__fake/runs` — the [`RunRecord`]s (one-off dynos) as a JSON array;
/// * `GET /__fake/info` — `{"url": "http://127.0.0.1:PORT", "rendezvous_port": PORT|null}`.
///
/// With [`ServeOptions::tls`], it also serves rendezvous over TLS on a second port of
/// `127.0.0.1` (logged to stderr with [`ServeOptions::log`], and shown by `/__fake/info`).
///
/// Control calls answer `200 {"ok": true}` (or the data), `400` for JSON that does not parse
/// as the expected type, and `422` for a seed or script the state refuses.
pub async fn serve(
    listener: tokio::net::TcpListener,
    seed: Seed,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("the listener has no address")?;
    let rendezvous = match &options.tls {
        Some(files) => {
            let acceptor = rendezvous::acceptor(files)?;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
                .await
                .context("cannot bind a rendezvous port on 127.0.0.1")?;
            Some((acceptor, listener))
        }
        None => None,
    };
    let rendezvous_port = match &rendezvous {
        Some((_, listener)) => Some(listener.local_addr().context("the rendezvous listener has no address")?.port()),
        None => None,
    };
    let shared = Arc::new(Shared::new(addr, &seed, &options, rendezvous_port).map_err(anyhow::Error::msg)?);
    let sessions = rendezvous.map(|(acceptor, listener)| {
        if options.log {
            eprintln!("fake-heroku: rendezvous over TLS on 127.0.0.1:{}", rendezvous_port.unwrap_or_default());
        }
        tokio::spawn(rendezvous::serve(listener, acceptor, shared.clone()))
    });
    let result =
        axum::serve(listener, router(shared)).with_graceful_shutdown(shutdown).await.context("the server failed");
    // Open rendezvous sessions end with the server.
    if let Some(sessions) = sessions {
        sessions.abort();
    }
    result
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(dispatch).with_state(shared)
}

async fn dispatch(AxumState(shared): AxumState<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let body = axum::body::to_bytes(body, MAX_BODY).await;

    if let Some(control) = path.strip_prefix("/__fake/") {
        let reply = match &body {
            Ok(bytes) => control_call(&shared, &method, control, query.as_deref(), bytes),
            Err(_) => {
                Reply::json(StatusCode::PAYLOAD_TOO_LARGE, &json!({"error": "request body too large or unreadable"}))
            }
        };
        return into_response(reply);
    }

    let kind = if path.starts_with("/__blobs/") {
        RequestKind::Blob
    } else if path.starts_with("/__streams/") {
        RequestKind::Stream
    } else if path.starts_with(crate::web::PREFIX) {
        RequestKind::Web
    } else {
        RequestKind::Api
    };
    let (bytes, body_error) = match body {
        Ok(bytes) => (bytes, false),
        Err(_) => (Bytes::new(), true),
    };
    let mut state = shared.lock();
    let reply = if body_error {
        api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_entity_too_large",
            "The request body is too large or could not be read.",
        )
    } else {
        let incoming =
            Incoming { method: &method, path: &path, query: query.as_deref(), headers: &parts.headers, body: &bytes };
        match kind {
            RequestKind::Api => api::handle(&mut state, &incoming),
            RequestKind::Blob => transfer::blob(&mut state, &incoming),
            RequestKind::Stream => transfer::stream(&mut state, &incoming),
            RequestKind::Web => crate::web::handle(&mut state, &incoming),
        }
    };
    let record = RecordedRequest {
        kind,
        body: parse_body(kind, &parts.headers, &bytes),
        body_len: bytes.len(),
        headers: header_map(&parts.headers),
        method,
        path,
        query,
        status: reply.status.as_u16(),
    };
    if shared.log {
        eprintln!(
            "fake-heroku: {} {}{} -> {}",
            record.method,
            record.path,
            record.query.as_deref().map(|q| format!("?{q}")).unwrap_or_default(),
            record.status
        );
    }
    state.requests.push(record);
    drop(state);
    into_response(reply)
}

/// Parses a recorded body as JSON: API bodies always, others when their Content-Type says
/// JSON.
fn parse_body(kind: RequestKind, headers: &HeaderMap, bytes: &[u8]) -> Option<Value> {
    let says_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
    if bytes.is_empty() || (kind != RequestKind::Api && !says_json) {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        map.entry(name.as_str().to_string())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    map
}

fn control_call(shared: &Shared, method: &str, call: &str, query: Option<&str>, body: &[u8]) -> Reply {
    let ok = || Reply::json(StatusCode::OK, &json!({"ok": true}));
    let refused = |status: StatusCode, message: String| Reply::json(status, &json!({"error": message}));
    match (method, call) {
        ("POST", "seed") => match serde_json::from_slice::<Seed>(body) {
            Ok(seed) => match shared.lock().apply_seed(&seed) {
                Ok(()) => ok(),
                Err(e) => refused(StatusCode::UNPROCESSABLE_ENTITY, e),
            },
            Err(e) => refused(StatusCode::BAD_REQUEST, format!("not a seed: {e}")),
        },
        ("POST", "script") => match serde_json::from_slice::<Script>(body) {
            Ok(script) => match shared.lock().apply_script(script) {
                Ok(()) => ok(),
                Err(e) => refused(StatusCode::UNPROCESSABLE_ENTITY, e),
            },
            Err(e) => refused(StatusCode::BAD_REQUEST, format!("not a script: {e}")),
        },
        ("GET", "requests") => {
            let requests = shared.lock().requests.clone();
            Reply::json(StatusCode::OK, &serde_json::to_value(requests).unwrap_or(Value::Null))
        }
        ("GET", "keys") => {
            let Some(email) = query_param(query, "email") else {
                return refused(StatusCode::BAD_REQUEST, "missing ?email=".into());
            };
            let keys: Vec<Key> = shared.lock().keys.iter().filter(|k| k.email == email).cloned().collect();
            Reply::json(StatusCode::OK, &serde_json::to_value(keys).unwrap_or(Value::Null))
        }
        ("GET", "builds") => {
            let state = shared.lock();
            let builds: Vec<Value> = (0..state.builds.len()).map(|i| state.build_json(i)).collect();
            Reply::json(StatusCode::OK, &Value::Array(builds))
        }
        ("GET", "releases") => {
            let Some(app) = query_param(query, "app") else {
                return refused(StatusCode::BAD_REQUEST, "missing ?app=".into());
            };
            let state = shared.lock();
            match state.apps.iter().position(|a| a.name == app) {
                Some(app) => Reply::json(StatusCode::OK, &Value::Array(state.releases_json(app))),
                None => refused(StatusCode::NOT_FOUND, format!("no app {app}")),
            }
        }
        ("GET", "runs") => {
            let runs: Vec<RunRecord> = shared.lock().runs.iter().map(|r| r.record.clone()).collect();
            Reply::json(StatusCode::OK, &serde_json::to_value(runs).unwrap_or(Value::Null))
        }
        ("GET", "info") => {
            let state = shared.lock();
            Reply::json(StatusCode::OK, &json!({"url": state.base_url, "rendezvous_port": state.rendezvous_port}))
        }
        ("GET", "rollbacks") => {
            let rollbacks = shared.lock().rollbacks.clone();
            Reply::json(StatusCode::OK, &serde_json::to_value(rollbacks).unwrap_or(Value::Null))
        }
        _ => refused(StatusCode::NOT_FOUND, format!("no control call {method} /__fake/{call}")),
    }
}

fn into_response(reply: Reply) -> Response {
    let body = match reply.body {
        ReplyBody::Bytes(bytes) => Body::from(bytes),
        ReplyBody::Lines(lines) => {
            // One chunk per line; hyper sends a body of unknown length chunked.
            let chunks = lines.into_iter().map(|line| Ok::<_, Infallible>(Bytes::from(format!("{line}\n"))));
            Body::from_stream(futures_util::stream::iter(chunks))
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = reply.status;
    for (name, value) in reply.headers {
        response.headers_mut().append(name, value);
    }
    response
}
