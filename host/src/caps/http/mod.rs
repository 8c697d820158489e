//! Capability `http`: outbound requests to the origins a plugin is granted.
//!
//! Policy, all enforced here:
//! - a request's origin (scheme, host, port) must match the grant: the origins of the
//!   plugin's resolved endpoints plus its declared extra origins (which may use a
//!   `*.` host wildcard);
//! - a URL on a wildcard origin is reachable only if a response from one of the
//!   plugin's endpoints in the same call contained it ([`HttpPolicy`] remembers them);
//! - a secret goes only where a binding sends it: that endpoint's origin, that header,
//!   that exact prefix, no suffix. A plugin built against 0.1.0 (no bindings) may send a
//!   secret only to its endpoints' origins. Wildcard and extra origins never receive one;
//! - an endpoint's environment variable may only pick a host: its value must be a bare
//!   host (and port) or an origin URL, and is never printed;
//! - redirects are never followed (a 3xx reaches the plugin as it is), proxy variables
//!   from the environment are ignored;
//! - a request connects only to public addresses: loopback, link-local, private,
//!   unique-local, CGNAT, unspecified, multicast, broadcast and reserved addresses (and IPv6
//!   forms embedding such an IPv4 address) are refused, after resolution for names
//!   ([`address`]) and before anything is built for IP literals; the exception is an
//!   endpoint whose URL the user wrote (a setting or an environment variable) as an IP
//!   literal or `localhost`, and only on that endpoint's origin. A plugin's fixed default,
//!   its extra and wildcard origins, and names resolving to such addresses never are;
//! - a wildcard origin must name a domain below a public suffix (`*.example.com`, not
//!   `*.com`, `*.co.uk` or `*.herokuapp.com`);
//! - request and response bodies are bounded ([`HttpLimits`]), every request has a time
//!   limit; a request has at most [`MAX_HEADERS`] headers of at most [`MAX_HEADER_BYTES`]
//!   in all, and at most [`MAX_STREAMS`] response streams are open at once in a call;
//! - a header value may name a secret handle, which is substituted here; secret values
//!   are redacted from every response before the plugin sees it, so a server that
//!   echoes a header cannot hand a secret back to the plugin. A response stream is
//!   redacted across its chunks ([`secrets::Stream`]);
//! - responses reach the plugin uncompressed, so redaction sees the bytes: every request
//!   asks for `Accept-Encoding: identity` (a plugin may not set `Accept-Encoding` to
//!   anything else, nor `TE`); a body coded with gzip or deflate all the same is decoded
//!   (within the body limits) before it is redacted, and any other coding is refused
//!   with `http-error.connection` ([`Decoding`]).

pub mod address;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::ExposeSecret;
use wasmtime::component::{Resource, ResourceTable};

use crate::caps::Refusal;
use crate::caps::secrets::{self, Vault, redact, redact_bytes};
use crate::runtime::Contract;
use crate::runtime::bindings::pier::deploy::http;
use crate::runtime::bindings::pier::deploy::types::{
    EndpointSource, EnvEndpoint, Permissions, ResolvedEndpoint, SecretUse,
};

/// The most headers one request may carry.
pub const MAX_HEADERS: usize = 100;

/// The most bytes of header names and values one request may carry, in all.
pub const MAX_HEADER_BYTES: usize = 64 << 10;

/// The most response streams one call may have open at once.
pub const MAX_STREAMS: usize = 16;

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
    /// Addresses to use for these names instead of asking the system resolver (names are
    /// lowercase, without a trailing dot). An overridden name is checked like any other.
    pub resolve: BTreeMap<String, Vec<IpAddr>>,
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
            resolve: BTreeMap::new(),
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
    #[error(
        "`{0}` is too broad: a wildcard origin is `*.` and a domain that is not itself a public suffix \
         (`https://*.example.com`), not a suffix anyone can register under such as `*.com`, `*.co.uk` or \
         `*.herokuapp.com`"
    )]
    Wildcard(String),
    #[error(
        "environment variable `{0}` must hold a host name (`api.example.com`, `127.0.0.1:5000`) or an http(s) \
         origin URL with no path, query or credentials; its value is not one (the value is not shown)"
    )]
    EnvValue(String),
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
        let host = match &origin.host {
            HostPattern::Exact(host) | HostPattern::Subdomains(host) => host.clone(),
        };
        if wildcard {
            let suffix = match host.strip_prefix("wildcard.") {
                Some(suffix) if wildcard_suffix_ok(suffix) => suffix.to_string(),
                _ => return Err(OriginError::Wildcard(text.to_string())),
            };
            origin.host = HostPattern::Subdomains(suffix);
        } else if host.contains('*') {
            return Err(OriginError::Wildcard(text.to_string()));
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

/// Whether `*.suffix` is narrow enough to be a wildcard origin: `suffix` is a domain
/// name with a registrable part, so that the `*` and at least one label of `suffix` lie
/// below its public suffix (the Public Suffix List, private domains included; an unlisted
/// top-level name such as `localhost` counts as a public suffix).
fn wildcard_suffix_ok(suffix: &str) -> bool {
    let labels_ok = !suffix.is_empty()
        && suffix.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    let numeric = suffix.rsplit('.').next().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    labels_ok && !numeric && psl::domain(suffix.as_bytes()).is_some()
}

/// Checks an endpoint's environment source when a plugin loads: the variable must not be
/// Pier's own or look like a credential, and the template may only place the value in the
/// host part of an http(s) origin.
pub fn check_env_endpoint(env: &EnvEndpoint) -> Result<(), String> {
    let name = env.name.as_str();
    let upper = name.to_ascii_uppercase();
    let plain = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !plain {
        return Err(format!("environment variable `{name}` is not a plain variable name"));
    }
    const CREDENTIAL: &[&str] = &["TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH"];
    if upper.starts_with("PIER_") {
        return Err(format!("environment variable `{name}` is Pier's own and cannot name an endpoint"));
    }
    if CREDENTIAL.iter().any(|c| upper.contains(c)) || upper.ends_with("_KEY") || upper == "KEY" {
        return Err(format!("environment variable `{name}` looks like a credential and cannot name an endpoint"));
    }
    let template = env.bare_host.as_str();
    let rest = template.strip_prefix("https://").or_else(|| template.strip_prefix("http://"));
    let shape_ok = rest.and_then(|r| r.split_once("{}")).is_some_and(|(before, after)| {
        let label = |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let before_ok =
            before.is_empty() || (before.ends_with('.') && before[..before.len() - 1].split('.').all(label));
        let after_ok = after.is_empty() || (after.starts_with('.') && after[1..].split('.').all(label));
        before_ok && after_ok
    });
    if !shape_ok {
        return Err(format!(
            "environment variable `{name}`: template `{template}` must be an http(s) origin with `{{}}` in its host \
             only, like `https://api.{{}}` or `https://{{}}` (no path, query, port, credentials or fragment)"
        ));
    }
    Ok(())
}

/// The origin URL an endpoint's environment variable stands for, from its `value`: an
/// http(s) origin URL as it is, or a bare `host[:port]` put into the template.
pub fn env_endpoint_url(env: &EnvEndpoint, value: &str) -> Result<String, OriginError> {
    let bad = || OriginError::EnvValue(env.name.clone());
    let value = value.trim();
    let url = if value.starts_with("http://") || value.starts_with("https://") {
        let url = url::Url::parse(value).map_err(|_| bad())?;
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
            || !matches!(url.path(), "" | "/")
        {
            return Err(bad());
        }
        OriginPattern::of(&url).map_err(|_| bad())?.to_string()
    } else {
        let (host, port) = match value.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        };
        let host_ok = !host.is_empty()
            && !host.starts_with(['.', '-'])
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
        if !host_ok || !port_ok {
            return Err(bad());
        }
        env.bare_host.replace("{}", value)
    };
    let parsed = url::Url::parse(&url).map_err(|_| bad())?;
    if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
        return Err(bad());
    }
    Ok(OriginPattern::of(&parsed).map_err(|_| bad())?.to_string())
}

/// Why `url` reaches an internal address that only the user may name as an endpoint: its
/// host is a forbidden IP literal (see [`address::forbidden`]) or `localhost`. `None` for
/// any other URL, or text that is not a URL.
pub fn internal_address(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url.trim()).ok()?;
    match parsed.host()? {
        url::Host::Ipv4(ip) => address::forbidden(IpAddr::V4(ip)).map(|c| format!("{ip} is {} address", address::a(c))),
        url::Host::Ipv6(ip) => address::forbidden(IpAddr::V6(ip)).map(|c| format!("{ip} is {} address", address::a(c))),
        url::Host::Domain(host) if host.eq_ignore_ascii_case("localhost") => Some("localhost is this machine".into()),
        url::Host::Domain(_) => None,
    }
}

/// Checks the settings a plugin's `setup` returned against the user's `answers`: a
/// setting that is the URL of an endpoint may name an internal address
/// ([`internal_address`]) only if the user's answer for it has that same origin, since only
/// the user may point an endpoint at one.
pub fn check_endpoint_settings(
    permissions: &Permissions,
    answers: &BTreeMap<String, String>,
    settings: &BTreeMap<String, String>,
) -> Result<(), String> {
    let origin = |url: &str| url::Url::parse(url.trim()).ok().and_then(|u| OriginPattern::of(&u).ok());
    for endpoint in &permissions.endpoints {
        for source in &endpoint.sources {
            let EndpointSource::Field(field) = source else { continue };
            let Some(value) = settings.get(field) else { continue };
            let Some(why) = internal_address(value) else { continue };
            let answered = answers.get(field).and_then(|a| origin(a));
            if answered.is_none() || answered != origin(value) {
                return Err(format!(
                    "setup set `{field}`, the URL of endpoint `{}`, to an address the user did not give ({why}); \
                     only the user may point an endpoint at an internal address",
                    endpoint.id
                ));
            }
        }
    }
    Ok(())
}

/// Where an endpoint's URL in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The plugin's fixed default.
    Fixed,
    /// A setup answer or stored setting.
    Field,
    /// A host environment variable.
    Env,
    /// The URL stored with the server when it was set up, where an environment variable
    /// gave it then: used in place of that variable when it is not set.
    Stored,
}

impl SourceKind {
    /// Whether the user gave the URL (a setting, a variable, or a variable's value stored
    /// at setup), rather than the plugin's default.
    pub fn user_given(self) -> bool {
        !matches!(self, SourceKind::Fixed)
    }
}

/// An endpoint resolved for one call, and where its URL came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The id and URL handed to the plugin.
    pub endpoint: ResolvedEndpoint,
    /// Which kind of source gave it.
    pub source: SourceKind,
    /// The environment variable that gave the URL (`Env`), or whose value was stored
    /// (`Stored`).
    pub variable: Option<String>,
    /// The URL stored with the server that the variable's value replaced for this call,
    /// when the two differ.
    pub replaced: Option<String>,
}

impl Resolved {
    /// One line saying that the environment's value replaced the URL stored with server
    /// `server`, when it did. Both are origin URLs, never holding a secret.
    pub fn replaced_note(&self, server: &str) -> Option<String> {
        let stored = self.replaced.as_ref()?;
        Some(format!(
            "{} is set: endpoint `{}` of server `{server}` uses {} for this run, not {stored} stored with the server",
            self.variable.as_deref().unwrap_or("the environment"),
            self.endpoint.id,
            self.endpoint.url,
        ))
    }
}

/// `url` in origin form (`scheme://host[:port]`, default port left out), or `None` when
/// it is not an http(s) origin URL: no path, query, fragment or credentials.
pub fn origin_url(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url.trim()).ok()?;
    let plain = parsed.username().is_empty()
        && parsed.password().is_none()
        && parsed.query().is_none()
        && parsed.fragment().is_none()
        && matches!(parsed.path(), "" | "/");
    if !plain {
        return None;
    }
    OriginPattern::of(&parsed).ok().map(|o| o.to_string())
}

/// Resolves the plugin's endpoints for one call: for each, the first source with a value
/// among the answers or settings `values` and the host environment `env`; an environment
/// source that `env` does not set takes the URL `stored` with the server for that
/// endpoint, if any. A value of the wrong shape is an error naming the variable or
/// endpoint, never showing the value.
pub fn resolve_endpoints(
    permissions: &Permissions,
    values: &BTreeMap<String, String>,
    stored: &BTreeMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Resolved>, crate::caps::GrantError> {
    let mut out = Vec::new();
    for endpoint in &permissions.endpoints {
        let endpoint_error = |source| crate::caps::GrantError::Endpoint { endpoint: endpoint.id.clone(), source };
        let stored = stored.get(&endpoint.id).map(|url| url.trim()).filter(|url| !url.is_empty());
        for source in &endpoint.sources {
            let found = match source {
                EndpointSource::Fixed(url) => Some((url.clone(), SourceKind::Fixed, None)),
                EndpointSource::Field(field) => values
                    .get(field)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (v.trim().to_string(), SourceKind::Field, None)),
                EndpointSource::Env(var) => match env(&var.name).filter(|v| !v.trim().is_empty()) {
                    Some(value) => Some((
                        env_endpoint_url(var, &value).map_err(endpoint_error)?,
                        SourceKind::Env,
                        Some(var.name.clone()),
                    )),
                    None => stored.map(|url| (url.to_string(), SourceKind::Stored, Some(var.name.clone()))),
                },
            };
            if let Some((url, source, variable)) = found {
                let url = url.trim_end_matches('/').to_string();
                let parsed = url::Url::parse(&url).map_err(|_| endpoint_error(OriginError::NotAUrl(url.clone())))?;
                let origin = OriginPattern::of(&parsed).map_err(endpoint_error)?;
                let replaced = match (source, stored) {
                    (SourceKind::Env, Some(stored)) if origin_url(stored) != Some(origin.to_string()) => {
                        Some(stored.trim_end_matches('/').to_string())
                    }
                    _ => None,
                };
                out.push(Resolved {
                    endpoint: ResolvedEndpoint { id: endpoint.id.clone(), url },
                    source,
                    variable,
                    replaced,
                });
                break;
            }
        }
    }
    Ok(out)
}

/// The endpoints to store with a server being set up: those whose URL came from an
/// environment variable, by id, in origin form, unless that is the endpoint's fixed
/// default anyway. Deploys use them when the variable is not set.
pub fn endpoints_to_store(permissions: &Permissions, resolved: &[Resolved]) -> BTreeMap<String, String> {
    let fixed = |id: &str| {
        permissions.endpoints.iter().filter(|e| e.id == id).flat_map(|e| &e.sources).find_map(|s| match s {
            EndpointSource::Fixed(url) => origin_url(url),
            _ => None,
        })
    };
    resolved
        .iter()
        .filter(|r| r.source == SourceKind::Env)
        .filter_map(|r| Some((r.endpoint.id.clone(), origin_url(&r.endpoint.url)?)))
        .filter(|(id, url)| fixed(id).as_ref() != Some(url))
        .collect()
}

/// Where one secret may go in a header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HeaderBinding {
    secret: String,
    origin: OriginPattern,
    endpoint: String,
    header: String,
    prefix: String,
}

/// Which part of the grant a URL falls under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// The origin of one of the plugin's endpoints.
    Endpoint,
    /// A declared exact origin.
    Origin,
    /// A declared wildcard origin: only URLs a response handed out.
    Wildcard,
}

/// The origins granted for one call, and where secrets may go.
#[derive(Debug, Clone, Default)]
pub struct HttpGrant {
    endpoints: Vec<(String, OriginPattern)>,
    /// The origins of endpoints whose URL the user gave (a setting, an environment
    /// variable, or a variable's value stored with the server at setup), not the plugin's
    /// fixed default: the only ones that may be private addresses, when the user wrote the
    /// address or `localhost`.
    user_origins: Vec<OriginPattern>,
    exact: Vec<OriginPattern>,
    wildcards: Vec<OriginPattern>,
    bindings: Vec<HeaderBinding>,
    contract: Contract,
}

impl HttpGrant {
    /// The grant of a plugin's permissions, with its endpoints resolved as `endpoints`.
    /// An endpoint or origin that does not parse is an error naming it.
    pub fn new(contract: Contract, permissions: &Permissions, endpoints: &[Resolved]) -> Result<Self, OriginError> {
        let mut grant = HttpGrant { contract, ..HttpGrant::default() };
        for resolved in endpoints {
            let url = &resolved.endpoint.url;
            let url = url::Url::parse(url).map_err(|_| OriginError::NotAUrl(url.clone()))?;
            let origin = OriginPattern::of(&url)?;
            if resolved.source.user_given() {
                grant.user_origins.push(origin.clone());
            }
            grant.endpoints.push((resolved.endpoint.id.clone(), origin));
        }
        for origin in &permissions.origins {
            let pattern = OriginPattern::parse(origin)?;
            match pattern.host {
                HostPattern::Exact(_) => grant.exact.push(pattern),
                HostPattern::Subdomains(_) => grant.wildcards.push(pattern),
            }
        }
        for binding in &permissions.secrets {
            if let SecretUse::Header(h) = &binding.use_
                && let Some((_, origin)) = grant.endpoints.iter().find(|(id, _)| *id == h.endpoint)
            {
                grant.bindings.push(HeaderBinding {
                    secret: binding.secret.clone(),
                    origin: origin.clone(),
                    endpoint: h.endpoint.clone(),
                    header: h.name.to_ascii_lowercase(),
                    prefix: h.prefix.clone(),
                });
            }
        }
        Ok(grant)
    }

    /// Whether `origin` is exactly the origin of an endpoint whose URL the user gave.
    fn user_wrote(&self, origin: &OriginPattern) -> bool {
        self.user_origins.iter().any(|o| o == origin)
    }

    /// A grant of exactly these origins (exact ones as endpoints, as if the plugin fixed
    /// them), with no secret bindings.
    pub fn of(origins: Vec<OriginPattern>) -> Self {
        let mut grant = HttpGrant::default();
        for origin in origins {
            match origin.host {
                HostPattern::Exact(_) => grant.endpoints.push((String::new(), origin)),
                HostPattern::Subdomains(_) => grant.wildcards.push(origin),
            }
        }
        grant
    }

    /// The granted origins, endpoints first.
    pub fn origins(&self) -> Vec<OriginPattern> {
        let mut all: Vec<OriginPattern> = self.endpoints.iter().map(|(_, o)| o.clone()).collect();
        all.extend(self.exact.iter().cloned());
        all.extend(self.wildcards.iter().cloned());
        all.dedup();
        all
    }

    /// Checks that `url` is an absolute http(s) URL within the grant, and says which part
    /// of the grant it falls under.
    pub fn check(&self, url: &str) -> Result<(url::Url, Reach), http::HttpError> {
        let parsed =
            url::Url::parse(url).map_err(|e| http::HttpError::InvalidRequest(format!("bad URL `{url}`: {e}")))?;
        let origin = OriginPattern::of(&parsed).map_err(|e| http::HttpError::InvalidRequest(e.to_string()))?;
        let reach = if self.endpoints.iter().any(|(_, p)| p.covers(&origin)) {
            Reach::Endpoint
        } else if self.exact.iter().any(|p| p.covers(&origin)) {
            Reach::Origin
        } else if self.wildcards.iter().any(|p| p.covers(&origin)) {
            Reach::Wildcard
        } else {
            let granted: Vec<String> = self.origins().iter().map(ToString::to_string).collect();
            return Err(http::HttpError::Denied(format!(
                "{origin} is not granted to this plugin (granted: {})",
                if granted.is_empty() { "none".to_string() } else { granted.join(", ") }
            )));
        };
        Ok((parsed, reach))
    }

    /// Checks that secret `handle` may go in header `header` after `prefix` and before
    /// `suffix`, to `url` (which falls under `reach`).
    fn check_secret(
        &self,
        handle: &str,
        header: &str,
        prefix: &str,
        suffix: &str,
        url: &url::Url,
        reach: &Reach,
    ) -> Result<(), String> {
        let origin = OriginPattern::of(url).map_err(|e| e.to_string())?;
        if *reach != Reach::Endpoint {
            return Err(format!(
                "secret `{handle}` may not be sent to {origin}: only the plugin's endpoints receive secrets"
            ));
        }
        if self.contract == Contract::V0_1 {
            return Ok(());
        }
        let header = header.to_ascii_lowercase();
        let fits = |b: &HeaderBinding| {
            b.secret == handle && b.header == header && b.prefix == prefix && suffix.is_empty() && b.origin == origin
        };
        if self.bindings.iter().any(fits) {
            return Ok(());
        }
        let allowed: Vec<String> = self
            .bindings
            .iter()
            .filter(|b| b.secret == handle)
            .map(|b| {
                format!("header `{}` with prefix {:?} to endpoint `{}` ({})", b.header, b.prefix, b.endpoint, b.origin)
            })
            .collect();
        Err(format!(
            "secret `{handle}` may not be sent in header `{header}` to {origin} (its bindings allow: {})",
            if allowed.is_empty() { "nothing over HTTP".to_string() } else { allowed.join("; ") }
        ))
    }
}

/// A response body as the places a URL may be found: its JSON string values, or, when it
/// is not JSON, its text.
enum Body<'a> {
    Json(Vec<String>),
    Text(std::borrow::Cow<'a, str>),
}

impl<'a> Body<'a> {
    /// Parses `body` once for [`urls_in`] and [`addresses_in`].
    fn of(body: &'a [u8]) -> Body<'a> {
        fn walk(value: serde_json::Value, out: &mut Vec<String>) {
            match value {
                serde_json::Value::String(s) => out.push(s),
                serde_json::Value::Array(items) => items.into_iter().for_each(|v| walk(v, out)),
                serde_json::Value::Object(map) => map.into_iter().for_each(|(_, v)| walk(v, out)),
                _ => {}
            }
        }
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(json) => {
                let mut strings = Vec::new();
                walk(json, &mut strings);
                Body::Json(strings)
            }
            Err(_) => Body::Text(String::from_utf8_lossy(body)),
        }
    }
}

/// Where a run of text holding a URL ends.
fn url_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>')
}

/// Every http(s) URL in a response body that a wildcard origin might need: JSON string
/// values, else whitespace- and quote-delimited runs of text.
fn urls_in(body: &Body<'_>) -> Vec<String> {
    match body {
        Body::Json(strings) => {
            strings.iter().filter(|s| s.starts_with("http://") || s.starts_with("https://")).cloned().collect()
        }
        Body::Text(text) => text
            .match_indices("http")
            .map(|(start, _)| &text[start..])
            .filter(|rest| rest.starts_with("http://") || rest.starts_with("https://"))
            .map(|rest| rest[..rest.find(url_delimiter).unwrap_or(rest.len())].to_string())
            .collect(),
    }
}

/// The `host:port` of every URL with an authority in a response body, of any scheme (a
/// port of its own, or its scheme's usual one): JSON string values, else runs of text
/// between whitespace and quotes. Host names are lowercase.
fn addresses_in(body: &Body<'_>) -> Vec<(String, u16)> {
    fn address(text: &str) -> Option<(String, u16)> {
        let (scheme, rest) = text.split_once("://")?;
        if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) {
            return None;
        }
        let url = url::Url::parse(text).ok()?;
        let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let port = url.port_or_known_default()?;
        (!rest.is_empty()).then_some((host, port))
    }
    match body {
        Body::Json(strings) => strings.iter().filter_map(|s| address(s)).collect(),
        Body::Text(text) => text.split(url_delimiter).filter_map(address).collect(),
    }
}

/// A URL in the form remembered URLs are compared in.
fn normal(url: &str) -> Option<String> {
    url::Url::parse(url).ok().map(|u| u.to_string())
}

/// The HTTP clients a runtime shares between calls, one per set of names exempt from the
/// address check, each built on first use: loading the TLS roots takes milliseconds, which
/// a call that makes no request should not pay.
#[derive(Clone)]
pub struct SharedClient {
    clients: Arc<Mutex<HashMap<BTreeSet<String>, reqwest::Client>>>,
    overrides: Arc<BTreeMap<String, Vec<IpAddr>>>,
    connect_timeout: Duration,
}

impl SharedClient {
    /// Clients that redirect nothing, ignore proxy variables, connect within
    /// `limits.connect_timeout` and resolve names with [`address::Resolver`] (with the
    /// overrides of `limits.resolve`).
    pub fn new(limits: &HttpLimits) -> Self {
        SharedClient {
            clients: Arc::default(),
            overrides: Arc::new(limits.resolve.clone()),
            connect_timeout: limits.connect_timeout,
        }
    }

    /// The client whose resolver lets the names in `exempt` resolve to any address.
    fn get(&self, exempt: BTreeSet<String>) -> Result<reqwest::Client, http::HttpError> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&exempt) {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(self.connect_timeout)
            .user_agent(concat!("pier/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(address::Resolver::new(self.overrides.clone(), exempt.clone()))
            .tls_backend_rustls()
            .build()
            .map_err(|e| http::HttpError::Connection(format!("the HTTP client could not start: {e}")))?;
        clients.insert(exempt, client.clone());
        Ok(client)
    }
}

/// The client and rules shared by `http` and by `workspace` uploads.
pub struct HttpPolicy {
    grant: HttpGrant,
    limits: HttpLimits,
    client: SharedClient,
    vault: Arc<Vault>,
    audit: Option<Arc<crate::caps::Audit>>,
    /// Where every request that passed the policy goes instead, if set: scheme, host and
    /// port replaced, path and query kept.
    divert: Option<url::Url>,
    /// URLs that responses from the plugin's endpoints contained in this call: the only
    /// ones reachable on wildcard origins.
    handed_out: Mutex<BTreeSet<String>>,
    /// Whether to remember the `host:port` of every URL (of any scheme) in responses from
    /// the plugin's endpoints, for TLS streams that may reach only those (`caps::tls`).
    watch_addresses: bool,
    /// The `host:port` pairs remembered so.
    addresses: Mutex<BTreeSet<(String, u16)>>,
}

/// A request that passed the policy, ready to send.
pub struct Prepared {
    request: reqwest::RequestBuilder,
    reach: Reach,
}

/// Checks the bounds on a request's headers, given their number and the bytes of each
/// one's name and value: at most [`MAX_HEADERS`], and at most [`MAX_HEADER_BYTES`] in all.
/// Allocates nothing.
pub fn header_bounds(count: usize, sizes: impl IntoIterator<Item = usize>) -> Result<(), http::HttpError> {
    if count > MAX_HEADERS {
        return Err(http::HttpError::InvalidRequest(format!(
            "a request may carry at most {MAX_HEADERS} headers, and this one has {count}"
        )));
    }
    let total = sizes.into_iter().fold(0usize, usize::saturating_add);
    if total > MAX_HEADER_BYTES {
        return Err(http::HttpError::InvalidRequest(format!(
            "a request's header names and values may total at most {MAX_HEADER_BYTES} bytes, and this one's total \
             {total}"
        )));
    }
    Ok(())
}

/// [`header_bounds`] of `headers`; a secret counts as its handle, prefix and suffix.
fn check_header_bounds(headers: &[http::Header]) -> Result<(), http::HttpError> {
    let size = |h: &http::Header| {
        h.name.len()
            + match &h.value {
                http::HeaderValue::Text(t) => t.len(),
                http::HeaderValue::Secret(s) => s.handle.len() + s.prefix.len() + s.suffix.len(),
            }
    };
    header_bounds(headers.len(), headers.iter().map(size))
}

/// `url` sent to `divert` instead: its scheme, host and port replaced, path and query kept.
fn diverted(url: &url::Url, divert: &url::Url) -> Result<url::Url, http::HttpError> {
    let mut target = url.clone();
    let failed = || http::HttpError::InvalidRequest(format!("cannot divert `{url}` to {divert}"));
    target.set_scheme(divert.scheme()).map_err(|()| failed())?;
    target.set_host(divert.host_str()).map_err(|_| failed())?;
    target.set_port(divert.port()).map_err(|()| failed())?;
    Ok(target)
}

impl HttpPolicy {
    /// A policy for one call; requests are recorded in `audit`, if set, and sent to the
    /// origin `divert` instead of their own, if set. A `divert` that is not an http(s)
    /// origin is an error.
    pub fn new(
        grant: HttpGrant,
        limits: HttpLimits,
        client: SharedClient,
        vault: Arc<Vault>,
        audit: Option<Arc<crate::caps::Audit>>,
        divert: Option<&str>,
    ) -> Result<Self, OriginError> {
        let divert = match divert {
            None => None,
            Some(text) => {
                let url = url::Url::parse(text).map_err(|_| OriginError::NotAUrl(text.to_string()))?;
                OriginPattern::of(&url)?;
                if !url.username().is_empty()
                    || url.password().is_some()
                    || url.query().is_some()
                    || url.fragment().is_some()
                    || !matches!(url.path(), "" | "/")
                {
                    return Err(OriginError::NotAnOrigin(text.to_string()));
                }
                Some(url)
            }
        };
        Ok(HttpPolicy {
            grant,
            limits,
            client,
            vault,
            audit,
            divert,
            handed_out: Mutex::default(),
            watch_addresses: false,
            addresses: Mutex::default(),
        })
    }

    /// The same, remembering the `host:port` of every URL that responses from the plugin's
    /// endpoints contain, when `watch` is set (see [`HttpPolicy::handed_out_address`]).
    pub fn watching_addresses(mut self, watch: bool) -> Self {
        self.watch_addresses = watch;
        self
    }

    /// Whether a response from one of the plugin's endpoints in this call contained a URL
    /// (of any scheme, for example `rendezvous://HOST:PORT/...`) on `host` and `port`.
    pub fn handed_out_address(&self, host: &str, port: u16) -> bool {
        let addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        addresses.contains(&(host.to_ascii_lowercase(), port))
    }

    /// The client shared by the runtime's calls (its resolver overrides serve streams too).
    pub fn resolve_overrides(&self) -> Arc<BTreeMap<String, Vec<IpAddr>>> {
        self.client.overrides.clone()
    }

    fn audit(
        &self,
        method: &reqwest::Method,
        url: &str,
        refused: Option<Refusal>,
        headers: &[http::Header],
        body: Option<&[u8]>,
    ) {
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
            refused,
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

    /// Remembers the URLs in a response from one of the plugin's endpoints.
    fn remember(&self, reach: &Reach, headers: &[(String, String)], body: &[u8]) {
        // Only wildcard origins and streams consult what was handed out: without either,
        // skip the scan.
        let wildcards = !self.grant.wildcards.is_empty();
        if *reach != Reach::Endpoint || !(wildcards || self.watch_addresses) {
            return;
        }
        let body = Body::of(body);
        if self.watch_addresses {
            let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
            addresses.extend(addresses_in(&body));
        }
        if !wildcards {
            return;
        }
        let mut urls = urls_in(&body);
        urls.extend(headers.iter().filter(|(k, _)| k == "location").map(|(_, v)| v.clone()));
        let mut handed_out = self.handed_out.lock().unwrap_or_else(|e| e.into_inner());
        handed_out.extend(urls.iter().filter_map(|u| normal(u)));
    }

    /// Whether a request to `url`, under `reach`, goes to an endpoint whose URL the user
    /// wrote: only there may an IP literal or `localhost` be a private address.
    fn user_endpoint(&self, url: &url::Url, reach: &Reach) -> bool {
        *reach == Reach::Endpoint && OriginPattern::of(url).is_ok_and(|o| self.grant.user_wrote(&o))
    }

    /// Which rule, if any, refuses a request to `url` with `headers`.
    fn decide(&self, url: &str, headers: &[http::Header]) -> Result<(url::Url, Reach), (Refusal, http::HttpError)> {
        let (parsed, reach) = self.grant.check(url).map_err(|e| (Refusal::Origin, e))?;
        if reach == Reach::Wildcard {
            let handed_out = self.handed_out.lock().unwrap_or_else(|e| e.into_inner());
            if !normal(url).is_some_and(|u| handed_out.contains(&u)) {
                let origin = OriginPattern::of(&parsed).map(|o| o.to_string()).unwrap_or_default();
                return Err((
                    Refusal::Origin,
                    http::HttpError::Denied(format!(
                        "{origin} falls under a wildcard origin, which reaches only URLs that a response from the \
                         plugin's endpoints handed out in this call, and none handed out this one"
                    )),
                ));
            }
        }
        for header in headers {
            if let http::HeaderValue::Secret(secret) = &header.value {
                self.grant
                    .check_secret(&secret.handle, &header.name, &secret.prefix, &secret.suffix, &parsed, &reach)
                    .map_err(|m| (Refusal::Secret, http::HttpError::Denied(m)))?;
            }
        }
        // IP literals never reach the resolver: check them here.
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal
            && let Some(class) = address::forbidden(ip)
            && !self.user_endpoint(&parsed, &reach)
        {
            return Err((
                Refusal::Address,
                http::HttpError::Denied(format!(
                    "{ip} is {} address, which plugins may not reach (only an address that the user wrote as the \
                     endpoint may be private)",
                    address::a(class)
                )),
            ));
        }
        Ok((parsed, reach))
    }

    /// Builds a request after checking the header bounds, the URL and every secret header
    /// against the grant, substituting secret handles in header values.
    pub fn build(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[http::Header],
        body: Option<reqwest::Body>,
    ) -> Result<Prepared, http::HttpError> {
        check_header_bounds(headers)?;
        let decided = self.decide(url, headers);
        if self.audit.is_some() {
            // A malformed URL is a plugin bug, not an attempt to leave the grant.
            let refused = match &decided {
                Err((refusal, http::HttpError::Denied(_))) => Some(*refusal),
                _ => None,
            };
            let bytes = body.as_ref().and_then(reqwest::Body::as_bytes);
            self.audit(&method, url, refused, headers, bytes);
        }
        let (url, reach) = decided.map_err(|(_, e)| e)?;
        let mut map = reqwest::header::HeaderMap::new();
        for header in headers {
            let name = reqwest::header::HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| {
                http::HttpError::InvalidRequest(format!(
                    "bad header name `{}`",
                    crate::caps::events::inert(&header.name)
                ))
            })?;
            if name == reqwest::header::HOST {
                return Err(http::HttpError::InvalidRequest("the Host header is set by the host".into()));
            }
            if name == reqwest::header::ACCEPT_ENCODING || name == reqwest::header::TE {
                let identity =
                    matches!(&header.value, http::HeaderValue::Text(t) if t.trim().eq_ignore_ascii_case("identity"));
                if !identity {
                    return Err(http::HttpError::InvalidRequest(format!(
                        "the {name} header is set by the host: responses reach plugins uncompressed (identity), so \
                         that secrets can be redacted from them"
                    )));
                }
                continue;
            }
            let value = match &header.value {
                http::HeaderValue::Text(text) => reqwest::header::HeaderValue::from_str(text)
                    .map_err(|_| http::HttpError::InvalidRequest(format!("bad value for header `{name}`")))?,
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
        map.insert(reqwest::header::ACCEPT_ENCODING, reqwest::header::HeaderValue::from_static("identity"));
        // The names that may resolve to private addresses for this request: `localhost`
        // when the user wrote it as this endpoint, and the host-chosen divert origin.
        let mut exempt = BTreeSet::new();
        if is_localhost(&url) && self.user_endpoint(&url, &reach) {
            exempt.insert("localhost".to_string());
        }
        let target = match &self.divert {
            Some(divert) => {
                if let Some(url::Host::Domain(host)) = divert.host() {
                    exempt.insert(host.to_ascii_lowercase());
                }
                diverted(&url, divert)?
            }
            None => url,
        };
        let mut request = self.client.get(exempt)?.request(method, target).headers(map);
        if let Some(body) = body {
            request = request.body(body);
        }
        Ok(Prepared { request, reach })
    }

    async fn execute(
        &self,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<reqwest::Response, http::HttpError> {
        match tokio::time::timeout(timeout, request.send()).await {
            Err(_) => Err(http::HttpError::Timeout),
            Ok(Err(e)) => Err(request_error(e)),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// Sends a prepared request and reads the whole response, bounded and redacted.
    pub async fn send(&self, prepared: Prepared, timeout: Option<u32>) -> Result<http::Response, http::HttpError> {
        let timeout = self.timeout(timeout);
        let Prepared { request, reach } = prepared;
        let work = async {
            let mut response = self.execute(request, timeout).await?;
            let status = response.status().as_u16();
            let mut decoding = Decoding::of(response.headers(), self.limits.max_response_body as u64)?;
            let headers = response_headers(&response, decoding.decodes());
            let mut body = Vec::new();
            while let Some(chunk) =
                response.chunk().await.map_err(|e| http::HttpError::Connection(connection_error(e)))?
            {
                if body.len() + chunk.len() > self.limits.max_response_body {
                    return Err(http::HttpError::TooLarge(self.limits.max_response_body as u64));
                }
                body.extend(decoding.push(&chunk)?);
            }
            body.extend(decoding.finish()?);
            let body = redact_bytes(&body).into_owned();
            self.remember(&reach, &headers, &body);
            Ok(http::Response { status, headers, body })
        };
        tokio::time::timeout(timeout, work).await.unwrap_or(Err(http::HttpError::Timeout))
    }
}

/// Whether `url`'s host is the name `localhost`.
fn is_localhost(url: &url::Url) -> bool {
    matches!(url.host(), Some(url::Host::Domain(host)) if host.eq_ignore_ascii_case("localhost"))
}

/// The plugin's view of a failed request: `denied` when the resolver refused the
/// addresses, `timeout`, else `connection` with one line saying why.
fn request_error(e: reqwest::Error) -> http::HttpError {
    if let Some(refused) = address::refusal_in(&e) {
        return http::HttpError::Denied(redact(&refused.to_string()).into_owned());
    }
    if e.is_timeout() {
        return http::HttpError::Timeout;
    }
    http::HttpError::Connection(connection_error(e))
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

/// The response's headers as the plugin sees them, redacted; once the body is decoded
/// (`decoded`), without the `Content-Encoding`, `Transfer-Encoding` and `Content-Length`
/// of the coded body.
fn response_headers(response: &reqwest::Response, decoded: bool) -> Vec<(String, String)> {
    use reqwest::header::{CONTENT_ENCODING, CONTENT_LENGTH, TRANSFER_ENCODING};
    response
        .headers()
        .iter()
        .filter(|(name, _)| !decoded || ![CONTENT_ENCODING, TRANSFER_ENCODING, CONTENT_LENGTH].contains(name))
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(&redact_bytes(value.as_bytes())).into_owned();
            (name.as_str().to_string(), value)
        })
        .collect()
}

/// How much coded input a decoder takes at once: deflate expands at most about 1032
/// times, so one step holds at most about a mebibyte more than the limit.
const DECODE_STEP: usize = 1 << 10;

/// One content or transfer coding of a response body.
enum Decoder {
    Gzip(flate2::write::MultiGzDecoder<Vec<u8>>),
    /// `deflate` before its first two bytes say whether it is zlib-wrapped (as HTTP says
    /// it must be) or raw (as some servers send it).
    Deflate(Vec<u8>),
    Zlib(flate2::write::ZlibDecoder<Vec<u8>>),
    Raw(flate2::write::DeflateDecoder<Vec<u8>>),
}

impl Decoder {
    fn write(&mut self, input: &[u8]) -> std::io::Result<Vec<u8>> {
        use std::io::Write as _;
        if let Decoder::Deflate(start) = self {
            start.extend_from_slice(input);
            if start.len() < 2 {
                return Ok(Vec::new());
            }
            let zlib = start[0] & 0x0f == 8 && (u16::from(start[0]) << 8 | u16::from(start[1])) % 31 == 0;
            let start = std::mem::take(start);
            *self = if zlib {
                Decoder::Zlib(flate2::write::ZlibDecoder::new(Vec::new()))
            } else {
                Decoder::Raw(flate2::write::DeflateDecoder::new(Vec::new()))
            };
            return self.write(&start);
        }
        match self {
            Decoder::Gzip(d) => d.write_all(input).map(|()| std::mem::take(d.get_mut())),
            Decoder::Zlib(d) => d.write_all(input).map(|()| std::mem::take(d.get_mut())),
            Decoder::Raw(d) => d.write_all(input).map(|()| std::mem::take(d.get_mut())),
            Decoder::Deflate(_) => Ok(Vec::new()),
        }
    }

    fn finish(&mut self) -> std::io::Result<Vec<u8>> {
        match self {
            Decoder::Gzip(d) => d.try_finish().map(|()| std::mem::take(d.get_mut())),
            Decoder::Zlib(d) => d.try_finish().map(|()| std::mem::take(d.get_mut())),
            Decoder::Raw(d) => d.try_finish().map(|()| std::mem::take(d.get_mut())),
            Decoder::Deflate(start) if start.is_empty() => Ok(Vec::new()),
            Decoder::Deflate(_) => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "truncated")),
        }
    }
}

/// Undoes the codings of a response body (gzip, deflate) that a server applied although
/// the request asked for none, bounded by the body limit; refuses any other coding, so
/// that nothing reaches the plugin in a form redaction cannot see.
pub struct Decoding {
    /// In the order they are undone (the reverse of the order they were applied).
    layers: Vec<(String, Decoder)>,
    limit: u64,
    /// Bytes taken and given so far.
    input: u64,
    out: u64,
}

impl Decoding {
    /// The decoding of a body with these headers (`Content-Encoding`, then the codings
    /// of `Transfer-Encoding` other than `chunked`, which the client undoes), producing
    /// at most `limit` bytes.
    pub fn of(headers: &reqwest::header::HeaderMap, limit: u64) -> Result<Decoding, http::HttpError> {
        let mut applied = Vec::new();
        for name in [reqwest::header::CONTENT_ENCODING, reqwest::header::TRANSFER_ENCODING] {
            for value in headers.get_all(&name) {
                let text = String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase();
                for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                    if coding != "identity" && coding != "chunked" {
                        applied.push((name.clone(), coding.to_string()));
                    }
                }
            }
        }
        let mut layers = Vec::new();
        for (name, coding) in applied.into_iter().rev() {
            let decoder = match coding.as_str() {
                "gzip" | "x-gzip" => Decoder::Gzip(flate2::write::MultiGzDecoder::new(Vec::new())),
                "deflate" => Decoder::Deflate(Vec::new()),
                other => {
                    let name = if name == reqwest::header::CONTENT_ENCODING {
                        "Content-Encoding"
                    } else {
                        "Transfer-Encoding"
                    };
                    return Err(http::HttpError::Connection(format!(
                        "the response's {name} is `{}`, which Pier does not decode (it asked for identity); it is \
                         refused so that nothing reaches the plugin in a form redaction cannot see",
                        crate::caps::events::inert(other)
                    )));
                }
            };
            layers.push((coding, decoder));
        }
        Ok(Decoding { layers, limit, input: 0, out: 0 })
    }

    /// Whether the body is coded at all.
    pub fn decodes(&self) -> bool {
        !self.layers.is_empty()
    }

    /// Decodes the next piece of the body.
    pub fn push(&mut self, piece: &[u8]) -> Result<Vec<u8>, http::HttpError> {
        self.run(piece, false)
    }

    /// Ends the body: what the decoders still held; an error if the body was cut short.
    pub fn finish(&mut self) -> Result<Vec<u8>, http::HttpError> {
        self.run(&[], true)
    }

    fn run(&mut self, piece: &[u8], last: bool) -> Result<Vec<u8>, http::HttpError> {
        self.input += piece.len() as u64;
        if self.layers.is_empty() || (last && self.input == 0) {
            // Nothing coded, or no body at all (a HEAD request, a 204 or 304).
            return Ok(piece.to_vec());
        }
        let mut data = piece.to_vec();
        for (coding, decoder) in &mut self.layers {
            let bad = |e: std::io::Error| {
                http::HttpError::Connection(format!("the response body is not valid {coding} data: {e}"))
            };
            let mut out = Vec::new();
            for step in data.chunks(DECODE_STEP) {
                out.extend(decoder.write(step).map_err(bad)?);
                if (self.out + out.len() as u64) > self.limit {
                    return Err(http::HttpError::TooLarge(self.limit));
                }
            }
            if last {
                out.extend(decoder.finish().map_err(bad)?);
            }
            data = out;
        }
        self.out += data.len() as u64;
        if self.out > self.limit {
            return Err(http::HttpError::TooLarge(self.limit));
        }
        Ok(data)
    }
}

/// A response being read piece by piece (the `response-stream` resource).
pub struct ResponseStream {
    status: u16,
    headers: Vec<(String, String)>,
    response: Option<reqwest::Response>,
    timeout: Duration,
    read: u64,
    max: u64,
    decoding: Decoding,
    /// Redacts across chunks: a secret split over two chunks is caught.
    redaction: secrets::Stream<'static>,
}

/// The per-call state of the `http` capability.
pub struct HttpCap {
    policy: Arc<HttpPolicy>,
    table: ResourceTable,
    /// Response streams open now (at most [`MAX_STREAMS`]).
    streams: usize,
}

impl HttpCap {
    /// Requests follow `policy`.
    pub fn new(policy: Arc<HttpPolicy>) -> Self {
        HttpCap { policy, table: ResourceTable::new(), streams: 0 }
    }

    fn prepare(&self, request: http::Request) -> Result<(Prepared, Option<u32>), http::HttpError> {
        check_header_bounds(&request.headers)?;
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
        if self.streams >= MAX_STREAMS {
            return Ok(Err(http::HttpError::Denied(format!(
                "at most {MAX_STREAMS} response streams may be open at once in a call; drop one before opening another"
            ))));
        }
        let (built, timeout) = match self.prepare(request) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let timeout = self.policy.timeout(timeout);
        let response = match self.policy.execute(built.request, timeout).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let max = self.policy.limits.max_stream;
        let decoding = match Decoding::of(response.headers(), max) {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let stream = ResponseStream {
            status: response.status().as_u16(),
            headers: response_headers(&response, decoding.decodes()),
            response: Some(response),
            timeout,
            read: 0,
            max,
            decoding,
            redaction: secrets::redactor().stream(),
        };
        let stream = self.table.push(stream)?;
        self.streams += 1;
        Ok(Ok(stream))
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
        // Until something may be passed on: a chunk may be held back whole (it could
        // begin a secret that the next one ends).
        loop {
            let Some(response) = stream.response.as_mut() else { return Ok(Ok(None)) };
            let chunk = tokio::time::timeout(stream.timeout, response.chunk()).await;
            let ended = matches!(chunk, Ok(Ok(None)));
            let result = match chunk {
                Err(_) => Err(http::HttpError::Timeout),
                Ok(Err(e)) => Err(http::HttpError::Connection(connection_error(e))),
                Ok(Ok(None)) => stream.decoding.finish().map(|rest| {
                    let mut out = stream.redaction.push(&rest);
                    out.extend(stream.redaction.finish());
                    (!out.is_empty()).then_some(out)
                }),
                Ok(Ok(Some(chunk))) => {
                    stream.read += chunk.len() as u64;
                    if stream.read > stream.max {
                        Err(http::HttpError::TooLarge(stream.max))
                    } else {
                        stream.decoding.push(&chunk).map(|decoded| Some(stream.redaction.push(&decoded)))
                    }
                }
            };
            if ended {
                stream.response = None;
            }
            match result {
                Ok(Some(out)) if out.is_empty() => continue,
                Ok(Some(out)) => return Ok(Ok(Some(out))),
                other => {
                    // The end, or an error: nothing more is read (what was held back
                    // is dropped with it on an error).
                    stream.response = None;
                    return Ok(other);
                }
            }
        }
    }

    async fn drop(&mut self, stream: Resource<ResponseStream>) -> wasmtime::Result<()> {
        self.table.delete(stream)?;
        self.streams = self.streams.saturating_sub(1);
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
        assert_eq!(origin("https://*.uploads.example.com").to_string(), "https://*.uploads.example.com");
        assert!(matches!(OriginPattern::parse("ftp://x"), Err(OriginError::Scheme(_))));
        assert!(matches!(OriginPattern::parse("https://x/path"), Err(OriginError::NotAnOrigin(_))));
        assert!(matches!(OriginPattern::parse("nonsense"), Err(OriginError::NotAUrl(_))));
    }

    #[test]
    fn grant_checks_scheme_host_and_port() {
        let grant = HttpGrant::of(vec![origin("https://api.heroku.com"), origin("https://*.s3.example.com")]);
        assert!(grant.check("https://api.heroku.com/apps").is_ok());
        assert!(grant.check("https://API.heroku.com:443/apps").is_ok());
        assert!(grant.check("https://bucket.s3.example.com/x?sig=1").is_ok());
        for denied in [
            "http://api.heroku.com/apps",
            "https://api.heroku.com:8443/apps",
            "https://api.heroku.com.evil.example/",
            "https://s3.example.com/",
            "https://evilexample.com/",
        ] {
            assert!(matches!(grant.check(denied), Err(http::HttpError::Denied(_))), "{denied}");
        }
        assert!(matches!(grant.check("file:///etc/passwd"), Err(http::HttpError::InvalidRequest(_))));
    }

    /// The Heroku method's endpoint: setting `api_url`, else `HEROKU_HOST`, else the API.
    fn heroku_endpoint() -> Permissions {
        use crate::runtime::bindings::pier::deploy::types::{Endpoint, EnvEndpoint};
        Permissions {
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
            secrets: vec![],
            commands: crate::runtime::bindings::CommandSupport {
                env: vec![],
                rules: vec![],
                tools: vec![],
                native: vec![],
            },
            streams: vec![],
        }
    }

    #[test]
    fn a_stored_endpoint_stands_in_for_its_variable_when_it_is_not_set() {
        let permissions = heroku_endpoint();
        let none = |_: &str| None;
        let host = |v: &'static str| move |name: &str| (name == "HEROKU_HOST").then(|| v.to_string());
        let stored = BTreeMap::from([("api".to_string(), "http://127.0.0.1:5000".to_string())]);
        let resolve = |values: &BTreeMap<String, String>, env: &dyn Fn(&str) -> Option<String>| {
            resolve_endpoints(&permissions, values, &stored, env).unwrap().pop().unwrap()
        };
        let empty = BTreeMap::new();
        let r = resolve(&empty, &none);
        assert_eq!((r.endpoint.url.as_str(), r.source), ("http://127.0.0.1:5000", SourceKind::Stored));
        assert_eq!((r.variable.as_deref(), r.replaced_note("prod")), (Some("HEROKU_HOST"), None));
        // A stored endpoint is the user's: it may be a loopback address.
        let grant = HttpGrant::new(Contract::CURRENT, &permissions, &[r]).unwrap();
        assert!(grant.user_wrote(&origin("http://127.0.0.1:5000")));

        // The variable, set for this run, wins; said when it differs from the stored URL.
        let r = resolve(&empty, &host("http://127.0.0.1:6000"));
        assert_eq!((r.endpoint.url.as_str(), r.source), ("http://127.0.0.1:6000", SourceKind::Env));
        assert_eq!(
            r.replaced_note("prod").as_deref(),
            Some(
                "HEROKU_HOST is set: endpoint `api` of server `prod` uses http://127.0.0.1:6000 for this run, not \
                 http://127.0.0.1:5000 stored with the server"
            )
        );
        assert_eq!(resolve(&empty, &host("http://127.0.0.1:5000/")).replaced, None, "the same origin");
        // A setting still comes first.
        let set = BTreeMap::from([("api_url".to_string(), "http://127.0.0.1:7000".to_string())]);
        assert_eq!(resolve(&set, &none).source, SourceKind::Field);

        // What setup stores: a variable's URL, not a setting's, nor the fixed default.
        let to_store = |values: &BTreeMap<String, String>, env: &dyn Fn(&str) -> Option<String>| {
            endpoints_to_store(&permissions, &resolve_endpoints(&permissions, values, &empty, env).unwrap())
        };
        assert_eq!(to_store(&empty, &host("http://127.0.0.1:5000/")), stored);
        assert_eq!(to_store(&empty, &host("heroku.example"))["api"], "https://api.heroku.example");
        assert!(to_store(&set, &host("http://127.0.0.1:5000")).is_empty());
        assert!(to_store(&empty, &none).is_empty());
        assert!(to_store(&empty, &host("heroku.com")).is_empty(), "the default is nothing to remember");
    }

    #[test]
    fn origin_urls_are_plain_http_origins() {
        assert_eq!(origin_url("HTTPS://API.example.com:443/").as_deref(), Some("https://api.example.com"));
        assert_eq!(origin_url("http://127.0.0.1:5000").as_deref(), Some("http://127.0.0.1:5000"));
        for bad in ["https://api.example.com/v1", "https://u:p@api.example.com", "ftp://x", "https://x/?q", "x"] {
            assert_eq!(origin_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn endpoints_take_the_first_source_with_a_value() {
        let permissions = heroku_endpoint();
        let none = |_: &str| None;
        let host = |v: &'static str| move |name: &str| (name == "HEROKU_HOST").then(|| v.to_string());
        let url = |values: &BTreeMap<String, String>, env: &dyn Fn(&str) -> Option<String>| {
            resolve_endpoints(&permissions, values, &BTreeMap::new(), env).unwrap().pop().unwrap().endpoint.url
        };
        let empty = BTreeMap::new();
        assert_eq!(url(&empty, &none), "https://api.heroku.com");
        assert_eq!(url(&empty, &host("heroku.example")), "https://api.heroku.example");
        assert_eq!(url(&empty, &host("http://127.0.0.1:9/")), "http://127.0.0.1:9");
        let set = BTreeMap::from([("api_url".to_string(), "http://127.0.0.1:7".to_string())]);
        assert_eq!(url(&set, &host("heroku.example")), "http://127.0.0.1:7");
    }

    #[test]
    fn environment_values_may_only_pick_a_host() {
        let env = EnvEndpoint { name: "DEPLOY_API_HOST".into(), bare_host: "https://api.{}".into() };
        assert_eq!(env_endpoint_url(&env, "heroku.example").unwrap(), "https://api.heroku.example");
        assert_eq!(env_endpoint_url(&env, "example.com:5000").unwrap(), "https://api.example.com:5000");
        assert_eq!(env_endpoint_url(&env, "http://127.0.0.1:9/").unwrap(), "http://127.0.0.1:9");
        for bad in [
            "evil.example/x?leak=VALUE",
            "http://evil.example/?leak=VALUE",
            "http://user:pw@evil.example",
            "https://evil.example/#frag",
            "evil.example?x",
            "evil example",
            "@evil.example",
            "-x.example",
        ] {
            let e = env_endpoint_url(&env, bad).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("DEPLOY_API_HOST"), "{text}");
            assert!(!text.contains("leak") && !text.contains(bad), "{text}");
        }
    }

    #[test]
    fn environment_sources_are_checked_when_a_plugin_loads() {
        let ok = |name: &str, template: &str| {
            check_env_endpoint(&EnvEndpoint { name: name.into(), bare_host: template.into() })
        };
        assert!(ok("HEROKU_HOST", "https://api.{}").is_ok());
        assert!(ok("DEPLOY_HOST", "http://{}").is_ok());
        assert!(ok("DEPLOY_HOST", "https://{}.example.com").is_ok());
        for name in ["PIER_MASTER_KEY", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "API_KEY", "MY_AUTH"] {
            assert!(ok(name, "https://{}").is_err(), "{name}");
        }
        for template in [
            "http://host:9/?{}",
            "https://{}/path",
            "https://x.com/{}",
            "https://{}:8080",
            "ftp://{}",
            "{}",
            "https://u@{}",
        ] {
            assert!(ok("DEPLOY_HOST", template).is_err(), "{template}");
        }
    }

    #[test]
    fn wildcard_origins_need_a_domain_below_a_public_suffix() {
        for ok in [
            "https://*.example.com",
            "http://*.uploads.test",
            "https://*.eu.example.co.uk",
            "https://*.my-bucket.s3.amazonaws.com",
            "https://*.example.com:8443",
        ] {
            assert!(OriginPattern::parse(ok).is_ok(), "{ok}");
        }
        for broad in [
            "https://*.com",
            "https://*.co.uk",
            "https://*.",
            "https://*",
            "https://*.localhost",
            "https://*.test",
            "https://*.herokuapp.com",
            "https://*.s3.amazonaws.com",
            "https://*.github.io",
            "https://*.*.example.com",
            "https://a*.example.com",
            "https://api.*.example.com",
        ] {
            match OriginPattern::parse(broad) {
                Err(OriginError::Wildcard(text)) => assert_eq!(text, broad),
                Err(OriginError::NotAUrl(_)) if broad == "https://*" => {}
                other => panic!("{broad}: {other:?}"),
            }
        }
        assert_eq!(
            OriginPattern::parse("https://*.herokuapp.com").unwrap_err().to_string(),
            "`https://*.herokuapp.com` is too broad: a wildcard origin is `*.` and a domain that is not itself a \
             public suffix (`https://*.example.com`), not a suffix anyone can register under such as `*.com`, \
             `*.co.uk` or `*.herokuapp.com`"
        );
    }

    /// Permissions with endpoint `api` from setting `api_url` (else `fixed_url` as its
    /// fixed default), endpoint `fixed` from `fixed_url`, and the extra `origins`.
    fn permissions(fixed_url: &str, origins: &[&str]) -> Permissions {
        use crate::runtime::bindings::pier::deploy::types::Endpoint;
        Permissions {
            endpoints: vec![
                Endpoint {
                    id: "api".into(),
                    sources: vec![EndpointSource::Field("api_url".into()), EndpointSource::Fixed(fixed_url.into())],
                },
                Endpoint { id: "fixed".into(), sources: vec![EndpointSource::Fixed(fixed_url.into())] },
            ],
            origins: origins.iter().map(|o| o.to_string()).collect(),
            programs: vec![],
            secrets: vec![],
            commands: crate::runtime::bindings::CommandSupport {
                env: vec![],
                rules: vec![],
                tools: vec![],
                native: vec![],
            },
            streams: vec![],
        }
    }

    /// A policy for `permissions` with `api_url` set to `api_url` (if any), recording into
    /// the returned audit and diverting to `divert`.
    fn policy(
        permissions: &Permissions,
        api_url: Option<&str>,
        limits: HttpLimits,
        divert: Option<&str>,
    ) -> (HttpPolicy, Arc<crate::caps::Audit>) {
        let values: BTreeMap<String, String> =
            api_url.map(|u| ("api_url".to_string(), u.to_string())).into_iter().collect();
        let resolved = resolve_endpoints(permissions, &values, &BTreeMap::new(), &|_| None).unwrap();
        let grant = HttpGrant::new(Contract::CURRENT, permissions, &resolved).unwrap();
        let audit = Arc::new(crate::caps::Audit::default());
        let client = SharedClient::new(&limits);
        let policy = HttpPolicy::new(grant, limits, client, Arc::new(Vault::new()), Some(audit.clone()), divert);
        (policy.unwrap(), audit)
    }

    fn denial(result: Result<Prepared, http::HttpError>) -> String {
        match result {
            Err(http::HttpError::Denied(message)) => message,
            Err(other) => panic!("not denied: {other:?}"),
            Ok(_) => panic!("not denied: built"),
        }
    }

    #[test]
    fn an_internal_ip_literal_is_refused_unless_the_user_wrote_it_as_the_endpoint() {
        let permissions = permissions("http://10.1.2.3:8080", &["http://127.0.0.1:6000", "http://[::1]:6001"]);
        let (user, audit) = policy(&permissions, Some("http://127.0.0.1:5000/base"), HttpLimits::default(), None);
        let get = |p: &HttpPolicy, url: &str| p.build(reqwest::Method::GET, url, &[], None);
        // The benign twin: the address the user wrote, on its own origin.
        assert!(get(&user, "http://127.0.0.1:5000/x?y=1").is_ok());
        // The same host on a declared extra origin, and the plugin's fixed default.
        for url in ["http://127.0.0.1:6000/x", "http://[::1]:6001/x", "http://10.1.2.3:8080/x"] {
            let message = denial(get(&user, url));
            assert!(message.contains("may not reach"), "{url}: {message}");
        }
        assert_eq!(
            denial(get(&user, "http://127.0.0.1:6000/")),
            "127.0.0.1 is a loopback address, which plugins may not reach (only an address that the user wrote as \
             the endpoint may be private)"
        );
        assert_eq!(
            denial(get(&user, "http://10.1.2.3:8080/")).split(',').next(),
            Some("10.1.2.3 is a private address")
        );
        let refused: Vec<Option<Refusal>> = audit
            .records()
            .into_iter()
            .map(|r| match r {
                crate::caps::AuditRecord::Http { refused, .. } => refused,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(refused[0], None);
        assert!(refused[1..].iter().all(|r| *r == Some(Refusal::Address)), "{refused:?}");

        // With no setting, `api` takes the fixed default: not the user's, so refused.
        let (fixed, _) = policy(&permissions, None, HttpLimits::default(), None);
        denial(get(&fixed, "http://10.1.2.3:8080/x"));
        // A public literal is fine wherever it comes from.
        let public_permissions = self::permissions("http://93.184.215.14", &[]);
        let (public, _) = policy(&public_permissions, None, HttpLimits::default(), None);
        assert!(get(&public, "http://93.184.215.14/x").is_ok());
    }

    #[test]
    fn setup_may_not_point_an_endpoint_at_an_internal_address_the_user_did_not_give() {
        assert_eq!(internal_address("http://0.0.0.0:9/x").as_deref(), Some("0.0.0.0 is an unspecified address"));
        assert_eq!(internal_address("http://[::1]:9").as_deref(), Some("::1 is a loopback address"));
        assert_eq!(internal_address("http://LOCALHOST:9").as_deref(), Some("localhost is this machine"));
        for external in ["https://api.example.com", "http://93.184.215.14", "not a url", ""] {
            assert_eq!(internal_address(external), None, "{external}");
        }
        let permissions = permissions("https://api.example.com", &[]);
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let check = |answers: &[(&str, &str)], settings: &[(&str, &str)]| {
            check_endpoint_settings(&permissions, &map(answers), &map(settings))
        };
        let message =
            check(&[("api_url", "https://api.example.com")], &[("api_url", "http://169.254.169.254/")]).unwrap_err();
        assert_eq!(
            message,
            "setup set `api_url`, the URL of endpoint `api`, to an address the user did not give (169.254.169.254 is a \
             link-local address); only the user may point an endpoint at an internal address"
        );
        assert!(check(&[], &[("api_url", "http://localhost:5000")]).is_err());
        assert!(check(&[("api_url", "http://127.0.0.1:5000")], &[("api_url", "http://127.0.0.1:6000")]).is_err());
        // The benign twins: the user's own address (normalised), and public URLs.
        assert!(check(&[("api_url", "http://127.0.0.1:5000")], &[("api_url", "http://127.0.0.1:5000/v1/")]).is_ok());
        assert!(check(&[], &[("api_url", "https://api.example.org"), ("other", "http://127.0.0.1")]).is_ok());
    }

    #[test]
    fn header_bounds_are_checked_before_anything_else() {
        let permissions = permissions("https://api.example.com", &[]);
        let (policy, audit) = policy(&permissions, None, HttpLimits::default(), None);
        let text =
            |name: &str, value: String| http::Header { name: name.into(), value: http::HeaderValue::Text(value) };
        let many: Vec<http::Header> = (0..30_000).map(|i| text(&format!("x-h{i}"), "v".into())).collect();
        let huge = vec![text("x-big", "a".repeat(1 << 20))];
        let at_limit: Vec<http::Header> = (0..MAX_HEADERS).map(|i| text(&format!("x-h{i}"), "v".into())).collect();
        let build = |url: &str, headers: &[http::Header]| policy.build(reqwest::Method::GET, url, headers, None);
        let invalid = |result: Result<Prepared, http::HttpError>| match result {
            Err(http::HttpError::InvalidRequest(message)) => message,
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("built"),
        };
        assert_eq!(
            invalid(build("https://api.example.com/", &many)),
            "a request may carry at most 100 headers, and this one has 30000"
        );
        assert_eq!(
            invalid(build("https://api.example.com/", &huge)),
            "a request's header names and values may total at most 65536 bytes, and this one's total 1048581"
        );
        // Checked before the grant: even a request to an origin not granted is not recorded.
        invalid(build("https://elsewhere.example/", &many));
        assert!(audit.records().is_empty(), "{:?}", audit.records());
        // The benign twins.
        assert!(build("https://api.example.com/", &at_limit).is_ok());
        let (name, value) = ("x-big", "a".repeat(MAX_HEADER_BYTES - "x-big".len()));
        assert!(build("https://api.example.com/", &[text(name, value)]).is_ok());
    }

    /// A one-request HTTP server on loopback: returns its origin and a receiver of the
    /// request line and `Host` header it got.
    async fn one_request_server() -> (String, tokio::sync::oneshot::Receiver<(String, String)>) {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut reader = tokio::io::BufReader::new(stream);
            let mut request_line = String::new();
            reader.read_line(&mut request_line).await.unwrap();
            let mut host = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some(value) = line.strip_prefix("host:").or_else(|| line.strip_prefix("Host:")) {
                    host = value.trim().to_string();
                }
            }
            let _ = tx.send((request_line.trim().to_string(), host));
            let mut stream = reader.into_inner();
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await.unwrap();
        });
        (origin, rx)
    }

    #[tokio::test]
    async fn divert_sends_a_request_that_passed_the_policy_to_another_origin() {
        let (server, seen) = one_request_server().await;
        // `api.example.test` is resolved by nobody: the override map would refuse it.
        let limits = HttpLimits {
            resolve: BTreeMap::from([("api.example.test".to_string(), vec!["127.0.0.1".parse().unwrap()])]),
            ..HttpLimits::default()
        };
        let permissions = permissions("https://api.example.test", &[]);
        let (policy, audit) = policy(&permissions, None, limits, Some(&server));
        let url = "https://api.example.test/v1/apps?page=2";
        let prepared = policy.build(reqwest::Method::GET, url, &[], None).unwrap();
        let response = policy.send(prepared, Some(10_000)).await.unwrap();
        assert_eq!((response.status, response.body.as_slice()), (200, b"ok".as_slice()));
        let (line, host) = seen.await.unwrap();
        assert_eq!(line, "GET /v1/apps?page=2 HTTP/1.1");
        assert_eq!(host, server.trim_start_matches("http://"));
        match &audit.records()[..] {
            [crate::caps::AuditRecord::Http { url: recorded, refused: None, .. }] => assert_eq!(recorded, url),
            other => panic!("{other:?}"),
        }
        // Diverting does not widen the grant.
        denial(policy.build(reqwest::Method::GET, "https://other.example.test/", &[], None));
        let bad = HttpPolicy::new(
            HttpGrant::default(),
            HttpLimits::default(),
            SharedClient::new(&HttpLimits::default()),
            Arc::new(Vault::new()),
            None,
            Some("http://127.0.0.1:9/path"),
        );
        assert!(matches!(bad, Err(OriginError::NotAnOrigin(_))));
    }

    #[tokio::test]
    async fn a_name_resolving_to_an_internal_address_is_denied_without_connecting() {
        let limits = HttpLimits {
            resolve: BTreeMap::from([
                ("api.example.test".to_string(), vec!["127.0.0.1".parse().unwrap()]),
                ("meta.test".to_string(), vec!["169.254.169.254".parse().unwrap()]),
            ]),
            ..HttpLimits::default()
        };
        let permissions = permissions("http://meta.test", &[]);
        let (policy, _) = policy(&permissions, Some("http://api.example.test:9"), limits, None);
        for (url, expected) in [
            ("http://api.example.test:9/x", "api.example.test resolves to 127.0.0.1, a loopback address"),
            ("http://meta.test/latest/meta-data", "meta.test resolves to 169.254.169.254, a link-local address"),
        ] {
            let prepared = policy.build(reqwest::Method::GET, url, &[], None).unwrap();
            match policy.send(prepared, Some(10_000)).await {
                Err(http::HttpError::Denied(message)) => assert!(message.starts_with(expected), "{message}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    /// A one-request HTTP server on loopback that answers with `pieces`, written one at a
    /// time: the first at once, each later one when the returned sender is told to go on
    /// (so a test decides where the body is split). Returns its origin, the request's
    /// header block, and the sender.
    async fn scripted_server(
        pieces: Vec<Vec<u8>>,
    ) -> (String, tokio::sync::oneshot::Receiver<String>, tokio::sync::mpsc::UnboundedSender<()>) {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (go, mut went) = tokio::sync::mpsc::unbounded_channel::<()>();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut reader = tokio::io::BufReader::new(stream);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                if line.trim().is_empty() {
                    break;
                }
                head.push_str(&line.to_ascii_lowercase());
            }
            let _ = tx.send(head);
            let mut stream = reader.into_inner();
            for (i, piece) in pieces.iter().enumerate() {
                if i > 0 && went.recv().await.is_none() {
                    return;
                }
                stream.write_all(piece).await.unwrap();
                stream.flush().await.unwrap();
            }
        });
        (origin, rx, go)
    }

    fn respond(headers: &str, body: &[u8]) -> Vec<Vec<u8>> {
        let mut out =
            format!("HTTP/1.1 200 OK\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n", body.len())
                .into_bytes();
        out.extend_from_slice(body);
        vec![out]
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn zlib(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn raw_deflate(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// A policy whose every request goes to `server`, with `SECRET` registered.
    fn echo_policy(server: &str, limits: HttpLimits) -> HttpPolicy {
        secrets::register(SECRET);
        let permissions = permissions("https://api.example.test", &[]);
        policy(&permissions, None, limits, Some(server)).0
    }

    const SECRET: &str = "echoed-secret-7a1b2c3d4e";

    fn text(name: &str, value: &str) -> http::Header {
        http::Header { name: name.into(), value: http::HeaderValue::Text(value.into()) }
    }

    #[tokio::test]
    async fn requests_ask_for_uncompressed_responses_and_plugins_cannot_ask_otherwise() {
        let (server, head, _go) = scripted_server(respond("", b"ok")).await;
        let policy = echo_policy(&server, HttpLimits::default());
        let url = "https://api.example.test/";
        for (name, value) in [("Accept-Encoding", "gzip"), ("accept-encoding", "br, identity"), ("TE", "gzip")] {
            match policy.build(reqwest::Method::GET, url, &[text(name, value)], None) {
                Err(http::HttpError::InvalidRequest(m)) => assert!(m.contains("set by the host"), "{m}"),
                Err(other) => panic!("{name}: {other:?}"),
                Ok(_) => panic!("{name}: {value} was accepted"),
            }
        }
        let prepared = policy.build(reqwest::Method::GET, url, &[text("Accept-Encoding", "identity")], None).unwrap();
        policy.send(prepared, Some(10_000)).await.unwrap();
        let head = head.await.unwrap();
        assert!(head.contains("accept-encoding: identity\r\n"), "{head}");
        assert_eq!(head.matches("accept-encoding").count(), 1, "{head}");
    }

    #[tokio::test]
    async fn a_compressed_echo_is_decoded_before_it_is_redacted() {
        let body = format!("{{\"echo\": \"Bearer {SECRET}\"}}");
        for (coding, coded) in [
            ("gzip", gzip(body.as_bytes())),
            ("x-gzip", gzip(body.as_bytes())),
            ("deflate", zlib(body.as_bytes())),
            ("deflate", raw_deflate(body.as_bytes())),
            ("gzip, gzip", gzip(&gzip(body.as_bytes()))),
            ("identity", body.clone().into_bytes()),
        ] {
            let (server, _, _go) = scripted_server(respond(&format!("content-encoding: {coding}\r\n"), &coded)).await;
            let policy = echo_policy(&server, HttpLimits::default());
            let prepared = policy.build(reqwest::Method::GET, "https://api.example.test/echo", &[], None).unwrap();
            let response = policy.send(prepared, Some(10_000)).await.unwrap();
            let text = String::from_utf8(response.body.clone()).unwrap();
            assert_eq!(text, "{\"echo\": \"Bearer [redacted]\"}", "{coding}");
            if coding != "identity" {
                assert!(response.headers.iter().all(|(n, _)| n != "content-encoding" && n != "content-length"));
            }
        }
    }

    #[tokio::test]
    async fn a_transfer_coding_is_decoded_too() {
        let coded = gzip(format!("token {SECRET}").as_bytes());
        let mut response = b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\nconnection: close\r\n\r\n".to_vec();
        response.extend(format!("{:x}\r\n", coded.len()).into_bytes());
        response.extend(&coded);
        response.extend(b"\r\n0\r\n\r\n");
        let (server, _, _go) = scripted_server(vec![response]).await;
        let policy = echo_policy(&server, HttpLimits::default());
        let prepared = policy.build(reqwest::Method::GET, "https://api.example.test/", &[], None).unwrap();
        let response = policy.send(prepared, Some(10_000)).await.unwrap();
        assert_eq!(response.body, b"token [redacted]");
    }

    #[tokio::test]
    async fn a_coding_pier_does_not_decode_is_refused() {
        for (header, expected) in [
            ("content-encoding: br\r\n", "Content-Encoding is `br`"),
            ("content-encoding: gzip, zstd\r\n", "Content-Encoding is `zstd`"),
            ("content-encoding: compress\r\n", "`compress`"),
        ] {
            let (server, _, _go) = scripted_server(respond(header, SECRET.as_bytes())).await;
            let policy = echo_policy(&server, HttpLimits::default());
            let prepared = policy.build(reqwest::Method::GET, "https://api.example.test/", &[], None).unwrap();
            match policy.send(prepared, Some(10_000)).await {
                Err(http::HttpError::Connection(m)) => assert!(m.contains(expected), "{m}"),
                other => panic!("{header}: {other:?}"),
            }
        }
        // Not gzip at all, and cut short.
        for coded in [b"plainly not gzip".to_vec(), gzip(SECRET.as_bytes())[..12].to_vec()] {
            let (server, _, _go) = scripted_server(respond("content-encoding: gzip\r\n", &coded)).await;
            let policy = echo_policy(&server, HttpLimits::default());
            let prepared = policy.build(reqwest::Method::GET, "https://api.example.test/", &[], None).unwrap();
            match policy.send(prepared, Some(10_000)).await {
                Err(http::HttpError::Connection(m)) => assert!(m.contains("not valid gzip"), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_decompression_bomb_is_bounded() {
        let bomb = gzip(&vec![0u8; 8 << 20]);
        assert!(bomb.len() < 64 << 10);
        let (server, _, _go) = scripted_server(respond("content-encoding: gzip\r\n", &bomb)).await;
        let limits = HttpLimits { max_response_body: 1 << 20, ..HttpLimits::default() };
        let policy = echo_policy(&server, limits);
        let prepared = policy.build(reqwest::Method::GET, "https://api.example.test/", &[], None).unwrap();
        assert!(matches!(policy.send(prepared, Some(10_000)).await, Err(http::HttpError::TooLarge(n)) if n == 1 << 20));
    }

    /// Every piece of a response stream, read through the capability.
    async fn read_stream(cap: &mut HttpCap, go: &tokio::sync::mpsc::UnboundedSender<()>) -> Vec<Vec<u8>> {
        use http::{Host as _, HostResponseStream as _};
        let request = http::Request {
            method: http::Method::Get,
            url: "https://api.example.test/log".into(),
            headers: vec![],
            body: None,
            timeout_ms: Some(10_000),
        };
        let stream = cap.open(request).await.unwrap().unwrap();
        let mut pieces = Vec::new();
        loop {
            let next = cap.next(Resource::new_borrow(stream.rep())).await.unwrap().unwrap();
            let Some(piece) = next else { break };
            pieces.push(piece);
            // Only once a piece came through does the server send the next one.
            let _ = go.send(());
        }
        pieces
    }

    #[tokio::test]
    async fn a_secret_split_across_stream_chunks_is_redacted() {
        let chunk = |text: &[u8]| {
            let mut out = format!("{:x}\r\n", text.len()).into_bytes();
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
            out
        };
        let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
        let (a, b) = SECRET.split_at(9);
        let plain = vec![
            [head.clone(), chunk(format!("line one\nline two: {a}").as_bytes())].concat(),
            [chunk(format!("{b} and the rest\n").as_bytes()), b"0\r\n\r\n".to_vec()].concat(),
        ];
        let whole = gzip(format!("first: {SECRET}\nsecond: {SECRET}\n").as_bytes());
        let (x, y) = whole.split_at(whole.len() / 2);
        let coded = vec![[head.clone(), b"".to_vec()].concat(), chunk(x), [chunk(y), b"0\r\n\r\n".to_vec()].concat()];
        for (pieces, expected) in [
            (plain, "line one\nline two: [redacted] and the rest\n"),
            (coded, "first: [redacted]\nsecond: [redacted]\n"),
        ] {
            let gzipped = expected.starts_with("first");
            let mut pieces = pieces;
            if gzipped {
                pieces[0] = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
            }
            let (server, _, go) = scripted_server(pieces).await;
            if gzipped {
                // Where the coded halves end in the text is not known: send them all.
                let _ = go.send(());
                let _ = go.send(());
            }
            let mut cap = HttpCap::new(Arc::new(echo_policy(&server, HttpLimits::default())));
            let got = read_stream(&mut cap, &go).await;
            for piece in &got {
                let piece = String::from_utf8_lossy(piece);
                assert!(!piece.contains(a) && !piece.contains(b), "a piece holds part of the secret: {piece:?}");
            }
            assert_eq!(String::from_utf8(got.concat()).unwrap(), expected);
            if !gzipped {
                assert!(got.len() >= 2, "the first piece was passed on before the rest arrived: {got:?}");
            }
        }
    }

    #[test]
    fn handed_out_urls_are_found_in_json_and_text() {
        let urls = urls_in(&Body::of(br#"{"source_blob": {"put_url": "https://b.s3.amazonaws.com/x?sig=1&t=2"}, "n": [1, "https://o.example/y"]}"#));
        let found: BTreeSet<&str> = urls.iter().map(String::as_str).collect();
        assert_eq!(found, ["https://b.s3.amazonaws.com/x?sig=1&t=2", "https://o.example/y"].into_iter().collect());
        assert_eq!(
            urls_in(&Body::of(b"see <https://a.example/p?q=1> and 'http://b.example'")),
            ["https://a.example/p?q=1", "http://b.example"]
        );
    }
}
