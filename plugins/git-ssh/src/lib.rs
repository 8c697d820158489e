//! Pier's git-over-SSH deployment method: `git push` to any git server reached by SSH, such
//! as a Dokku host or a bare repository behind sshd.
//!
//! Setup checks the answers and generates an ed25519 key pair; the host keeps the
//! private key sealed in `pier.secrets`, and the public key is shown once, to be installed
//! on the git server. Setup then connects once (`git ls-remote`, refused at authentication
//! since the server does not know the key yet), so that the host sees the server's SSH
//! host key and pins it; deploys are refused by any other host key.
//! A deploy pushes the build's commit to `refs/heads/BRANCH` of the remote with the
//! checkout's git, through the `exec` capability: the host writes the private key to a
//! file only its owner can read for the duration of the push, points `GIT_SSH_COMMAND` at
//! it, and deletes it after. The plugin never sees the private key.

mod deploy;
mod remote;

use pier_plugin_sdk::*;

/// Field ids.
pub const REMOTE: &str = "remote";
pub const BRANCH: &str = "branch";
pub const FORCE: &str = "force";
/// The handle of the generated private key.
pub const SSH_KEY: &str = "ssh_key";
/// The remote branch pushed to unless configured otherwise.
pub const DEFAULT_BRANCH: &str = "main";

/// The checked settings of a server (from setup answers or stored settings).
pub struct Settings<'a> {
    pub remote: &'a str,
    pub branch: &'a str,
    pub force: bool,
}

impl<'a> Settings<'a> {
    /// Reads and checks the answers; an answer that cannot work is an `invalid-answer`.
    pub fn read(answers: &'a [Answer]) -> Result<Settings<'a>, MethodError> {
        let remote = required(answers, REMOTE, "the remote")?;
        remote::check_remote(remote).map_err(|e| invalid(REMOTE, e))?;
        let branch = answer(answers, BRANCH).unwrap_or(DEFAULT_BRANCH);
        remote::check_branch(branch).map_err(|e| invalid(BRANCH, e))?;
        let force = flag(answers, FORCE, false)?;
        Ok(Settings { remote, branch, force })
    }
}

struct GitSsh;

impl Method for GitSsh {
    fn describe() -> Description {
        Description {
            name: "git-ssh".into(),
            title: "Git over SSH".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Deploys by `git push` over SSH to any git server (a Dokku host, a bare repository \
                      behind sshd), with an SSH key Pier generates and keeps encrypted."
                .into(),
            fields: vec![
                Field::new(
                    REMOTE,
                    "Git remote",
                    "The SSH URL to push to, for example ssh://dokku@example.com:22/my-app or \
                     git@example.com:my-app.git.",
                    FieldKind::Text,
                    true,
                )
                .with_example("git@example.com:my-app.git"),
                Field::new(BRANCH, "Remote branch", "The branch of the remote to push to.", FieldKind::Text, false)
                    .with_default(DEFAULT_BRANCH),
                Field::new(
                    FORCE,
                    "Force push",
                    "Overwrite the remote branch even when the commit does not descend from it.",
                    FieldKind::Boolean,
                    false,
                )
                .with_default("false"),
            ],
            permissions: Permissions {
                // Exactly the pushes `deploy::push` runs: `git push [--force] REMOTE REFSPEC`,
                // and setup's `git ls-remote REMOTE`, where nothing starts with `-`.
                programs: vec![Program::new(
                    "git",
                    &[&["push", "*", "*"], &["push", "--force", "*", "*"], &["ls-remote", "*"]],
                )],
                // The generated key is only ever the SSH key of those pushes.
                secrets: vec![SecretBinding::ssh_key(SSH_KEY, "git")],
                ..Permissions::none()
            },
        }
    }

    fn choices(_ctx: Context, field: String, _answers: Vec<Answer>) -> Result<Vec<Choice>, MethodError> {
        Err(MethodError::Unsupported(format!("`{field}` is not a choice field (git-ssh has none)")))
    }

    fn validate(_ctx: Context, answers: Vec<Answer>) -> Result<String, MethodError> {
        let s = Settings::read(&answers)?;
        Ok(format!("will {}push to branch {} of {}", if s.force { "force-" } else { "" }, s.branch, s.remote))
    }

    fn setup(_ctx: Context, answers: Vec<Answer>) -> Result<SetupResult, MethodError> {
        let s = Settings::read(&answers)?;
        let key = keys::generate(SSH_KEY, &format!("pier deploy key for {}", s.remote))
            .map_err(|e| MethodError::Provider(format!("could not generate an SSH key: {e:?}")))?;
        // The host pins the host key this connection is shown.
        deploy::reach(&s)?;
        let settings =
            vec![Answer::new(REMOTE, s.remote), Answer::new(BRANCH, s.branch), Answer::new(FORCE, s.force.to_string())];
        let notes = vec![format!(
            "generated SSH key {}; add this public key to the authorized keys of the git server's user \
             (Dokku: save it to a file and run `dokku ssh-keys:add pier FILE`): {}",
            key.fingerprint, key.public_key
        )];
        Ok(SetupResult { settings, notes })
    }

    fn deploy(_ctx: Context, settings: Vec<Answer>, build: BuildInfo) -> Result<DeployReport, MethodError> {
        deploy::push(&Settings::read(&settings)?, &build)
    }
}

export_method!(GitSsh);
