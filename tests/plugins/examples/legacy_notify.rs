//! `notify` built against the frozen pier:deploy@0.1.0: a benign, conformant old plugin,
//! proving that 0.1.0 plugins keep loading and deploying.
const FLAW: Flaw = Flaw::None;
include!("legacy_notify_method.rs");
