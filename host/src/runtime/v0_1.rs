//! Plugins built against the frozen `pier:deploy@0.1.0` contract.
//!
//! Their capability imports are served by the same capability states as the current
//! contract's (see [`super::legacy`]), so they are held to exactly the same policy.
//! Their exports are converted to the current types: a 0.1.0 description has no
//! argument patterns (so its programs never run), no secret bindings (so secrets go only
//! to its endpoints' origins, see `caps::http`), no declared command support and no
//! streams; its `prepare-commands` result is checked by the host before anything deploys
//! (`crate::deploy`).

use wasmtime::component::Resource;

use super::bindings::v0_1::exports::pier::deploy::method as old_method;
use super::bindings::v0_1::pier::deploy as old;
use super::bindings::{self as new_types, exports::pier::deploy::method as new_method, pier::deploy as new};
use super::legacy::To;
use crate::caps::events::EventsCap;
use crate::caps::exec::ExecCap;
use crate::caps::http::{HttpCap, ResponseStream};
use crate::caps::keys::KeysCap;
use crate::caps::secrets::SecretsCap;
use crate::caps::workspace::{Blob, WorkspaceCap};

super::legacy::shared_types!();

impl To<new::types::Permissions> for old::types::Permissions {
    fn to(self) -> new::types::Permissions {
        use new::types as n;
        n::Permissions {
            endpoints: self.endpoints.to(),
            origins: self.origins,
            // 0.1.0 could not declare argument patterns: no run matches.
            programs: self.programs.into_iter().map(|name| n::Program { name, args: vec![], env: vec![] }).collect(),
            secrets: vec![],
            commands: n::CommandSupport { env: vec![], rules: vec![], tools: vec![], native: vec![] },
            streams: vec![],
        }
    }
}

super::legacy::capabilities!();

/// What a 0.1.0 plugin's `prepare-commands` returned, in current types; the host checks
/// it before use.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LegacyPlan {
    /// Variables it asks to add to every command's environment.
    pub env: Vec<new_types::EnvVar>,
    /// The commands as it returned them.
    pub commands: Vec<String>,
    /// Its notes.
    pub notes: Vec<String>,
    /// Programs it says the commands need.
    pub tools: Vec<new_types::Tool>,
}

impl To<LegacyPlan> for old::types::CommandPlan {
    fn to(self) -> LegacyPlan {
        LegacyPlan { env: self.env.to(), commands: self.commands, notes: self.notes, tools: self.tools.to() }
    }
}
