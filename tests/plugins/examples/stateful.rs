//! Answers the same setup differently each time.
const FLAW: Flaw = Flaw::Stateful;
include!("notify_method.rs");
