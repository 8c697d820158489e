//! The host capabilities a plugin may be granted, one module each.
//!
//! Every module holds its capability's policy and its implementation of the matching
//! `pier:deploy` interface; [`Grant`] says what one call may use. Everything not granted
//! is denied: a denial is a typed error the plugin can handle, never a trap.

pub mod events;
pub mod exec;
pub mod http;
pub mod keys;
pub mod secrets;
pub mod workspace;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use crate::runtime::bindings::pier::deploy::types::{Permissions, ResolvedEndpoint};

/// What one call may use: the origins it may reach and the programs it may run.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// Origins for `http` and `workspace` uploads.
    pub http: http::HttpGrant,
    /// Program names for `exec`.
    pub programs: BTreeSet<String>,
}

/// Why a plugin's permissions cannot be granted.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("endpoint `{endpoint}`: {source}")]
    Endpoint { endpoint: String, source: http::OriginError },
    #[error("origin: {0}")]
    Origin(http::OriginError),
    #[error("program `{0}` must be a bare name, not a path")]
    Program(String),
}

impl Grant {
    /// Nothing at all: what `describe` runs with.
    pub fn none() -> Self {
        Grant::default()
    }

    /// The grant for one call of a plugin with `permissions`, given the answers or
    /// settings `values` and the host environment `env`. Also returns the resolved
    /// endpoints to hand to the plugin.
    pub fn for_call(
        permissions: &Permissions,
        values: &BTreeMap<String, String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Grant, Vec<ResolvedEndpoint>), GrantError> {
        let endpoints = http::resolve_endpoints(permissions, values, env);
        for endpoint in &endpoints {
            let url = url::Url::parse(&endpoint.url)
                .map_err(|_| http::OriginError::NotAUrl(endpoint.url.clone()))
                .and_then(|u| http::OriginPattern::of(&u));
            if let Err(source) = url {
                return Err(GrantError::Endpoint { endpoint: endpoint.id.clone(), source });
            }
        }
        let http = http::HttpGrant::new(permissions, &endpoints).map_err(GrantError::Origin)?;
        let mut programs = BTreeSet::new();
        for program in &permissions.programs {
            if program.is_empty() || program.contains(['/', '\\']) {
                return Err(GrantError::Program(program.clone()));
            }
            programs.insert(program.clone());
        }
        Ok((Grant { http, programs }, endpoints))
    }
}

/// Something a plugin did or tried, as the capabilities saw it before any policy or
/// redaction applied. The conformance runner records calls with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AuditRecord {
    /// An HTTP request (or workspace upload): its method and URL, whether the grant let it
    /// through, the names of headers carrying a secret handle, and the text the plugin
    /// itself supplied (URL, plain header values, body).
    Http { method: String, url: String, allowed: bool, secret_headers: Vec<String>, plugin_text: String },
    /// A program run: its name, whether granted, and the text the plugin supplied.
    Exec { program: String, allowed: bool, plugin_text: String },
    /// An event line as the plugin wrote it, before cleaning and redaction.
    Event { text: String },
}

/// A recorder of [`AuditRecord`]s, shared by the capabilities of a call.
#[derive(Debug, Default)]
pub struct Audit {
    records: Mutex<Vec<AuditRecord>>,
}

impl Audit {
    /// Adds a record.
    pub fn record(&self, record: AuditRecord) {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).push(record);
    }

    /// Everything recorded so far.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forgets everything recorded.
    pub fn clear(&self) {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
