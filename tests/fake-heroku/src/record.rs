//! Records of what the fake received and did, for tests to inspect: requests (which can be
//! checked against the schema), rollbacks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which part of the fake a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// A Platform API path (everything that is not a blob, a stream, an app's web server or a
    /// control call).
    Api,
    /// A source upload or download (`/__blobs/{id}`), standing in for S3 presigned URLs.
    Blob,
    /// A build or release output stream (`/__streams/...`).
    Stream,
    /// A request to an app's own web server (`/__app/{app}/...`).
    Web,
}

/// One request the fake received, with the status it answered.
///
/// Requests are recorded in the order the fake handled them, failed ones included. Control
/// calls (`/__fake/...`) are not recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// Which part of the fake answered.
    pub kind: RequestKind,
    /// The HTTP method, upper case (`GET`, `POST`, ...).
    pub method: String,
    /// The path, without the query string, as received (not percent-decoded).
    pub path: String,
    /// The raw query string, without the `?`, if there was one.
    pub query: Option<String>,
    /// Request headers: lower-cased names, values as received (repeated headers are joined
    /// with `", "`; bytes that are not UTF-8 are replaced).
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON, when it was JSON (`None` for an empty or non-JSON body).
    pub body: Option<serde_json::Value>,
    /// The body's length in bytes.
    pub body_len: usize,
    /// The HTTP status the fake answered.
    pub status: u16,
}

impl RecordedRequest {
    /// The value of a request header, looked up case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// One rollback (`POST /apps/{app}/releases {release}`) the fake carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRecord {
    /// The app's name.
    pub app: String,
    /// The id of the release rolled back to.
    pub to_id: String,
    /// The version of the release rolled back to.
    pub to_version: u64,
    /// The id of the release the rollback created.
    pub release_id: String,
    /// The version of the release the rollback created.
    pub version: u64,
}

/// One one-off dyno created with `POST /apps/{app}/dynos` (creates answered 409 or refused
/// are not runs; they are among the recorded requests), and what became of its rendezvous
/// session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The app's name.
    pub app: String,
    /// The dyno's id.
    pub id: String,
    /// The dyno's name, `run.NNNN`.
    pub name: String,
    /// The command as sent, exit-status suffix included.
    pub command: String,
    /// The command with the exit-status suffix removed (what [`crate::RunScript::command`]
    /// is matched against).
    pub base_command: String,
    /// Whether the command carried an exit-status suffix (either form).
    pub exit_status_suffix: bool,
    /// The body's `attach` (absent counts as false).
    pub attach: bool,
    /// The body's `env` (empty when absent).
    pub env: BTreeMap<String, String>,
    /// The body's `size`, if sent.
    pub size: Option<String>,
    /// The body's `type`, if sent.
    #[serde(rename = "type")]
    pub dyno_type: Option<String>,
    /// The body's `force_no_tty`, if sent (and not null).
    pub force_no_tty: Option<bool>,
    /// The body's `time_to_live`, if sent.
    pub time_to_live: Option<u64>,
    /// The `attach_url` answered (`None` for a detached run).
    pub attach_url: Option<String>,
    /// Whether a client attached: a rendezvous connection sent this run's secret (only the
    /// first such connection is served).
    pub attached: bool,
    /// Whether the run is over: its session ended (set before the fake closes the
    /// connection), or at once for a detached run. Runs not over are listed by
    /// `GET /apps/{app}/dynos`.
    pub finished: bool,
    /// The bytes the fake read from the client while echoing (`echo_input`), the EOT that
    /// ended them included; empty without `echo_input`.
    pub input: Vec<u8>,
}
