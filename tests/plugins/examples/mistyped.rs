//! Exports `pier:deploy/method@0.3.0` with each function the contract names, typed
//! otherwise: `describe` returns a string where the contract has a `description`. The
//! host must refuse it on every call, never read that string as a description.
wit_bindgen::generate!({ path: "wit-mistyped", world: "plugin" });

struct Plugin;

impl exports::pier::deploy::method::Guest for Plugin {
    fn describe() -> String {
        "not a description".into()
    }
    fn choices() {}
    fn validate() {}
    fn setup() {}
    fn deploy() {}
    fn run() {}
    fn rollback() {}
    fn remove() {}
}

export!(Plugin);
