//! Plugins built against the frozen `pier:deploy@0.2.0` contract.
//!
//! Their capability imports are served by the same capability states as the current
//! contract's (see [`super::legacy`]), so they are held to exactly the same policy. Their
//! exports are converted to the current types: a 0.2.0 description declares no TLS
//! streams (so `tls` denies every connection) and no native deploy commands (so its
//! commands run as written, with its declared rules); it has no `run`, `rollback` or
//! `remove` export, which the host treats as `unsupported` (and, for `remove`, as
//! nothing to undo).

use wasmtime::component::Resource;

use super::bindings::v0_2::exports::pier::deploy::method as old_method;
use super::bindings::v0_2::pier::deploy as old;
use super::bindings::{self as new_types, exports::pier::deploy::method as new_method, pier::deploy as new};
use super::legacy::{To, record, variant};
use crate::caps::events::EventsCap;
use crate::caps::exec::ExecCap;
use crate::caps::http::{HttpCap, ResponseStream};
use crate::caps::keys::KeysCap;
use crate::caps::secrets::SecretsCap;
use crate::caps::workspace::{Blob, WorkspaceCap};

super::legacy::shared_types!();

// The permissions 0.2.0 can declare, all of which 0.3.0 kept.
mod permissions {
    use super::*;
    use new::types as n;
    use old::types as o;

    record!(o::Program => n::Program { name, args, env });
    record!(o::SecretHeader => n::SecretHeader { endpoint, name, prefix });
    record!(o::SecretEnv => n::SecretEnv { program, variable });
    variant!(o::SecretUse => n::SecretUse { Header(x), ProgramEnv(x), SshKey(x) });
    record!(o::SecretBinding => n::SecretBinding { secret, use_ });
    variant!(o::CommandEnvValue => n::CommandEnvValue {
        Secret(x), Setting(x), Endpoint(x), EndpointOverride(x)
    });
    record!(o::CommandEnv => n::CommandEnv { name, value });
    record!(o::CommandRule => n::CommandRule { prefix, flag, unless, reason });

    impl To<n::CommandSupport> for o::CommandSupport {
        fn to(self) -> n::CommandSupport {
            n::CommandSupport { env: self.env.to(), rules: self.rules.to(), tools: self.tools.to(), native: vec![] }
        }
    }

    impl To<n::Permissions> for o::Permissions {
        fn to(self) -> n::Permissions {
            n::Permissions {
                endpoints: self.endpoints.to(),
                origins: self.origins,
                programs: self.programs.to(),
                secrets: self.secrets.to(),
                commands: self.commands.to(),
                streams: vec![],
            }
        }
    }
}

super::legacy::capabilities!();
