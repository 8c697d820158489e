//! A fake Heroku Platform API server on loopback, for Pier's tests and demo.
//!
//! The fake is a real HTTP server (axum on tokio) bound to `127.0.0.1`. It implements the
//! handful of Platform API endpoints Pier's Heroku plugin uses, faithful to Heroku's published
//! JSON hyper-schema (`platform-api-schema.json`, see `SCHEMA-LICENSE.md`): the `Accept`
//! header check (406), bearer-key authentication (401, 403), `RateLimit-Remaining` and 429s,
//! `Range`/`Next-Range` paging, JSON error bodies `{id, message, url}`, the account and its
//! apps and SSH keys (list, add, info, delete), the Build API (sources with presigned-style
//! blob URLs, builds, releases and their output streams), releases (list, info, rollback),
//! and dynos (list, and one-off dynos: create, and attach over TLS rendezvous).
//!
//! Everything is driven by requests, never by wall-clock time: a build stays `pending` for a
//! scripted number of polls, an output stream answers 404 for a scripted number of GETs, a
//! one-off dyno's session runs as its [`RunScript`] says, and so on. Behaviour is seeded with a
//! [`Seed`] and scripted with [`Script`]s; every request is recorded as a [`RecordedRequest`]
//! and can be checked against the schema with [`schema::check_all`]; one-off dynos are
//! recorded as [`RunRecord`]s and rollbacks as [`RollbackRecord`]s.
//!
//! Beyond the Platform API, the fake stands in for what a client reaches through it: S3 (the
//! source blobs), the build and release output streams, the apps' own web servers at their
//! `web_url` (with [`ServeOptions::local_web_urls`]) and Heroku's rendezvous service (with
//! [`ServeOptions::tls`], on a second port, over TLS).
//!
//! Rust tests use [`FakeHeroku`] ([`FakeHeroku::start`], or [`FakeHeroku::start_with`] for
//! options); shell scripts run the `fake-heroku` binary and drive it through its `/__fake/`
//! control endpoints (see [`serve`]).

#![warn(missing_docs)]

mod api;
mod paging;
mod record;
mod rendezvous;
pub mod schema;
mod script;
mod server;
mod state;
mod transfer;
mod util;
mod web;

pub use record::{RecordedRequest, RequestKind, RollbackRecord, RunRecord};
pub use rendezvous::{EXIT_STATUS_SUFFIX, LEGACY_EXIT_STATUS_SUFFIX, TlsFiles};
pub use script::{BuildScript, DynoScript, FailRule, FinalStatus, RateLimitSetting, ReleaseScript, RunScript, Script};
pub use server::{FakeHeroku, ServeOptions, serve};
pub use state::{Key, Seed, SeedAccount, SeedRelease};
pub use transfer::{Member, MemberKind, Upload};
