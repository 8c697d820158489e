//! The conformance runner's fake provider: an HTTP server on 127.0.0.1 that answers
//! every request the same scripted way, and stand-ins for the programs a plugin declares.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// An HTTP server that answers `200 {}` to everything, or `500` with a Heroku-style error
/// body while failing.
pub struct FakeProvider {
    url: String,
    failing: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeProvider {
    /// Starts it on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<FakeProvider> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let failing = Arc::new(AtomicBool::new(false));
        let flag = failing.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let flag = flag.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_: Request<hyper::body::Incoming>| {
                        let failing = flag.load(Ordering::Relaxed);
                        async move {
                            let (status, body) = if failing {
                                (500, r#"{"id":"internal_server_error","message":"Internal server error."}"#)
                            } else {
                                (200, "{}")
                            };
                            let response = Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from_static(body.as_bytes())))
                                .expect("static response");
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(FakeProvider { url, failing, task })
    }

    /// Its base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Makes every answer a failure (or a success again).
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes a stand-in for each program into `dir`: each prints one line and exits with
/// `code`. Returns `dir`, to use as the search path.
pub fn stand_ins(dir: &Path, programs: &[String], code: i32) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    for program in programs {
        let path = dir.join(program);
        std::fs::write(
            &path,
            // The script never contains what the plugin declared: its own name comes from $0.
            format!("#!/bin/sh\nprintf 'conformance stand-in for %s: exit %s\\n' \"${{0##*/}}\" {code}\nexit {code}\n"),
        )?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(dir.to_path_buf())
}
