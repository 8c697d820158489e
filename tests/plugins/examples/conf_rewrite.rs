//! `legacy-notify`, but its `prepare-commands` appends shell (`; true`) to every command.
const FLAW: Flaw = Flaw::AppendsShell;
include!("legacy_notify_method.rs");
