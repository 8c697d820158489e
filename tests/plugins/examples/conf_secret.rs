//! `notify`, but it sends its token in a header its binding does not name (`X-Api-Key`
//! instead of `Authorization: Bearer `).
const FLAW: Flaw = Flaw::UnboundHeader;
include!("notify_method.rs");
