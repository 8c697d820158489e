//! Pier's exit codes, defined once. Every command uses these; tests assert them.

/// How a `pier` command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done.
    Success,
    /// A deploy or a deploy command failed.
    DeployFailed,
    /// Usage error or bad input: flags, configuration, plugin file, secrets file.
    BadInput,
    /// A plugin faulted: trap, exceeded limit, contract violation.
    PluginFault,
    /// The provider or the network failed.
    Provider,
    /// A deploy was interrupted by SIGINT or SIGTERM (the shells' 128 + 2).
    Interrupted,
    /// `pier run`: the remote command's own exit status, whatever it is.
    Remote(u8),
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::DeployFailed => 1,
            Exit::BadInput => 2,
            Exit::PluginFault => 3,
            Exit::Provider => 4,
            Exit::Interrupted => 130,
            Exit::Remote(code) => code,
        }
    }

    /// The exit of a remote command's status: its low eight bits, as a shell reports them
    /// (a negative status, a signal, is 128 + 1).
    pub fn remote(status: i32) -> Exit {
        Exit::Remote(if status < 0 { 129 } else { (status & 0xff) as u8 })
    }

    /// The exit for a process exit code; unknown codes are provider errors.
    pub fn from_code(code: u8) -> Exit {
        match code {
            0 => Exit::Success,
            1 => Exit::DeployFailed,
            2 => Exit::BadInput,
            3 => Exit::PluginFault,
            130 => Exit::Interrupted,
            _ => Exit::Provider,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

/// The one-line message and exit code for a `method-error` that method `d` returned. An
/// invalid answer is named by its field's label as well as its id.
pub fn for_method_error(d: &crate::runtime::Description, error: &crate::runtime::MethodError) -> (String, Exit) {
    use crate::runtime::MethodError as E;
    let method = &d.name;
    match error {
        E::InvalidAnswer(f) => {
            let label = d.fields.iter().find(|x| x.id == f.field).map(|x| x.label.as_str()).unwrap_or(&f.field);
            (format!("{method}: {label} ({}): {}", f.field, f.message), Exit::BadInput)
        }
        E::Provider(m) => (format!("{method}: {m}"), Exit::Provider),
        E::RateLimited(Some(s)) => {
            (format!("{method}: the provider is rate limiting requests; try again in {s}s"), Exit::Provider)
        }
        E::RateLimited(None) => {
            (format!("{method}: the provider is rate limiting requests; try again later"), Exit::Provider)
        }
        E::DeployFailed(f) => (format!("{method}: {}", f.reason), Exit::DeployFailed),
        E::Denied(m) => (format!("{method}: the plugin was denied: {m}"), Exit::PluginFault),
        E::Unsupported(m) => (format!("{method}: not supported by the plugin: {m}"), Exit::PluginFault),
    }
}
