//! Shared state in PostgreSQL: the deploy timeline and the per-server deploy lock of
//! projects whose deploys run on several (often ephemeral) machines, in one database
//! named by `PIER_DATABASE_URL`.
//!
//! It mirrors the local state ([`super::timeline`], [`super::lock`]):
//!
//! - **The timeline** is the table `pier_deploys` (one row per deploy; every row carries
//!   its project, so several projects share a database) and its log, `pier_deploy_log`, one
//!   row per line. A deploy is recorded `running` when it starts and updated when it ends.
//! - **The log streams** as the deploy runs ([`SharedLog`]): lines are batched to the
//!   database every 200 ms (or 500 lines), so a runner that is killed keeps what it had
//!   sent. It is bounded as the local log is, and never blocks the deploy: while the
//!   database is unreachable, lines wait in memory and are sent again.
//! - **The lock** of a server is a session-level advisory lock held by a dedicated
//!   connection ([`SharedLock`]). The server releases it when that session ends, however
//!   the runner ends: a runner that vanishes never holds a server forever.
//! - **Reconcile**: a `running` deploy whose server lock nobody holds belongs to a runner
//!   that is gone, and is marked `interrupted` ([`SharedState::reconcile`]).
//!
//! The schema is versioned (`pier_schema`) and migrated on connect, one transaction per
//! migration under a transaction-level advisory lock, so runners starting together never
//! collide; a database migrated by a newer Pier is refused.
//!
//! TLS: `sslmode` is `disable`, `require` (encrypted, certificate not verified, as libpq)
//! or `verify-full` (the certificate chain is verified against the system roots, or
//! `SSL_CERT_FILE` / `SSL_CERT_DIR` when set, plus the `sslrootcert` file, and the host
//! name checked). **The default is `verify-full`**: a URL that says nothing about TLS gets
//! the careful choice, and a server without TLS must be named with `sslmode=disable`.
//! libpq's `prefer` and `allow` (TLS only when the server offers it, silently clear
//! otherwise) are refused.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret as _, SecretString};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::timeline::{self, Deploy, Status};

/// The environment variable naming the shared state database.
pub const DATABASE_URL_VAR: &str = "PIER_DATABASE_URL";

/// How long connecting keeps trying while the server is unreachable.
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);

/// How often a streaming log is sent to the database.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// How many lines a streaming log sends at most in one statement; reaching it sends at once.
const BATCH_LINES: usize = 500;
/// How long [`SharedLog::close`] (and a dropped log) keeps trying to send what is left.
const CLOSE_PATIENCE: Duration = Duration::from_secs(10);
/// How long one batch of a streaming log may take to be written.
const SEND_PATIENCE: Duration = Duration::from_secs(10);
/// Bytes of lines one deploy's shared log keeps: the bound of the local log.
const LOG_BOUND: u64 = timeline::LOG_OUTPUT + timeline::LOG_NOTES;

/// The summary of a deploy whose runner ended before it did.
const INTERRUPTED: &str = "interrupted: the deploying process ended before the deploy did";

/// Why the shared state cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// `PIER_DATABASE_URL` is not a URL Pier accepts.
    #[error("{DATABASE_URL_VAR}: {0}")]
    Url(String),
    /// The TLS settings cannot be used (an unreadable `sslrootcert`, no trusted roots).
    #[error("{DATABASE_URL_VAR}: {0}")]
    Tls(String),
    /// The database could not be reached or refused the connection.
    #[error("cannot connect to the shared state database {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The database was set up by a newer Pier.
    #[error("the shared state database has schema version {found}, newer than this Pier knows ({known}): upgrade Pier")]
    TooNew { found: i32, known: i32 },
    /// A statement failed.
    #[error("shared state database: {action}: {reason}")]
    Db { action: &'static str, reason: String },
    /// Another deploy holds the server's lock.
    #[error("{}", busy_message(server, deploy.as_deref(), runner.as_deref(), *running_for))]
    Busy { server: String, deploy: Option<String>, runner: Option<String>, running_for: Option<Duration> },
    /// The connection holding a server's lock ended: the lock may be someone else's now.
    #[error("the lock of server `{server}` was lost: its database connection ended")]
    LockLost { server: String },
}

fn busy_message(server: &str, deploy: Option<&str>, runner: Option<&str>, running_for: Option<Duration>) -> String {
    let mut text = format!("server `{server}` is being deployed");
    match deploy {
        Some(id) => text.push_str(&format!(" by deploy {id}")),
        None => text.push_str(" by another runner"),
    }
    if let Some(runner) = runner {
        text.push_str(&format!(" on {runner}"));
    }
    if let Some(age) = running_for {
        text.push_str(&format!(" (running for {})", human(age)));
    }
    text
}

fn human(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        _ => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
    }
}

/// What an error of the database says, with its causes, on one line.
fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        let more = e.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = e.source();
    }
    text.replace('\n', " ")
}

fn failed(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> SharedError {
    move |e| SharedError::Db { action, reason: describe(&e) }
}

// ---------------------------------------------------------------------------------------
// The connection string.

/// How a connection uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS, the certificate not verified (libpq's `require`).
    Require,
    /// TLS, the chain verified against the trusted roots and the host name checked.
    VerifyFull,
}

impl SslMode {
    fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// A parsed `postgres://` (or `postgresql://`) URL: the value of `PIER_DATABASE_URL`.
///
/// `postgres://USER[:PASSWORD]@HOST[:PORT][/DBNAME][?sslmode=MODE][&sslrootcert=PATH]`,
/// with `%`-escapes in the user, password and database name. The port defaults to 5432,
/// the database to the user's name, `sslmode` to `verify-full`. Its `Display` shows the
/// password as `***`; its `Debug` never shows it.
#[derive(Debug, Clone)]
pub struct DatabaseUrl {
    pub user: String,
    pub password: Option<SecretString>,
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub sslmode: SslMode,
    /// A PEM file of CA certificates trusted in addition to the system roots.
    pub sslrootcert: Option<PathBuf>,
}

impl DatabaseUrl {
    /// The URL in `PIER_DATABASE_URL`, if it is set (and not empty).
    pub fn from_env() -> Result<Option<DatabaseUrl>, SharedError> {
        match std::env::var(DATABASE_URL_VAR) {
            Ok(value) if value.trim().is_empty() => Ok(None),
            Ok(value) => value.parse().map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(SharedError::Url("is not valid UTF-8".into())),
        }
    }
}

fn bad(reason: impl Into<String>) -> SharedError {
    SharedError::Url(reason.into())
}

/// Decodes `%XX` escapes; `None` when they do not make UTF-8.
fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl std::str::FromStr for DatabaseUrl {
    type Err = SharedError;

    fn from_str(text: &str) -> Result<DatabaseUrl, SharedError> {
        let text = text.trim();
        let Some((scheme, _)) = text.split_once("://") else {
            return Err(bad("expected a URL like postgres://USER:PASSWORD@HOST:PORT/DATABASE"));
        };
        if !matches!(scheme.to_ascii_lowercase().as_str(), "postgres" | "postgresql") {
            // Named only when it is plainly a scheme (so never part of a password).
            let plain = scheme.len() <= 16 && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            let shown = if plain { format!("`{scheme}://` is") } else { "this is".to_string() };
            return Err(bad(format!("{shown} not a PostgreSQL URL: expected postgres:// or postgresql://")));
        }
        // The `url` crate's messages never quote the input, so never the password.
        let url = url::Url::parse(text).map_err(|e| bad(format!("not a valid URL: {e}")))?;
        let user = unescape(url.username()).ok_or_else(|| bad("the user name has a bad %-escape"))?;
        if user.is_empty() {
            return Err(bad("names no user: expected postgres://USER:PASSWORD@HOST/DATABASE"));
        }
        let password = match url.password() {
            Some(p) => Some(SecretString::from(unescape(p).ok_or_else(|| bad("the password has a bad %-escape"))?)),
            None => None,
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Domain(name)) if !name.is_empty() => {
                unescape(name).ok_or_else(|| bad("the host has a bad %-escape"))?
            }
            _ => return Err(bad("names no host: expected postgres://USER:PASSWORD@HOST/DATABASE")),
        };
        if host.contains(',') {
            return Err(bad("names several hosts: give one"));
        }
        let port = url.port().unwrap_or(5432);
        let path = url.path().trim_start_matches('/');
        if path.contains('/') {
            return Err(bad("the database name cannot contain `/`"));
        }
        let dbname = match unescape(path).ok_or_else(|| bad("the database name has a bad %-escape"))? {
            name if name.is_empty() => user.clone(),
            name => name,
        };
        let mut sslmode = None;
        let mut sslrootcert = None;
        for (key, value) in url.query_pairs() {
            match &*key {
                "sslmode" => {
                    sslmode = Some(match &*value {
                        "disable" => SslMode::Disable,
                        "require" => SslMode::Require,
                        "verify-full" => SslMode::VerifyFull,
                        "prefer" | "allow" => {
                            return Err(bad(format!(
                                "sslmode={value} may connect without TLS: use sslmode=verify-full (or require, \
                                 or disable for a server without TLS)"
                            )));
                        }
                        "verify-ca" => {
                            return Err(bad(
                                "sslmode=verify-ca is not offered: use sslmode=verify-full (which also checks the host name)",
                            ));
                        }
                        _ => {
                            return Err(bad(format!(
                                "unknown sslmode `{}`: expected disable, require or verify-full",
                                value.chars().take(40).collect::<String>()
                            )));
                        }
                    })
                }
                "sslrootcert" if !value.is_empty() => sslrootcert = Some(PathBuf::from(&*value)),
                _ => {
                    return Err(bad(format!(
                        "unknown parameter `{}`: Pier understands sslmode and sslrootcert",
                        key.chars().take(40).collect::<String>()
                    )));
                }
            }
        }
        let sslmode = sslmode.unwrap_or(SslMode::VerifyFull);
        if sslrootcert.is_some() && sslmode != SslMode::VerifyFull {
            return Err(bad(format!(
                "sslrootcert is used only with sslmode=verify-full (sslmode={} does not verify certificates)",
                sslmode.as_str()
            )));
        }
        Ok(DatabaseUrl { user, password, host, port, dbname, sslmode, sslrootcert })
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escape = |s: &str| {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        };
        write!(f, "postgres://{}", escape(&self.user))?;
        if self.password.is_some() {
            f.write_str(":***")?;
        }
        if self.host.contains(':') {
            write!(f, "@[{}]:{}/{}", self.host, self.port, escape(&self.dbname))?;
        } else {
            write!(f, "@{}:{}/{}", self.host, self.port, escape(&self.dbname))?;
        }
        write!(f, "?sslmode={}", self.sslmode.as_str())?;
        if let Some(path) = &self.sslrootcert {
            write!(f, "&sslrootcert={}", path.display())?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// TLS.

/// Accepts any certificate (sslmode=require), still checking the handshake's signatures.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS settings of `url` (unused with `sslmode=disable`).
fn tls(url: &DatabaseUrl) -> Result<tokio_postgres_rustls::MakeRustlsConnect, SharedError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SharedError::Tls(format!("TLS: {e}")))?;
    let config = match url.sslmode {
        SslMode::Disable | SslMode::Require => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(Unverified(provider))).with_no_client_auth()
        }
        SslMode::VerifyFull => builder.with_root_certificates(roots(url)?).with_no_client_auth(),
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The system roots (or `SSL_CERT_FILE` / `SSL_CERT_DIR`), and the `sslrootcert` file.
fn roots(url: &DatabaseUrl) -> Result<rustls::RootCertStore, SharedError> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!("loading the system's CA certificates: {error}");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = &url.sslrootcert {
        let unreadable = |e: &dyn fmt::Display| SharedError::Tls(format!("sslrootcert {}: {e}", path.display()));
        let bytes = std::fs::read(path).map_err(|e| unreadable(&e))?;
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| unreadable(&e))?;
        if certs.is_empty() {
            return Err(unreadable(&"holds no PEM certificate"));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| unreadable(&e))?;
        }
    }
    if roots.is_empty() {
        return Err(SharedError::Tls(
            "sslmode=verify-full, and no CA certificate is trusted: give sslrootcert=PATH (or set SSL_CERT_FILE)"
                .into(),
        ));
    }
    Ok(roots)
}

// ---------------------------------------------------------------------------------------
// Connecting.

/// How to reach the database: settings, TLS, and the URL to name in errors.
struct Target {
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    shown: String,
}

impl Target {
    fn new(url: &DatabaseUrl) -> Result<Target, SharedError> {
        let mut config = tokio_postgres::Config::new();
        config
            .user(&url.user)
            .host(&url.host)
            .port(url.port)
            .dbname(&url.dbname)
            .application_name("pier")
            .connect_timeout(Duration::from_secs(3))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(15))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            .ssl_mode(match url.sslmode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
            });
        if let Some(password) = &url.password {
            config.password(password.expose_secret());
        }
        Ok(Target { config, tls: tls(url)?, shown: url.to_string() })
    }

    /// One connection, trying again for `patience` while the server is unreachable. The
    /// connection's task runs on its own; `ended` is set when it ends.
    async fn connect(&self, patience: Duration, ended: Option<Arc<Ended>>) -> Result<Client, SharedError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            match self.config.connect(self.tls.clone()).await {
                Ok((client, connection)) => {
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!("shared state connection ended: {}", describe(&e));
                        }
                        if let Some(ended) = ended {
                            ended.set();
                        }
                    });
                    return Ok(client);
                }
                Err(e) if transient(&e) && started.elapsed() + pause < patience => {
                    tracing::debug!("shared state database unreachable ({}); trying again in {pause:?}", describe(&e));
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) => {
                    let mut reason = describe(&e);
                    if transient(&e) {
                        reason.push_str(&format!(" (tried for {} s)", started.elapsed().as_secs_f32().round()));
                    }
                    return Err(SharedError::Connect { url: self.shown.clone(), reason });
                }
            }
        }
    }
}

/// Whether a failed connection is worth trying again: the server is unreachable, starting
/// or full; not a refused login, a missing database or a TLS failure.
fn transient(error: &tokio_postgres::Error) -> bool {
    if let Some(code) = error.code() {
        return *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::TOO_MANY_CONNECTIONS
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN;
    }
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            // A TLS failure is an `InvalidData` I/O error: not transient.
            return matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | TimedOut
                    | UnexpectedEof
                    | BrokenPipe
                    | HostUnreachable
                    | NetworkUnreachable
                    | NetworkDown
            );
        }
        cause = e.source();
    }
    error.is_closed()
}

/// Set when a connection ends.
#[derive(Default)]
struct Ended(AtomicBool);

impl Ended {
    fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The shared connection of a [`SharedState`], connected again when it ends.
struct Db {
    target: Target,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl Db {
    async fn client(&self) -> Result<Arc<Client>, SharedError> {
        let mut client = self.client.lock().await;
        if let Some(c) = client.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let fresh = Arc::new(self.target.connect(CONNECT_PATIENCE, None).await?);
        *client = Some(fresh.clone());
        Ok(fresh)
    }
}

// ---------------------------------------------------------------------------------------
// Migrations.

/// The schema, one migration per version: migration `i` takes the database from version
/// `i` to `i + 1`. Never edit one that was released: add another.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE pier_deploys (
    project     text NOT NULL,
    id          text NOT NULL,
    server      text NOT NULL,
    method      text NOT NULL,
    \"commit\"  text NOT NULL,
    branch      text NOT NULL,
    build       text,
    \"trigger\" text NOT NULL,
    actor       text NOT NULL,
    runner      text,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    status      text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted')),
    exit_code   integer,
    summary     text,
    url         text,
    PRIMARY KEY (project, id)
);
CREATE INDEX pier_deploys_server ON pier_deploys (project, server, started_at);
CREATE TABLE pier_deploy_log (
    project     text NOT NULL,
    deploy_id   text NOT NULL,
    seq         bigint NOT NULL,
    line        text NOT NULL,
    PRIMARY KEY (project, deploy_id, seq),
    FOREIGN KEY (project, deploy_id) REFERENCES pier_deploys (project, id) ON DELETE CASCADE
);
",
    "
ALTER TABLE pier_deploys ADD COLUMN release text;
",
];

/// The schema version this Pier knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// A 64-bit advisory lock key: the first 8 bytes (big-endian) of the SHA-256 of `parts`
/// joined by NUL bytes, after the tag `pier`. Stable across versions and platforms.
fn key(parts: &[&str]) -> i64 {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    hash.update(b"pier");
    for part in parts {
        hash.update([0]);
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    i64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 has 8 bytes"))
}

/// The advisory lock key of `server` of `project`: [`key`] of
/// `("deploy-lock", project, server)`, i.e. the first 8 bytes, big-endian, of
/// SHA-256(`pier\0deploy-lock\0PROJECT\0SERVER`), as a signed 64-bit integer.
pub fn lock_key(project: &str, server: &str) -> i64 {
    key(&["deploy-lock", project, server])
}

/// Brings the schema up to date, one migration per transaction, each under a
/// transaction-level advisory lock (so runners migrating at once wait for each other).
async fn migrate(client: &Client) -> Result<(), SharedError> {
    let lock = key(&["schema"]);
    loop {
        client.batch_execute("BEGIN").await.map_err(failed("begin a migration"))?;
        let step = async {
            client.execute("SELECT pg_advisory_xact_lock($1)", &[&lock]).await.map_err(failed("lock the schema"))?;
            let exists: bool = client
                .query_one("SELECT to_regclass('pier_schema') IS NOT NULL", &[])
                .await
                .map_err(failed("read the schema version"))?
                .get(0);
            if !exists {
                client
                    .batch_execute(
                        "CREATE TABLE pier_schema (
                             one     boolean PRIMARY KEY DEFAULT true CHECK (one),
                             version integer NOT NULL
                         );
                         INSERT INTO pier_schema (version) VALUES (0);",
                    )
                    .await
                    .map_err(failed("create the schema table"))?;
            }
            let version: i32 = client
                .query_opt("SELECT version FROM pier_schema", &[])
                .await
                .map_err(failed("read the schema version"))?
                .map(|r| r.get(0))
                .unwrap_or(0);
            if version > SCHEMA_VERSION {
                return Err(SharedError::TooNew { found: version, known: SCHEMA_VERSION });
            }
            if version == SCHEMA_VERSION {
                return Ok(true);
            }
            client.batch_execute(MIGRATIONS[version as usize]).await.map_err(failed("migrate the schema"))?;
            client
                .execute("UPDATE pier_schema SET version = $1", &[&(version + 1)])
                .await
                .map_err(failed("record the schema version"))?;
            tracing::info!("shared state database migrated to schema version {}", version + 1);
            Ok(false)
        };
        match step.await {
            Ok(done) => {
                client.batch_execute("COMMIT").await.map_err(failed("commit a migration"))?;
                if done {
                    return Ok(());
                }
            }
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(e);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The shared state.

/// The shared state of one project: its timeline and its servers' locks.
pub struct SharedState {
    db: Arc<Db>,
    project: String,
    /// The servers whose lock a [`SharedLock`] of this state holds, with its deploy.
    held: Arc<Mutex<HashMap<String, String>>>,
}

/// Connects to the database of `url` for project `project` (trying again for a few
/// seconds while it is unreachable) and brings its schema up to date.
pub async fn connect(url: &DatabaseUrl, project: &str) -> Result<SharedState, SharedError> {
    connect_within(url, project, CONNECT_PATIENCE).await
}

async fn connect_within(url: &DatabaseUrl, project: &str, patience: Duration) -> Result<SharedState, SharedError> {
    let target = Target::new(url)?;
    let client = target.connect(patience, None).await?;
    migrate(&client).await?;
    Ok(SharedState {
        db: Arc::new(Db { target, client: tokio::sync::Mutex::new(Some(Arc::new(client))) }),
        project: project.to_string(),
        held: Default::default(),
    })
}

const COLUMNS: &str = "id, server, method, \"commit\", branch, build, \"trigger\", actor, runner,
    to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
    to_char(ended_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
    status, exit_code, summary, url, release";

fn status_str(status: Status) -> &'static str {
    match status {
        Status::Running => "running",
        Status::Succeeded => "succeeded",
        Status::Failed => "failed",
        Status::Interrupted => "interrupted",
    }
}

fn deploy(row: &tokio_postgres::Row) -> Deploy {
    Deploy {
        id: row.get(0),
        server: row.get(1),
        method: row.get(2),
        commit: row.get(3),
        branch: row.get(4),
        build: row.get(5),
        trigger: row.get(6),
        actor: row.get(7),
        runner: row.get(8),
        started_at: row.get(9),
        ended_at: row.get(10),
        status: match row.get::<_, &str>(11) {
            "running" => Status::Running,
            "succeeded" => Status::Succeeded,
            "failed" => Status::Failed,
            _ => Status::Interrupted,
        },
        exit_code: row.get(12),
        summary: row.get(13),
        url: row.get(14),
        release: row.get(15),
    }
}

impl SharedState {
    /// The project this state belongs to.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// Records deploy `d` as running on `runner`, started now.
    pub async fn start(&self, d: &Deploy, runner: &str) -> Result<(), SharedError> {
        let client = self.db.client().await?;
        client
            .execute(
                "INSERT INTO pier_deploys (project, id, server, method, \"commit\", branch, build, \"trigger\", actor,
                     runner, started_at, status)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, clock_timestamp(), 'running')",
                &[
                    &self.project,
                    &d.id,
                    &d.server,
                    &d.method,
                    &d.commit,
                    &d.branch,
                    &d.build,
                    &d.trigger,
                    &d.actor,
                    &runner,
                ],
            )
            .await
            .map_err(failed("record a deploy"))?;
        Ok(())
    }

    /// Records how deploy `id` ended (its log is what was streamed).
    pub async fn finish(&self, id: &str, ended: &timeline::Ended<'_>) -> Result<(), SharedError> {
        let client = self.db.client().await?;
        client
            .execute(
                "UPDATE pier_deploys SET status = $3, exit_code = $4, summary = $5, url = $6, release = $7,
                     ended_at = clock_timestamp()
                 WHERE project = $1 AND id = $2",
                &[
                    &self.project,
                    &id,
                    &status_str(ended.status),
                    &ended.exit_code,
                    &ended.summary,
                    &ended.url,
                    &ended.release,
                ],
            )
            .await
            .map_err(failed("record how a deploy ended"))?;
        Ok(())
    }

    /// Records `d`, which has already ended as `ended` (a rollback), on `runner`, with no
    /// log: started and ended now, or at `d.started_at` (RFC 3339) when it is set. A
    /// deploy of its id already recorded is kept as it is, so recording it again (a
    /// replay) changes nothing.
    pub async fn record(&self, d: &Deploy, runner: &str, ended: &timeline::Ended<'_>) -> Result<(), SharedError> {
        let client = self.db.client().await?;
        client
            .execute(
                "INSERT INTO pier_deploys (project, id, server, method, \"commit\", branch, build, \"trigger\", actor,
                     runner, started_at, ended_at, status, exit_code, summary, url, release)
                 SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text, $8::text, $9::text,
                     $10::text, at, at, $12::text, $13::integer, $14::text, $15::text, $16::text
                 FROM (SELECT coalesce(nullif($11::text, '')::timestamptz, clock_timestamp()) AS at) AS t
                 ON CONFLICT (project, id) DO NOTHING",
                &[
                    &self.project,
                    &d.id,
                    &d.server,
                    &d.method,
                    &d.commit,
                    &d.branch,
                    &d.build,
                    &d.trigger,
                    &d.actor,
                    &runner,
                    &d.started_at,
                    &status_str(ended.status),
                    &ended.exit_code,
                    &ended.summary,
                    &ended.url,
                    &ended.release,
                ],
            )
            .await
            .map_err(failed("record a deploy"))?;
        Ok(())
    }

    /// Marks deploy `id` interrupted (if it is still running), keeping its log.
    pub async fn interrupt(&self, id: &str) -> Result<(), SharedError> {
        let client = self.db.client().await?;
        interrupt(&client, &self.project, &[id.to_string()]).await.map(|_| ())
    }

    /// Deploys, newest first, of one server or all.
    pub async fn list(&self, server: Option<&str>, limit: usize) -> Result<Vec<Deploy>, SharedError> {
        let client = self.db.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM pier_deploys WHERE project = $1 AND ($2::text IS NULL OR server = $2)
                     ORDER BY started_at DESC, id DESC LIMIT $3"
                ),
                &[&self.project, &server, &limit],
            )
            .await
            .map_err(failed("list deploys"))?;
        Ok(rows.iter().map(deploy).collect())
    }

    /// One deploy and its log: every line sent so far, each ending with a newline.
    pub async fn get(&self, id: &str) -> Result<Option<(Deploy, String)>, SharedError> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {COLUMNS}, (SELECT coalesce(string_agg(line || E'\\n', '' ORDER BY seq), '')
                                       FROM pier_deploy_log l WHERE l.project = d.project AND l.deploy_id = d.id)
                     FROM pier_deploys d WHERE project = $1 AND id = $2"
                ),
                &[&self.project, &id],
            )
            .await
            .map_err(failed("read a deploy"))?;
        Ok(row.map(|r| (deploy(&r), r.get(16))))
    }

    /// One deploy, without its log.
    pub async fn deploy(&self, id: &str) -> Result<Option<Deploy>, SharedError> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM pier_deploys WHERE project = $1 AND id = $2"),
                &[&self.project, &id],
            )
            .await
            .map_err(failed("read a deploy"))?;
        Ok(row.as_ref().map(deploy))
    }

    /// The ids, newest first, that start or end with `part` (for `timeline show`).
    pub async fn find(&self, part: &str) -> Result<Vec<String>, SharedError> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT id FROM pier_deploys
                 WHERE project = $1 AND (starts_with(id, $2) OR right(id, length($2)) = $2)
                 ORDER BY started_at DESC, id DESC",
                &[&self.project, &part],
            )
            .await
            .map_err(failed("find a deploy"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// A streaming log for deploy `deploy_id` (already recorded with [`SharedState::start`]).
    /// Must be called within a tokio runtime: the log's sender is a task of it.
    pub fn log(&self, deploy_id: &str) -> SharedLog {
        let shared = Arc::new(LogShared { state: Mutex::new(LogBuffer::default()), wake: tokio::sync::Notify::new() });
        let task = tokio::spawn(send_log(self.db.clone(), self.project.clone(), deploy_id.to_string(), shared.clone()));
        SharedLog { shared, task: Some(task) }
    }

    /// Takes the lock of `server` for deploy `deploy_id` of `runner`, waiting up to `wait`
    /// for another runner's deploy to end. The lock is held by a connection of its own,
    /// and released when the [`SharedLock`] is dropped or that connection ends.
    pub async fn lock(
        &self,
        server: &str,
        deploy_id: &str,
        runner: &str,
        wait: Duration,
    ) -> Result<SharedLock, SharedError> {
        let ended = Arc::new(Ended::default());
        let client = self.db.target.connect(CONNECT_PATIENCE, Some(ended.clone())).await?;
        let key = lock_key(&self.project, server);
        let name = format!("pier lock {server} {deploy_id}");
        // Named for whoever looks at the server's sessions (truncated to 63 bytes by it).
        let _ = client.execute("SELECT set_config('application_name', $1, false)", &[&name]).await;
        let taken = if wait.is_zero() {
            client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await
                .map_err(failed("take a server lock"))?
                .get::<_, bool>(0)
        } else {
            // Queued behind the holder by the server itself, for at most `wait`.
            let millis = wait.as_millis().clamp(1, i32::MAX as u128).to_string();
            client
                .execute("SELECT set_config('lock_timeout', $1, false)", &[&millis])
                .await
                .map_err(failed("take a server lock"))?;
            let result = match client.execute("SELECT pg_advisory_lock($1)", &[&key]).await {
                Ok(_) => true,
                Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => false,
                Err(e) => return Err(failed("take a server lock")(e)),
            };
            client.batch_execute("SET lock_timeout = 0").await.map_err(failed("take a server lock"))?;
            result
        };
        if !taken {
            return Err(self.busy(server).await);
        }
        self.held.lock().unwrap_or_else(|e| e.into_inner()).insert(server.to_string(), deploy_id.to_string());
        tracing::debug!("took the shared lock of {server} for deploy {deploy_id} of {runner}");
        Ok(SharedLock { client: Some(client), ended, server: server.to_string(), held: self.held.clone() })
    }

    /// The error saying who holds `server`'s lock: its newest running deploy, if recorded.
    async fn busy(&self, server: &str) -> SharedError {
        let holder = match self.db.client().await {
            Ok(client) => client
                .query_opt(
                    "SELECT id, runner, extract(epoch FROM clock_timestamp() - started_at)::float8
                     FROM pier_deploys WHERE project = $1 AND server = $2 AND status = 'running'
                     ORDER BY started_at DESC LIMIT 1",
                    &[&self.project, &server],
                )
                .await
                .ok()
                .flatten(),
            Err(_) => None,
        };
        SharedError::Busy {
            server: server.to_string(),
            deploy: holder.as_ref().map(|r| r.get(0)),
            runner: holder.as_ref().and_then(|r| r.get(1)),
            running_for: holder.as_ref().map(|r| Duration::from_secs_f64(r.get::<_, f64>(2).max(0.0))),
        }
    }

    /// Marks `interrupted` every running deploy (of `server`, or of every server) whose
    /// runner is gone: its server's lock is free, or held by this state for another deploy.
    /// Returns their ids.
    pub async fn reconcile(&self, server: Option<&str>) -> Result<Vec<String>, SharedError> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT id, server FROM pier_deploys
                 WHERE project = $1 AND status = 'running' AND ($2::text IS NULL OR server = $2)
                 ORDER BY started_at",
                &[&self.project, &server],
            )
            .await
            .map_err(failed("list running deploys"))?;
        let mut by_server: Vec<(String, Vec<String>)> = Vec::new();
        for row in &rows {
            let (id, server): (String, String) = (row.get(0), row.get(1));
            match by_server.iter_mut().find(|(s, _)| *s == server) {
                Some((_, ids)) => ids.push(id),
                None => by_server.push((server, vec![id])),
            }
        }
        let mut marked = Vec::new();
        for (server, ids) in by_server {
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).get(&server).cloned();
            if let Some(ours) = held {
                let stale: Vec<String> = ids.into_iter().filter(|id| *id != ours).collect();
                marked.extend(interrupt(&client, &self.project, &stale).await?);
                continue;
            }
            // Free if it can be taken: then nobody deploys it, and nobody can start to
            // while it is held here.
            let key = lock_key(&self.project, &server);
            let free: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await
                .map_err(failed("probe a server lock"))?
                .get(0);
            if free {
                let result = interrupt(&client, &self.project, &ids).await;
                client
                    .execute("SELECT pg_advisory_unlock($1)", &[&key])
                    .await
                    .map_err(failed("release a server lock"))?;
                marked.extend(result?);
            }
        }
        Ok(marked)
    }
}

/// Marks the running ones of `ids` interrupted; returns those it marked.
async fn interrupt(client: &Client, project: &str, ids: &[String]) -> Result<Vec<String>, SharedError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "UPDATE pier_deploys SET status = 'interrupted', exit_code = 130, summary = $3, ended_at = clock_timestamp()
             WHERE project = $1 AND id = ANY($2) AND status = 'running' RETURNING id",
            &[&project, &ids, &INTERRUPTED],
        )
        .await
        .map_err(failed("mark a deploy interrupted"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

// ---------------------------------------------------------------------------------------
// The lock.

/// A held server lock: a session-level advisory lock of a connection of its own.
/// Dropping it ends that connection, which releases the lock.
pub struct SharedLock {
    client: Option<Client>,
    ended: Arc<Ended>,
    server: String,
    held: Arc<Mutex<HashMap<String, String>>>,
}

impl SharedLock {
    /// Whether the lock's connection ended: the server has released the lock.
    pub fn lost(&self) -> bool {
        self.ended.get() || self.client.as_ref().is_none_or(Client::is_closed)
    }

    /// `Err(LockLost)` once the lock is lost.
    pub fn check(&self) -> Result<(), SharedError> {
        if self.lost() { Err(SharedError::LockLost { server: self.server.clone() }) } else { Ok(()) }
    }

    /// Asks the database whether this session still holds the lock (within
    /// [`CONFIRM_PATIENCE`]): a connection that ended, or a database that does not answer,
    /// is a lost lock.
    pub async fn confirm(&self) -> Result<(), SharedError> {
        self.check()?;
        let lost = || SharedError::LockLost { server: self.server.clone() };
        let client = self.client.as_ref().ok_or_else(lost)?;
        let asked = client.query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted",
            &[],
        );
        match tokio::time::timeout(CONFIRM_PATIENCE, asked).await {
            Ok(Ok(row)) if row.get::<_, i64>(0) > 0 => Ok(()),
            _ => {
                self.ended.set();
                Err(lost())
            }
        }
    }

    /// The server whose lock this is.
    pub fn server(&self) -> &str {
        &self.server
    }
}

/// How long [`SharedLock::confirm`] waits for the database's answer.
const CONFIRM_PATIENCE: Duration = Duration::from_secs(10);

impl Drop for SharedLock {
    fn drop(&mut self) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.server);
        // Ending the client ends the connection (its task sends Terminate and closes).
        self.client.take();
    }
}

impl fmt::Debug for SharedLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLock").field("server", &self.server).field("lost", &self.lost()).finish()
    }
}

// ---------------------------------------------------------------------------------------
// The streaming log.

/// Lines waiting to be sent, and what became of the others.
#[derive(Default)]
struct LogBuffer {
    pending: VecDeque<String>,
    /// Bytes accepted (sent or pending), newlines included.
    kept: u64,
    dropped_bytes: u64,
    dropped_lines: u64,
    sent: u64,
    /// Set by close (or drop): send what is left until then, and stop.
    closing: Option<Instant>,
    /// The last error sending met, if the last attempt failed.
    failing: Option<String>,
}

struct LogShared {
    state: Mutex<LogBuffer>,
    wake: tokio::sync::Notify,
}

impl LogShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, LogBuffer> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The log of a running deploy, streamed to the database by a task of its own.
pub struct SharedLog {
    shared: Arc<LogShared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// What became of a closed log's lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReport {
    /// Lines in the database.
    pub sent: u64,
    /// Lines that never reached it (the database was unreachable until the end).
    pub unsent: u64,
    /// Lines beyond the log's bound, not kept (one line says so in the log).
    pub dropped: u64,
    /// The last error met while sending, if lines are unsent.
    pub error: Option<String>,
}

impl LogReport {
    /// Whether every kept line arrived.
    pub fn complete(&self) -> bool {
        self.unsent == 0
    }
}

/// A handle that queues lines on a [`SharedLog`], for whoever writes the log (an event
/// sink) while the deploy code keeps the log itself to close it.
#[derive(Clone)]
pub struct LogPusher(Arc<LogShared>);

impl LogPusher {
    /// Queues one (already redacted) line; never waits. Beyond the log's bound
    /// (`LOG_OUTPUT + LOG_NOTES` bytes) lines are counted, not kept.
    pub fn push(&self, line: String) {
        // PostgreSQL's text cannot hold NUL.
        let line = if line.contains('\0') { line.replace('\0', "\u{FFFD}") } else { line };
        let size = line.len() as u64 + 1;
        let mut state = self.0.lock();
        if state.closing.is_some() {
            return;
        }
        if state.dropped_lines > 0 || state.kept + size > LOG_BOUND {
            state.dropped_bytes += size;
            state.dropped_lines += 1;
            return;
        }
        state.kept += size;
        state.pending.push_back(line);
        let full = state.pending.len() >= BATCH_LINES;
        drop(state);
        if full {
            self.0.wake.notify_one();
        }
    }
}

impl LogPusher {
    /// Asks for what is queued to be sent now rather than with the next batch (after a
    /// step or an error, which a killed runner's log should keep).
    pub fn send_now(&self) {
        self.0.wake.notify_one();
    }
}

impl SharedLog {
    /// Queues one (already redacted) line; never waits (see [`LogPusher::push`]).
    pub fn push(&self, line: String) {
        self.pusher().push(line);
    }

    /// A handle that queues lines on this log.
    pub fn pusher(&self) -> LogPusher {
        LogPusher(self.shared.clone())
    }

    /// Sends everything (with one line saying what the bound dropped, if anything),
    /// trying for a few seconds while the database is unreachable, and says what arrived.
    pub async fn close(self) -> LogReport {
        self.close_within(CLOSE_PATIENCE).await
    }

    /// The same, trying for `patience` (and at most one connection attempt or statement
    /// beyond it) while the database is unreachable.
    pub async fn close_within(mut self, patience: Duration) -> LogReport {
        self.end(Instant::now() + patience);
        if let Some(mut task) = self.task.take() {
            // The task gives up at the deadline, or within one statement's patience of it.
            if tokio::time::timeout(patience + CONNECT_PATIENCE + SEND_PATIENCE, &mut task).await.is_err() {
                task.abort();
            }
        }
        let state = self.shared.lock();
        LogReport {
            sent: state.sent,
            unsent: state.pending.len() as u64,
            dropped: state.dropped_lines,
            error: if state.pending.is_empty() { None } else { state.failing.clone() },
        }
    }

    fn end(&self, deadline: Instant) {
        let mut state = self.shared.lock();
        if state.closing.is_some() {
            return;
        }
        if state.dropped_lines > 0 {
            let line = format!(
                "[log cut: {} bytes in {} lines not kept: a deploy's log keeps {} MiB]",
                state.dropped_bytes,
                state.dropped_lines,
                timeline::LOG_OUTPUT >> 20
            );
            state.pending.push_back(line);
        }
        state.closing = Some(deadline);
        drop(state);
        self.shared.wake.notify_one();
    }
}

impl Drop for SharedLog {
    /// A log dropped without [`SharedLog::close`] still sends what it holds, in the
    /// background, for as long as the runtime lives.
    fn drop(&mut self) {
        if self.task.is_some() {
            self.end(Instant::now() + CLOSE_PATIENCE);
        }
    }
}

/// The task of a [`SharedLog`]: sends queued lines every [`FLUSH_EVERY`] (or as soon as
/// [`BATCH_LINES`] wait), numbering them itself, until the log is closed and empty (or
/// its deadline passes).
async fn send_log(db: Arc<Db>, project: String, deploy_id: String, shared: Arc<LogShared>) {
    let mut next: Option<i64> = None;
    let mut pause = FLUSH_EVERY;
    loop {
        let (closing, empty) = {
            let state = shared.lock();
            (state.closing, state.pending.is_empty())
        };
        if closing.is_some_and(|deadline| empty || Instant::now() >= deadline) {
            return;
        }
        if empty || pause > FLUSH_EVERY {
            let wait = match closing {
                Some(deadline) => pause.min(deadline.saturating_duration_since(Instant::now())),
                None => pause,
            };
            let _ = tokio::time::timeout(wait, shared.wake.notified()).await;
        }
        loop {
            let batch: Vec<String> = shared.lock().pending.iter().take(BATCH_LINES).cloned().collect();
            if batch.is_empty() {
                pause = FLUSH_EVERY;
                break;
            }
            // A database that stops answering is given up on for this round, not waited for.
            let patience = match shared.lock().closing {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()).clamp(FLUSH_EVERY, SEND_PATIENCE),
                None => SEND_PATIENCE,
            };
            let sent = tokio::time::timeout(patience, send_batch(&db, &project, &deploy_id, &mut next, &batch))
                .await
                .unwrap_or_else(|_| Err(SharedError::Db { action: "write a log", reason: "no answer".into() }));
            match sent {
                Ok(()) => {
                    let mut state = shared.lock();
                    state.pending.drain(..batch.len());
                    state.sent += batch.len() as u64;
                    state.failing = None;
                }
                Err(e) => {
                    tracing::debug!("streaming the log of {deploy_id}: {e}; trying again");
                    shared.lock().failing = Some(e.to_string());
                    pause = (pause * 2).min(Duration::from_secs(2));
                    break;
                }
            }
        }
    }
}

async fn send_batch(
    db: &Db,
    project: &str,
    deploy_id: &str,
    next: &mut Option<i64>,
    batch: &[String],
) -> Result<(), SharedError> {
    let client = db.client().await?;
    let first = match *next {
        Some(seq) => seq,
        None => client
            .query_one(
                "SELECT coalesce(max(seq) + 1, 0) FROM pier_deploy_log WHERE project = $1 AND deploy_id = $2",
                &[&project, &deploy_id],
            )
            .await
            .map_err(failed("read a log"))?
            .get(0),
    };
    *next = Some(first);
    let seqs: Vec<i64> = (first..).take(batch.len()).collect();
    // A batch sent again (its answer lost) inserts nothing twice.
    client
        .execute(
            "INSERT INTO pier_deploy_log (project, deploy_id, seq, line)
             SELECT $1, $2, s, l FROM unnest($3::bigint[], $4::text[]) AS t(s, l)
             ON CONFLICT DO NOTHING",
            &[&project, &deploy_id, &seqs, &batch],
        )
        .await
        .map_err(failed("write a log"))?;
    *next = Some(first + batch.len() as i64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DatabaseUrl, String> {
        text.parse::<DatabaseUrl>().map_err(|e| e.to_string())
    }

    #[test]
    fn parses_every_sslmode_and_defaults_to_verify_full() {
        let url = parse("postgres://ada:pw@db.example.com:6543/pier?sslmode=disable").unwrap();
        assert_eq!(
            (url.user.as_str(), url.host.as_str(), url.port, url.dbname.as_str(), url.sslmode),
            ("ada", "db.example.com", 6543, "pier", SslMode::Disable)
        );
        assert_eq!(url.password.as_ref().unwrap().expose_secret(), "pw");
        assert_eq!(parse("postgresql://ada@h/d?sslmode=require").unwrap().sslmode, SslMode::Require);
        assert_eq!(parse("postgres://ada@h/d?sslmode=verify-full").unwrap().sslmode, SslMode::VerifyFull);
        let url = parse("postgres://ada@h").unwrap();
        assert_eq!((url.sslmode, url.port, url.dbname.as_str()), (SslMode::VerifyFull, 5432, "ada"));
        assert!(url.password.is_none());
        let url = parse("postgres://ada@h/d?sslmode=verify-full&sslrootcert=/etc/ca.pem").unwrap();
        assert_eq!(url.sslrootcert.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        let url = parse("postgres://ada@[::1]:5433/d").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 5433));
        assert_eq!(url.to_string(), "postgres://ada@[::1]:5433/d?sslmode=verify-full");
        let url = parse("postgres://a%40b:p%2Fw%3A@h/my%20db").unwrap();
        assert_eq!((url.user.as_str(), url.dbname.as_str()), ("a@b", "my db"));
        assert_eq!(url.password.as_ref().unwrap().expose_secret(), "p/w:");
    }

    #[test]
    fn refuses_what_it_does_not_offer_naming_the_variable() {
        for (url, expected) in [
            ("mysql://ada:pw@h/d", "not a PostgreSQL URL"),
            ("http://ada:pw@h/d", "not a PostgreSQL URL"),
            ("ada:pw@h/d", "expected a URL"),
            ("ada:pw@h://d", "this is not a PostgreSQL URL"),
            ("postgres://ada:pw@h/d?sslmode=prefer", "may connect without TLS"),
            ("postgres://ada:pw@h/d?sslmode=allow", "may connect without TLS"),
            ("postgres://ada:pw@h/d?sslmode=verify-ca", "not offered"),
            ("postgres://ada:pw@h/d?sslmode=bogus", "unknown sslmode `bogus`"),
            ("postgres://ada:pw@h/d?sslmode=require&sslrootcert=/ca.pem", "only with sslmode=verify-full"),
            ("postgres://ada:pw@h/d?connect_timeout=3", "unknown parameter `connect_timeout`"),
            ("postgres://:pw@h/d", "names no user"),
            ("postgres://ada:pw@/d", "host"),
            ("postgres://ada:pw@h:99999/d", "not a valid URL"),
            ("postgres://ada:pw@h/a/b", "cannot contain"),
        ] {
            let error = parse(url).expect_err(url);
            assert!(error.starts_with("PIER_DATABASE_URL: "), "{url}: {error}");
            assert!(error.contains(expected), "{url}: {error}");
            assert!(!error.contains("pw"), "{url}: the password shows in {error}");
        }
    }

    #[test]
    fn the_password_never_shows() {
        let url = parse("postgres://ada:s3cr%C3%A9t-pw@db:5432/pier?sslmode=require").unwrap();
        assert_eq!(url.to_string(), "postgres://ada:***@db:5432/pier?sslmode=require");
        let debug = format!("{url:?}");
        assert!(!debug.contains("s3cr") && debug.contains("REDACTED"), "{debug}");
        let url = parse("postgres://ada@db/pier?sslmode=disable").unwrap();
        assert_eq!(url.to_string(), "postgres://ada@db:5432/pier?sslmode=disable");
    }

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        // The documented hash: the first 8 bytes of SHA-256("pier\0deploy-lock\0demo\0prod").
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(b"pier\0deploy-lock\0demo\0prod");
        assert_eq!(lock_key("demo", "prod"), i64::from_be_bytes(digest[..8].try_into().unwrap()));
        assert_ne!(lock_key("demo", "prod"), lock_key("demo", "staging"));
        assert_ne!(lock_key("demo", "prod"), lock_key("other", "prod"));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_tried_for_a_while_then_named_without_the_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = parse(&format!("postgres://ada:hunter2-pw@127.0.0.1:{port}/pier?sslmode=disable")).unwrap();
        let started = Instant::now();
        let error = connect_within(&url, "demo", Duration::from_millis(700)).await.err().unwrap().to_string();
        assert!(started.elapsed() >= Duration::from_millis(300), "tried again: {:?}", started.elapsed());
        assert!(error.contains("cannot connect to the shared state database"), "{error}");
        assert!(error.contains(&format!("postgres://ada:***@127.0.0.1:{port}/pier")), "{error}");
        assert!(error.to_lowercase().contains("refused"), "{error}");
        assert!(!error.contains("hunter2") && !error.contains('\n'), "{error}");
    }
}
