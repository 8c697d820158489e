//! `notify`, but it runs the program it declares (`true --ok`) with arguments no pattern
//! allows (`true --other`).
const FLAW: Flaw = Flaw::UndeclaredArgs;
include!("notify_method.rs");
