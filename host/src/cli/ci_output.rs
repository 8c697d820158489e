//! Deploy output in the CI's own terms: collapsible groups (GitHub Actions) or sections
//! (GitLab CI) around each deploy step, an error annotation for a failed deploy, and a
//! job summary table (GitHub Actions). Nothing of this happens outside those CIs.
//!
//! GitHub's runner reads workflow commands (`::group::`, `::error::`, `::add-mask::`, and
//! the older `##[...]` form anywhere in a line) from a step's stdout *and* stderr, in the
//! order it reads the two pipes. So every workflow command Pier writes goes to stderr, in
//! order with the progress lines it frames, and stdout keeps only data (the summary lines,
//! or JSON Lines with `--json`, which get no workflow commands at all). What a deploy's
//! programs and plugin print is shown between `::stop-commands::TOKEN` and `::TOKEN::`
//! (a random token per deploy), so none of it is read as a command; what reaches stdout
//! has the older form (`##[`) broken up.

use std::borrow::Cow;
use std::io::Write as _;
use std::path::PathBuf;

use crate::caps::secrets::redact;

/// The CIs whose output Pier speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ci {
    GitHub,
    GitLab,
}

/// How this invocation writes for its CI.
#[derive(Debug, Clone)]
pub struct CiOutput {
    ci: Ci,
    /// `$GITHUB_STEP_SUMMARY`, when set (GitHub Actions only).
    summary_file: Option<PathBuf>,
}

/// One row of the job summary.
#[derive(Debug, Clone, Default)]
pub struct SummaryRow<'a> {
    pub server: &'a str,
    /// The commit deployed (none for a server that was skipped).
    pub commit: Option<&'a str>,
    /// `succeeded`, `failed`, `interrupted` or `skipped`.
    pub status: &'a str,
    /// What the deploy said, or why it was skipped.
    pub summary: &'a str,
    pub seconds: Option<f64>,
    pub url: Option<&'a str>,
    pub deploy_id: Option<&'a str>,
}

impl CiOutput {
    /// The CI output of the environment read through `var`: GitHub Actions
    /// (`GITHUB_ACTIONS=true`) or GitLab CI (`GITLAB_CI` set), as [`super::ci_env`] tells
    /// them; `None` elsewhere.
    pub fn detect(var: &dyn Fn(&str) -> Option<String>) -> Option<CiOutput> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if get("GITHUB_ACTIONS").as_deref() == Some("true") {
            Some(CiOutput { ci: Ci::GitHub, summary_file: get("GITHUB_STEP_SUMMARY").map(PathBuf::from) })
        } else if get("GITLAB_CI").is_some() {
            Some(CiOutput { ci: Ci::GitLab, summary_file: None })
        } else {
            None
        }
    }

    /// The CI output of the process's environment.
    pub fn from_env() -> Option<CiOutput> {
        CiOutput::detect(&|name| std::env::var(name).ok())
    }

    /// What frames the steps of deploy `deploy_id` shown as text (none with `--json`).
    pub fn steps(&self, deploy_id: &str) -> Steps {
        Steps { ci: self.ci, id: section_name(deploy_id), token: token(), open: None, count: 0 }
    }

    /// A line of text for stdout with nothing GitHub would read as a command in it.
    pub fn plain<'a>(&self, line: &'a str) -> Cow<'a, str> {
        match self.ci {
            Ci::GitHub => plain_github(line),
            Ci::GitLab => Cow::Borrowed(line),
        }
    }

    /// A JSON Lines record with nothing GitHub would read as a command in it: every `#`
    /// written as `\u0023`, the same JSON value (`#` only occurs inside strings).
    pub fn json<'a>(&self, line: &'a str) -> Cow<'a, str> {
        match self.ci {
            Ci::GitHub if line.contains('#') => Cow::Owned(line.replace('#', "\\u0023")),
            _ => Cow::Borrowed(line),
        }
    }

    /// Appends the job summary of `rows` to `$GITHUB_STEP_SUMMARY` (GitHub Actions only).
    /// A summary that cannot be written is said once on stderr; it never fails a deploy.
    pub fn summary(&self, rows: &[SummaryRow]) {
        if self.ci != Ci::GitHub || rows.is_empty() {
            return;
        }
        let Some(file) = &self.summary_file else {
            let _ = writeln!(std::io::stderr(), "note: GITHUB_STEP_SUMMARY is not set: no job summary written");
            return;
        };
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .and_then(|mut f| f.write_all(summary_markdown(rows).as_bytes()));
        if let Err(e) = written {
            let _ = writeln!(
                std::io::stderr(),
                "warning: cannot append the job summary to {} (GITHUB_STEP_SUMMARY): {e}",
                redact(&file.display().to_string())
            );
        }
    }
}

/// The groups or sections of one deploy's steps, and what keeps its output from being
/// read as workflow commands. Each method returns the lines to write to stderr (each
/// ending with a line break), or nothing.
#[derive(Debug)]
pub struct Steps {
    ci: Ci,
    /// The deploy id as a section name.
    id: String,
    /// Resumes GitHub's command processing.
    token: String,
    /// The section open (GitLab), or `Some` for the group open (GitHub).
    open: Option<String>,
    count: u32,
}

impl Steps {
    /// Ends the open group or section, if any, and opens one for step `title`; under
    /// GitHub Actions what follows is not read as commands until the next step or the end.
    pub fn step_started(&mut self, title: &str) -> String {
        self.step_started_at(title, unix_seconds())
    }

    fn step_started_at(&mut self, title: &str, now: u64) -> String {
        let mut out = self.steps_done_at(now);
        self.count += 1;
        let title = crate::caps::events::inert(title);
        match self.ci {
            Ci::GitHub => {
                out.push_str(&format!("::group::{}\n::stop-commands::{}\n", escape_data(&title), self.token));
                self.open = Some(String::new());
            }
            Ci::GitLab => {
                let name = format!("pier_{}_{}", self.id, self.count);
                out.push_str(&format!("\x1b[0Ksection_start:{now}:{name}[collapsed=true]\r\x1b[0K→ {title}\n"));
                self.open = Some(name);
            }
        }
        out
    }

    /// Ends the open group or section, if any (and resumes GitHub's commands).
    pub fn steps_done(&mut self) -> String {
        self.steps_done_at(unix_seconds())
    }

    fn steps_done_at(&mut self, now: u64) -> String {
        let Some(name) = self.open.take() else { return String::new() };
        match self.ci {
            Ci::GitHub => format!("::{}::\n::endgroup::\n", self.token),
            Ci::GitLab => format!("\x1b[0Ksection_end:{now}:{name}\r\x1b[0K\n"),
        }
    }

    /// The line that says the deploy of `server` failed with `message`, written after its
    /// steps are done: an error annotation under GitHub Actions; `None` when the CI has
    /// none, and the error is shown as usual.
    pub fn annotation(&self, server: &str, message: &str) -> Option<String> {
        match self.ci {
            Ci::GitHub => Some(error_annotation(server, message)),
            Ci::GitLab => None,
        }
    }
}

/// `::error title=Deploy failed::SERVER: MESSAGE`, redacted and escaped, with its line
/// break.
fn error_annotation(server: &str, message: &str) -> String {
    let text = redact(&format!("{server}: {message}")).into_owned();
    format!("::error title={}::{}\n", escape_property("Deploy failed"), escape_data(&text))
}

/// A workflow command's data as GitHub reads it back: `%`, `\r`, `\n` escaped.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// A workflow command's property value: as data, and `:` and `,` escaped too.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// `line` with the older command form (`##[`) broken up (`## [`), and a line that would
/// start a command (`::`, after spaces) led by a `.`.
fn plain_github(line: &str) -> Cow<'_, str> {
    let trimmed = line.trim_start();
    if !line.contains("##[") && !trimmed.starts_with("::") {
        return Cow::Borrowed(line);
    }
    let mut text = line.replace("##[", "## [");
    if text.trim_start().starts_with("::") {
        text.insert(0, '.');
    }
    Cow::Owned(text)
}

/// `id` as a GitLab section name: letters, digits, `_`, `-` and `.`; anything else `_`.
fn section_name(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' }).collect()
}

/// A fresh random token that resumes GitHub's command processing.
fn token() -> String {
    use rand_core::RngCore as _;
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    format!("pier-{}", hex::encode(bytes))
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The job summary of `rows`: a heading and a table with a row per server.
fn summary_markdown(rows: &[SummaryRow]) -> String {
    let mut out = String::from(
        "\n### Pier deploys\n\n| Server | Commit | Result | Duration | URL | Deploy |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let code = |v: Option<&str>| v.map(|v| format!("`{}`", cell(v))).unwrap_or_default();
        let commit = r.commit.map(|c| c.get(..12).unwrap_or(c));
        let result =
            if r.summary.is_empty() { r.status.to_string() } else { format!("**{}**: {}", r.status, r.summary) };
        let seconds = r.seconds.map(|s| format!("{s:.1} s")).unwrap_or_default();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            cell(r.server),
            code(commit),
            cell(&result),
            seconds,
            r.url.map(cell).unwrap_or_default(),
            code(r.deploy_id),
        ));
    }
    redact(&out).into_owned()
}

/// Text for one table cell: on one line, with `|`, backticks and HTML made inert.
fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in crate::caps::events::inert(text).chars() {
        match c {
            '|' => out.push_str("\\|"),
            '`' => out.push('\''),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn only_github_actions_and_gitlab_ci_are_detected() {
        let github = CiOutput::detect(&env(&[("GITHUB_ACTIONS", "true"), ("GITHUB_STEP_SUMMARY", "/s")])).unwrap();
        assert_eq!((github.ci, github.summary_file.as_deref()), (Ci::GitHub, Some(std::path::Path::new("/s"))));
        assert_eq!(CiOutput::detect(&env(&[("GITLAB_CI", "true")])).unwrap().ci, Ci::GitLab);
        for other in [
            &[][..],
            &[("GITHUB_ACTIONS", "false")],
            &[("GITLAB_CI", " ")],
            &[("CIRCLECI", "true")],
            &[("BUILDKITE", "true")],
            &[("JENKINS_URL", "http://j")],
            &[("SEMAPHORE", "true")],
        ] {
            assert!(CiOutput::detect(&env(other)).is_none(), "{other:?}");
        }
    }

    #[test]
    fn escaping_follows_github() {
        assert_eq!(escape_data("50% done\r\nnext: a,b"), "50%25 done%0D%0Anext: a,b");
        assert_eq!(escape_property("a:b,c%\n"), "a%3Ab%2Cc%25%0A");
        assert_eq!(
            error_annotation("prod", "command 1 of 1 (`exit 3`) exited with 3\n100%"),
            "::error title=Deploy failed::prod: command 1 of 1 (`exit 3`) exited with 3%0A100%25\n"
        );
    }

    #[test]
    fn github_groups_are_balanced_and_commands_stopped_inside() {
        let github = CiOutput::detect(&env(&[("GITHUB_ACTIONS", "true")])).unwrap();
        let mut steps = github.steps("66a0-ab12");
        assert_eq!(steps.steps_done(), "", "nothing open yet");
        let first = steps.step_started("Deploying 50% of main");
        let token = steps.token.clone();
        assert!(token.len() > 20);
        assert_eq!(first, format!("::group::Deploying 50%25 of main\n::stop-commands::{token}\n"));
        let second = steps.step_started("Command 1/1: make");
        assert_eq!(
            second,
            format!("::{token}::\n::endgroup::\n::group::Command 1/1: make\n::stop-commands::{token}\n")
        );
        assert_eq!(steps.steps_done(), format!("::{token}::\n::endgroup::\n"));
        assert_eq!(steps.steps_done(), "", "closed once");
        assert_eq!(steps.annotation("prod", "it broke").unwrap(), "::error title=Deploy failed::prod: it broke\n");
        assert_ne!(github.steps("66a0-ab12").token, token, "a token per deploy");
    }

    #[test]
    fn gitlab_sections_have_safe_names_and_close() {
        let gitlab = CiOutput::detect(&env(&[("GITLAB_CI", "true")])).unwrap();
        let mut steps = gitlab.steps("66a0-ab12/x y");
        assert_eq!(
            steps.step_started_at("Deploying", 100),
            "\x1b[0Ksection_start:100:pier_66a0-ab12_x_y_1[collapsed=true]\r\x1b[0K→ Deploying\n"
        );
        assert_eq!(
            steps.step_started_at("Building", 101),
            "\x1b[0Ksection_end:101:pier_66a0-ab12_x_y_1\r\x1b[0K\n\x1b[0Ksection_start:101:pier_66a0-ab12_x_y_2\
             [collapsed=true]\r\x1b[0K→ Building\n"
        );
        assert_eq!(steps.steps_done_at(102), "\x1b[0Ksection_end:102:pier_66a0-ab12_x_y_2\r\x1b[0K\n");
        assert_eq!(steps.annotation("prod", "x"), None, "GitLab shows the error as usual");
        assert_eq!(section_name("a.b-c_D9 ü:"), "a.b-c_D9___");
    }

    #[test]
    fn stdout_and_json_lines_carry_no_command() {
        let github = CiOutput::detect(&env(&[("GITHUB_ACTIONS", "true")])).unwrap();
        assert_eq!(github.plain("prod: failed: ##[add-mask]x"), "prod: failed: ## [add-mask]x");
        assert_eq!(github.plain("  ::error::x"), ".  ::error::x");
        assert!(matches!(github.plain("prod: succeeded"), Cow::Borrowed(_)));
        let line = r###"{"type":"event","data":{"line":"##[set-output name=a]b #1"}}"###;
        let json = github.json(line);
        assert!(!json.contains('#'), "{json}");
        let a: serde_json::Value = serde_json::from_str(line).unwrap();
        let b: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(a, b, "the same value");
        let gitlab = CiOutput::detect(&env(&[("GITLAB_CI", "true")])).unwrap();
        assert_eq!(gitlab.json(line), line);
    }

    #[test]
    fn the_summary_is_a_table_with_a_row_per_server() {
        let rows = [
            SummaryRow {
                server: "prod",
                commit: Some("0123456789abcdef0123"),
                status: "succeeded",
                summary: "released v1 | ok <b>",
                seconds: Some(3.25),
                url: Some("https://prod.example.com"),
                deploy_id: Some("66a0-ab12"),
            },
            SummaryRow { server: "staging", status: "skipped", summary: "follows branch dev", ..Default::default() },
        ];
        let md = summary_markdown(&rows);
        assert_eq!(
            md,
            "\n### Pier deploys\n\n| Server | Commit | Result | Duration | URL | Deploy |\n|---|---|---|---|---|---|\n\
             | prod | `0123456789ab` | **succeeded**: released v1 \\| ok &lt;b&gt; | 3.2 s | https://prod.example.com | \
             `66a0-ab12` |\n\
             | staging |  | **skipped**: follows branch dev |  |  |  |\n"
        );
    }

    #[test]
    fn the_summary_is_appended_and_a_bad_file_is_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("summary.md");
        std::fs::write(&file, "earlier\n").unwrap();
        let github = CiOutput { ci: Ci::GitHub, summary_file: Some(file.clone()) };
        let row = SummaryRow { server: "prod", status: "failed", summary: "boom", ..Default::default() };
        github.summary(std::slice::from_ref(&row));
        github.summary(std::slice::from_ref(&row));
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("earlier\n"), "{text}");
        assert_eq!(text.matches("| prod |").count(), 2, "{text}");
        // A directory cannot be appended to: said, not fatal.
        CiOutput { ci: Ci::GitHub, summary_file: Some(dir.path().to_path_buf()) }.summary(&[row]);
    }
}
