//! A component, but not a Pier plugin: it exports something else.
wit_bindgen::generate!({ path: "wit-other", world: "no-method" });

struct Plugin;

impl exports::acme::cloud::greeter::Guest for Plugin {
    fn greet() -> String {
        "hello".into()
    }
}

export!(Plugin);
