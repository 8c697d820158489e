//! Making every string a plugin returns inert before the host prints, stores or shows it
//! in a prompt: escape sequences, control characters and invisible reordering characters
//! are removed ([`crate::caps::events::inert`]). Applied once, where values leave the
//! plugin, so no later printer can forget.

use super::LegacyPlan;
use super::bindings::{Answer, FieldKind};
use super::bindings::{
    Choice, CommandEnv, CommandEnvValue, CommandRule, CommandSupport, DeployFailure, DeployReport, Description,
    Endpoint, EndpointSource, EnvEndpoint, Field, FieldError, MethodError, Permissions, Program, SecretBinding,
    SecretEnv, SecretHeader, SecretUse, SetupResult, Tool,
};
use super::bindings::{FlagMeaning, NativeCommand, NativeFlag, StreamGrant};
use crate::caps::events::inert;

/// A value whose strings can be made inert.
pub trait Inert: Sized {
    /// The same value with every string made inert, setting `changed` when one had to
    /// change.
    fn inert_noting(self, changed: &mut bool) -> Self;

    /// The same value with every string made inert.
    fn inert(self) -> Self {
        self.inert_noting(&mut false)
    }
}

impl Inert for String {
    fn inert_noting(self, changed: &mut bool) -> Self {
        if crate::caps::events::is_inert(&self) {
            return self;
        }
        let made = inert(&self);
        *changed |= made != self;
        made
    }
}

macro_rules! plain {
    ($($t:ty),*) => { $(impl Inert for $t { fn inert_noting(self, _: &mut bool) -> Self { self } })* };
}
plain!(bool, u16, u32, i32, FieldKind);

impl<T: Inert> Inert for Vec<T> {
    fn inert_noting(self, changed: &mut bool) -> Self {
        self.into_iter().map(|x| x.inert_noting(changed)).collect()
    }
}

impl<T: Inert> Inert for Option<T> {
    fn inert_noting(self, changed: &mut bool) -> Self {
        self.map(|x| x.inert_noting(changed))
    }
}

impl<T: Inert, E: Inert> Inert for Result<T, E> {
    fn inert_noting(self, changed: &mut bool) -> Self {
        match self {
            Ok(x) => Ok(x.inert_noting(changed)),
            Err(e) => Err(e.inert_noting(changed)),
        }
    }
}

macro_rules! record {
    ($t:ident { $($f:ident),* $(,)? }) => {
        impl Inert for $t {
            fn inert_noting(self, changed: &mut bool) -> Self {
                $t { $($f: self.$f.inert_noting(changed)),* }
            }
        }
    };
}

macro_rules! variant {
    ($t:ident { $($case:ident $(($x:ident))?),* $(,)? }) => {
        impl Inert for $t {
            fn inert_noting(self, changed: &mut bool) -> Self {
                match self {
                    $($t::$case $(($x))? => $t::$case $(($x.inert_noting(changed)))?),*
                }
            }
        }
    };
}

record!(Description { name, title, version, summary, fields, permissions });
record!(Field { id, label, help, kind, required, default, advanced, example });
record!(Permissions { endpoints, origins, programs, secrets, commands, streams });
record!(StreamGrant { host, port });
record!(Endpoint { id, sources });
variant!(EndpointSource { Fixed(x), Field(x), Env(x) });
record!(EnvEndpoint { name, bare_host });
record!(Program { name, args, env });
record!(SecretBinding { secret, use_ });
variant!(SecretUse { Header(x), ProgramEnv(x), SshKey(x) });
record!(SecretHeader { endpoint, name, prefix });
record!(SecretEnv { program, variable });
record!(CommandSupport { env, rules, tools, native });
record!(NativeCommand { prefix, options });
record!(NativeFlag { names, means });
variant!(FlagMeaning { Size, ProcessType, Env, NoTty, Ignored, Setting(x) });
record!(CommandEnv { name, value });
variant!(CommandEnvValue { Secret(x), Setting(x), Endpoint(x), EndpointOverride(x) });
record!(CommandRule { prefix, flag, unless, reason });
record!(Tool { program, install_hint });
record!(Choice { value, label });
record!(Answer { field, value });
record!(SetupResult { settings, notes });
record!(DeployReport { summary, url, release });
record!(FieldError { field, message });
record!(DeployFailure { reason, tail });
variant!(MethodError {
    InvalidAnswer(x),
    Provider(x),
    RateLimited(x),
    DeployFailed(x),
    Denied(x),
    Unsupported(x)
});

/// A 0.1.0 plan's notes and tools are shown; its commands and variables are checked
/// (and commands rebuilt) by the host as they were returned, so they stay as they are.
impl Inert for LegacyPlan {
    fn inert_noting(self, changed: &mut bool) -> Self {
        LegacyPlan { notes: self.notes.inert_noting(changed), tools: self.tools.inert_noting(changed), ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_noted_only_when_a_string_changes() {
        let mut changed = false;
        let plain = vec![Some("plain text".to_string()), Some("café, naïve".to_string())];
        assert_eq!(plain.clone().inert_noting(&mut changed), plain);
        assert!(!changed, "printable text, ASCII or not, is left as it is");
        let hostile = vec![None, Some("red \u{1b}[31malert".to_string())];
        assert_eq!(hostile.inert_noting(&mut changed), vec![None, Some("red alert".to_string())]);
        assert!(changed);
    }
}
