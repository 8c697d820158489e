//! Reports a deploy as passed when the provider failed it.
const FLAW: Flaw = Flaw::SwallowsFailure;
include!("notify_method.rs");
