//! Host bindings of the `pier:deploy` contract, generated from `wit/`: the current
//! version (0.3.0) at the top, and the frozen 0.2.0 and 0.1.0 in [`v0_2`] and [`v0_1`].
//! The host's own code speaks the current version's types; `super::v0_2` and
//! `super::v0_1` convert to and from the old ones.

wasmtime::component::bindgen!({
    path: "../wit/0.3.0",
    world: "pier:deploy/plugin",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "pier:deploy/http.response-stream": crate::caps::http::ResponseStream,
        "pier:deploy/workspace.blob": crate::caps::workspace::Blob,
        "pier:deploy/tls.connection": crate::caps::tls::Connection,
    },
    // What a built-in's `describe` returned at build time is embedded as JSON
    // (`host/build.rs` serializes the same types); what any call returns is measured as
    // JSON against `Limits::max_returned`.
    additional_derives: [serde::Deserialize, serde::Serialize],
});

pub use self::pier::deploy::types::*;
pub use exports::pier::deploy::method::SetupResult;

/// The frozen `pier:deploy@0.2.0` contract.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/0.2.0",
        world: "pier:deploy/plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "pier:deploy/http.response-stream": crate::caps::http::ResponseStream,
            "pier:deploy/workspace.blob": crate::caps::workspace::Blob,
        },
    });
}

/// The frozen `pier:deploy@0.1.0` contract.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "pier:deploy/plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "pier:deploy/http.response-stream": crate::caps::http::ResponseStream,
            "pier:deploy/workspace.blob": crate::caps::workspace::Blob,
        },
    });
}
