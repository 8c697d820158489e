//! Plugins compiled into the `pier` binary: built from source by `host/build.rs`, embedded
//! both as components and as artifacts precompiled for the build machine, so a fresh CI
//! runner pays no compilation.

use super::inert::Inert as _;
use super::{CallError, Contract, Description, check_description, describe_fault};

/// One embedded plugin.
#[derive(Debug)]
pub struct Builtin {
    /// The method name, as `pier plugins list` shows it.
    pub name: &'static str,
    /// The component.
    pub wasm: &'static [u8],
    /// SHA-256 of the component, lowercase hex (computed at build time, so that a load
    /// does not read the whole component to hash it).
    pub sha256: &'static str,
    /// The `pier:deploy` version it targets.
    pub contract: &'static str,
    /// What its `describe` returned at build time, as JSON (`build.rs` makes the call).
    description: &'static str,
    /// The component compiled at build time.
    pub compiled: &'static [u8],
}

impl Builtin {
    /// What the plugin's `describe` returns, without an instance: the answer it gave at
    /// build time, made inert and checked against the contract as a live call's is.
    pub fn description(&self) -> Result<Description, CallError> {
        let plugin = format!("builtin:{}", self.name);
        let fault = |message: String| describe_fault(&plugin, message);
        let description: Description = serde_json::from_str(self.description)
            .map_err(|e| fault(format!("the description embedded at build time does not decode: {e}")))?;
        let description = description.inert();
        let contract = Contract::of_version(self.contract)
            .ok_or_else(|| fault(format!("pier:deploy@{} is not a contract this host supports", self.contract)))?;
        check_description(&description, contract).map_err(fault)?;
        Ok(description)
    }
}

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// The built-in plugin `name`.
pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// Names of the built-in plugins.
pub fn names() -> Vec<String> {
    BUILTINS.iter().map(|b| b.name.to_string()).collect()
}

/// Whether artifacts precompiled at build time load into an engine whose key is
/// `engine_key` (same wasmtime, settings and CPU features).
pub fn artifact_fits(engine_key: &str) -> bool {
    engine_key == ENGINE_KEY
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_embedded_digest_is_that_of_its_component() {
        for builtin in super::BUILTINS {
            assert_eq!(builtin.sha256, super::super::cache::digest(builtin.wasm), "{}", builtin.name);
        }
    }

    #[tokio::test]
    async fn each_embedded_description_is_what_a_live_describe_returns() {
        let runtime = super::super::Runtime::new(super::super::Limits::default(), None).unwrap();
        for builtin in super::BUILTINS {
            let plugin = runtime.load_builtin(builtin.name).unwrap();
            let live = plugin.describe(&runtime).await.unwrap();
            let embedded = builtin.description().unwrap();
            assert_eq!(format!("{embedded:?}"), format!("{live:?}"), "{}", builtin.name);
            assert_eq!(builtin.contract, plugin.file().contract, "{}", builtin.name);
        }
    }

    #[test]
    fn an_embedded_description_is_checked_as_a_live_one_is() {
        let heroku = super::find("heroku").unwrap();
        // The same JSON with a field id the contract refuses, and with an escape sequence.
        let bad = heroku.description.replacen("\"id\":\"", "\"id\":\"Not An Id ", 1);
        let refused = super::Builtin { description: Box::leak(bad.into_boxed_str()), ..*heroku }.description();
        assert!(format!("{}", refused.unwrap_err()).contains("describe"), "a broken embedded description is refused");
        let escaped = heroku.description.replacen("\"title\":\"", "\"title\":\"\\u001b[31m", 1);
        let inert = super::Builtin { description: Box::leak(escaped.into_boxed_str()), ..*heroku }.description();
        assert!(!inert.unwrap().title.contains('\u{1b}'), "an escape sequence is removed");
    }
}
