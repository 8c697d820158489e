//! Targets pier:deploy@0.9.0, a contract version no host supports yet.
wit_bindgen::generate!({ path: "wit-0.9", world: "plugin" });

struct Plugin;

impl exports::pier::deploy::method::Guest for Plugin {
    fn describe() -> String {
        "from the future".into()
    }
}

export!(Plugin);
