//! Capability `http`: outbound requests to the origins a plugin is granted.
//!
//! Policy, all enforced here:
//! - a request's origin (scheme, host, port) must match the grant: the origins of the
//!   plugin's resolved endpoints plus its declared extra origins (which may use a
//!   `*.` host wildcard);
//! - redirects are never followed (a 3xx reaches the plugin as it is), proxy variables
//!   from the environment are ignored;
//! - request and response bodies are bounded ([`HttpLimits`]), every request has a time
//!   limit;
//! - a header value may name a secret handle, which is substituted here; secret values
//!   are redacted from every response before the plugin sees it, so a server that
//!   echoes a header cannot hand a secret back to the plugin.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use wasmtime::component::{Resource, ResourceTable};

use crate::caps::secrets::{Vault, redact, redact_bytes};
use crate::runtime::bindings::pier::deploy::http;
use crate::runtime::bindings::pier::deploy::types::{EndpointSource, Permissions, ResolvedEndpoint};

/// Size and time bounds of the `http` capability.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request body, in bytes.
    pub max_request_body: usize,
    /// Largest response body read whole, in bytes.
    pub max_response_body: usize,
    /// Largest total of a streamed response, in bytes.
    pub max_stream: u64,
    /// Time limit of a request when the plugin gives none.
    pub default_timeout: Duration,
    /// The most a plugin may ask for.
    pub max_timeout: Duration,
    /// Time limit for connecting.
    pub connect_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_request_body: 8 << 20,
            max_response_body: 16 << 20,
            max_stream: 256 << 20,
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// An origin a plugin may reach: scheme, host (possibly `*.suffix`) and port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OriginPattern {
    scheme: String,
    host: HostPattern,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`: any host ending in `.example.com`.
    Subdomains(String),
}

/// Why a permission or URL is not a valid origin.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OriginError {
    #[error("`{0}` is not a URL")]
    NotAUrl(String),
    #[error("`{0}` must use http or https")]
    Scheme(String),
    #[error("`{0}` has no host")]
    NoHost(String),
    #[error("`{0}` is an origin pattern and must not have a path, query or credentials")]
    NotAnOrigin(String),
}

impl OriginPattern {
    /// Parses `scheme://host[:port]`, where host may start with `*.`.
    pub fn parse(text: &str) -> Result<Self, OriginError> {
        let (wildcard, url_text) = match text.split_once("://*.") {
            Some((scheme, rest)) => (true, format!("{scheme}://wildcard.{rest}")),
            None => (false, text.to_string()),
        };
        let url = url::Url::parse(&url_text).map_err(|_| OriginError::NotAUrl(text.to_string()))?;
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || !matches!(url.path(), "" | "/")
        {
            return Err(OriginError::NotAnOrigin(text.to_string()));
        }
        let mut origin = Self::of(&url).map_err(|e| match e {
            OriginError::NotAUrl(_) => OriginError::NotAUrl(text.to_string()),
            OriginError::Scheme(_) => OriginError::Scheme(text.to_string()),
            other => other,
        })?;
        if wildcard {
            let HostPattern::Exact(host) = &origin.host else { unreachable!("parsed as exact") };
            let suffix = host.strip_prefix("wildcard.").unwrap_or(host).to_string();
            origin.host = HostPattern::Subdomains(suffix);
        }
        Ok(origin)
    }

    /// The exact origin of a URL.
    pub fn of(url: &url::Url) -> Result<Self, OriginError> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(OriginError::Scheme(url.to_string()));
        }
        let host = url.host_str().ok_or_else(|| OriginError::NoHost(url.to_string()))?;
        let port = url.port_or_known_default().ok_or_else(|| OriginError::NoHost(url.to_string()))?;
        Ok(OriginPattern { scheme: scheme.to_string(), host: HostPattern::Exact(host.to_ascii_lowercase()), port })
    }

    /// Whether the exact origin `other` falls under this pattern.
    pub fn covers(&self, other: &OriginPattern) -> bool {
        let HostPattern::Exact(host) = &other.host else { return false };
        self.scheme == other.scheme
            && self.port == other.port
            && match &self.host {
                HostPattern::Exact(h) => h == host,
                HostPattern::Subdomains(suffix) => {
                    host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}"))
                }
            }
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.host {
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Subdomains(s) => format!("*.{s}"),
        };
        let default = if self.scheme == "https" { 443 } else { 80 };
        if self.port == default {
            write!(f, "{}://{host}", self.scheme)
        } else {
            write!(f, "{}://{host}:{}", self.scheme, self.port)
        }
    }
}

/// Resolves the plugin's endpoints for one call: for each, the first source with a value
/// among the answers or settings `values` and the host environment `env`.
pub fn resolve_endpoints(
    permissions: &Permissions,
    values: &BTreeMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<ResolvedEndpoint> {
    permissions
        .endpoints
        .iter()
        .filter_map(|endpoint| {
            endpoint.sources.iter().find_map(|source| {
                let url = match source {
                    EndpointSource::Fixed(url) => Some(url.clone()),
                    EndpointSource::Field(field) => {
                        values.get(field).filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_string())
                    }
                    EndpointSource::Env(var) => env(&var.name).filter(|v| !v.trim().is_empty()).map(|v| {
                        let v = v.trim();
                        if v.starts_with("http") { v.to_string() } else { var.bare_host.replace("{}", v) }
                    }),
                }?;
                Some(ResolvedEndpoint { id: endpoint.id.clone(), url: url.trim_end_matches('/').to_string() })
            })
        })
        .collect()
}

/// The origins granted for one call.
#[derive(Debug, Clone, Default)]
pub struct HttpGrant {
    origins: Vec<OriginPattern>,
}

impl HttpGrant {
    /// The grant of a plugin's permissions, with its endpoints resolved as `endpoints`.
    /// An endpoint or origin that does not parse is an error naming it.
    pub fn new(permissions: &Permissions, endpoints: &[ResolvedEndpoint]) -> Result<Self, OriginError> {
        let mut origins = Vec::new();
        for endpoint in endpoints {
            let url = url::Url::parse(&endpoint.url).map_err(|_| OriginError::NotAUrl(endpoint.url.clone()))?;
            origins.push(OriginPattern::of(&url)?);
        }
        for origin in &permissions.origins {
            origins.push(OriginPattern::parse(origin)?);
        }
        origins.sort();
        origins.dedup();
        Ok(HttpGrant { origins })
    }

    /// A grant of exactly these origins.
    pub fn of(origins: Vec<OriginPattern>) -> Self {
        HttpGrant { origins }
    }

    /// The granted origins.
    pub fn origins(&self) -> &[OriginPattern] {
        &self.origins
    }

    /// Checks that `url` is an absolute http(s) URL within the grant.
    pub fn check(&self, url: &str) -> Result<url::Url, http::HttpError> {
        let parsed =
            url::Url::parse(url).map_err(|e| http::HttpError::InvalidRequest(format!("bad URL `{url}`: {e}")))?;
        let origin = OriginPattern::of(&parsed).map_err(|e| http::HttpError::InvalidRequest(e.to_string()))?;
        if self.origins.iter().any(|p| p.covers(&origin)) {
            Ok(parsed)
        } else {
            let granted: Vec<String> = self.origins.iter().map(ToString::to_string).collect();
            Err(http::HttpError::Denied(format!(
                "{origin} is not granted to this plugin (granted: {})",
                if granted.is_empty() { "none".to_string() } else { granted.join(", ") }
            )))
        }
    }
}

/// The HTTP client a runtime shares between calls, built on first use: loading the TLS
/// roots takes milliseconds, which a call that makes no request should not pay.
#[derive(Clone)]
pub struct SharedClient {
    client: Arc<std::sync::OnceLock<Result<reqwest::Client, String>>>,
    connect_timeout: Duration,
}

impl SharedClient {
    /// A client that redirects nothing, ignores proxy variables and connects within
    /// `limits.connect_timeout`.
    pub fn new(limits: &HttpLimits) -> Self {
        SharedClient { client: Arc::default(), connect_timeout: limits.connect_timeout }
    }

    fn get(&self) -> Result<reqwest::Client, http::HttpError> {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .no_proxy()
                    .connect_timeout(self.connect_timeout)
                    .user_agent(concat!("pier/", env!("CARGO_PKG_VERSION")))
                    .tls_backend_rustls()
                    .build()
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| http::HttpError::Connection(format!("the HTTP client could not start: {e}")))
    }
}

/// The client and rules shared by `http` and by `workspace` uploads.
pub struct HttpPolicy {
    grant: HttpGrant,
    limits: HttpLimits,
    client: SharedClient,
    vault: Arc<Vault>,
    audit: Option<Arc<crate::caps::Audit>>,
}

impl HttpPolicy {
    /// A policy for one call; requests are recorded in `audit`, if set.
    pub fn new(
        grant: HttpGrant,
        limits: HttpLimits,
        client: SharedClient,
        vault: Arc<Vault>,
        audit: Option<Arc<crate::caps::Audit>>,
    ) -> Self {
        HttpPolicy { grant, limits, client, vault, audit }
    }

    fn audit(&self, method: &reqwest::Method, url: &str, allowed: bool, headers: &[http::Header], body: Option<&[u8]>) {
        let Some(audit) = &self.audit else { return };
        let mut plugin_text = url.to_string();
        let mut secret_headers = Vec::new();
        for header in headers {
            match &header.value {
                http::HeaderValue::Text(t) => {
                    plugin_text.push('\n');
                    plugin_text.push_str(t);
                }
                http::HeaderValue::Secret(s) => {
                    secret_headers.push(header.name.clone());
                    plugin_text.push('\n');
                    plugin_text.push_str(&s.prefix);
                    plugin_text.push_str(&s.suffix);
                }
            }
        }
        if let Some(body) = body {
            plugin_text.push('\n');
            plugin_text.push_str(&String::from_utf8_lossy(body));
        }
        audit.record(crate::caps::AuditRecord::Http {
            method: method.to_string(),
            url: url.to_string(),
            allowed,
            secret_headers,
            plugin_text,
        });
    }

    /// The origins granted.
    pub fn grant(&self) -> &HttpGrant {
        &self.grant
    }

    /// The bounds in force.
    pub fn limits(&self) -> &HttpLimits {
        &self.limits
    }

    fn timeout(&self, requested: Option<u32>) -> Duration {
        requested
            .map(|ms| Duration::from_millis(ms.into()))
            .unwrap_or(self.limits.default_timeout)
            .min(self.limits.max_timeout)
    }

    /// Builds a request after checking the URL against the grant and substituting secret
    /// handles in header values.
    pub fn build(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[http::Header],
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::RequestBuilder, http::HttpError> {
        let checked = self.grant.check(url);
        if self.audit.is_some() {
            // A malformed URL is a plugin bug, not an attempt to leave the grant.
            let allowed = !matches!(checked, Err(http::HttpError::Denied(_)));
            let bytes = body.as_ref().and_then(reqwest::Body::as_bytes);
            self.audit(&method, url, allowed, headers, bytes);
        }
        let url = checked?;
        let mut map = reqwest::header::HeaderMap::new();
        for header in headers {
            let name = reqwest::header::HeaderName::from_bytes(header.name.as_bytes())
                .map_err(|_| http::HttpError::InvalidRequest(format!("bad header name `{}`", header.name)))?;
            if name == reqwest::header::HOST {
                return Err(http::HttpError::InvalidRequest("the Host header is set by the host".into()));
            }
            let value = match &header.value {
                http::HeaderValue::Text(text) => reqwest::header::HeaderValue::from_str(text)
                    .map_err(|_| http::HttpError::InvalidRequest(format!("bad value for header `{}`", header.name)))?,
                http::HeaderValue::Secret(secret) => {
                    let value = self.vault.get(&secret.handle).ok_or_else(|| {
                        http::HttpError::InvalidRequest(format!("unknown secret handle `{}`", secret.handle))
                    })?;
                    let text =
                        zeroize::Zeroizing::new(format!("{}{}{}", secret.prefix, value.expose_secret(), secret.suffix));
                    let mut value = reqwest::header::HeaderValue::from_str(&text).map_err(|_| {
                        http::HttpError::InvalidRequest(format!(
                            "secret `{}` cannot be sent in a header",
                            secret.handle
                        ))
                    })?;
                    value.set_sensitive(true);
                    value
                }
            };
            map.append(name, value);
        }
        let mut request = self.client.get()?.request(method, url).headers(map);
        if let Some(body) = body {
            request = request.body(body);
        }
        Ok(request)
    }

    async fn execute(
        &self,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<reqwest::Response, http::HttpError> {
        match tokio::time::timeout(timeout, request.send()).await {
            Err(_) => Err(http::HttpError::Timeout),
            Ok(Err(e)) if e.is_timeout() => Err(http::HttpError::Timeout),
            Ok(Err(e)) => Err(http::HttpError::Connection(connection_error(e))),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// Sends a prepared request and reads the whole response, bounded and redacted.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        timeout: Option<u32>,
    ) -> Result<http::Response, http::HttpError> {
        let timeout = self.timeout(timeout);
        let work = async {
            let mut response = self.execute(request, timeout).await?;
            let status = response.status().as_u16();
            let headers = response_headers(&response);
            let mut body = Vec::new();
            while let Some(chunk) =
                response.chunk().await.map_err(|e| http::HttpError::Connection(connection_error(e)))?
            {
                if body.len() + chunk.len() > self.limits.max_response_body {
                    return Err(http::HttpError::TooLarge(self.limits.max_response_body as u64));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(http::Response { status, headers, body: redact_bytes(&body).into_owned() })
        };
        tokio::time::timeout(timeout, work).await.unwrap_or(Err(http::HttpError::Timeout))
    }
}

/// One line naming why a connection failed, without the URL's query.
fn connection_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    redact(&text).into_owned()
}

fn response_headers(response: &reqwest::Response) -> Vec<(String, String)> {
    response
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(&redact_bytes(value.as_bytes())).into_owned();
            (name.as_str().to_string(), value)
        })
        .collect()
}

/// A response being read piece by piece (the `response-stream` resource).
pub struct ResponseStream {
    status: u16,
    headers: Vec<(String, String)>,
    response: Option<reqwest::Response>,
    timeout: Duration,
    read: u64,
    max: u64,
}

/// The per-call state of the `http` capability.
pub struct HttpCap {
    policy: Arc<HttpPolicy>,
    table: ResourceTable,
}

impl HttpCap {
    /// Requests follow `policy`.
    pub fn new(policy: Arc<HttpPolicy>) -> Self {
        HttpCap { policy, table: ResourceTable::new() }
    }

    fn prepare(&self, request: http::Request) -> Result<(reqwest::RequestBuilder, Option<u32>), http::HttpError> {
        if let Some(body) = &request.body
            && body.len() > self.policy.limits.max_request_body
        {
            return Err(http::HttpError::TooLarge(self.policy.limits.max_request_body as u64));
        }
        let method = match request.method {
            http::Method::Get => reqwest::Method::GET,
            http::Method::Head => reqwest::Method::HEAD,
            http::Method::Post => reqwest::Method::POST,
            http::Method::Put => reqwest::Method::PUT,
            http::Method::Patch => reqwest::Method::PATCH,
            http::Method::Delete => reqwest::Method::DELETE,
        };
        let built = self.policy.build(method, &request.url, &request.headers, request.body.map(reqwest::Body::from))?;
        Ok((built, request.timeout_ms))
    }
}

impl http::Host for HttpCap {
    async fn send(&mut self, request: http::Request) -> wasmtime::Result<Result<http::Response, http::HttpError>> {
        let (built, timeout) = match self.prepare(request) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        Ok(self.policy.send(built, timeout).await)
    }

    async fn open(
        &mut self,
        request: http::Request,
    ) -> wasmtime::Result<Result<Resource<ResponseStream>, http::HttpError>> {
        let (built, timeout) = match self.prepare(request) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let timeout = self.policy.timeout(timeout);
        let response = match self.policy.execute(built, timeout).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let stream = ResponseStream {
            status: response.status().as_u16(),
            headers: response_headers(&response),
            response: Some(response),
            timeout,
            read: 0,
            max: self.policy.limits.max_stream,
        };
        Ok(Ok(self.table.push(stream)?))
    }
}

impl http::HostResponseStream for HttpCap {
    async fn status(&mut self, stream: Resource<ResponseStream>) -> wasmtime::Result<u16> {
        Ok(self.table.get(&stream)?.status)
    }

    async fn headers(&mut self, stream: Resource<ResponseStream>) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self.table.get(&stream)?.headers.clone())
    }

    async fn next(
        &mut self,
        stream: Resource<ResponseStream>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, http::HttpError>> {
        let stream = self.table.get_mut(&stream)?;
        let Some(response) = stream.response.as_mut() else { return Ok(Ok(None)) };
        let result = match tokio::time::timeout(stream.timeout, response.chunk()).await {
            Err(_) => Err(http::HttpError::Timeout),
            Ok(Err(e)) => Err(http::HttpError::Connection(connection_error(e))),
            Ok(Ok(None)) => Ok(None),
            Ok(Ok(Some(chunk))) => {
                stream.read += chunk.len() as u64;
                if stream.read > stream.max {
                    Err(http::HttpError::TooLarge(stream.max))
                } else {
                    Ok(Some(redact_bytes(&chunk).into_owned()))
                }
            }
        };
        if !matches!(result, Ok(Some(_))) {
            stream.response = None;
        }
        Ok(result)
    }

    async fn drop(&mut self, stream: Resource<ResponseStream>) -> wasmtime::Result<()> {
        self.table.delete(stream)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(text: &str) -> OriginPattern {
        OriginPattern::parse(text).unwrap()
    }

    #[test]
    fn origins_parse_with_default_ports() {
        assert_eq!(origin("https://api.heroku.com").to_string(), "https://api.heroku.com");
        assert_eq!(origin("https://api.heroku.com:443/").to_string(), "https://api.heroku.com");
        assert_eq!(origin("http://127.0.0.1:5000").to_string(), "http://127.0.0.1:5000");
        assert_eq!(origin("https://*.s3.amazonaws.com").to_string(), "https://*.s3.amazonaws.com");
        assert!(matches!(OriginPattern::parse("ftp://x"), Err(OriginError::Scheme(_))));
        assert!(matches!(OriginPattern::parse("https://x/path"), Err(OriginError::NotAnOrigin(_))));
        assert!(matches!(OriginPattern::parse("nonsense"), Err(OriginError::NotAUrl(_))));
    }

    #[test]
    fn grant_checks_scheme_host_and_port() {
        let grant = HttpGrant::of(vec![origin("https://api.heroku.com"), origin("https://*.s3.amazonaws.com")]);
        assert!(grant.check("https://api.heroku.com/apps").is_ok());
        assert!(grant.check("https://API.heroku.com:443/apps").is_ok());
        assert!(grant.check("https://bucket.s3.amazonaws.com/x?sig=1").is_ok());
        for denied in [
            "http://api.heroku.com/apps",
            "https://api.heroku.com:8443/apps",
            "https://api.heroku.com.evil.example/",
            "https://s3.amazonaws.com/",
            "https://evilamazonaws.com/",
        ] {
            assert!(matches!(grant.check(denied), Err(http::HttpError::Denied(_))), "{denied}");
        }
        assert!(matches!(grant.check("file:///etc/passwd"), Err(http::HttpError::InvalidRequest(_))));
    }

    #[test]
    fn endpoints_take_the_first_source_with_a_value() {
        use crate::runtime::bindings::pier::deploy::types::{Endpoint, EnvEndpoint};
        let permissions = Permissions {
            endpoints: vec![Endpoint {
                id: "api".into(),
                sources: vec![
                    EndpointSource::Field("api_url".into()),
                    EndpointSource::Env(EnvEndpoint { name: "HEROKU_HOST".into(), bare_host: "https://api.{}".into() }),
                    EndpointSource::Fixed("https://api.heroku.com".into()),
                ],
            }],
            origins: vec![],
            programs: vec![],
        };
        let none = |_: &str| None;
        let host = |v: &'static str| move |name: &str| (name == "HEROKU_HOST").then(|| v.to_string());
        let url = |values: &BTreeMap<String, String>, env: &dyn Fn(&str) -> Option<String>| {
            resolve_endpoints(&permissions, values, env).pop().unwrap().url
        };
        let empty = BTreeMap::new();
        assert_eq!(url(&empty, &none), "https://api.heroku.com");
        assert_eq!(url(&empty, &host("heroku.example")), "https://api.heroku.example");
        assert_eq!(url(&empty, &host("http://127.0.0.1:9/")), "http://127.0.0.1:9");
        let set = BTreeMap::from([("api_url".to_string(), "http://127.0.0.1:7".to_string())]);
        assert_eq!(url(&set, &host("heroku.example")), "http://127.0.0.1:7");
    }
}
