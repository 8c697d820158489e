//! Paths of Pier's test plugins, built from `tests/plugins/examples` by this crate's
//! build script. Adding a plugin is adding an example there (and its test).

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
