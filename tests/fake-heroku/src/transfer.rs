//! Source blobs (standing in for S3 presigned URLs) and build/release output streams.
//!
//! * `PUT /__blobs/{id}?signature=...` stores bytes (200, empty body); `GET` returns them.
//!   As with S3 presigned URLs there is no authentication, but the signature must be the one
//!   handed out for that method (the `put_url` does not work for GET, nor the reverse): a wrong
//!   signature answers 403, an unknown source 404.
//!   Every upload is also recorded as an [`Upload`]: the tarball's members, names, kinds
//!   and contents, as Heroku's builder would unpack them.
//! * `GET /__streams/builds/{id}` answers 404 for the build's first `stream_404s` requests (as
//!   Heroku's stream does for a few seconds at first), then `200 text/plain`, sent chunked, one
//!   line per chunk, and closes. `GET /__streams/releases/{id}` serves a release phase's
//!   output the same way (404 when the release has no release phase).

use axum::http::StatusCode;
use sha2::{Digest, Sha256};

use crate::api::{Incoming, scripted_failure};
use crate::script::FinalStatus;
use crate::state::State;
use crate::util::{Reply, ReplyBody, query_param};

/// What kind of member a tarball entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberKind {
    /// A regular file; its bytes are the member's contents.
    File,
    /// A symbolic link to this target (the link itself, never what it points to).
    Symlink(String),
    /// A directory.
    Directory,
    /// Anything else (hard link, device, fifo, ...), by its tar entry type byte.
    Other(u8),
}

/// One member of an uploaded tarball.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's path, as stored in the tarball.
    pub path: String,
    /// What it is.
    pub kind: MemberKind,
    /// Its permission bits.
    pub mode: u32,
    /// Its contents (empty for anything but a regular file).
    pub contents: Vec<u8>,
}

/// One upload to a source's `put_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The source id (the `{id}` in `/__blobs/{id}`).
    pub id: String,
    /// The uploaded body's length in bytes.
    pub len: usize,
    /// The members of the body read as a gzipped tarball, in archive order; `Err` says
    /// why it is not one.
    pub members: Result<Vec<Member>, String>,
}

impl Upload {
    /// The member at `path`, if the upload is a tarball holding one.
    pub fn member(&self, path: &str) -> Option<&Member> {
        self.members.as_ref().ok()?.iter().find(|m| m.path == path)
    }

    /// The member paths, sorted (empty if the upload is not a tarball).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.members.as_ref().map(|m| m.iter().map(|m| m.path.clone()).collect()).unwrap_or_default();
        names.sort();
        names
    }
}

/// Reads `bytes` as a gzipped tarball.
fn members(bytes: &[u8]) -> Result<Vec<Member>, String> {
    use std::io::Read as _;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut out = Vec::new();
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mode = entry.header().mode().map_err(|e| e.to_string())?;
        let kind = entry.header().entry_type();
        let kind = if kind.is_file() {
            MemberKind::File
        } else if kind.is_symlink() {
            let target = entry.link_name_bytes().map(|t| String::from_utf8_lossy(&t).into_owned());
            MemberKind::Symlink(target.unwrap_or_default())
        } else if kind.is_dir() {
            MemberKind::Directory
        } else {
            MemberKind::Other(kind.as_byte())
        };
        let mut contents = Vec::new();
        if kind == MemberKind::File {
            entry.read_to_end(&mut contents).map_err(|e| e.to_string())?;
        }
        out.push(Member { path, kind, mode, contents });
    }
    Ok(out)
}

/// The signature of a blob URL for `method` (`GET` or `PUT`).
fn signature(st: &State, id: &str, method: &str) -> String {
    let digest = Sha256::digest(format!("{}\0{method}\0{id}", st.signing_secret).as_bytes());
    hex::encode(&digest[..16])
}

/// The presigned-style URL for `method` on the blob `id`.
pub fn blob_url(st: &State, id: &str, method: &str) -> String {
    format!("{}/__blobs/{id}?signature={}", st.base_url, signature(st, id, method))
}

/// Fetches a build's source the way Heroku's builder would: only blobs uploaded to this fake,
/// through their GET URL, can be fetched (there is no other network).
pub fn fetch_for_build<'a>(st: &'a State, url: &str) -> Result<&'a [u8], String> {
    let prefix = format!("{}/__blobs/", st.base_url);
    let Some(rest) = url.strip_prefix(&prefix) else {
        return Err(format!("{url} cannot be reached"));
    };
    let (id, query) = rest.split_once('?').unwrap_or((rest, ""));
    let uploaded = match st.blobs.get(id) {
        Some(uploaded) => uploaded,
        None => return Err(format!("{url} answered 404 Not Found")),
    };
    if query_param(Some(query), "signature").as_deref() != Some(&signature(st, id, "GET")) {
        return Err(format!("{url} answered 403 Forbidden (SignatureDoesNotMatch)"));
    }
    match uploaded {
        Some(bytes) => Ok(bytes),
        None => Err(format!("{url} answered 404 Not Found (nothing was uploaded to the put_url)")),
    }
}

fn s3_error(status: StatusCode, code: &str, message: &str) -> Reply {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message></Error>"
    );
    let mut reply = Reply::text(status, &body);
    reply.headers.clear();
    reply.with_header("content-type", "application/xml")
}

/// Answers `/__blobs/{id}`.
pub fn blob(st: &mut State, req: &Incoming<'_>) -> Reply {
    if let Some(rule) = st.script.take_failure(req.method, req.path) {
        return scripted_failure(&rule);
    }
    let id = req.path.trim_start_matches("/__blobs/");
    let method = match req.method {
        "GET" | "HEAD" => "GET",
        "PUT" => "PUT",
        _ => {
            return s3_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.",
            );
        }
    };
    if !st.blobs.contains_key(id) {
        return s3_error(StatusCode::NOT_FOUND, "NoSuchKey", "The specified key does not exist.");
    }
    if query_param(req.query, "signature").as_deref() != Some(&signature(st, id, method)) {
        return s3_error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        );
    }
    match (method, st.blobs.get_mut(id)) {
        ("PUT", Some(slot)) => {
            *slot = Some(req.body.to_vec());
            st.uploads.push(Upload { id: id.to_string(), len: req.body.len(), members: members(req.body) });
            Reply::empty(StatusCode::OK)
        }
        ("GET", Some(Some(bytes))) => {
            let mut reply = Reply::empty(StatusCode::OK).with_header("content-type", "application/octet-stream");
            reply.body = ReplyBody::Bytes(bytes.clone());
            reply
        }
        _ => s3_error(StatusCode::NOT_FOUND, "NoSuchKey", "The specified key does not exist."),
    }
}

fn stream_not_found() -> Reply {
    Reply::text(StatusCode::NOT_FOUND, "Not Found\n")
}

/// Answers `/__streams/builds/{id}` and `/__streams/releases/{id}`.
pub fn stream(st: &mut State, req: &Incoming<'_>) -> Reply {
    if let Some(rule) = st.script.take_failure(req.method, req.path) {
        return scripted_failure(&rule);
    }
    if req.method != "GET" {
        return Reply::text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    }
    let rest = req.path.trim_start_matches("/__streams/");
    let lines = match rest.split_once('/') {
        Some(("builds", id)) => match build_output(st, id) {
            Some(lines) => lines,
            None => return stream_not_found(),
        },
        Some(("releases", id)) => match release_output(st, id) {
            Some(lines) => lines,
            None => return stream_not_found(),
        },
        _ => return stream_not_found(),
    };
    let mut reply = Reply::text(StatusCode::OK, "");
    reply.body = ReplyBody::Lines(lines);
    reply
}

/// The build's output, or `None` while the stream should answer 404.
fn build_output(st: &mut State, id: &str) -> Option<Vec<String>> {
    let index = st.builds.iter().position(|b| b.id == id)?;
    let build = &mut st.builds[index];
    build.stream_gets = build.stream_gets.saturating_add(1);
    if build.stream_gets <= build.stream_404s {
        return None;
    }
    let build = &st.builds[index];
    if let Some(output) = &build.output {
        return Some(output.clone());
    }
    Some(match (build.final_status, build.release) {
        (FinalStatus::Succeeded, Some(release)) => {
            let release = &st.releases[release];
            let mut lines = vec![
                "-----> Building on the Heroku-24 stack".to_string(),
                "-----> Using buildpack: heroku/nodejs".to_string(),
                "-----> Node.js app detected".to_string(),
                "-----> Installing dependencies".to_string(),
                "       Installing node modules".to_string(),
                "-----> Build succeeded!".to_string(),
                "-----> Discovering process types".to_string(),
                "       Procfile declares types -> release, web".to_string(),
                "-----> Compressing...".to_string(),
                "       Done: 42.1M".to_string(),
                "-----> Launching...".to_string(),
            ];
            if release.release_phase {
                lines.push("       !!! Release command declared: this new release will not be available until the command succeeds.".to_string());
            }
            lines.push(format!("       Released v{}", release.version));
            lines.push(format!("       {} deployed to Heroku", st.web_url(build.app)));
            lines
        }
        _ => vec![
            "-----> Building on the Heroku-24 stack".to_string(),
            "-----> Using buildpack: heroku/nodejs".to_string(),
            "-----> Node.js app detected".to_string(),
            "-----> Installing dependencies".to_string(),
            "npm ERR! code ERESOLVE".to_string(),
            "-----> Build failed".to_string(),
            " !     Push rejected, failed to compile Node.js app.".to_string(),
            " !     Push failed".to_string(),
        ],
    })
}

/// The release phase's output, or `None` when the release has none.
fn release_output(st: &State, id: &str) -> Option<Vec<String>> {
    let release = st.releases.iter().find(|r| r.id == id)?;
    if !release.release_phase {
        return None;
    }
    if let Some(output) = &release.output {
        return Some(output.clone());
    }
    Some(match release.final_status {
        FinalStatus::Succeeded => {
            vec!["Running release command...".to_string(), String::new(), "Migrating database... done".to_string()]
        }
        FinalStatus::Failed => vec![
            "Running release command...".to_string(),
            String::new(),
            "Migrating database... failed".to_string(),
            "Error: relation \"users\" already exists".to_string(),
            "Release command exited with status 1".to_string(),
        ],
    })
}
