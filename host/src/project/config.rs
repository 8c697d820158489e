//! `pier.toml`: the project's servers (and installed plugins), validated on every load,
//! edited in place so that comments and layout a user added survive.
//!
//! ```toml
//! [servers.production-eu]
//! name = "Production EU"
//! method = "heroku"
//! strategy = "automatic"        # or "manual"
//! branch = "main"               # required for automatic
//! url = "https://example.com"   # optional
//! commands = ["heroku run rake db:migrate"]
//! host_keys = ["[git.example.com]:2222 ssh-ed25519 AAAA..."]   # pinned at setup (SSH methods)
//!
//! [servers.production-eu.settings]
//! app = "hello-app"
//!
//! [servers.production-eu.endpoints]   # stored at setup when a variable gave them
//! api = "https://api.heroku.example"  # (HEROKU_HOST), used when it is not set
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use toml_edit::{Array, DocumentMut, Item, Table, value};

use super::alias;

/// When a server deploys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// After every passed build of the server's branch (`pier ci`); manual deploys still allowed.
    Automatic,
    /// Only when asked (`pier deploy`).
    Manual,
}

impl Strategy {
    /// Parses `automatic` or `manual`.
    pub fn parse(text: &str) -> Option<Strategy> {
        match text {
            "automatic" => Some(Strategy::Automatic),
            "manual" => Some(Strategy::Manual),
            _ => None,
        }
    }

    /// The word used in `pier.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Automatic => "automatic",
            Strategy::Manual => "manual",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Server {
    /// The name in safe-string form; the key of its table.
    pub alias: String,
    /// Any text.
    pub name: String,
    /// The deployment method (a plugin name).
    pub method: String,
    pub strategy: Strategy,
    /// The branch automatic deploys follow.
    pub branch: Option<String>,
    /// Where the deployed app can be seen.
    pub url: Option<String>,
    /// The method's settings, as its `setup` returned them.
    pub settings: BTreeMap<String, String>,
    /// Deploy commands, run in order after the method's deploy.
    pub commands: Vec<String>,
    /// SSH host keys pinned for the server, as `known_hosts` lines (`HOST TYPE BASE64`):
    /// the only hosts its SSH key is offered to.
    pub host_keys: Vec<String>,
    /// Endpoint URLs (http(s) origins) by endpoint id, stored at setup where an
    /// environment variable gave them: used when that variable is not set.
    pub endpoints: BTreeMap<String, String>,
}

impl Server {
    /// The pinned host keys (each was checked when the file was read).
    pub fn pins(&self) -> Vec<crate::caps::host_keys::Pin> {
        self.host_keys.iter().filter_map(|l| crate::caps::host_keys::Pin::parse(l).ok()).collect()
    }
}

/// A plugin installed with `pier plugins add`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstalledPlugin {
    /// The method name it describes itself with.
    pub name: String,
    /// The file, relative to the project or absolute.
    pub path: String,
    /// SHA-256 the file must still have.
    pub sha256: String,
}

/// A loaded `pier.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    path: PathBuf,
    text: String,
    servers: Vec<Server>,
    plugins: Vec<InstalledPlugin>,
    project_id: Option<String>,
    state: StateBackend,
}

/// Where the timeline and the deploy locks live (`[state] backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// `.pier/` of the checkout: one machine.
    #[default]
    Local,
    /// The PostgreSQL database `PIER_DATABASE_URL` names, shared by every runner.
    Postgres,
}

/// Whether `id` is a usable project id: lowercase letters, digits, `-` and `_`, 1 to 64.
pub fn valid_project_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A new project id: `p` and 16 random hex digits.
pub fn new_project_id() -> String {
    use rand_core::RngCore as _;
    let mut bytes = [0u8; 8];
    rand_core::OsRng.fill_bytes(&mut bytes);
    format!("p{}", hex::encode(bytes))
}

/// What is wrong with `pier.toml`, and where.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}:{line}: {message}")]
    Invalid { path: String, line: usize, message: String },
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
}

/// The text a new `pier.toml` starts with.
pub const TEMPLATE: &str = "\
# Pier: deployment servers of this project. Safe to edit by hand; `pier server` edits it too.
# Secrets are not kept here but in pier.secrets, encrypted.
";

struct Reader<'a> {
    path: &'a str,
    text: &'a str,
}

impl Reader<'_> {
    fn line_of(&self, span: Option<std::ops::Range<usize>>) -> usize {
        span.map(|s| self.text[..s.start.min(self.text.len())].matches('\n').count() + 1).unwrap_or(1)
    }

    fn error(&self, span: Option<std::ops::Range<usize>>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { path: self.path.to_string(), line: self.line_of(span), message: message.into() }
    }

    fn string(&self, table: &Table, key: &str, context: &str) -> Result<Option<String>, ConfigError> {
        match table.get(key) {
            None => Ok(None),
            Some(item) => match item.as_str() {
                Some(s) => Ok(Some(s.to_string())),
                None => Err(self.error(item.span(), format!("{context}: `{key}` must be a string"))),
            },
        }
    }

    fn server(
        &self,
        alias: &str,
        item: &Item,
        key_span: Option<std::ops::Range<usize>>,
    ) -> Result<Server, ConfigError> {
        let context = format!("server `{alias}`");
        let Some(table) = item.as_table() else {
            return Err(self.error(key_span, format!("{context} must be a table")));
        };
        let span = table.span().or(key_span.clone());
        if !alias::valid(alias) {
            return Err(
                self.error(key_span, format!("`{alias}` is not a valid alias: use lowercase letters, digits and `-`"))
            );
        }
        for (key, item) in table.iter() {
            if !["name", "method", "strategy", "branch", "url", "settings", "commands", "host_keys", "endpoints"]
                .contains(&key)
            {
                return Err(self.error(item.span().or(span.clone()), format!("{context}: unknown field `{key}`")));
            }
        }
        let name = self
            .string(table, "name", &context)?
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| self.error(span.clone(), format!("{context}: `name` is missing")))?;
        let method = self
            .string(table, "method", &context)?
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| self.error(span.clone(), format!("{context}: `method` is missing")))?;
        let strategy_text = self.string(table, "strategy", &context)?.ok_or_else(|| {
            self.error(span.clone(), format!("{context}: `strategy` is missing (automatic or manual)"))
        })?;
        let strategy = Strategy::parse(&strategy_text).ok_or_else(|| {
            self.error(
                table.get("strategy").and_then(Item::span),
                format!("{context}: strategy `{strategy_text}` must be `automatic` or `manual`"),
            )
        })?;
        let branch = self.string(table, "branch", &context)?.filter(|b| !b.trim().is_empty());
        if strategy == Strategy::Automatic && branch.is_none() {
            return Err(self.error(
                table.get("strategy").and_then(Item::span),
                format!("{context}: strategy is automatic but no `branch` is set"),
            ));
        }
        let url = self.string(table, "url", &context)?.filter(|u| !u.trim().is_empty());
        if let Some(url) = &url
            && !valid_url(url)
        {
            return Err(self.error(
                table.get("url").and_then(Item::span),
                format!("{context}: url `{url}` is not an http(s) URL"),
            ));
        }
        let mut settings = BTreeMap::new();
        if let Some(item) = table.get("settings") {
            let Some(st) = item.as_table_like() else {
                return Err(self.error(item.span(), format!("{context}: `settings` must be a table")));
            };
            for (key, item) in st.iter() {
                let text = match (item.as_str(), item.as_bool(), item.as_integer()) {
                    (Some(s), _, _) => s.to_string(),
                    (_, Some(b), _) => b.to_string(),
                    (_, _, Some(i)) => i.to_string(),
                    _ => {
                        return Err(self.error(
                            item.span(),
                            format!("{context}: setting `{key}` must be a string, boolean or integer"),
                        ));
                    }
                };
                settings.insert(key.to_string(), text);
            }
        }
        let mut commands = Vec::new();
        if let Some(item) = table.get("commands") {
            let Some(array) = item.as_array() else {
                return Err(self.error(item.span(), format!("{context}: `commands` must be a list of strings")));
            };
            for command in array.iter() {
                match command.as_str() {
                    Some(c) => commands.push(c.to_string()),
                    None => {
                        return Err(self.error(command.span(), format!("{context}: every command must be a string")));
                    }
                }
            }
        }
        let mut host_keys = Vec::new();
        if let Some(item) = table.get("host_keys") {
            let Some(array) = item.as_array() else {
                return Err(self.error(item.span(), format!("{context}: `host_keys` must be a list of strings")));
            };
            for line in array.iter() {
                let pin = line
                    .as_str()
                    .ok_or_else(|| format!("{context}: every host key must be a string"))
                    .and_then(|l| crate::caps::host_keys::Pin::parse(l).map_err(|e| format!("{context}: {e}")))
                    .map_err(|message| self.error(line.span(), message))?;
                host_keys.push(pin.line());
            }
        }
        let mut endpoints = BTreeMap::new();
        if let Some(item) = table.get("endpoints") {
            let Some(et) = item.as_table_like() else {
                return Err(self.error(item.span(), format!("{context}: `endpoints` must be a table")));
            };
            for (id, item) in et.iter() {
                let origin = item.as_str().and_then(crate::caps::http::origin_url).ok_or_else(|| {
                    self.error(
                        item.span(),
                        format!(
                            "{context}: endpoint `{id}` must be an http(s) origin URL such as \
                             `https://api.example.com` (no path, query or credentials)"
                        ),
                    )
                })?;
                endpoints.insert(id.to_string(), origin);
            }
        }
        Ok(Server {
            alias: alias.to_string(),
            name,
            method,
            strategy,
            branch,
            url,
            settings,
            commands,
            host_keys,
            endpoints,
        })
    }

    fn plugin(&self, name: &str, item: &Item) -> Result<InstalledPlugin, ConfigError> {
        let context = format!("plugin `{name}`");
        let Some(table) = item.as_table() else {
            return Err(self.error(item.span(), format!("{context} must be a table")));
        };
        if crate::runtime::builtin::find(name).is_some() {
            return Err(self.error(
                item.span(),
                format!(
                    "{context} has the name of a built-in method, which always means the built-in: remove \
                     [plugins.{name}] (an installed plugin must have a name of its own)"
                ),
            ));
        }
        let path = self
            .string(table, "path", &context)?
            .ok_or_else(|| self.error(table.span(), format!("{context}: `path` is missing")))?;
        let sha256 = self
            .string(table, "sha256", &context)?
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error(table.span(), format!("{context}: `sha256` must be 64 hex digits")))?;
        Ok(InstalledPlugin { name: name.to_string(), path, sha256 })
    }
}

/// Whether `text` is an absolute http or https URL.
pub fn valid_url(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

impl Config {
    /// Loads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.display().to_string(), message: e.to_string() })?;
        Self::parse(path, text)
    }

    /// Validates `text` as the contents of `path`.
    pub fn parse(path: &Path, text: String) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let reader = Reader { path: &shown, text: &text };
        let doc = toml_edit::Document::parse(text.as_str())
            .map_err(|e| reader.error(e.span(), e.message().trim().replace('\n', " ")))?;
        let root = doc.as_table();
        for (key, item) in root.iter() {
            if !["servers", "plugins", "project", "state"].contains(&key) {
                return Err(reader
                    .error(item.span().or(root.key(key).and_then(|k| k.span())), format!("unknown section `{key}`")));
            }
        }
        let mut servers = Vec::new();
        if let Some(item) = root.get("servers") {
            let Some(table) = item.as_table() else {
                return Err(reader.error(item.span(), "`servers` must be a table of servers"));
            };
            for (alias, item) in table.iter() {
                let key_span = table.key(alias).and_then(|k| k.span());
                let server = reader.server(alias, item, key_span.clone())?;
                if let Some(other) = servers.iter().find(|s: &&Server| alias::same_name(&s.name, &server.name)) {
                    return Err(reader.error(
                        key_span,
                        format!("servers `{}` and `{alias}` have the same name `{}`", other.alias, server.name),
                    ));
                }
                servers.push(server);
            }
        }
        let mut plugins = Vec::new();
        if let Some(item) = root.get("plugins") {
            let Some(table) = item.as_table() else {
                return Err(reader.error(item.span(), "`plugins` must be a table of plugins"));
            };
            for (name, item) in table.iter() {
                plugins.push(reader.plugin(name, item)?);
            }
        }
        let project_id = match root.get("project") {
            None => None,
            Some(item) => {
                let table = item.as_table().ok_or_else(|| reader.error(item.span(), "`project` must be a table"))?;
                for (key, item) in table.iter() {
                    if key != "id" {
                        return Err(reader.error(item.span(), format!("[project]: unknown field `{key}`")));
                    }
                }
                let id = reader.string(table, "id", "[project]")?;
                if let Some(id) = &id
                    && !valid_project_id(id)
                {
                    return Err(reader.error(
                        table.get("id").and_then(Item::span),
                        format!("[project]: id `{id}` must be 1 to 64 lowercase letters, digits, `-` or `_`"),
                    ));
                }
                id
            }
        };
        let state = match root.get("state") {
            None => StateBackend::Local,
            Some(item) => {
                let table = item.as_table().ok_or_else(|| reader.error(item.span(), "`state` must be a table"))?;
                for (key, item) in table.iter() {
                    if key != "backend" {
                        return Err(reader.error(item.span(), format!("[state]: unknown field `{key}`")));
                    }
                }
                match reader.string(table, "backend", "[state]")?.as_deref() {
                    None | Some("local") => StateBackend::Local,
                    Some("postgres") => StateBackend::Postgres,
                    Some(other) => {
                        return Err(reader.error(
                            table.get("backend").and_then(Item::span),
                            format!("[state]: backend `{other}` must be `local` or `postgres`"),
                        ));
                    }
                }
            }
        };
        if state == StateBackend::Postgres && project_id.is_none() {
            return Err(reader.error(
                root.get("state").and_then(Item::span),
                "[state] backend is postgres, but [project] has no id (several projects share a database): \
                 run `pier init` to add one",
            ));
        }
        Ok(Config { path: path.to_path_buf(), text, servers, plugins, project_id, state })
    }

    /// The project's id (`[project] id`), which keeps its rows apart in a shared database.
    pub fn project_id(&self) -> Option<&str> {
        self.project_id.as_deref()
    }

    /// Where the timeline and locks live, as `pier.toml` says (local by default).
    pub fn state_backend(&self) -> StateBackend {
        self.state
    }

    /// Gives the project an id if it has none, and writes the file; returns the id.
    pub fn ensure_project_id(&self) -> Result<(Config, String), ConfigError> {
        if let Some(id) = &self.project_id {
            return Ok((self.clone(), id.clone()));
        }
        let id = new_project_id();
        let mut doc = self.document()?;
        let mut table = Table::new();
        table.insert("id", value(&id));
        Self::keep_header_on_top(&mut doc, &mut table);
        let prefix = table.decor().prefix().and_then(|p| p.as_str()).unwrap_or("").to_string();
        table.decor_mut().set_prefix(format!(
            "{prefix}\n# Keeps this project's deploys apart in a shared database. Do not change it.\n"
        ));
        doc.insert("project", Item::Table(table));
        Ok((self.save(doc)?, id))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The servers, in file order.
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// The installed plugins.
    pub fn plugins(&self) -> &[InstalledPlugin] {
        &self.plugins
    }

    /// The server with this alias or name.
    pub fn server(&self, alias_or_name: &str) -> Option<&Server> {
        self.servers
            .iter()
            .find(|s| s.alias == alias_or_name)
            .or_else(|| self.servers.iter().find(|s| alias::same_name(&s.name, alias_or_name)))
    }

    fn document(&self) -> Result<DocumentMut, ConfigError> {
        self.text.parse::<DocumentMut>().map_err(|e| ConfigError::Invalid {
            path: self.path.display().to_string(),
            line: 1,
            message: e.to_string(),
        })
    }

    /// A file of nothing but comments keeps them as the document's trailing text, which
    /// would end up below the first table added: move them above it.
    fn keep_header_on_top(doc: &mut DocumentMut, table: &mut Table) {
        if doc.as_table().is_empty() {
            let header = doc.trailing().as_str().unwrap_or_default().to_string();
            if !header.trim().is_empty() {
                table.decor_mut().set_prefix(format!("{}\n", header.trim_end()));
                doc.set_trailing("");
            }
        }
    }

    fn save(&self, doc: DocumentMut) -> Result<Config, ConfigError> {
        let text = doc.to_string();
        // Never write what would not load back.
        let config = Config::parse(&self.path, text.clone())?;
        super::write_atomic(&self.path, text.as_bytes(), 0o644)
            .map_err(|e| ConfigError::Write { path: self.path.display().to_string(), message: e.to_string() })?;
        Ok(config)
    }

    /// Adds `server` (its alias must be free) and writes the file.
    pub fn add_server(&self, server: &Server) -> Result<Config, ConfigError> {
        let mut doc = self.document()?;
        let mut table = Table::new();
        table.insert("name", value(&server.name));
        table.insert("method", value(&server.method));
        table.insert("strategy", value(server.strategy.as_str()));
        if let Some(branch) = &server.branch {
            table.insert("branch", value(branch));
        }
        if let Some(url) = &server.url {
            table.insert("url", value(url));
        }
        table.insert("commands", value(string_array(&server.commands)));
        if !server.host_keys.is_empty() {
            table.insert("host_keys", value(string_array(&server.host_keys)));
        }
        let mut settings = Table::new();
        for (k, v) in &server.settings {
            settings.insert(k, value(v));
        }
        table.insert("settings", Item::Table(settings));
        if !server.endpoints.is_empty() {
            let mut endpoints = Table::new();
            for (id, url) in &server.endpoints {
                endpoints.insert(id, value(url));
            }
            table.insert("endpoints", Item::Table(endpoints));
        }
        Self::keep_header_on_top(&mut doc, &mut table);
        self.insert(&mut doc, "servers", &server.alias, table)?;
        self.save(doc)
    }

    /// Inserts `table` as `[section.name]`.
    fn insert(&self, doc: &mut DocumentMut, section: &str, name: &str, table: Table) -> Result<(), ConfigError> {
        let parent = doc.entry(section).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        let Some(parent) = parent.as_table_mut() else {
            return Err(ConfigError::Invalid {
                path: self.path.display().to_string(),
                line: 1,
                message: format!("`{section}` must be a table"),
            });
        };
        parent.insert(name, Item::Table(table));
        Ok(())
    }

    /// Applies `edit` to the server `alias` and writes the file; untouched keys, other
    /// servers and comments stay as they are.
    pub fn edit_server(&self, alias: &str, edit: &ServerEdit) -> Result<Config, ConfigError> {
        let mut doc = self.document()?;
        let table =
            doc.get_mut("servers").and_then(|s| s.get_mut(alias)).and_then(Item::as_table_mut).ok_or_else(|| {
                ConfigError::Invalid {
                    path: self.path.display().to_string(),
                    line: 1,
                    message: format!("no server `{alias}`"),
                }
            })?;
        if let Some(strategy) = edit.strategy {
            table.insert("strategy", value(strategy.as_str()));
        }
        if let Some(branch) = &edit.branch {
            table.insert("branch", value(branch));
        }
        if let Some(url) = &edit.url {
            if url.is_empty() {
                table.remove("url");
            } else {
                table.insert("url", value(url));
            }
        }
        if !edit.settings.is_empty() {
            let settings = table.entry("settings").or_insert_with(|| Item::Table(Table::new()));
            for (k, v) in &edit.settings {
                settings[k.as_str()] = value(v);
            }
        }
        if let Some(commands) = &edit.commands {
            table.insert("commands", value(string_array(commands)));
        }
        if let Some(host_keys) = &edit.host_keys {
            if host_keys.is_empty() {
                table.remove("host_keys");
            } else {
                table.insert("host_keys", value(string_array(host_keys)));
            }
        }
        if !edit.add_commands.is_empty() {
            let item = table.entry("commands").or_insert_with(|| value(Array::new()));
            if let Some(array) = item.as_array_mut() {
                for c in &edit.add_commands {
                    array.push(c.as_str());
                }
            }
        }
        self.save(doc)
    }

    /// Removes the server `alias` and writes the file.
    pub fn remove_server(&self, alias: &str) -> Result<Config, ConfigError> {
        let mut doc = self.document()?;
        if let Some(servers) = doc.get_mut("servers").and_then(Item::as_table_mut) {
            servers.remove(alias);
        }
        self.save(doc)
    }

    /// Records an installed plugin and writes the file.
    pub fn add_plugin(&self, plugin: &InstalledPlugin) -> Result<Config, ConfigError> {
        let mut doc = self.document()?;
        let mut table = Table::new();
        table.insert("path", value(&plugin.path));
        table.insert("sha256", value(&plugin.sha256));
        Self::keep_header_on_top(&mut doc, &mut table);
        self.insert(&mut doc, "plugins", &plugin.name, table)?;
        self.save(doc)
    }
}

fn string_array(commands: &[String]) -> Array {
    let mut array: Array = commands.iter().map(String::as_str).collect();
    if commands.len() > 1 {
        for item in array.iter_mut() {
            item.decor_mut().set_prefix("\n    ");
        }
        array.set_trailing_comma(true);
        array.set_trailing("\n");
    }
    array
}

/// Changes to one server; `None` / empty leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct ServerEdit {
    pub strategy: Option<Strategy>,
    pub branch: Option<String>,
    /// `Some("")` removes the URL.
    pub url: Option<String>,
    pub settings: BTreeMap<String, String>,
    /// Replaces the command list.
    pub commands: Option<Vec<String>>,
    /// Appended to the command list.
    pub add_commands: Vec<String>,
    /// Replaces the pinned host keys (`known_hosts` lines).
    pub host_keys: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("pier.toml"), text.to_string())
    }

    const GOOD: &str = r#"# my servers
[servers.prod]
name = "Prod"          # the live one
method = "heroku"
strategy = "automatic"
branch = "main"
commands = ["echo hi"]

[servers.prod.settings]
app = "hello"
"#;

    #[test]
    fn loads_a_valid_file() {
        let config = parse(GOOD).unwrap();
        let server = config.server("prod").unwrap();
        assert_eq!(server.strategy, Strategy::Automatic);
        assert_eq!(server.settings["app"], "hello");
        assert_eq!(config.server("PROD").unwrap().alias, "prod");
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let cases = [
            (GOOD.replace("branch = \"main\"\n", ""), "pier.toml:5: server `prod`: strategy is automatic but no `branch` is set"),
            (GOOD.replace("\"automatic\"", "\"sometimes\""), "pier.toml:5: server `prod`: strategy `sometimes` must be `automatic` or `manual`"),
            (GOOD.replace("commands = [\"echo hi\"]", "commands = [1]"), "pier.toml:7: server `prod`: every command must be a string"),
            (GOOD.replace("method = \"heroku\"\n", "metod = \"heroku\"\n"), "pier.toml:4: server `prod`: unknown field `metod`"),
            (GOOD.replace("[servers.prod]", "[servers.Prod]").replace("[servers.prod.settings]", "[servers.Prod.settings]"), "pier.toml:2: `Prod` is not a valid alias: use lowercase letters, digits and `-`"),
            ("[servers.a]\nname = 'x'\nmethod = 'm'\nstrategy = 'manual'\n[servers.b]\nname = 'X'\nmethod = 'm'\nstrategy = 'manual'\n".to_string(), "pier.toml:5: servers `a` and `b` have the same name `X`"),
            ("[server]\n".to_string(), "pier.toml:1: unknown section `server`"),
            ("[servers\n".to_string(), "pier.toml:1: "),
            (format!("{GOOD}\n[servers.prod.endpoints]\napi = \"https://api.example.com/v1\"\n"), "pier.toml:13: server `prod`: endpoint `api` must be an http(s) origin URL such as `https://api.example.com` (no path, query or credentials)"),
            (format!("{GOOD}\n[servers.prod.endpoints]\napi = \"https://user:pw@api.example.com\"\n"), "pier.toml:13: server `prod`: endpoint `api` must be an http(s) origin URL"),
            (format!("{GOOD}\n[servers.prod.endpoints]\napi = \"ftp://api.example.com\"\n"), "pier.toml:13: server `prod`: endpoint `api` must be an http(s) origin URL"),
            (format!("{GOOD}\n[servers.prod.endpoints]\napi = 5000\n"), "pier.toml:13: server `prod`: endpoint `api` must be an http(s) origin URL"),
            (GOOD.replace("commands = [\"echo hi\"]", "endpoints = \"http://127.0.0.1:5000\""), "pier.toml:7: server `prod`: `endpoints` must be a table"),
        ];
        for (text, expected) in cases {
            let error = parse(&text).unwrap_err().to_string();
            assert!(error.starts_with(expected), "got: {error}\nwanted: {expected}");
        }
    }

    #[test]
    fn the_project_id_and_state_backend_are_read_and_checked() {
        let config = parse(GOOD).unwrap();
        assert_eq!((config.project_id(), config.state_backend()), (None, StateBackend::Local));
        let shared = parse(&format!("[project]\nid = \"p0123abcd\"\n[state]\nbackend = \"postgres\"\n{GOOD}")).unwrap();
        assert_eq!((shared.project_id(), shared.state_backend()), (Some("p0123abcd"), StateBackend::Postgres));
        let cases = [
            ("[state]\nbackend = \"postgres\"\n", "pier.toml:1: [state] backend is postgres, but [project] has no id"),
            ("[state]\nbackend = \"mysql\"\n", "pier.toml:2: [state]: backend `mysql` must be `local` or `postgres`"),
            ("[state]\nurl = \"postgres://x\"\n", "pier.toml:2: [state]: unknown field `url`"),
            ("[project]\nid = \"Has Spaces\"\n", "pier.toml:2: [project]: id `Has Spaces` must be 1 to 64"),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.starts_with(expected), "got: {error}\nwanted: {expected}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pier.toml");
        std::fs::write(&path, format!("{TEMPLATE}{GOOD}")).unwrap();
        let (config, id) = Config::load(&path).unwrap().ensure_project_id().unwrap();
        assert!(valid_project_id(&id) && config.project_id() == Some(id.as_str()));
        assert_eq!(config.ensure_project_id().unwrap().1, id, "an id is given once");
        assert_eq!(Config::load(&path).unwrap().server("prod").unwrap().name, "Prod");
    }

    #[test]
    fn stored_endpoints_load_in_origin_form_and_are_written_as_a_table() {
        let text = format!("{GOOD}\n[servers.prod.endpoints]\napi = \"HTTP://127.0.0.1:5000/\"\n");
        let server = parse(&text).unwrap().server("prod").unwrap().clone();
        assert_eq!(server.endpoints, BTreeMap::from([("api".to_string(), "http://127.0.0.1:5000".to_string())]));
        assert!(parse(GOOD).unwrap().server("prod").unwrap().endpoints.is_empty());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pier.toml");
        std::fs::write(&path, TEMPLATE).unwrap();
        let config = Config::load(&path).unwrap();
        let staging = Server { alias: "staging".into(), name: "Staging".into(), ..server.clone() };
        let plain = Server { alias: "plain".into(), name: "Plain".into(), endpoints: BTreeMap::new(), ..server };
        let config = config.add_server(&staging).unwrap().add_server(&plain).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("[servers.staging.endpoints]\napi = \"http://127.0.0.1:5000\"\n"), "{text}");
        assert_eq!(text.matches("endpoints").count(), 1, "{text}");
        assert_eq!(config.server("staging").unwrap().endpoints, staging.endpoints);
    }

    #[test]
    fn edits_keep_comments_and_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pier.toml");
        std::fs::write(&path, GOOD).unwrap();
        let config = Config::load(&path).unwrap();
        let edit = ServerEdit {
            strategy: Some(Strategy::Manual),
            add_commands: vec!["heroku run rake db:migrate".into()],
            ..Default::default()
        };
        let edited = config.edit_server("prod", &edit).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# my servers\n"), "{text}");
        assert!(text.contains("name = \"Prod\"          # the live one"), "{text}");
        assert!(text.contains("strategy = \"manual\""), "{text}");
        assert_eq!(edited.server("prod").unwrap().commands, ["echo hi", "heroku run rake db:migrate"]);
        assert_eq!(edited.server("prod").unwrap().settings["app"], "hello");
    }
}
