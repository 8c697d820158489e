//! `notify`, but it runs the program it declares with an environment variable it does not
//! declare (`X=1`).
const FLAW: Flaw = Flaw::UndeclaredEnv;
include!("notify_method.rs");
