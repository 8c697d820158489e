//! Rendezvous: how a client attaches to a one-off dyno (`heroku run`), over TLS.
//!
//! When the fake is started with a certificate and key ([`crate::ServeOptions::tls`]), it
//! also listens on a second loopback port, [`crate::FakeHeroku::rendezvous_port`], for TLS
//! (the API itself stays plain HTTP). A dyno created with `attach: true` answers
//! `attach_url: rendezvous://127.0.0.1:PORT/SECRET`. As Heroku's rendezvous service does for
//! the official CLI, the fake then expects a client to:
//!
//! 1. open TLS to `HOST:PORT` (the certificate is the one given, for `127.0.0.1` and
//!    `localhost` in Pier's tests);
//! 2. send the URL's path without its `/`, then `\r\n`: `SECRET\r\n`.
//!
//! The fake answers `rendezvous\r\n`, then the dyno's session as its [`crate::RunScript`]
//! says (output, echoed input, the exit-status marker line), then closes: TLS `close_notify`
//! and FIN, after which it reads and drops whatever the client still sends until the client
//! closes too (so that the client never sees a reset). A connection whose first line names no
//! waiting run (a wrong secret, or one whose client attached already) is closed at once
//! without a byte of output, and its line is recorded
//! ([`crate::FakeHeroku::refused_rendezvous`]).
//!
//! Nothing waits on the clock: a client that connects and sends nothing keeps its session
//! open until the fake stops.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::server::Shared;
use crate::state::Session;

/// A server certificate and its private key, as PEM files (for example made with the
/// `openssl` CLI and signed by a test CA). The certificate file may hold the chain after
/// the server's own certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate (chain) PEM file.
    pub cert: PathBuf,
    /// The private key PEM file (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads both files and checks that they make a usable certificate and key, as starting a
    /// fake with them would.
    pub fn check(&self) -> anyhow::Result<()> {
        acceptor(self).map(|_| ())
    }
}

/// The suffix the official CLI appends to a command to learn its exit status.
pub const EXIT_STATUS_SUFFIX: &str = " ; echo \"\u{FFFF} heroku-command-exit-status: $?\"";
/// The older form of the suffix.
pub const LEGACY_EXIT_STATUS_SUFFIX: &str = "; echo heroku-command-exit-status $?";

/// Which exit-status suffix a command carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suffix {
    /// [`EXIT_STATUS_SUFFIX`] (with or without the space before `;`).
    Current,
    /// [`LEGACY_EXIT_STATUS_SUFFIX`].
    Legacy,
}

/// Splits a dyno command into the command proper and the exit-status suffix it carries.
pub fn split_exit_status_suffix(command: &str) -> (String, Option<Suffix>) {
    let current = EXIT_STATUS_SUFFIX.trim_start();
    if let Some(base) = command.strip_suffix(current) {
        return (base.trim_end().to_string(), Some(Suffix::Current));
    }
    if let Some(base) = command.strip_suffix(LEGACY_EXIT_STATUS_SUFFIX) {
        return (base.trim_end().to_string(), Some(Suffix::Legacy));
    }
    (command.to_string(), None)
}

/// Loads the certificate and key into a TLS acceptor (aws-lc-rs, TLS 1.2 and 1.3).
pub(crate) fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read the certificate file {}", files.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot parse the certificate file {}", files.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("the certificate file {} holds no certificate", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("cannot read a private key from {}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS provider supports no protocol version")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and the key do not make a usable pair")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts rendezvous connections forever, one task per connection (dropped with this
/// future).
pub(crate) async fn serve(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    sessions.spawn(connection(shared.clone(), acceptor.clone(), tcp));
                }
                Err(e) => eprintln!("fake-heroku: rendezvous: cannot accept a connection: {e}"),
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

/// The longest first line the fake reads before giving up on a connection.
const MAX_SECRET_LINE: usize = 4096;
/// How much the fake reads and drops after closing, at most, waiting for the client to close.
const MAX_DRAIN: usize = 1 << 20;

async fn connection(shared: Arc<Shared>, acceptor: TlsAcceptor, tcp: TcpStream) {
    // One TLS record per write goes out at once: a split marker line arrives in two pieces.
    let _ = tcp.set_nodelay(true);
    let Ok(mut tls) = acceptor.accept(tcp).await else {
        return;
    };
    let mut received = Vec::new();
    let mut chunk = [0u8; 8192];
    let line_end = loop {
        if let Some(end) = received.iter().position(|&b| b == b'\n') {
            break Some(end);
        }
        if received.len() > MAX_SECRET_LINE {
            break None;
        }
        match tls.read(&mut chunk).await {
            Ok(0) | Err(_) => break None,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
    };
    let session = match line_end {
        Some(end) => {
            let line = &received[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let secret = String::from_utf8_lossy(line).into_owned();
            let session = shared.lock().attach(&secret);
            if shared.log {
                let outcome = if session.is_some() { "attached" } else { "refused" };
                eprintln!("fake-heroku: rendezvous {secret:?} -> {outcome}");
            }
            session.map(|session| (session, received[end + 1..].to_vec()))
        }
        None => {
            shared.lock().refused_rendezvous.push(String::from_utf8_lossy(&received).into_owned());
            None
        }
    };
    if let Some((session, rest)) = session {
        // A client that goes away early ends the session all the same.
        let _ = run_session(&shared, &session, &mut tls, rest).await;
        let mut state = shared.lock();
        let run = &mut state.runs[session.run];
        run.record.finished = true;
        run.updated_at = crate::util::now_rfc3339();
    }
    close(tls).await;
}

/// Sends the session: the acknowledgement, the output, the echoed input, the marker line.
async fn run_session<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    session: &Session,
    tls: &mut S,
    mut pending: Vec<u8>,
) -> io::Result<()> {
    send(tls, b"rendezvous\r\n").await?;
    for line in &session.output {
        send(tls, line.as_bytes()).await?;
    }
    if session.echo_input {
        let mut chunk = [0u8; 8192];
        loop {
            let data = if pending.is_empty() {
                match tls.read(&mut chunk).await {
                    // A half-close (or a FIN without close_notify) ends the input.
                    Ok(0) | Err(_) => break,
                    Ok(n) => chunk[..n].to_vec(),
                }
            } else {
                std::mem::take(&mut pending)
            };
            let eot = data.iter().position(|&b| b == 0x04);
            let kept = eot.map_or(&data[..], |i| &data[..=i]);
            shared.lock().runs[session.run].record.input.extend_from_slice(kept);
            let echoed = eot.map_or(&data[..], |i| &data[..i]);
            if !echoed.is_empty() {
                send(tls, &line_endings(echoed, session.crlf)).await?;
            }
            if eot.is_some() {
                break;
            }
        }
    }
    if let Some(marker) = &session.marker {
        if session.split_marker {
            let (first, second) = split_in_text(marker);
            send(tls, first.as_bytes()).await?;
            send(tls, second.as_bytes()).await?;
        } else {
            send(tls, marker.as_bytes()).await?;
        }
    }
    Ok(())
}

/// One write, flushed (one TLS record).
async fn send<S: AsyncWrite + Unpin>(tls: &mut S, bytes: &[u8]) -> io::Result<()> {
    tls.write_all(bytes).await?;
    tls.flush().await
}

/// Closes the fake's side (close_notify, FIN), then reads until the client closes its own.
async fn close<S: AsyncRead + AsyncWrite + Unpin>(mut tls: S) {
    let _ = tls.shutdown().await;
    let mut chunk = [0u8; 8192];
    let mut drained = 0;
    while drained < MAX_DRAIN {
        match tls.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// What a pty's output processing does to `\n` (`onlcr`) when `crlf`.
fn line_endings(bytes: &[u8], crlf: bool) -> Vec<u8> {
    if !crlf {
        return bytes.to_vec();
    }
    let mut out = Vec::with_capacity(bytes.len() + 8);
    for &b in bytes {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Splits a marker line in the middle of its text (at a character boundary).
fn split_in_text(line: &str) -> (&str, &str) {
    let mut middle = line.trim_end().len() / 2;
    while !line.is_char_boundary(middle) {
        middle -= 1;
    }
    line.split_at(middle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_suffixes_are_split_off() {
        let sent = format!("bin/migrate --all{EXIT_STATUS_SUFFIX}");
        assert_eq!(split_exit_status_suffix(&sent), ("bin/migrate --all".to_string(), Some(Suffix::Current)));
        let tight = "ls; echo \"\u{FFFF} heroku-command-exit-status: $?\"";
        assert_eq!(split_exit_status_suffix(tight), ("ls".to_string(), Some(Suffix::Current)));
        let legacy = "rake db:migrate; echo heroku-command-exit-status $?";
        assert_eq!(split_exit_status_suffix(legacy), ("rake db:migrate".to_string(), Some(Suffix::Legacy)));
        assert_eq!(split_exit_status_suffix("bash"), ("bash".to_string(), None));
        // Without the U+FFFF it is not the CLI's suffix.
        let lookalike = "ls ; echo \" heroku-command-exit-status: $?\"";
        assert_eq!(split_exit_status_suffix(lookalike).1, None);
    }

    #[test]
    fn markers_split_inside_their_text_and_ptys_turn_lf_into_crlf() {
        let marker = "\u{FFFF} heroku-command-exit-status: 0\r\n";
        assert_eq!(split_in_text(marker), ("\u{FFFF} heroku-comma", "nd-exit-status: 0\r\n"));
        assert_eq!(split_in_text("heroku-command-exit-status 1\n"), ("heroku-command", "-exit-status 1\n"));
        assert_eq!(line_endings(b"a\nb\n", true), b"a\r\nb\r\n");
        assert_eq!(line_endings(b"a\nb\n", false), b"a\nb\n");
    }
}
