//! The apps' own web servers, for clients that check an app's health over HTTP.
//!
//! `GET /__app/{app}/{path...}` (any method, any path under the app, `/__app/{app}` too)
//! stands in for the app itself at its `web_url`. Each request to a known app takes the next
//! status of the scripted queue ([`crate::Script::web`], shared by all apps), or 200 once the
//! queue is empty, and answers it with a short `text/plain` body. An unknown app answers 404,
//! as Heroku's router does for a host no app has. Scripted `fail_next` rules apply first.
//! Requests are recorded with [`crate::RequestKind::Web`].
//!
//! An app's `web_url` points here when the fake is started with
//! [`crate::ServeOptions::local_web_urls`]; otherwise it is `https://APP.herokuapp.com/`, which
//! tests cannot reach.

use axum::http::StatusCode;

use crate::api::{Incoming, scripted_failure};
use crate::state::State;
use crate::util::Reply;

/// The path prefix of the apps' web servers.
pub const PREFIX: &str = "/__app/";

/// Answers one request to an app's web server.
pub fn handle(st: &mut State, req: &Incoming<'_>) -> Reply {
    if let Some(rule) = st.script.take_failure(req.method, req.path) {
        return scripted_failure(&rule);
    }
    let rest = req.path.strip_prefix(PREFIX).unwrap_or_default();
    let name = rest.split('/').next().unwrap_or_default();
    if !st.apps.iter().any(|app| app.name == name) {
        return Reply::text(
            StatusCode::NOT_FOUND,
            "There's nothing here, yet.\nBuild something amazing with Heroku.\n",
        );
    }
    let status = st.script.web.pop_front().unwrap_or(200);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let body = match status {
        StatusCode::OK => format!("{name} is up\n"),
        _ => format!("{name} answered {}\n", status.as_u16()),
    };
    Reply::text(status, &body)
}
