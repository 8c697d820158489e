//! `notify`, but its description is over 1 MiB of text: the help of its `url` field is
//! 2 MiB.
const FLAW: Flaw = Flaw::BigDescribe;
include!("notify_method.rs");
