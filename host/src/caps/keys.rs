//! Capability `keys`: SSH key pairs whose private half never enters the plugin.
//!
//! Policy: keys are ed25519, generated here with the OS random source. The private key
//! becomes a secret of the call's [`Vault`] (so it is redacted like any secret, and
//! stored only sealed with AES-256-GCM in `pier.secrets`); the plugin gets its handle,
//! its public key and fingerprint. The private key leaves the host process only as a
//! file readable by its owner alone ([`KeyFile`]), for `ssh` run by a granted program or
//! a deploy command, and that file is deleted when it is dropped.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey};

use crate::caps::host_keys::KnownHosts;
use crate::caps::secrets::Vault;
use crate::runtime::bindings::pier::deploy::keys;

/// The most key pairs one call may generate: each stays in the call's vault and is
/// stored with the server's secrets.
pub const MAX_KEYS: usize = 16;

/// A key pair generated during a call, for the host to store if the call succeeds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GeneratedKey {
    /// Its handle (the secret's name).
    pub handle: String,
    /// OpenSSH public key line.
    pub public_key: String,
    /// `SHA256:...` fingerprint.
    pub fingerprint: String,
}

/// Why a key could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("generating an ed25519 key failed: {0}")]
    Generate(ssh_key::Error),
    #[error("secret `{0}` is not an OpenSSH private key")]
    NotAKey(String),
    #[error("writing the private key file failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Whether `name` is a valid handle: lowercase ASCII letters, digits and `_`.
pub fn valid_handle(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Generates an ed25519 key pair; returns the OpenSSH private key and the public half.
pub fn generate(handle: &str, comment: &str) -> Result<(SecretString, GeneratedKey), KeyError> {
    let mut key = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519).map_err(KeyError::Generate)?;
    key.set_comment(comment);
    let private = key.to_openssh(LineEnding::LF).map_err(KeyError::Generate)?;
    let public = key.public_key();
    let generated = GeneratedKey {
        handle: handle.to_string(),
        public_key: public.to_openssh().map_err(KeyError::Generate)?,
        fingerprint: public.fingerprint(HashAlg::Sha256).to_string(),
    };
    Ok((SecretString::from(private.as_str()), generated))
}

/// The OpenSSH public key of a stored private key.
pub fn public_key(handle: &str, private: &SecretString) -> Result<String, KeyError> {
    let key = PrivateKey::from_openssh(private.expose_secret()).map_err(|_| KeyError::NotAKey(handle.to_string()))?;
    key.public_key().to_openssh().map_err(|_| KeyError::NotAKey(handle.to_string()))
}

/// A private key written to a file only its owner can read, deleted on drop.
#[derive(Debug)]
pub struct KeyFile {
    file: tempfile::TempPath,
}

impl KeyFile {
    /// Writes the private key `handle` of `vault` into `dir` (mode 0600).
    pub fn write(vault: &Vault, handle: &str, dir: &Path) -> Result<Self, KeyError> {
        let private = vault.get(handle).ok_or_else(|| KeyError::NotAKey(handle.to_string()))?;
        PrivateKey::from_openssh(private.expose_secret()).map_err(|_| KeyError::NotAKey(handle.to_string()))?;
        let mut file = tempfile::Builder::new().prefix("pier-key-").tempfile_in(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            file.as_file().set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(private.expose_secret().as_bytes())?;
        file.flush()?;
        Ok(KeyFile { file: file.into_temp_path() })
    }

    /// Where the key is.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The `GIT_SSH_COMMAND` that makes git's ssh use only this key, never prompt, and
    /// check host keys against `known_hosts` alone (see [`super::host_keys`]).
    pub fn git_ssh_command(&self, known_hosts: &KnownHosts) -> String {
        format!(
            "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes {}",
            shell_quote(self.path()),
            known_hosts.ssh_options()
        )
    }
}

/// `path` in single quotes, for a command line `sh` reads.
pub(crate) fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// The per-call state of the `keys` capability.
pub struct KeysCap {
    vault: Arc<Vault>,
    generated: Vec<GeneratedKey>,
}

impl KeysCap {
    /// Keys are kept in `vault`.
    pub fn new(vault: Arc<Vault>) -> Self {
        KeysCap { vault, generated: Vec::new() }
    }

    /// Keys generated during the call.
    pub fn generated(&self) -> &[GeneratedKey] {
        &self.generated
    }

    /// The private keys generated, with their values, for the host to store.
    pub fn take_generated(&mut self) -> Vec<GeneratedKey> {
        std::mem::take(&mut self.generated)
    }
}

impl keys::Host for KeysCap {
    async fn generate(
        &mut self,
        name: String,
        comment: String,
    ) -> wasmtime::Result<Result<keys::KeyPair, keys::KeyError>> {
        if !valid_handle(&name) {
            return Ok(Err(keys::KeyError::InvalidName(format!(
                "`{name}` is not a valid key name: use lowercase letters, digits and `_`"
            ))));
        }
        if self.vault.contains(&name) {
            return Ok(Err(keys::KeyError::InvalidName(format!("`{name}` is already the name of a secret"))));
        }
        if self.generated.len() >= MAX_KEYS {
            return Ok(Err(keys::KeyError::Failed(format!("a call may generate at most {MAX_KEYS} key pairs"))));
        }
        let comment: String = comment.chars().filter(|c| !c.is_control()).take(200).collect();
        match generate(&name, &comment) {
            Ok((private, public)) => {
                self.vault.insert(&name, private);
                self.generated.push(public.clone());
                Ok(Ok(keys::KeyPair { handle: name, public_key: public.public_key, fingerprint: public.fingerprint }))
            }
            Err(e) => Ok(Err(keys::KeyError::Failed(e.to_string()))),
        }
    }

    async fn public_key(&mut self, handle: String) -> wasmtime::Result<Result<String, keys::KeyError>> {
        let Some(private) = self.vault.get(&handle) else {
            return Ok(Err(keys::KeyError::UnknownKey(format!("no key `{handle}` in this call"))));
        };
        Ok(public_key(&handle, &private).map_err(|e| keys::KeyError::UnknownKey(e.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_and_files_are_private() {
        let (private, public) = generate("ssh_key", "pier test").unwrap();
        assert!(public.public_key.starts_with("ssh-ed25519 AAAA"));
        assert!(public.public_key.ends_with(" pier test"));
        assert!(public.fingerprint.starts_with("SHA256:"));
        assert_eq!(public_key("ssh_key", &private).unwrap(), public.public_key);

        let vault = Vault::new();
        vault.insert("ssh_key", private);
        let dir = tempfile::tempdir().unwrap();
        let file = KeyFile::write(&vault, "ssh_key", dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(file.path()).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let path = file.path().to_path_buf();
        drop(file);
        assert!(!path.exists());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_call_generates_a_bounded_number_of_keys() {
        use keys::Host as _;
        let mut cap = KeysCap::new(Arc::new(Vault::new()));
        for i in 0..MAX_KEYS {
            assert!(cap.generate(format!("key_{i}"), String::new()).await.unwrap().is_ok());
        }
        let refused = cap.generate("one_more".into(), String::new()).await.unwrap();
        assert!(matches!(&refused, Err(keys::KeyError::Failed(m)) if m.contains("at most 16")), "{refused:?}");
        assert_eq!(cap.generated().len(), MAX_KEYS);
    }

    #[test]
    fn handles_are_restricted() {
        assert!(valid_handle("ssh_key"));
        assert!(!valid_handle("SSH"));
        assert!(!valid_handle("../x"));
        assert!(!valid_handle(""));
    }
}
