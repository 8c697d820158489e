//! `pier.secrets`: the project's secret values, sealed with AES-256-GCM under the master
//! key. Safe to commit.
//!
//! Each value's associated data is `pier.secrets/v1/SERVER/NAME`, so a value moved to
//! another server or name no longer opens. A `check` value sealed under the same key
//! tells a wrong master key (the check fails) from a tampered file (the check opens, a
//! value does not).
//!
//! ```toml
//! version = 1
//! check = "base64(nonce | ciphertext | tag)"
//!
//! [servers.production-eu]
//! api_key = "base64(...)"
//! ssh_key = "base64(...)"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use toml_edit::{DocumentMut, Item, Table, value};

use crate::caps::secrets::{SealingKey, Vault, open, seal};

const CHECK_AAD: &[u8] = b"pier.secrets/v1/check";
const CHECK_PLAINTEXT: &[u8] = b"pier master key check";
const HEADER: &str = "\
# Pier: secret values of this project, encrypted (AES-256-GCM) with the master key.
# Safe to commit. Each value is bound to its server and name. Do not edit by hand.
";

/// Why `pier.secrets` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretsFileError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} is not a Pier secrets file: {message}")]
    Malformed { path: String, message: String },
    #[error(
        "{path} was sealed with a different master key than the one in {source_name}: use the key the file was created with"
    )]
    WrongKey { path: String, source_name: String },
    #[error("{path}: secret `{name}` of server `{server}` has been tampered with or moved; set it again")]
    Tampered { path: String, server: String, name: String },
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
}

fn aad(server: &str, name: &str) -> Vec<u8> {
    format!("pier.secrets/v1/{server}/{name}").into_bytes()
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// The sealed values of one project, as read from disk (nothing is opened until asked).
#[derive(Debug, Clone)]
pub struct SecretsFile {
    path: PathBuf,
    /// server alias → name → sealed bytes
    sealed: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    check: Option<Vec<u8>>,
}

impl SecretsFile {
    /// Reads `path`; a missing file is an empty one.
    pub fn load(path: &Path) -> Result<SecretsFile, SecretsFileError> {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(SecretsFile { path: path.to_path_buf(), sealed: BTreeMap::new(), check: None });
            }
            Err(e) => return Err(SecretsFileError::Read { path: shown, message: e.to_string() }),
        };
        let malformed = |message: String| SecretsFileError::Malformed { path: shown.clone(), message };
        let doc = text.parse::<DocumentMut>().map_err(|e| malformed(e.message().trim().to_string()))?;
        match doc.get("version").and_then(Item::as_integer) {
            Some(1) => {}
            _ => return Err(malformed("`version = 1` is missing".into())),
        }
        let decode = |item: &Item, what: &str| -> Result<Vec<u8>, SecretsFileError> {
            item.as_str().and_then(|s| b64().decode(s).ok()).ok_or_else(|| malformed(format!("{what} is not base64")))
        };
        let check = doc.get("check").map(|i| decode(i, "`check`")).transpose()?;
        let mut sealed = BTreeMap::new();
        if let Some(servers) = doc.get("servers") {
            let servers = servers.as_table().ok_or_else(|| malformed("`servers` is not a table".into()))?;
            for (server, item) in servers.iter() {
                let table = item.as_table().ok_or_else(|| malformed(format!("server `{server}` is not a table")))?;
                let mut values = BTreeMap::new();
                for (name, item) in table.iter() {
                    values.insert(name.to_string(), decode(item, &format!("`{server}.{name}`"))?);
                }
                sealed.insert(server.to_string(), values);
            }
        }
        Ok(SecretsFile { path: path.to_path_buf(), sealed, check })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks that `key` is the key this file was sealed with.
    pub fn verify_key(&self, key: &SealingKey, source: &str) -> Result<(), SecretsFileError> {
        match &self.check {
            None => Ok(()),
            Some(check) => match open(key, CHECK_AAD, check) {
                Ok(plain) if plain.as_slice() == CHECK_PLAINTEXT => Ok(()),
                _ => Err(SecretsFileError::WrongKey {
                    path: self.path.display().to_string(),
                    source_name: source.to_string(),
                }),
            },
        }
    }

    /// Names of the secrets stored for `server`.
    pub fn names(&self, server: &str) -> Vec<String> {
        self.sealed.get(server).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// Opens every secret of `server` into a vault (which registers them for redaction).
    pub fn open_server(&self, key: &SealingKey, source: &str, server: &str) -> Result<Vault, SecretsFileError> {
        self.verify_key(key, source)?;
        let vault = Vault::new();
        for (name, sealed) in self.sealed.get(server).into_iter().flatten() {
            let tampered = || SecretsFileError::Tampered {
                path: self.path.display().to_string(),
                server: server.to_string(),
                name: name.clone(),
            };
            let plain = open(key, &aad(server, name), sealed).map_err(|_| tampered())?;
            let text = String::from_utf8(plain.to_vec()).map_err(|_| tampered())?;
            vault.insert(name, SecretString::from(text));
        }
        Ok(vault)
    }

    /// Seals `values` as the secrets of `server` (replacing the named ones; others stay).
    pub fn set(&mut self, key: &SealingKey, server: &str, values: &[(String, SecretString)]) {
        if self.check.is_none() {
            self.check = Some(seal(key, CHECK_AAD, CHECK_PLAINTEXT));
        }
        let entry = self.sealed.entry(server.to_string()).or_default();
        for (name, value) in values {
            entry.insert(name.clone(), seal(key, &aad(server, name), value.expose_secret().as_bytes()));
        }
    }

    /// Forgets every secret of `server`.
    pub fn remove_server(&mut self, server: &str) {
        self.sealed.remove(server);
    }

    /// Writes the file atomically.
    pub fn save(&self) -> Result<(), SecretsFileError> {
        let mut doc = DocumentMut::new();
        doc.insert("version", value(1));
        if let Some(check) = &self.check {
            doc.insert("check", value(b64().encode(check)));
        }
        let mut servers = Table::new();
        servers.set_implicit(true);
        for (server, values) in &self.sealed {
            let mut table = Table::new();
            for (name, sealed) in values {
                table.insert(name, value(b64().encode(sealed)));
            }
            servers.insert(server, Item::Table(table));
        }
        doc.insert("servers", Item::Table(servers));
        let text = format!("{HEADER}{doc}");
        super::write_atomic(&self.path, text.as_bytes(), 0o644)
            .map_err(|e| SecretsFileError::Write { path: self.path.display().to_string(), message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_wrong_key_and_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pier.secrets");
        let key = SealingKey::generate();
        let mut file = SecretsFile::load(&path).unwrap();
        file.set(&key, "prod", &[("api_key".into(), SecretString::from("hunter2-secret"))]);
        file.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("hunter2"));

        let loaded = SecretsFile::load(&path).unwrap();
        let vault = loaded.open_server(&key, "test", "prod").unwrap();
        assert_eq!(vault.get("api_key").unwrap().expose_secret(), "hunter2-secret");

        let wrong = loaded.open_server(&SealingKey::generate(), "PIER_MASTER_KEY", "prod").unwrap_err();
        assert!(matches!(wrong, SecretsFileError::WrongKey { .. }), "{wrong}");

        // Move prod's value to another server: it no longer opens.
        let moved = text.replace("[servers.prod]", "[servers.staging]");
        std::fs::write(&path, moved).unwrap();
        let err = SecretsFile::load(&path).unwrap().open_server(&key, "test", "staging").unwrap_err();
        assert_eq!(
            err,
            SecretsFileError::Tampered {
                path: path.display().to_string(),
                server: "staging".into(),
                name: "api_key".into()
            }
        );
    }
}
