//! Checking answers without the network: the remote must be a git URL that git reaches
//! over SSH, and the branch a name git accepts.
//!
//! Git reads a remote as SSH when it is `ssh://[user@]host[:port]/path` (also spelled
//! `git+ssh://` or `ssh+git://`) or scp-like `[user@]host:path` with no `/` before the
//! first `:`. Pier asks for the user in the scp-like form, so that the account the key must
//! be installed for is written down rather than taken from whoever runs the deploy.
//! Nothing may start with `-`, so no part can be read by git or ssh as an option.

/// Why a remote is not usable, one line for the user.
pub fn check_remote(remote: &str) -> Result<(), String> {
    const EXAMPLES: &str = "use ssh://USER@HOST[:PORT]/PATH or USER@HOST:PATH, \
                            for example ssh://dokku@example.com:22/my-app or git@example.com:my-app.git";
    if remote.is_empty() {
        return Err(format!("the remote is empty: {EXAMPLES}"));
    }
    if remote.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{remote}` contains spaces or control characters: {EXAMPLES}"));
    }
    if remote.starts_with('-') {
        return Err(format!("`{remote}` starts with `-`: {EXAMPLES}"));
    }
    if let Some(rest) = ["ssh://", "git+ssh://", "ssh+git://"].iter().find_map(|s| remote.strip_prefix(s)) {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, host_port) = split_user(authority);
        if user == Some("") {
            return Err(format!("`{remote}` has an empty user name before `@`: {EXAMPLES}"));
        }
        let (host, port) = split_port(host_port).map_err(|e| format!("`{remote}`: {e}"))?;
        check_host(host).map_err(|e| format!("`{remote}`: {e}: {EXAMPLES}"))?;
        if let Some(port) = port
            && !matches!(port.parse::<u16>(), Ok(1..))
        {
            return Err(format!("`{remote}`: `{port}` is not a port number (1-65535)"));
        }
        if path.is_empty() {
            return Err(format!("`{remote}` names no repository after the host: {EXAMPLES}"));
        }
        return Ok(());
    }
    if let Some((scheme, _)) = remote.split_once("://") {
        return Err(format!("`{remote}` is a {scheme}:// URL, not SSH: {EXAMPLES}"));
    }
    // scp-like: a `/` before the first `:` (or no `:` at all) makes it a local path to git.
    let colon = scp_colon(remote).ok_or_else(|| format!("`{remote}` is not an SSH git URL: {EXAMPLES}"))?;
    let (authority, path) = (&remote[..colon], &remote[colon + 1..]);
    let (user, host) = split_user(authority);
    match user {
        None => return Err(format!("`{remote}` names no user: write it as USER@{remote}")),
        Some("") => return Err(format!("`{remote}` has an empty user name before `@`: {EXAMPLES}")),
        Some(_) => {}
    }
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    check_host(host).map_err(|e| format!("`{remote}`: {e}: {EXAMPLES}"))?;
    if path.is_empty() {
        return Err(format!("`{remote}` names no repository after `:`: {EXAMPLES}"));
    }
    Ok(())
}

/// Where the scp-like form's `:` is: the first `:` outside `[...]`, if no `/` comes before it.
fn scp_colon(remote: &str) -> Option<usize> {
    let mut in_brackets = false;
    for (i, c) in remote.char_indices() {
        match c {
            '[' => in_brackets = true,
            ']' => in_brackets = false,
            ':' if !in_brackets => return Some(i),
            '/' => return None,
            _ => {}
        }
    }
    None
}

/// `user@host` into its user (if any) and host; the last `@` separates them.
fn split_user(authority: &str) -> (Option<&str>, &str) {
    match authority.rsplit_once('@') {
        Some((user, host)) => (Some(user), host),
        None => (None, authority),
    }
}

/// `host[:port]` or `[v6]:port` into the host (without brackets) and port.
fn split_port(host_port: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = host_port.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("`[` without `]` around the host")?;
        return match after {
            "" => Ok((host, None)),
            _ => after.strip_prefix(':').map(|p| (host, Some(p))).ok_or_else(|| "text after `]`".to_string()),
        };
    }
    Ok(match host_port.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host_port, None),
    })
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("no host".into());
    }
    if host.starts_with('-') {
        return Err(format!("host `{host}` starts with `-`"));
    }
    if !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')) {
        return Err(format!("`{host}` is not a host name or address"));
    }
    Ok(())
}

/// Why `branch` is not a branch name git would accept for `refs/heads/BRANCH`.
pub fn check_branch(branch: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("`{branch}` is not a branch name: {why}"));
    if branch.is_empty() {
        return Err("the branch is empty".into());
    }
    if branch.starts_with("refs/") {
        return bad("give the name without `refs/heads/`");
    }
    if branch.starts_with(['-', '/', '.']) || branch.ends_with(['/', '.']) || branch.ends_with(".lock") {
        return bad("it may not start with `-`, `/` or `.`, nor end with `/`, `.` or `.lock`");
    }
    if branch.contains("..") || branch.contains("//") || branch.contains("@{") || branch.contains("/.") || branch == "@"
    {
        return bad("it may not contain `..`, `//`, `/.` or `@{`");
    }
    if branch
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        return bad("it may not contain spaces or any of ~ ^ : ? * [ \\");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls_and_scp_like_remotes_are_accepted() {
        for remote in [
            "ssh://dokku@host:22/app",
            "ssh://dokku@example.com/app",
            "ssh://git@127.0.0.1:2222/srv/git/repo.git",
            "ssh://example.com/srv/repo.git",
            "git+ssh://git@example.com/org/repo.git",
            "ssh+git://git@example.com/org/repo.git",
            "ssh://git@[::1]:2222/repo.git",
            "git@host:app.git",
            "dokku@dokku.me:my-app",
            "git@github.com:org/repo.git",
            "deploy@[fe80::1]:repos/app.git",
            "git@host:/srv/git/app.git",
        ] {
            assert_eq!(check_remote(remote), Ok(()), "{remote}");
        }
    }

    #[test]
    fn other_remotes_are_refused_with_a_reason() {
        let cases = [
            ("", "is empty"),
            ("https://github.com/org/repo.git", "is a https:// URL, not SSH"),
            ("git://example.com/repo.git", "is a git:// URL, not SSH"),
            ("file:///srv/repo.git", "is a file:// URL, not SSH"),
            ("/srv/git/repo.git", "is not an SSH git URL"),
            ("./repo:odd", "is not an SSH git URL"),
            ("repo.git", "is not an SSH git URL"),
            ("host:app.git", "names no user: write it as USER@host:app.git"),
            ("@host:app.git", "empty user name"),
            ("git@host:", "names no repository after `:`"),
            ("git@:app", "no host"),
            ("ssh://git@host", "names no repository after the host"),
            ("ssh://git@host/", "names no repository after the host"),
            ("ssh://git@host:99999/app", "is not a port number"),
            ("ssh://git@host:port/app", "is not a port number"),
            ("ssh://git@:22/app", "no host"),
            ("ssh://git@-oProxyCommand=evil/app", "starts with `-`"),
            ("git@-oProxyCommand=evil:app", "starts with `-`"),
            ("--upload-pack=evil", "starts with `-`"),
            ("git@host:my app", "contains spaces"),
            ("git@ho$t:app", "is not a host name"),
            ("ssh://git@[::1/app", "`[` without `]`"),
        ];
        for (remote, message) in cases {
            let error = check_remote(remote).expect_err(remote);
            assert!(error.contains(message), "{remote}: {error}");
        }
    }

    #[test]
    fn branch_names_follow_git() {
        for ok in ["main", "release/2024-06", "feature_x", "v1.2"] {
            assert_eq!(check_branch(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-f", "refs/heads/main", "a..b", "a b", "a:b", "x.lock", "a/", "/a", "a~1", "@", "a@{1}"] {
            assert!(check_branch(bad).is_err(), "{bad}");
        }
    }
}
