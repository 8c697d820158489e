//! Test plugins are the examples of this crate, each built to a component.
