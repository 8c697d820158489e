//! The host capabilities a plugin may be granted, one module each.
//!
//! Every module holds its capability's policy and its implementation of the matching
//! `pier:deploy` interface; [`Grant`] says what one call may use. Everything not granted
//! is denied: a denial is a typed error the plugin can handle, never a trap.

pub mod confine;
pub mod events;
pub mod exec;
pub mod host_keys;
pub mod http;
pub mod keys;
pub mod secrets;
pub mod supervise;
pub mod tls;
pub mod workspace;

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::runtime::Contract;
use crate::runtime::bindings::pier::deploy::types::{Permissions, ResolvedEndpoint, SecretUse};

/// What one call may use: the origins it may reach, the programs it may run and where
/// each secret may go.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// Origins for `http` and `workspace` uploads, and the secret bindings of headers.
    pub http: http::HttpGrant,
    /// Programs for `exec`, by name, with their argument and environment policy.
    pub programs: BTreeMap<String, exec::ProgramPolicy>,
    /// Hosts for `tls` streams.
    pub streams: tls::TlsGrant,
    /// The contract the plugin was built against: a 0.1.0 plugin could declare no
    /// argument patterns or bindings, and is held to the rules those imply.
    pub contract: Contract,
}

/// Why a plugin's permissions cannot be granted.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("endpoint `{endpoint}`: {source}")]
    Endpoint { endpoint: String, source: http::OriginError },
    #[error("origin: {0}")]
    Origin(http::OriginError),
    #[error("program `{0}` must be a plain name (letters, digits, `.`, `_`, `+`, `-`), not a path")]
    Program(String),
    #[error("{0}")]
    Stream(String),
}

impl Grant {
    /// Nothing at all: what `describe` runs with.
    pub fn none() -> Self {
        Grant::default()
    }

    /// The grant for one call of a plugin built against the current contract with
    /// `permissions`, given the answers or settings `values` and the host environment
    /// `env`. Also returns the resolved endpoints to hand to the plugin.
    pub fn for_call(
        permissions: &Permissions,
        values: &BTreeMap<String, String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Grant, Vec<ResolvedEndpoint>), GrantError> {
        Self::for_contract(Contract::CURRENT, permissions, values, env)
    }

    /// The same, for a plugin built against `contract`.
    pub fn for_contract(
        contract: Contract,
        permissions: &Permissions,
        values: &BTreeMap<String, String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Grant, Vec<ResolvedEndpoint>), GrantError> {
        Self::for_server(contract, permissions, values, &BTreeMap::new(), env)
    }

    /// The same, for a server with the endpoint URLs `stored` at its setup (see
    /// [`http::resolve_endpoints`]).
    pub fn for_server(
        contract: Contract,
        permissions: &Permissions,
        values: &BTreeMap<String, String>,
        stored: &BTreeMap<String, String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Grant, Vec<ResolvedEndpoint>), GrantError> {
        let resolved = http::resolve_endpoints(permissions, values, stored, env)?;
        let http = http::HttpGrant::new(contract, permissions, &resolved).map_err(GrantError::Origin)?;
        let mut programs = BTreeMap::new();
        for program in &permissions.programs {
            if !exec::plain_program_name(&program.name) {
                return Err(GrantError::Program(program.name.clone()));
            }
            let mut policy = exec::ProgramPolicy::new(contract, program);
            for binding in &permissions.secrets {
                match &binding.use_ {
                    SecretUse::ProgramEnv(e) if e.program == program.name => {
                        policy.secret_env.insert((binding.secret.clone(), e.variable.clone()));
                    }
                    SecretUse::SshKey(p) if *p == program.name => {
                        policy.ssh_keys.insert(binding.secret.clone());
                    }
                    _ => {}
                }
            }
            programs.insert(program.name.clone(), policy);
        }
        let streams = tls::TlsGrant::new(&permissions.streams, &resolved).map_err(GrantError::Stream)?;
        let endpoints = resolved.into_iter().map(|r| r.endpoint).collect();
        Ok((Grant { http, programs, streams, contract }, endpoints))
    }
}

/// Something a plugin did or tried, as the capabilities saw it before any policy or
/// redaction applied. The conformance runner records calls with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AuditRecord {
    /// An HTTP request (or workspace upload): its method and URL, which rule of the grant
    /// refused it (none: it went through), the names of headers carrying a secret handle,
    /// and the text the plugin itself supplied (URL, plain header values, body).
    Http { method: String, url: String, refused: Option<Refusal>, secret_headers: Vec<String>, plugin_text: String },
    /// A program run: its name, which rule refused it (none: it ran), and the text the
    /// plugin supplied.
    Exec { program: String, refused: Option<Refusal>, plugin_text: String },
    /// An event line as the plugin wrote it, before cleaning and redaction.
    Event { text: String },
    /// A TLS stream opened or refused: `host:port`, and which rule refused it.
    Stream { address: String, refused: Option<Refusal> },
}

/// Which rule of a grant refused a request or a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    /// The URL's origin is not granted (or a wildcard URL no response handed out).
    Origin,
    /// The URL is an IP literal of a private, loopback or otherwise internal address that
    /// the user did not write as the endpoint.
    Address,
    /// A secret was used where its bindings do not allow.
    Secret,
    /// The program is not granted.
    Program,
    /// The arguments match none of the program's patterns.
    Args,
    /// An environment variable the program's grant does not list, or one always refused.
    Env,
}

/// A recorder of [`AuditRecord`]s, shared by the capabilities of a call. It holds at
/// most [`Audit::MAX_RECORDS`] records and [`Audit::MAX_BYTES`] of their text; past
/// either it records nothing more and says so ([`Audit::overflowed`]), so a plugin can
/// neither exhaust the recorder's memory nor hide what it did behind a flood.
#[derive(Debug, Default)]
pub struct Audit {
    inner: Mutex<AuditInner>,
}

#[derive(Debug, Default)]
struct AuditInner {
    records: Vec<AuditRecord>,
    bytes: usize,
    overflowed: bool,
}

impl AuditRecord {
    /// The bytes of text the record holds.
    fn size(&self) -> usize {
        match self {
            AuditRecord::Http { method, url, secret_headers, plugin_text, .. } => {
                method.len() + url.len() + plugin_text.len() + secret_headers.iter().map(String::len).sum::<usize>()
            }
            AuditRecord::Exec { program, plugin_text, .. } => program.len() + plugin_text.len(),
            AuditRecord::Event { text } => text.len(),
            AuditRecord::Stream { address, .. } => address.len(),
        }
    }
}

impl Audit {
    /// The most records one audit holds.
    pub const MAX_RECORDS: usize = 10_000;
    /// The most bytes of text one audit holds.
    pub const MAX_BYTES: usize = 32 << 20;

    /// Adds a record, unless the audit is full.
    pub fn record(&self, record: AuditRecord) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let size = record.size();
        if inner.overflowed || inner.records.len() >= Self::MAX_RECORDS || inner.bytes + size > Self::MAX_BYTES {
            inner.overflowed = true;
            return;
        }
        inner.bytes += size;
        inner.records.push(record);
    }

    /// Everything recorded so far.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).records.clone()
    }

    /// Whether something was not recorded because the audit was full.
    pub fn overflowed(&self) -> bool {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).overflowed
    }

    /// Forgets everything recorded.
    pub fn clear(&self) {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = AuditInner::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_holds_a_bounded_number_of_records_and_bytes() {
        let audit = Audit::default();
        for _ in 0..Audit::MAX_RECORDS {
            audit.record(AuditRecord::Event { text: "x".into() });
        }
        assert!(!audit.overflowed());
        audit.record(AuditRecord::Event { text: "one too many".into() });
        assert!(audit.overflowed());
        assert_eq!(audit.records().len(), Audit::MAX_RECORDS);

        let audit = Audit::default();
        audit.record(AuditRecord::Event { text: "a".repeat(Audit::MAX_BYTES) });
        assert!(!audit.overflowed());
        audit.record(AuditRecord::Event { text: "b".into() });
        assert!(audit.overflowed());
        // Once full, it stays full: nothing recorded after a flood.
        audit.record(AuditRecord::Event { text: String::new() });
        assert_eq!(audit.records().len(), 1);
        audit.clear();
        assert!(!audit.overflowed() && audit.records().is_empty());
    }
}
