//! `notify`, but it declares (and runs) a program named
//! `x$(touch${IFS}/tmp/pier-conformance-pwned)`: shell, were a shell ever to see it.
const FLAW: Flaw = Flaw::BadProgram;
include!("notify_method.rs");
