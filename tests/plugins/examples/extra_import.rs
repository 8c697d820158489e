//! Imports a capability no Pier host provides.
wit_bindgen::generate!({ path: "wit-other", world: "extra-import" });

struct Plugin;

impl exports::acme::cloud::greeter::Guest for Plugin {
    fn greet() -> String {
        acme::cloud::magic::conjure()
    }
}

export!(Plugin);
