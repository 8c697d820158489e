//! Deploying: `git push` of the build's commit to the remote branch, honest about failure.
//! A push that exits non-zero fails the deploy with its last lines, and with a hint when
//! they show a cause the user can fix.

use pier_plugin_sdk::*;

use crate::{SSH_KEY, Settings};

/// The longest a push may run, in milliseconds (the host caps it). A Dokku push builds
/// the app before it returns, so this is long.
const PUSH_TIMEOUT_MS: u32 = 60 * 60 * 1000;

/// Pushes `build.commit` to `refs/heads/BRANCH` of the remote, from the checkout.
pub fn push(s: &Settings, build: &BuildInfo) -> Result<DeployReport, MethodError> {
    if !has_secret(SSH_KEY) {
        return Err(invalid(
            SSH_KEY,
            "this server has no stored SSH key: remove it and run `pier server add` again to generate one",
        ));
    }
    let commit = build.commit.as_str();
    let short = commit.get(..7).unwrap_or(commit);
    let args =
        push_args(s, commit).map_err(|reason| MethodError::DeployFailed(DeployFailure { reason, tail: vec![] }))?;
    log::step(&format!("Pushing {short} to {} {}", s.remote, s.branch));
    let command = exec::Command {
        program: "git".into(),
        args,
        env: vec![],
        in_workspace: true,
        ssh_key: Some(SSH_KEY.into()),
        capture_stdout: false,
        timeout_ms: Some(PUSH_TIMEOUT_MS),
    };
    let failed = |reason: String, tail: Vec<String>| MethodError::DeployFailed(DeployFailure { reason, tail });
    match exec::run(&command) {
        Ok(exit) if exit.code == 0 => Ok(DeployReport {
            release: None,
            summary: format!("pushed {short} to {} {}", s.remote, s.branch),
            url: None,
        }),
        Ok(exit) => {
            let ended = match exit.code {
                -1 => "was killed by a signal".to_string(),
                code => format!("exited with {code}"),
            };
            let hint = hint(&exit.tail).map(|h| format!(": {h}")).unwrap_or_default();
            Err(failed(format!("git push to {} {ended}{hint}", s.remote), exit.tail))
        }
        Err(exec::ExecError::NotFound(m)) => Err(MethodError::Provider(format!(
            "git is not installed on this machine ({m}): install git to deploy with git-ssh"
        ))),
        Err(exec::ExecError::Denied(m)) => Err(MethodError::Denied(m)),
        Err(exec::ExecError::Timeout) => {
            Err(failed(format!("git push to {} ran past its time limit and was killed", s.remote), vec![]))
        }
        Err(exec::ExecError::Failed(m)) => Err(MethodError::Provider(format!("could not run git push: {m}"))),
    }
}

/// The longest setup's connection may take, in milliseconds.
const REACH_TIMEOUT_MS: u32 = 30 * 1000;

/// Connects to the remote once, with the server's new key, so that the host sees (and
/// pins) its host key. Authentication is expected to fail, since the git server does not
/// know the key yet; a server that cannot be reached is a wrong answer.
pub fn reach(s: &Settings) -> Result<(), MethodError> {
    let command = exec::Command {
        program: "git".into(),
        args: vec!["ls-remote".into(), s.remote.into()],
        env: vec![],
        in_workspace: false,
        ssh_key: Some(SSH_KEY.into()),
        capture_stdout: true,
        timeout_ms: Some(REACH_TIMEOUT_MS),
    };
    let exit = match exec::run(&command) {
        Ok(exit) => exit,
        Err(exec::ExecError::NotFound(m)) => {
            return Err(MethodError::Provider(format!(
                "git is not installed on this machine ({m}): install git to set up git-ssh"
            )));
        }
        Err(exec::ExecError::Timeout) => {
            return Err(invalid(crate::REMOTE, format!("{} did not answer within 30 s", s.remote)));
        }
        Err(exec::ExecError::Denied(m)) => return Err(MethodError::Denied(m)),
        Err(exec::ExecError::Failed(m)) => return Err(MethodError::Provider(format!("could not run git: {m}"))),
    };
    let says = |needle: &str| exit.tail.iter().any(|line| line.contains(needle));
    if exit.code == 0 || says("Permission denied") {
        return Ok(());
    }
    // ssh says why (`ssh: connect to host ...: Connection refused`); git's own closing lines
    // ("Could not read from remote repository ...") say nothing more.
    let cause =
        exit.tail.iter().find(|l| l.starts_with("ssh:")).or_else(|| exit.tail.iter().find(|l| !l.trim().is_empty()));
    let why = cause.map(|l| l.trim().to_string()).unwrap_or_else(|| format!("git exited with {}", exit.code));
    Err(invalid(crate::REMOTE, format!("could not reach the SSH server of {} to see its host key: {why}", s.remote)))
}

/// The arguments of the push: `push [--force] REMOTE COMMIT:refs/heads/BRANCH`, exactly the
/// shapes `describe` declares for `git` (`["push", "*", "*"]`, `["push", "--force", "*", "*"]`).
/// The remote and the refspec are checked again here, whatever checked them before: an
/// empty one, or one starting with `-` (which git would read as an option), is refused.
pub fn push_args(s: &Settings, commit: &str) -> Result<Vec<String>, String> {
    // Only a full object name: anything else could be read as a revision expression, or
    // with a leading `+` as a forced refspec.
    if !full_sha(commit) {
        return Err(format!("`{commit}` is not a full commit SHA (40 or 64 lowercase hex digits)"));
    }
    let refspec = format!("{commit}:refs/heads/{}", s.branch);
    for (what, word) in [("remote", s.remote), ("refspec", refspec.as_str())] {
        if word.is_empty() || word.starts_with('-') {
            return Err(format!("the {what} `{word}` is empty or starts with `-`: git would not read it as a {what}"));
        }
    }
    let mut args = vec!["push".to_string()];
    if s.force {
        args.push("--force".into());
    }
    args.push(s.remote.into());
    args.push(refspec);
    Ok(args)
}

/// Whether `commit` is a full SHA-1 or SHA-256 object name in lowercase hex.
pub fn full_sha(commit: &str) -> bool {
    matches!(commit.len(), 40 | 64) && commit.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What the user can do about a failed push, when its output says.
fn hint(tail: &[String]) -> Option<String> {
    let says = |needle: &str| tail.iter().any(|line| line.contains(needle));
    if says("Permission denied (publickey") {
        let install = match keys::public_key(SSH_KEY) {
            Ok(public_key) => format!(
                "add this public key to the authorized keys of the git server's user \
                 (Dokku: `dokku ssh-keys:add pier FILE`): {public_key}"
            ),
            Err(_) => "add the public key that `pier server show SERVER` prints to the authorized keys of the \
                       git server's user"
                .to_string(),
        };
        return Some(format!("the server refused this server's SSH key (Permission denied (publickey)); {install}"));
    }
    if says("shallow update not allowed") {
        return Some("the checkout is shallow: fetch its full history (actions/checkout: fetch-depth: 0)".into());
    }
    if says("non-fast-forward") || says("fetch first") {
        return Some(
            "the remote branch has commits this one does not: set force=true (`pier server edit ALIAS --set \
             force=true`) to overwrite it"
                .into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "3f2a9c1d5e7b8a6f4c2d1e0f9a8b7c6d5e4f3a2b";

    #[test]
    fn push_arguments_have_the_declared_shapes() {
        let plain = Settings { remote: "git@host:app.git", branch: "main", force: false };
        assert_eq!(
            push_args(&plain, COMMIT).unwrap(),
            ["push", "git@host:app.git", &format!("{COMMIT}:refs/heads/main")]
        );
        let forced = Settings { force: true, ..plain };
        assert_eq!(
            push_args(&forced, COMMIT).unwrap(),
            ["push", "--force", "git@host:app.git", &format!("{COMMIT}:refs/heads/main")]
        );
    }

    #[test]
    fn a_remote_or_refspec_that_git_could_read_as_an_option_is_refused() {
        let s = Settings { remote: "--upload-pack=evil", branch: "main", force: false };
        assert!(push_args(&s, COMMIT).unwrap_err().contains("remote"));
        let s = Settings { remote: "", branch: "main", force: false };
        assert!(push_args(&s, COMMIT).is_err());
        let s = Settings { remote: "git@host:app.git", branch: "main", force: false };
        assert!(push_args(&s, "-oops").unwrap_err().contains("full commit SHA"));
    }

    #[test]
    fn only_a_full_commit_sha_is_pushed() {
        let s = Settings { remote: "git@host:app.git", branch: "main", force: false };
        let forced = format!("+{}", &COMMIT[1..]);
        for bad in ["", "HEAD", "main", "abc1234", forced.as_str(), &COMMIT.to_uppercase(), &format!("{COMMIT}^")] {
            assert!(push_args(&s, bad).unwrap_err().contains("full commit SHA"), "{bad}");
        }
        assert!(push_args(&s, COMMIT).is_ok());
        assert!(push_args(&s, &"a".repeat(64)).is_ok());
    }
}
