//! Host bindings of the `pier:deploy` contract, generated from `wit/`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "pier:deploy/plugin",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "pier:deploy/http.response-stream": crate::caps::http::ResponseStream,
        "pier:deploy/workspace.blob": crate::caps::workspace::Blob,
    },
});

pub use self::pier::deploy::types::*;
pub use exports::pier::deploy::method::SetupResult;
