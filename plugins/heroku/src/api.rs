//! The slice of Heroku's Platform API this method uses, with Heroku's error handling:
//! JSON errors `{id, message}`, `RateLimit-Remaining` / 429 with `Retry-After`, and
//! `Range` / `Next-Range` paging.
//!
//! Retries: a 429 means the request was not processed, so any request is retried after
//! `Retry-After` (bounded). GETs are also retried on 5xx and connection failures. A POST
//! that failed otherwise is never retried: that could create a second build.

use std::time::Duration;

use pier_plugin_sdk::api::{Request, Response, describe_error};
use pier_plugin_sdk::http::{HttpError, Method};
use pier_plugin_sdk::*;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::{API_KEY, APP};

/// The media type every request must accept, or Heroku answers 406.
pub const ACCEPT: &str = "application/vnd.heroku+json; version=3";
/// How many times a request is retried.
const RETRIES: u32 = 3;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: u64 = 60;

/// `GET /account`.
#[derive(Debug, Deserialize)]
pub struct Account {
    pub email: String,
}

/// `GET /apps/{app}`.
#[derive(Debug, Deserialize)]
pub struct App {
    pub name: String,
    pub web_url: Option<String>,
}

/// A Heroku error body.
#[derive(Debug, Default, Deserialize)]
struct ApiError {
    #[serde(default)]
    id: String,
    #[serde(default)]
    message: String,
}

/// A client for one call.
pub struct Client {
    base: String,
}

fn sleep(seconds: f64) {
    std::thread::sleep(Duration::from_secs_f64(seconds));
}

impl Client {
    /// A client for the endpoint the host resolved; the API key must be answered.
    pub fn new(ctx: &Context) -> Result<Client, MethodError> {
        if !has_secret(API_KEY) {
            return Err(invalid(API_KEY, "the Heroku API key is required"));
        }
        Ok(Client { base: endpoint(ctx, "api")?.to_string() })
    }

    fn request(&self, method: Method, path: &str) -> Request {
        Request::new(method, &format!("{}{path}", self.base)).header("Accept", ACCEPT).bearer(API_KEY)
    }

    /// Sends `request`, retrying as the module docs say.
    pub fn send(&self, request: Request) -> Result<Response, MethodError> {
        let idempotent = matches!(request.clone().build().method, Method::Get | Method::Head);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match request.clone().send() {
                Ok(response) if response.status() == 429 => {
                    let wait = response
                        .header("retry-after")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| s.min(MAX_RETRY_AFTER));
                    if attempt > RETRIES {
                        return Err(MethodError::RateLimited(wait.map(|w| w as u32)));
                    }
                    let wait = wait.map(|w| w as f64).unwrap_or(2f64.powi(attempt as i32 - 1));
                    log::warn(&format!("Heroku is rate limiting this account; retrying in {wait}s"));
                    sleep(wait);
                }
                Ok(response) if response.status() >= 500 && idempotent && attempt <= RETRIES => {
                    log::warn(&format!("Heroku answered {}; retrying", response.status()));
                    sleep(0.5 * 2f64.powi(attempt as i32 - 1));
                }
                Ok(response) => return Ok(response),
                Err(HttpError::Connection(_) | HttpError::Timeout) if idempotent && attempt <= RETRIES => {
                    sleep(0.5 * 2f64.powi(attempt as i32 - 1));
                }
                Err(e) => {
                    return Err(MethodError::Provider(format!(
                        "cannot reach the Heroku API at {}: {}",
                        self.base,
                        describe_error(&e)
                    )));
                }
            }
        }
    }

    /// Sends `request` and parses a 2xx answer, mapping Heroku's errors.
    pub fn json<T: DeserializeOwned>(&self, request: Request, what: &str) -> Result<T, MethodError> {
        let response = self.send(request)?;
        if !response.ok() {
            return Err(error(&response, what));
        }
        response.json().map_err(|e| MethodError::Provider(format!("Heroku answered {what} with unexpected JSON: {e}")))
    }

    /// `GET /account`: checks the key.
    pub fn account(&self) -> Result<Account, MethodError> {
        self.json(self.request(Method::Get, "/account"), "the account")
    }

    /// `GET /apps/{app}`.
    pub fn app(&self, name: &str) -> Result<App, MethodError> {
        let response = self.send(self.request(Method::Get, &format!("/apps/{}", encode(name))))?;
        if response.status() == 404 {
            return Err(invalid(APP, format!("there is no app `{name}` on this Heroku account")));
        }
        if !response.ok() {
            return Err(error(&response, "the app"));
        }
        response.json().map_err(|e| MethodError::Provider(format!("unexpected app JSON from Heroku: {e}")))
    }

    /// `GET /apps`, every page, sorted by name.
    pub fn apps(&self) -> Result<Vec<String>, MethodError> {
        #[derive(Deserialize)]
        struct Listed {
            name: String,
        }
        let listed: Vec<Listed> = self.all("/apps", "name ..; max=200", "the app list")?;
        let mut names: Vec<String> = listed.into_iter().map(|a| a.name).collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Every page of the list at `path`, asked for with the `Range` `range` and followed
    /// through `Next-Range`.
    pub fn all<T: DeserializeOwned>(&self, path: &str, range: &str, what: &str) -> Result<Vec<T>, MethodError> {
        let mut items = Vec::new();
        let mut range = range.to_string();
        for _ in 0..10_000 {
            let response = self.send(self.request(Method::Get, path).header("Range", &range))?;
            if !response.ok() {
                return Err(error(&response, what));
            }
            let page: Vec<T> = response
                .json()
                .map_err(|e| MethodError::Provider(format!("Heroku answered {what} with unexpected JSON: {e}")))?;
            items.extend(page);
            match (response.status(), response.header("next-range")) {
                (206, Some(next)) => range = next.to_string(),
                _ => return Ok(items),
            }
        }
        Err(MethodError::Provider(format!("Heroku's {what} did not end after 10000 pages")))
    }

    /// `POST /account/keys {public_key}`, as the official CLI's `keys:add` does (the
    /// endpoint is not in the public schema). A key already registered is fine.
    pub fn add_key(&self, public_key: &str) -> Result<(), MethodError> {
        let body = serde_json::json!({ "public_key": public_key });
        let response = self.send(self.request(Method::Post, "/account/keys").json(&body))?;
        if response.ok() {
            return Ok(());
        }
        let e: ApiError = response.json().unwrap_or_default();
        if response.status() == 422 && e.message.to_ascii_lowercase().contains("already") {
            return Ok(());
        }
        Err(error(&response, "the SSH key"))
    }

    /// A request to `path` under the API.
    pub fn get(&self, path: &str) -> Request {
        self.request(Method::Get, path)
    }

    /// A POST to `path` under the API.
    pub fn post(&self, path: &str) -> Request {
        self.request(Method::Post, path)
    }

    /// A DELETE of `path` under the API.
    pub fn delete(&self, path: &str) -> Request {
        self.request(Method::Delete, path)
    }
}

/// Percent-encodes a path segment.
pub fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The method error for a non-2xx Heroku answer about `what`.
pub fn error(response: &Response, what: &str) -> MethodError {
    let e: ApiError = response.json().unwrap_or_default();
    let detail = if e.message.is_empty() { format!("HTTP {}", response.status()) } else { e.message.clone() };
    match (response.status(), e.id.as_str()) {
        (401, _) => invalid(API_KEY, format!("Heroku rejected the API key (401 unauthorized): {detail}")),
        (403, "two_factor") => invalid(
            API_KEY,
            "this Heroku account requires two-factor authentication for this key: create a long-lived \
             authorization with `heroku authorizations:create` and use its token",
        ),
        (403, "suspended") => MethodError::Provider(format!("the Heroku account is suspended: {detail}")),
        (429, _) => MethodError::RateLimited(None),
        (status, id) => {
            let id = if id.is_empty() { String::new() } else { format!(" ({id})") };
            MethodError::Provider(format!("Heroku refused {what}: {status}{id}: {detail}"))
        }
    }
}
