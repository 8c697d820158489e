//! Pier: a deployment host for CI that runs deployment methods as sandboxed WebAssembly
//! components.
//!
//! - [`runtime`] loads plugins and calls them, one fresh instance per call, within limits.
//! - [`caps`] holds one module per host capability (events, secrets, http, keys, exec,
//!   workspace), each with its policy and its implementation.
//! - [`git`] reads the commit a deploy ships from its checkout.
//! - [`cli`] is the `pier` command line; [`exit`] defines its exit codes.
//!
//! See ARCHITECTURE.md for the layers and their invariants.

pub mod caps;
pub mod cli;
pub mod commands;
pub mod conformance;
pub mod deploy;
pub mod exit;
pub mod git;
pub mod native;
pub mod project;
pub mod runtime;
