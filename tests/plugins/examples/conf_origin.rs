//! `notify`, also reporting each deploy to a declared extra origin whose name never
//! resolves: it passes conformance only because the runner diverts every request to its
//! fake provider.
const FLAW: Flaw = Flaw::ReportsOut;
include!("notify_method.rs");
