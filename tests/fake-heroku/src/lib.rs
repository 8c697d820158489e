//! A fake Heroku Platform API server on loopback, for Pier's tests and demo.
//!
//! The fake is a real HTTP server (axum on tokio) bound to `127.0.0.1`. It implements the
//! handful of Platform API endpoints Pier's Heroku plugin uses, faithful to Heroku's published
//! JSON hyper-schema (`platform-api-schema.json`, see `SCHEMA-LICENSE.md`): the `Accept`
//! header check (406), bearer-key authentication (401, 403), `RateLimit-Remaining` and 429s,
//! `Range`/`Next-Range` paging, JSON error bodies `{id, message, url}`, and the Build API
//! (sources with presigned-style blob URLs, builds, releases and their output streams).
//!
//! Everything is driven by requests, never by wall-clock time: a build stays `pending` for a
//! scripted number of polls, an output stream answers 404 for a scripted number of GETs, and so
//! on. Behaviour is seeded with a [`Seed`] and scripted with [`Script`]s; every request is
//! recorded as a [`RecordedRequest`] and can be checked against the schema with
//! [`schema::check_all`].
//!
//! Rust tests use [`FakeHeroku`]; shell scripts run the `fake-heroku` binary and drive it
//! through its `/__fake/` control endpoints (see [`serve`]).

#![warn(missing_docs)]

mod api;
mod paging;
mod record;
pub mod schema;
mod script;
mod server;
mod state;
mod transfer;
mod util;
mod web;

pub use record::{RecordedRequest, RequestKind, RollbackRecord};
pub use script::{BuildScript, DynoScript, FailRule, FinalStatus, RateLimitSetting, ReleaseScript, Script};
pub use server::{FakeHeroku, ServeOptions, serve};
pub use state::{Key, Seed, SeedAccount, SeedRelease};
pub use transfer::{Member, MemberKind, Upload};
