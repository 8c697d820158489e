//! The `tls` capability: TLS byte streams to the hosts a plugin's `permissions.streams`
//! grant, for protocols that are not HTTP (Heroku's rendezvous carries a one-off dyno's
//! terminal).
//!
//! Policy, in the order it is checked:
//! - the host and port must match a grant: an exact host, `*.domain` (any subdomain, at
//!   least two labels after the `*.`), or `endpoint:ID` (the host of that endpoint's URL
//!   in force), with a fixed port or any;
//! - a grant that is a wildcard or leaves the port open reaches only a `host:port` that a
//!   response from one of the plugin's endpoints named in this call
//!   ([`HttpPolicy::handed_out_address`]): the plugin connects where its provider sent it;
//! - the name must not resolve to an internal address (loopback, private, link-local...)
//!   unless it is the host of an endpoint whose URL the user gave (as for `http`);
//! - the server's certificate is verified for the host against the system's roots and,
//!   when `SSL_CERT_FILE` is set, the certificates in that file.
//!
//! Bounds: a call holds at most [`MAX_STREAMS`] streams, reads at most
//! [`TlsLimits::max_read`] bytes through them together, and every connection and wait for
//! data has a time limit. What a stream reads is redacted across reads before the plugin
//! sees it. `forward-input` copies the user's standard input to the stream on the host
//! side, only in calls that have an input (`pier run`).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use wasmtime::component::{Resource, ResourceTable};

use super::http::{HttpPolicy, Resolved, address};
use super::secrets;
use crate::runtime::bindings::pier::deploy::tls::{self, StreamError};
use crate::runtime::bindings::pier::deploy::types::StreamGrant;

/// The most streams one call may hold open at once.
pub const MAX_STREAMS: usize = 4;

/// Bounds of the `tls` capability.
#[derive(Debug, Clone)]
pub struct TlsLimits {
    /// Time limit of connecting and of each wait for data when the plugin gives none.
    pub default_timeout: Duration,
    /// The most a plugin may ask for.
    pub max_timeout: Duration,
    /// The most bytes one call's streams may read together.
    pub max_read: u64,
}

impl Default for TlsLimits {
    fn default() -> Self {
        TlsLimits {
            default_timeout: Duration::from_secs(60),
            max_timeout: Duration::from_secs(3600),
            max_read: 1 << 30,
        }
    }
}

/// A host pattern of a stream grant.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// This host name or address, lowercase.
    Exact(String),
    /// Any name ending in this suffix (which starts with `.`).
    Subdomain(String),
}

/// One stream target granted for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    host: HostPattern,
    port: Option<u16>,
    /// The host of an endpoint whose URL the user gave: it may be an internal address.
    user_wrote: bool,
}

/// The stream targets granted for one call.
#[derive(Debug, Clone, Default)]
pub struct TlsGrant {
    targets: Vec<Target>,
}

/// What a grant says about one `host:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Allowed {
    /// Only if an endpoint's response named it.
    handed_out_only: bool,
    /// It may resolve to an internal address.
    internal_ok: bool,
}

/// Why a stream grant is malformed.
pub fn check_stream_grant(grant: &StreamGrant, endpoint_ids: &BTreeSet<&str>) -> Result<(), String> {
    if let Some(id) = grant.host.strip_prefix("endpoint:") {
        if !endpoint_ids.contains(id) {
            return Err(format!("stream grant `{}` names endpoint `{id}`, which is not declared", grant.host));
        }
        return Ok(());
    }
    pattern(&grant.host).map(|_| ())
}

/// A declared host pattern, checked: a lowercase host name, or `*.` and a domain of at
/// least two labels.
fn pattern(host: &str) -> Result<HostPattern, String> {
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(name) => (true, name),
        None => (false, host),
    };
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 253 || !labels.iter().all(label_ok) {
        return Err(format!("stream host `{host}` must be a lowercase host name, `*.` and a domain, or `endpoint:ID`"));
    }
    if wildcard {
        if labels.len() < 2 {
            return Err(format!("stream host `{host}`: a wildcard needs a domain of at least two labels"));
        }
        return Ok(HostPattern::Subdomain(format!(".{name}")));
    }
    Ok(HostPattern::Exact(name.to_string()))
}

/// A host as a plugin names it: lowercase, no trailing dot, brackets of an IPv6 literal
/// removed; `None` when it is not a host name or address.
fn normal_host(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.').trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    if host.parse::<IpAddr>().is_ok() {
        return Some(host);
    }
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    ok.then_some(host)
}

impl TlsGrant {
    /// The grant of `streams`, with the plugin's endpoints resolved as `endpoints`. A
    /// grant naming an endpoint that has no URL in this call grants nothing.
    pub fn new(streams: &[StreamGrant], endpoints: &[Resolved]) -> Result<Self, String> {
        let mut targets = Vec::new();
        for grant in streams {
            if let Some(id) = grant.host.strip_prefix("endpoint:") {
                let Some(resolved) = endpoints.iter().find(|r| r.endpoint.id == id) else { continue };
                let url =
                    url::Url::parse(&resolved.endpoint.url).map_err(|_| format!("endpoint `{id}` is not a URL"))?;
                let Some(host) = url.host_str().and_then(normal_host) else { continue };
                targets.push(Target {
                    host: HostPattern::Exact(host),
                    port: grant.port,
                    user_wrote: resolved.source.user_given(),
                });
            } else {
                targets.push(Target { host: pattern(&grant.host)?, port: grant.port, user_wrote: false });
            }
        }
        Ok(TlsGrant { targets })
    }

    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Whether some target needs to know what the endpoints' responses named.
    pub fn needs_handed_out(&self) -> bool {
        self.targets.iter().any(|t| t.port.is_none() || matches!(t.host, HostPattern::Subdomain(_)))
    }

    /// What the grant allows for `host` (normal form) and `port`: the most lenient match.
    fn allows(&self, host: &str, port: u16) -> Option<Allowed> {
        let mut best: Option<Allowed> = None;
        for target in &self.targets {
            let host_matches = match &target.host {
                HostPattern::Exact(h) => h == host,
                HostPattern::Subdomain(suffix) => host.ends_with(suffix.as_str()) && host.len() > suffix.len(),
            };
            if !host_matches || target.port.is_some_and(|p| p != port) {
                continue;
            }
            let this = Allowed {
                handed_out_only: target.port.is_none() || matches!(target.host, HostPattern::Subdomain(_)),
                internal_ok: target.user_wrote,
            };
            best = Some(match best {
                None => this,
                Some(b) => Allowed {
                    handed_out_only: b.handed_out_only && this.handed_out_only,
                    internal_ok: b.internal_ok || this.internal_ok,
                },
            });
        }
        best
    }
}

/// An open stream (the `connection` resource).
pub struct Connection {
    reader: Option<ReadHalf<tokio_rustls::client::TlsStream<TcpStream>>>,
    writer: Arc<Mutex<WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>>>,
    timeout: Duration,
    /// Redacts across reads: a secret split over two reads is caught.
    redaction: secrets::Stream<'static>,
    /// Copies the user's input, when `forward-input` started it.
    forwarding: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(task) = self.forwarding.take() {
            task.abort();
        }
    }
}

/// The per-call state of the `tls` capability.
pub struct TlsCap {
    grant: Arc<TlsGrant>,
    policy: Arc<HttpPolicy>,
    limits: TlsLimits,
    table: ResourceTable,
    open: usize,
    read: u64,
    /// Whether this call may forward the user's standard input, once.
    input: Arc<AtomicBool>,
    audit: Option<Arc<super::Audit>>,
}

/// The roots server certificates are verified against: the system's (or the file and
/// directories `SSL_CERT_FILE` and `SSL_CERT_DIR` name, as OpenSSL reads them), plus the
/// system directory `/etc/ssl/certs` when `SSL_CERT_FILE` replaced it. Loaded once.
fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            for error in &native.errors {
                tracing::debug!("loading the system's CA certificates: {error}");
            }
            roots.add_parsable_certificates(native.certs);
            if std::env::var_os("SSL_CERT_FILE").is_some() && std::env::var_os("SSL_CERT_DIR").is_none() {
                let system =
                    rustls_native_certs::load_certs_from_paths(None, Some(std::path::Path::new("/etc/ssl/certs")));
                roots.add_parsable_certificates(system.certs);
            }
            if roots.is_empty() {
                return Err(
                    "no CA certificate is trusted: install the system's CA certificates or set SSL_CERT_FILE".into()
                );
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS setup: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

impl TlsCap {
    /// Streams follow `grant`; `policy` knows what the endpoints' responses named. `input`
    /// says whether the call has the user's standard input to forward.
    pub fn new(grant: TlsGrant, policy: Arc<HttpPolicy>, limits: TlsLimits, input: bool) -> Self {
        TlsCap {
            grant: Arc::new(grant),
            policy,
            limits,
            table: ResourceTable::new(),
            open: 0,
            read: 0,
            input: Arc::new(AtomicBool::new(input)),
            audit: None,
        }
    }

    /// The same, recording connections in `audit`.
    pub fn with_audit(mut self, audit: Option<Arc<super::Audit>>) -> Self {
        self.audit = audit;
        self
    }

    fn timeout(&self, requested: Option<u32>) -> Duration {
        requested
            .map(|ms| Duration::from_millis(ms.into()))
            .unwrap_or(self.limits.default_timeout)
            .min(self.limits.max_timeout)
    }

    /// Which rule, if any, refuses `host:port`; else whether it may be internal.
    fn decide(&self, host: &str, port: u16) -> Result<bool, (super::Refusal, StreamError)> {
        let denied = |m: String| (super::Refusal::Origin, StreamError::Denied(m));
        let Some(allowed) = self.grant.allows(host, port) else {
            return Err(denied(if self.grant.is_empty() {
                format!("{host}:{port}: this plugin may open no TLS streams (its permissions grant none)")
            } else {
                format!("{host}:{port} is not among the hosts this plugin's permissions grant for TLS streams")
            }));
        };
        if allowed.handed_out_only && !self.policy.handed_out_address(host, port) {
            return Err(denied(format!(
                "{host}:{port} is reachable only where a response from the plugin's endpoints named it in this call, \
                 and none did"
            )));
        }
        Ok(allowed.internal_ok)
    }

    async fn open(&mut self, host: String, port: u16, timeout: Option<u32>) -> Result<Connection, StreamError> {
        if self.open >= MAX_STREAMS {
            return Err(StreamError::Denied(format!(
                "at most {MAX_STREAMS} TLS streams may be open at once in a call; drop one before opening another"
            )));
        }
        let Some(host) = normal_host(&host) else {
            return Err(StreamError::Invalid(format!("`{}` is not a host name", crate::caps::events::inert(&host))));
        };
        if port == 0 {
            return Err(StreamError::Invalid("port 0".into()));
        }
        let decided = self.decide(&host, port);
        if let Some(audit) = &self.audit {
            audit.record(super::AuditRecord::Stream {
                address: format!("{host}:{port}"),
                refused: decided.as_ref().err().map(|(r, _)| *r),
            });
        }
        let internal_ok = decided.map_err(|(_, e)| e)?;
        let timeout = self.timeout(timeout);
        let addresses = match host.parse::<IpAddr>() {
            Ok(ip) => {
                if let Some(class) = address::forbidden(ip).filter(|_| !internal_ok) {
                    return Err(StreamError::Denied(format!(
                        "{ip} is {} address, which plugins may not reach (only the host of an endpoint that the user \
                         wrote may be private)",
                        address::a(class)
                    )));
                }
                vec![ip]
            }
            Err(_) => {
                let exempt = if internal_ok { BTreeSet::from([host.clone()]) } else { BTreeSet::new() };
                let resolver = address::Resolver::new(self.policy.resolve_overrides(), exempt);
                match tokio::time::timeout(timeout, resolver.lookup(&host)).await {
                    Err(_) => return Err(StreamError::Timeout),
                    Ok(Err(e)) if e.is::<address::AddressRefused>() => return Err(StreamError::Denied(e.to_string())),
                    Ok(Err(e)) => return Err(StreamError::Connection(format!("{host}: {e}"))),
                    Ok(Ok(addresses)) => addresses,
                }
            }
        };
        let config = client_config().map_err(StreamError::Connection)?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| StreamError::Invalid(format!("`{host}` is not a name a certificate can be checked for")))?;
        let connect = async {
            let mut last = None;
            for ip in addresses {
                match TcpStream::connect((ip, port)).await {
                    Ok(tcp) => {
                        let connector = tokio_rustls::TlsConnector::from(config.clone());
                        return connector
                            .connect(name.clone(), tcp)
                            .await
                            .map_err(|e| StreamError::Connection(format!("{host}:{port}: TLS: {e}")));
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(StreamError::Connection(format!(
                "{host}:{port}: {}",
                last.map(|e| e.to_string()).unwrap_or_else(|| "no address".into())
            )))
        };
        let tls = tokio::time::timeout(timeout, connect).await.map_err(|_| StreamError::Timeout)??;
        let (reader, writer) = tokio::io::split(tls);
        Ok(Connection {
            reader: Some(reader),
            writer: Arc::new(Mutex::new(writer)),
            timeout,
            redaction: secrets::redactor().stream(),
            forwarding: None,
        })
    }
}

impl tls::Host for TlsCap {
    async fn connect(
        &mut self,
        host: String,
        port: u16,
        timeout_ms: Option<u32>,
    ) -> wasmtime::Result<Result<Resource<Connection>, StreamError>> {
        match self.open(host, port, timeout_ms).await {
            Ok(stream) => {
                let stream = self.table.push(stream)?;
                self.open += 1;
                Ok(Ok(stream))
            }
            Err(e) => Ok(Err(e)),
        }
    }
}

impl tls::HostConnection for TlsCap {
    async fn write(
        &mut self,
        stream: Resource<Connection>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), StreamError>> {
        let stream = self.table.get(&stream)?;
        let (writer, timeout) = (stream.writer.clone(), stream.timeout);
        let write = async {
            let mut writer = writer.lock().await;
            writer.write_all(&data).await?;
            writer.flush().await
        };
        Ok(match tokio::time::timeout(timeout, write).await {
            Err(_) => Err(StreamError::Timeout),
            Ok(Err(e)) => Err(StreamError::Connection(e.to_string())),
            Ok(Ok(())) => Ok(()),
        })
    }

    async fn read(&mut self, stream: Resource<Connection>) -> wasmtime::Result<Result<Option<Vec<u8>>, StreamError>> {
        let max = self.limits.max_read;
        let stream = self.table.get_mut(&stream)?;
        let mut buf = vec![0u8; 16 << 10];
        // Until something may be passed on: a read may be held back whole (it could begin
        // a secret that the next one ends).
        loop {
            let Some(reader) = stream.reader.as_mut() else { return Ok(Ok(None)) };
            let n = match tokio::time::timeout(stream.timeout, reader.read(&mut buf)).await {
                Err(_) => return Ok(Err(StreamError::Timeout)),
                // A server that closes without TLS's close_notify has still ended the stream.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Ok(Err(e)) => return Ok(Err(StreamError::Connection(e.to_string()))),
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                stream.reader = None;
                let rest = stream.redaction.finish();
                return Ok(Ok((!rest.is_empty()).then_some(rest)));
            }
            self.read += n as u64;
            if self.read > max {
                return Ok(Err(StreamError::TooLarge(max)));
            }
            let out = stream.redaction.push(&buf[..n]);
            if !out.is_empty() {
                return Ok(Ok(Some(out)));
            }
        }
    }

    async fn forward_input(&mut self, stream: Resource<Connection>) -> wasmtime::Result<Result<(), StreamError>> {
        let stream = self.table.get_mut(&stream)?;
        if !self.input.swap(false, Ordering::SeqCst) {
            return Ok(Ok(()));
        }
        let writer = stream.writer.clone();
        stream.forwarding = Some(tokio::spawn(async move {
            let mut input = tokio::io::stdin();
            let mut buf = vec![0u8; 8 << 10];
            loop {
                match input.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut writer = writer.lock().await;
                        if writer.write_all(&buf[..n]).await.is_err() || writer.flush().await.is_err() {
                            return;
                        }
                    }
                }
            }
            // The input ended: tell the other end as Heroku's CLI does, with an end of
            // transmission (a terminal's Ctrl-D), keeping the connection open for the rest
            // of the output.
            let mut writer = writer.lock().await;
            let _ = writer.write_all(&[0x04]).await;
            let _ = writer.flush().await;
        }));
        Ok(Ok(()))
    }

    async fn drop(&mut self, stream: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(stream)?;
        self.open = self.open.saturating_sub(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::http::SourceKind;
    use crate::runtime::bindings::pier::deploy::types::ResolvedEndpoint;

    fn resolved(url: &str, source: SourceKind) -> Resolved {
        Resolved {
            endpoint: ResolvedEndpoint { id: "api".into(), url: url.into() },
            source,
            variable: None,
            replaced: None,
        }
    }

    fn grant(streams: &[(&str, Option<u16>)], endpoint: Resolved) -> TlsGrant {
        let streams: Vec<StreamGrant> =
            streams.iter().map(|(host, port)| StreamGrant { host: host.to_string(), port: *port }).collect();
        TlsGrant::new(&streams, &[endpoint]).unwrap()
    }

    #[test]
    fn hosts_match_exactly_by_subdomain_or_as_the_endpoint() {
        let g = grant(
            &[("endpoint:api", None), ("*.heroku.com", None), ("ssh.example.com", Some(22))],
            resolved("http://127.0.0.1:5000", SourceKind::Env),
        );
        let both = Allowed { handed_out_only: true, internal_ok: true };
        assert_eq!(g.allows("127.0.0.1", 6000), Some(both));
        assert_eq!(g.allows("rendezvous.runtime.heroku.com", 5000).map(|a| a.internal_ok), Some(false));
        assert_eq!(g.allows("ssh.example.com", 22), Some(Allowed { handed_out_only: false, internal_ok: false }));
        // The no-permission twins.
        assert_eq!(g.allows("heroku.com", 5000), None, "the bare domain is not a subdomain");
        assert_eq!(g.allows("evilheroku.com", 5000), None);
        assert_eq!(g.allows("127.0.0.2", 6000), None);
        assert_eq!(g.allows("ssh.example.com", 2222), None);
        // A plugin's fixed default endpoint is not the user's: no internal address.
        let g = grant(&[("endpoint:api", Some(443))], resolved("https://api.example.com", SourceKind::Fixed));
        assert_eq!(g.allows("api.example.com", 443), Some(Allowed { handed_out_only: false, internal_ok: false }));
    }

    #[test]
    fn declared_hosts_are_checked() {
        let ids = BTreeSet::from(["api"]);
        let check = |host: &str| check_stream_grant(&StreamGrant { host: host.into(), port: None }, &ids);
        assert!(check("*.heroku.com").is_ok());
        assert!(check("rendezvous.runtime.heroku.com").is_ok());
        assert!(check("endpoint:api").is_ok());
        assert!(check("endpoint:web").unwrap_err().contains("not declared"));
        assert!(check("*.com").unwrap_err().contains("two labels"));
        assert!(check("*").is_err());
        assert!(check("Heroku.com").is_err());
        assert!(check("a..b").is_err());
        assert!(check("host:22").is_err());
    }

    #[test]
    fn hosts_given_at_connect_are_normalised() {
        assert_eq!(normal_host("Rendezvous.Heroku.com."), Some("rendezvous.heroku.com".into()));
        assert_eq!(normal_host("[::1]"), Some("::1".into()));
        assert_eq!(normal_host("a b"), None);
        assert_eq!(normal_host(""), None);
        assert_eq!(normal_host("x/y"), None);
    }
}
