//! Opening the project a command works on, and the plugins it can use.

use std::path::{Path, PathBuf};

use super::CliError;
use crate::caps::secrets::SealingKey;
use crate::project::config::{Config, InstalledPlugin};
use crate::project::masterkey;
use crate::project::secrets_file::SecretsFile;
use crate::project::{CONFIG_FILE, SECRETS_FILE, find_root};
use crate::runtime::{Plugin, Runtime, builtin};

/// A project: the directory holding `pier.toml`, and its configuration.
pub struct Project {
    pub root: PathBuf,
    pub config: Config,
}

impl Project {
    /// The project at or above the current directory.
    pub fn open() -> Result<Project, CliError> {
        let cwd =
            std::env::current_dir().map_err(|e| CliError::Usage(format!("cannot read the current directory: {e}")))?;
        let root = find_root(&cwd).ok_or_else(|| {
            CliError::Usage(format!("no {CONFIG_FILE} in {} or above: run `pier init` first", cwd.display()))
        })?;
        let config = Config::load(&root.join(CONFIG_FILE))?;
        Ok(Project { root, config })
    }

    /// The sealed secrets file (possibly empty).
    pub fn secrets(&self) -> Result<SecretsFile, CliError> {
        Ok(SecretsFile::load(&self.root.join(SECRETS_FILE))?)
    }

    /// The server named `name` (alias or name).
    pub fn server(&self, name: &str) -> Result<&crate::project::config::Server, CliError> {
        self.config.server(name).ok_or_else(|| {
            let known: Vec<&str> = self.config.servers().iter().map(|s| s.alias.as_str()).collect();
            CliError::Usage(format!(
                "no server `{name}` in {} (servers: {})",
                self.config.path().display(),
                if known.is_empty() {
                    "none yet; add one with `pier server add`".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// Loads the plugin for method `name`: an installed plugin (whose file must still have
    /// the recorded digest) or a built-in one.
    pub fn plugin(&self, runtime: &Runtime, name: &str) -> Result<Plugin, CliError> {
        // A built-in name always means the built-in (pier.toml cannot shadow one).
        if builtin::find(name).is_some() {
            return Ok(runtime.load_builtin(name)?);
        }
        if let Some(installed) = self.config.plugins().iter().find(|p| p.name == name) {
            return load_installed(runtime, &self.root, installed);
        }
        let mut known = builtin::names();
        known.extend(self.config.plugins().iter().map(|p| p.name.clone()));
        Err(CliError::Usage(format!("no deployment method `{name}` (available: {})", known.join(", "))))
    }

    /// Names of every method available: built-in, then installed.
    pub fn methods(&self) -> Vec<String> {
        let mut names = builtin::names();
        for plugin in self.config.plugins() {
            if !names.contains(&plugin.name) {
                names.push(plugin.name.clone());
            }
        }
        names
    }
}

/// Loads an installed plugin, refusing a file whose digest changed since it was added
/// (checked before the file is even parsed). The file is read once: the bytes whose
/// digest is checked are the bytes loaded.
pub fn load_installed(runtime: &Runtime, root: &Path, installed: &InstalledPlugin) -> Result<Plugin, CliError> {
    let path = root.join(&installed.path);
    let bytes = runtime
        .read_plugin_file(&path)
        .map_err(|e| CliError::Usage(format!("installed plugin `{}`: {e}", installed.name)))?;
    let sha256 = crate::runtime::cache::digest(&bytes);
    if sha256 != installed.sha256 {
        return Err(CliError::Usage(format!(
            "plugin `{}` ({}) no longer matches the sha256 recorded in {CONFIG_FILE} ({sha256} != {}): \
             if the change is intended, run `pier plugins add {}` again",
            installed.name,
            path.display(),
            installed.sha256,
            installed.path
        )));
    }
    Ok(runtime.load_bytes(&path.display().to_string(), bytes)?)
}

/// The master key, as a CLI error when missing.
pub fn master_key() -> Result<(SealingKey, masterkey::Source), CliError> {
    Ok(masterkey::load()?)
}
