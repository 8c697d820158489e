//! JSON over the `http` capability.
//!
//! ```text
//! let account: Account = api::Request::get(&format!("{base}/account"))
//!     .header("Accept", "application/json")
//!     .bearer("api_key")
//!     .send()?
//!     .json()?;
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::http::{self, Header, HeaderValue, HttpError, Method, SecretRef};

/// A request being built.
#[derive(Debug, Clone)]
pub struct Request {
    inner: http::Request,
}

impl Request {
    /// A request with `method` to `url`.
    pub fn new(method: Method, url: &str) -> Request {
        Request { inner: http::Request { method, url: url.into(), headers: Vec::new(), body: None, timeout_ms: None } }
    }

    /// A GET request.
    pub fn get(url: &str) -> Request {
        Request::new(Method::Get, url)
    }

    /// A POST request.
    pub fn post(url: &str) -> Request {
        Request::new(Method::Post, url)
    }

    /// Adds a plain header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.inner.headers.push(Header { name: name.into(), value: HeaderValue::Text(value.into()) });
        self
    }

    /// Adds a header whose value is `prefix` + the secret `handle` + `suffix`, substituted
    /// by the host.
    pub fn secret_header(mut self, name: &str, prefix: &str, handle: &str, suffix: &str) -> Request {
        self.inner.headers.push(Header {
            name: name.into(),
            value: HeaderValue::Secret(SecretRef {
                handle: handle.into(),
                prefix: prefix.into(),
                suffix: suffix.into(),
            }),
        });
        self
    }

    /// `Authorization: Bearer <secret>`.
    pub fn bearer(self, handle: &str) -> Request {
        self.secret_header("Authorization", "Bearer ", handle, "")
    }

    /// A JSON body (and its content type).
    pub fn json<T: Serialize>(mut self, body: &T) -> Request {
        self.inner.body = Some(serde_json::to_vec(body).expect("serialising a request body"));
        self.header("Content-Type", "application/json")
    }

    /// A time limit in milliseconds.
    pub fn timeout_ms(mut self, ms: u32) -> Request {
        self.inner.timeout_ms = Some(ms);
        self
    }

    /// The request as the contract's record.
    pub fn build(self) -> http::Request {
        self.inner
    }

    /// Sends it and reads the whole response.
    pub fn send(self) -> Result<Response, HttpError> {
        http::send(&self.inner).map(|inner| Response { inner })
    }

    /// Sends it and returns the response to read as it arrives.
    pub fn open(self) -> Result<http::ResponseStream, HttpError> {
        http::open(&self.inner)
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    inner: http::Response,
}

impl Response {
    /// Status code.
    pub fn status(&self) -> u16 {
        self.inner.status
    }

    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.inner.status)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.inner.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.inner.body
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.inner.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.inner.body)
    }
}

/// One line describing an HTTP error, for messages.
pub fn describe_error(error: &HttpError) -> String {
    match error {
        HttpError::Denied(m) => format!("request denied by the host: {m}"),
        HttpError::InvalidRequest(m) => format!("invalid request: {m}"),
        HttpError::Timeout => "request timed out".to_string(),
        HttpError::Connection(m) => format!("could not connect: {m}"),
        HttpError::TooLarge(n) => format!("response larger than {n} bytes"),
    }
}
