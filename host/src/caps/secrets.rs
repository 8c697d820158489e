//! Capability `secrets`: opaque handles to the server's secrets, and the redaction that
//! keeps their values out of everything Pier prints or stores.
//!
//! Architecture invariant: a plugin never receives a secret's plaintext. It names a
//! secret by handle (the secret's name); the host substitutes the value where the handle
//! is used (an HTTP header, a program's environment) and nowhere else.
//!
//! Every value that enters a [`Vault`] is registered with the process-wide redactor, in
//! raw, base64 (standard and URL-safe, at every alignment inside a longer encoded text)
//! and URL-encoded forms. Every line the host logs, shows or stores goes through
//! [`redact`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::runtime::bindings::pier::deploy::secrets;

/// What replaces a secret in redacted text.
pub const REDACTED: &str = "[redacted]";

/// Values shorter than this are not redacted: they would mangle ordinary text.
pub const MIN_REDACTED_LEN: usize = 4;

/// The secrets a call may use, by handle.
#[derive(Default)]
pub struct Vault {
    values: Mutex<BTreeMap<String, SecretString>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("handles", &self.handles()).finish()
    }
}

impl Vault {
    /// An empty vault.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the secret `handle`, and registers its value for redaction.
    pub fn insert(&self, handle: &str, value: SecretString) {
        register(value.expose_secret());
        self.lock().insert(handle.to_string(), value);
    }

    /// The secret named `handle`.
    pub fn get(&self, handle: &str) -> Option<SecretString> {
        self.lock().get(handle).cloned()
    }

    /// Whether `handle` names a secret.
    pub fn contains(&self, handle: &str) -> bool {
        self.lock().contains_key(handle)
    }

    /// The handles, sorted.
    pub fn handles(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SecretString>> {
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The per-call state of the `secrets` capability.
pub struct SecretsCap {
    vault: std::sync::Arc<Vault>,
}

impl SecretsCap {
    /// Handles come from `vault`.
    pub fn new(vault: std::sync::Arc<Vault>) -> Self {
        SecretsCap { vault }
    }
}

impl secrets::Host for SecretsCap {
    async fn handles(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.vault.handles())
    }
}

struct Redactor {
    patterns: Vec<String>,
    matcher: Option<AhoCorasick>,
}

static REDACTOR: RwLock<Redactor> = RwLock::new(Redactor { patterns: Vec::new(), matcher: None });

/// The forms of `value` that must never appear: the value itself, its URL-encoded forms,
/// and every run of base64 characters that encodes only bytes of the value, whatever
/// its alignment inside a longer encoded text.
pub fn forms(value: &str) -> Vec<String> {
    let mut out = vec![value.to_string()];
    let form: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
    out.push(form.clone());
    out.push(form.replace('+', "%20"));
    let bytes = value.as_bytes();
    for engine in [&base64::engine::general_purpose::STANDARD_NO_PAD, &base64::engine::general_purpose::URL_SAFE_NO_PAD]
    {
        for offset in 0..3usize {
            let mut padded = vec![0u8; offset];
            padded.extend_from_slice(bytes);
            let encoded = engine.encode(&padded);
            let first = (8 * offset).div_ceil(6);
            let last = (8 * (offset + bytes.len())) / 6;
            if last > first && last - first >= 8 {
                out.push(encoded[first..last].to_string());
            }
        }
    }
    out.retain(|f| f.len() >= MIN_REDACTED_LEN);
    out.sort();
    out.dedup();
    out
}

/// Whether `text` holds `value` in any of its [`forms`], or any long line of a multi-line
/// value (a private key).
pub fn exposes(text: &str, value: &str) -> bool {
    forms(value).iter().any(|form| text.contains(form.as_str()))
        || value.lines().map(str::trim).filter(|l| l.len() >= 16 && *l != value).any(|line| text.contains(line))
}

/// Registers a secret value: from now on [`redact`] removes it and its encoded forms.
pub fn register(value: &str) {
    if value.len() < MIN_REDACTED_LEN {
        return;
    }
    let mut redactor = REDACTOR.write().unwrap_or_else(|e| e.into_inner());
    let before = redactor.patterns.len();
    for form in forms(value) {
        if !redactor.patterns.contains(&form) {
            redactor.patterns.push(form);
        }
    }
    // A multi-line value (a private key) is also redacted line by line.
    for line in value.lines().map(str::trim).filter(|l| l.len() >= 16) {
        if !redactor.patterns.iter().any(|p| p == line) {
            redactor.patterns.push(line.to_string());
        }
    }
    if redactor.patterns.len() != before {
        redactor.matcher = AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&redactor.patterns).ok();
    }
}

/// `text` with every registered secret, in every registered form, replaced by
/// [`REDACTED`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let redactor = REDACTOR.read().unwrap_or_else(|e| e.into_inner());
    match &redactor.matcher {
        Some(m) if m.is_match(text) => Cow::Owned(m.replace_all(text, &vec![REDACTED; redactor.patterns.len()])),
        _ => Cow::Borrowed(text),
    }
}

/// `bytes` with every registered secret replaced by [`REDACTED`]; see [`redact`].
pub fn redact_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    let redactor = REDACTOR.read().unwrap_or_else(|e| e.into_inner());
    match &redactor.matcher {
        Some(m) if m.is_match(bytes) => {
            Cow::Owned(m.replace_all_bytes(bytes, &vec![REDACTED.as_bytes(); redactor.patterns.len()]))
        }
        _ => Cow::Borrowed(bytes),
    }
}

/// A 256-bit key for [`seal`] and [`open`].
pub struct SealingKey(Zeroizing<[u8; 32]>);

impl SealingKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SealingKey(Zeroizing::new(bytes))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        SealingKey(bytes)
    }

    /// The key's bytes, for writing it to its file.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Why sealed bytes could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    /// Too short to hold a nonce and a tag.
    #[error("sealed value is truncated")]
    Truncated,
    /// Wrong key, or the bytes or their associated data were changed.
    #[error("sealed value does not authenticate: wrong key, or the value was tampered with or moved")]
    Unauthentic,
}

const NONCE_LEN: usize = 12;

/// Encrypts `plaintext` with AES-256-GCM under `key`, binding it to `associated`
/// (for example the server and secret name, so sealed values cannot be swapped).
/// Returns nonce then ciphertext and tag.
pub fn seal(key: &SealingKey, associated: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new_from_slice(key.0.as_ref()).expect("key is 32 bytes");
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: associated })
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    out
}

/// Decrypts what [`seal`] produced with the same key and associated data.
pub fn open(key: &SealingKey, associated: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(OpenError::Truncated);
    }
    let cipher = Aes256Gcm::new_from_slice(key.0.as_ref()).expect("key is 32 bytes");
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: associated })
        .map(Zeroizing::new)
        .map_err(|_| OpenError::Unauthentic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_encoded_forms_are_redacted() {
        let secret = "s3cr3t/value+with spaces";
        register(secret);
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("user:{secret}"));
        let url: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        for text in [format!("key={secret}"), format!("Basic {b64}"), format!("q={url}")] {
            let out = redact(&text);
            assert!(out.contains(REDACTED), "not redacted: {text} -> {out}");
            assert!(!out.contains(secret), "{out}");
        }
        assert_eq!(redact("nothing to see"), "nothing to see");
    }

    #[test]
    fn base64_at_every_alignment() {
        let secret = "another-secret-value-42";
        register(secret);
        for prefix in ["", "a", "ab", "abc"] {
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{prefix}{secret}"));
            assert!(redact(&encoded).contains(REDACTED), "prefix {prefix:?}: {encoded}");
        }
    }

    #[test]
    fn seal_binds_key_and_associated_data() {
        let key = SealingKey::generate();
        let sealed = seal(&key, b"prod/api_key", b"hunter22");
        assert_eq!(open(&key, b"prod/api_key", &sealed).unwrap().as_slice(), b"hunter22");
        assert_eq!(open(&key, b"prod/ssh_key", &sealed), Err(OpenError::Unauthentic));
        assert_eq!(open(&SealingKey::generate(), b"prod/api_key", &sealed), Err(OpenError::Unauthentic));
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert_eq!(open(&key, b"prod/api_key", &tampered), Err(OpenError::Unauthentic));
        assert_eq!(open(&key, b"prod/api_key", &sealed[..10]), Err(OpenError::Truncated));
    }
}
