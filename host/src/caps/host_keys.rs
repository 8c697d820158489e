//! SSH host keys: a server's SSH key is only ever offered to a host whose key is pinned.
//!
//! Policy: the private key of a server (see [`super::keys`]) reaches `ssh` only through
//! the `GIT_SSH_COMMAND` the host composes, and that command checks the host key strictly
//! against the keys pinned with the server (`host-keys` in `pier.toml`), never against
//! the user's or the system's known hosts, and never records a new one. Pins are learned
//! once, while the server is set up: the method's setup connects (git-ssh runs
//! `git ls-remote`, which fails at authentication since the key is new, after the host key
//! was seen) and `ssh` records the key it was shown; the host shows its fingerprint and
//! stores it. The user re-pins with `pier server edit NAME --trust-host-key`, which
//! fetches the keys again with `ssh-keyscan` and shows the new fingerprints. A connection
//! refused for its host key during a deploy ends the deploy with exit 4, whatever the
//! plugin reports, with the command that re-pins.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ssh_key::{HashAlg, PublicKey};

use crate::caps::events::inert;

/// The line ssh prints when it refuses a host key.
const REFUSED: &str = "Host key verification failed";

/// The longest `ssh-keyscan` may wait for a host, in seconds.
const SCAN_TIMEOUT_SECONDS: u32 = 10;

/// Why a pin or a destination is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostKeyError {
    #[error("`{0}` is not a known_hosts line of one host and its key (`HOST TYPE BASE64`)")]
    NotALine(String),
    #[error("`{0}` is not a host name or address with an optional port (HOST, HOST:PORT or [HOST]:PORT)")]
    BadDestination(String),
    #[error("the host key of {host} is not a valid SSH public key: {reason}")]
    BadKey { host: String, reason: String },
    #[error("could not fetch the SSH host keys of {0}: {1}")]
    Scan(String, String),
}

/// One pinned host key: the host as `known_hosts` names it (`example.com` on port 22,
/// `[example.com]:2222` on another port) and its public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    host: String,
    key: PublicKey,
}

impl Pin {
    /// Reads a `known_hosts` line naming one host in plain text (no hashed names, no
    /// patterns, no markers) and its key; a comment after the key is dropped.
    pub fn parse(line: &str) -> Result<Pin, HostKeyError> {
        let not_a_line = || HostKeyError::NotALine(inert(line));
        let mut words = line.split_whitespace();
        let (Some(host), Some(kind), Some(data)) = (words.next(), words.next(), words.next()) else {
            return Err(not_a_line());
        };
        let (name, port) = Destination::parse_known(host).ok_or_else(not_a_line)?;
        let host = Destination { host: name, port }.known_hosts_name();
        let key = PublicKey::from_openssh(&format!("{kind} {data}"))
            .map_err(|e| HostKeyError::BadKey { host: host.clone(), reason: e.to_string() })?;
        Ok(Pin { host, key: PublicKey::new(key.key_data().clone(), "") })
    }

    /// The host, as `known_hosts` names it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Where to fetch the key again.
    pub fn destination(&self) -> Destination {
        let (host, port) = Destination::parse_known(&self.host).unwrap_or((self.host.clone(), 22));
        Destination { host, port }
    }

    /// `SHA256:...`, as `ssh` and `ssh-keygen -l` show it.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// The key's algorithm (`ssh-ed25519`).
    pub fn algorithm(&self) -> String {
        self.key.algorithm().to_string()
    }

    /// The `known_hosts` line: `HOST TYPE BASE64`.
    pub fn line(&self) -> String {
        format!("{} {}", self.host, self.key.to_openssh().unwrap_or_default())
    }
}

/// A host and port to fetch keys from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub host: String,
    pub port: u16,
}

impl Destination {
    /// Reads `HOST`, `HOST:PORT` or `[HOST]:PORT` (an IPv6 address in brackets).
    pub fn parse(text: &str) -> Result<Destination, HostKeyError> {
        let bad = || HostKeyError::BadDestination(inert(text));
        let (host, port) = match text.strip_prefix('[') {
            Some(rest) => {
                let (host, after) = rest.split_once(']').ok_or_else(bad)?;
                match after {
                    "" => (host, None),
                    _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
                }
            }
            None => match text.split_once(':') {
                Some((host, port)) if !port.contains(':') => (host, Some(port)),
                Some(_) => (text, None), // a bare IPv6 address
                None => (text, None),
            },
        };
        let port = match port {
            None => 22,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?,
        };
        if !plain_host(host) {
            return Err(bad());
        }
        Ok(Destination { host: host.to_string(), port })
    }

    /// A `known_hosts` host name: `host` or `[host]:port`.
    fn parse_known(text: &str) -> Option<(String, u16)> {
        let destination = Destination::parse(text).ok()?;
        // `known_hosts` writes a port other than 22 only in brackets.
        if destination.port != 22 && !text.starts_with('[') {
            return None;
        }
        Some((destination.host, destination.port))
    }

    /// How `known_hosts` names it.
    pub fn known_hosts_name(&self) -> String {
        match self.port {
            22 => self.host.clone(),
            port => format!("[{}]:{port}", self.host),
        }
    }

    /// How a user writes it on the command line (`--trust-host-key=...`).
    pub fn display(&self) -> String {
        match (self.port, self.host.contains(':')) {
            (22, _) => self.host.clone(),
            (port, false) => format!("{}:{port}", self.host),
            (port, true) => format!("[{}]:{port}", self.host),
        }
    }
}

/// A host name or address that no program can read as an option or a pattern.
fn plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && !host.starts_with('-')
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'%'))
}

/// Fetches the host keys `destination` offers, with `ssh-keyscan`.
pub fn scan(destination: &Destination) -> Result<Vec<Pin>, HostKeyError> {
    let shown = destination.display();
    let failed = |reason: String| HostKeyError::Scan(shown.clone(), reason);
    if !plain_host(&destination.host) {
        return Err(HostKeyError::BadDestination(destination.host.clone()));
    }
    let output = std::process::Command::new("ssh-keyscan")
        .args(["-T", &SCAN_TIMEOUT_SECONDS.to_string(), "-p", &destination.port.to_string(), "--"])
        .arg(&destination.host)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                failed("`ssh-keyscan` is not installed (it comes with the OpenSSH client)".into())
            }
            _ => failed(format!("could not run ssh-keyscan: {e}")),
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let pins =
        unique(text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).filter_map(|l| Pin::parse(l).ok()));
    if pins.is_empty() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let why = stderr.lines().rev().find(|l| !l.trim().is_empty() && !l.starts_with('#')).unwrap_or("no answer");
        return Err(failed(format!("the host offered no key ({})", inert(why.trim()))));
    }
    Ok(pins)
}

fn unique(pins: impl Iterator<Item = Pin>) -> Vec<Pin> {
    let mut kept: Vec<Pin> = Vec::new();
    for pin in pins {
        if !kept.contains(&pin) {
            kept.push(pin);
        }
    }
    kept
}

/// The pins of `host` replaced by `fresh`, the others kept.
pub fn replace(pins: &[Pin], host: &str, fresh: Vec<Pin>) -> Vec<Pin> {
    unique(pins.iter().filter(|p| p.host != host).cloned().chain(fresh))
}

/// Why ssh refused a host, read from its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The host, when ssh named it.
    pub host: Option<Destination>,
    /// The host showed a key other than the pinned one (rather than none being pinned).
    pub changed: bool,
    /// The fingerprint of the key it showed, when ssh printed it.
    pub fingerprint: Option<String>,
}

impl Refusal {
    /// The refusal in the output of an ssh that checked host keys strictly, if any.
    pub fn find(lines: &[String]) -> Option<Refusal> {
        if !lines.iter().any(|l| l.contains(REFUSED)) {
            return None;
        }
        let mut refusal = Refusal { host: None, changed: false, fingerprint: None };
        for (i, line) in lines.iter().enumerate() {
            let line = line.trim();
            if line.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
                refusal.changed = true;
            }
            if let Some(rest) = line.strip_prefix("Host key for ")
                && let Some((host, _)) = rest.split_once(" has changed")
            {
                refusal.changed = true;
                refusal.host = Destination::parse_known(host).map(|(host, port)| Destination { host, port });
            }
            if let Some(rest) = line.strip_prefix("No ")
                && let Some((_, rest)) = rest.split_once(" host key is known for ")
                && let Some((host, _)) = rest.split_once(' ')
            {
                refusal.host = Destination::parse_known(host).map(|(host, port)| Destination { host, port });
            }
            if line.contains("key sent by the remote host is") {
                let next = lines.get(i + 1).map(|l| l.trim().trim_end_matches('.'));
                refusal.fingerprint = next.filter(|f| f.starts_with("SHA256:")).map(str::to_string);
            }
        }
        Some(refusal)
    }

    /// One message for the user: what happened and the command that re-pins.
    pub fn message(&self, server: &str) -> String {
        let host = self.host.as_ref().map(Destination::display);
        let shown = host.as_deref().unwrap_or("the SSH server");
        let showing = self.fingerprint.as_ref().map(|f| format!(" (it now offers {f})")).unwrap_or_default();
        if self.changed {
            format!(
                "the SSH host key of {shown} is not the one pinned for server `{server}`{showing}, so nothing was \
                 sent to it: someone may be intercepting the connection, or the server's key was replaced. If you \
                 know it was replaced, check the new fingerprint with its administrator and re-pin it with `pier \
                 server edit {server} --trust-host-key`"
            )
        } else {
            let flag = format!("--trust-host-key={}", host.as_deref().unwrap_or("HOST"));
            format!(
                "no SSH host key is pinned for {shown} on server `{server}`, so nothing was sent to it: check its \
                 fingerprint and pin it with `pier server edit {server} {flag}`"
            )
        }
    }
}

/// How the SSH runs of one call check host keys.
#[derive(Debug, Clone)]
pub struct HostKeys(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Setup: record the keys hosts show (first use); otherwise check strictly.
    learning: bool,
    /// The pinned keys, or those learned so far.
    pins: Mutex<Vec<Pin>>,
    /// The first host refused during the call.
    refused: Mutex<Option<Refusal>>,
}

impl HostKeys {
    /// Strict checking against `pins` (none: every host is refused).
    pub fn pinned(pins: Vec<Pin>) -> Self {
        HostKeys(Arc::new(Inner { learning: false, pins: Mutex::new(pins), refused: Mutex::new(None) }))
    }

    /// Recording the keys that hosts show, for a server being set up.
    pub fn learning() -> Self {
        HostKeys(Arc::new(Inner { learning: true, pins: Mutex::new(Vec::new()), refused: Mutex::new(None) }))
    }

    /// The pins, or the keys learned so far.
    pub fn pins(&self) -> Vec<Pin> {
        self.0.pins.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The first refusal seen, if a host's key was refused.
    pub fn refused(&self) -> Option<Refusal> {
        self.0.refused.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Writes the `known_hosts` file of one run of ssh into `dir`.
    pub fn known_hosts(&self, dir: &Path) -> std::io::Result<KnownHosts> {
        let path = dir.join("known_hosts");
        let lines: String = self.pins().iter().map(|p| p.line() + "\n").collect();
        std::fs::write(&path, lines)?;
        Ok(KnownHosts { path, learning: self.0.learning })
    }

    /// After a run that used `file`: keeps what ssh learned, or notes a refused host.
    pub fn after(&self, file: &KnownHosts, output: &[String]) {
        if self.0.learning {
            let text = std::fs::read_to_string(&file.path).unwrap_or_default();
            let mut pins = self.0.pins.lock().unwrap_or_else(|e| e.into_inner());
            let learned = unique(pins.iter().cloned().chain(text.lines().filter_map(|l| Pin::parse(l).ok())));
            *pins = learned;
        } else {
            self.note(output);
        }
    }

    /// Notes a refusal in the output of a program that used the strict `known_hosts`.
    pub fn note(&self, output: &[String]) -> Option<Refusal> {
        let refusal = Refusal::find(output)?;
        let mut refused = self.0.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused.get_or_insert(refusal.clone());
        Some(refusal)
    }
}

/// The `known_hosts` file of one run of ssh.
#[derive(Debug)]
pub struct KnownHosts {
    path: PathBuf,
    learning: bool,
}

impl KnownHosts {
    /// The ssh options that make ssh use this file alone: strictly, or (during setup)
    /// adding the keys of new hosts in plain text.
    pub fn ssh_options(&self) -> String {
        let check = if self.learning { "accept-new" } else { "yes" };
        format!(
            "-o StrictHostKeyChecking={check} -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null \
             -o HashKnownHosts=no -o UpdateHostKeys=no",
            super::keys::shell_quote(&self.path)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn pins_read_known_hosts_lines_of_one_plain_host() {
        let pin = Pin::parse(&format!("[127.0.0.1]:2222 {KEY} a comment")).unwrap();
        assert_eq!(pin.host(), "[127.0.0.1]:2222");
        assert_eq!(pin.destination(), Destination { host: "127.0.0.1".into(), port: 2222 });
        assert_eq!(pin.line(), format!("[127.0.0.1]:2222 {KEY}"));
        assert!(pin.fingerprint().starts_with("SHA256:"));
        assert_eq!(Pin::parse(&format!("example.com {KEY}")).unwrap().destination().port, 22);
        for bad in [
            format!("|1|c2FsdA==|aGFzaA== {KEY}"),
            format!("@cert-authority *.example.com {KEY}"),
            format!("*.example.com {KEY}"),
            format!("a.example,b.example {KEY}"),
            format!("-oProxyCommand=x {KEY}"),
            format!("example.com:2222 {KEY}"),
            "example.com ssh-ed25519".into(),
            "example.com ssh-ed25519 bm90IGEga2V5".into(),
        ] {
            assert!(Pin::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn destinations_are_hosts_and_ports_only() {
        assert_eq!(Destination::parse("git.example.com").unwrap().port, 22);
        let d = Destination::parse("127.0.0.1:2222").unwrap();
        assert_eq!((d.known_hosts_name(), d.display()), ("[127.0.0.1]:2222".into(), "127.0.0.1:2222".into()));
        let v6 = Destination::parse("[::1]:2222").unwrap();
        assert_eq!((v6.host.as_str(), v6.port, v6.display()), ("::1", 2222, "[::1]:2222".into()));
        assert_eq!(Destination::parse("::1").unwrap().port, 22);
        for bad in ["", "-oProxyCommand=x", "host:0", "host:99999", "host:port", "a b", "[::1", "ho;st", "h/x"] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_changed_host_key_is_read_from_ssh_output() {
        let output = lines(
            "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
             @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
             @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
             IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
             The fingerprint for the ED25519 key sent by the remote host is\n\
             SHA256:abcDEF0123.\n\
             Host key for [127.0.0.1]:2222 has changed and you have requested strict checking.\n\
             Host key verification failed.\n\
             fatal: Could not read from remote repository.",
        );
        let refusal = Refusal::find(&output).unwrap();
        assert!(refusal.changed);
        assert_eq!(refusal.host, Some(Destination { host: "127.0.0.1".into(), port: 2222 }));
        assert_eq!(refusal.fingerprint.as_deref(), Some("SHA256:abcDEF0123"));
        let message = refusal.message("box");
        assert!(message.contains("127.0.0.1:2222") && message.contains("SHA256:abcDEF0123"), "{message}");
        assert!(message.contains("`pier server edit box --trust-host-key`"), "{message}");
    }

    #[test]
    fn an_unpinned_host_is_read_from_ssh_output() {
        let output = lines(
            "No ED25519 host key is known for git.example.com and you have requested strict checking.\n\
             Host key verification failed.",
        );
        let refusal = Refusal::find(&output).unwrap();
        assert!(!refusal.changed);
        assert!(refusal.message("box").contains("`pier server edit box --trust-host-key=git.example.com`"));
        // Output without ssh's refusal is no refusal, whatever else it says.
        assert_eq!(Refusal::find(&lines("Permission denied (publickey).\nfatal: Could not read")), None);
    }

    #[test]
    fn strict_files_hold_the_pins_and_learning_keeps_what_ssh_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let pin = Pin::parse(&format!("[127.0.0.1]:2222 {KEY}")).unwrap();
        let strict = HostKeys::pinned(vec![pin.clone()]);
        let file = strict.known_hosts(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&file.path).unwrap(), format!("{}\n", pin.line()));
        assert!(file.ssh_options().contains("StrictHostKeyChecking=yes"));
        strict.after(&file, &lines("Host key verification failed."));
        assert!(strict.refused().is_some());

        let learning = HostKeys::learning();
        let file = learning.known_hosts(dir.path()).unwrap();
        assert!(file.ssh_options().contains("StrictHostKeyChecking=accept-new"));
        std::fs::write(&file.path, format!("{}\ngarbage\n{}\n", pin.line(), pin.line())).unwrap();
        learning.after(&file, &[]);
        assert_eq!(learning.pins(), std::slice::from_ref(&pin));
        assert_eq!(replace(std::slice::from_ref(&pin), pin.host(), vec![]), []);
    }
}
