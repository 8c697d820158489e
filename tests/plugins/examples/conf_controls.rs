//! `notify`, but its title holds a terminal control sequence (erase line).
const FLAW: Flaw = Flaw::ControlsInTitle;
include!("notify_method.rs");
