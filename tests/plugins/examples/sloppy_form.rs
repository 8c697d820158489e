//! Accepts missing required answers.
const FLAW: Flaw = Flaw::SloppyForm;
include!("notify_method.rs");
