//! A webhook method that follows the contract.
const FLAW: Flaw = Flaw::None;
include!("notify_method.rs");
