//! What build a CI job is running: branch, commit and build id from the environment of
//! GitHub Actions, GitLab CI, Semaphore, CircleCI, Buildkite and Jenkins. `PIER_BRANCH`,
//! `PIER_COMMIT` and `PIER_BUILD` override whatever the CI says.
//!
//! A pull-request or merge-request build is recognised on each of them and never
//! deploys: its branch name is whatever the pull request's author chose (a fork can call
//! its branch `main`), and nothing overrides that, not even `PIER_BRANCH`.

/// A build as the environment describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CiBuild {
    /// The CI recognised, if any.
    pub provider: Option<&'static str>,
    pub branch: Option<String>,
    pub commit: Option<String>,
    /// The variable the commit came from.
    pub commit_var: Option<&'static str>,
    pub build: Option<String>,
    /// Set when this is a pull-request or merge-request build: what says so.
    pub pull_request: Option<String>,
}

impl CiBuild {
    /// One phrase naming where the values came from.
    pub fn describe(&self) -> String {
        match self.provider {
            Some(p) => p.to_string(),
            None => "no CI environment recognised".to_string(),
        }
    }
}

/// Reads the build from the environment through `var`.
pub fn detect(var: &dyn Fn(&str) -> Option<String>) -> CiBuild {
    let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let set = |name: &str| get(name).is_some();
    let said = |name: &str, value: &str| Some(format!("{name}={value}"));
    let mut build = if get("GITHUB_ACTIONS").as_deref() == Some("true") {
        let event = get("GITHUB_EVENT_NAME");
        let pull_request =
            event.as_deref().filter(|e| e.starts_with("pull_request")).and_then(|e| said("GITHUB_EVENT_NAME", e));
        let branch = if pull_request.is_some() || get("GITHUB_REF_TYPE").as_deref() == Some("tag") {
            None
        } else {
            get("GITHUB_REF_NAME")
        };
        CiBuild {
            provider: Some("GitHub Actions"),
            branch,
            commit: get("GITHUB_SHA"),
            commit_var: Some("GITHUB_SHA"),
            build: get("GITHUB_RUN_ID"),
            pull_request,
        }
    } else if set("GITLAB_CI") {
        let pull_request = get("CI_MERGE_REQUEST_IID").and_then(|v| said("CI_MERGE_REQUEST_IID", &v)).or_else(|| {
            get("CI_PIPELINE_SOURCE")
                .filter(|s| s == "merge_request_event")
                .and_then(|v| said("CI_PIPELINE_SOURCE", &v))
        });
        CiBuild {
            provider: Some("GitLab CI"),
            branch: get("CI_COMMIT_BRANCH"),
            commit: get("CI_COMMIT_SHA"),
            commit_var: Some("CI_COMMIT_SHA"),
            build: get("CI_PIPELINE_ID"),
            pull_request,
        }
    } else if set("SEMAPHORE") {
        CiBuild {
            provider: Some("Semaphore"),
            branch: get("SEMAPHORE_GIT_BRANCH"),
            commit: get("SEMAPHORE_GIT_SHA"),
            commit_var: Some("SEMAPHORE_GIT_SHA"),
            build: get("SEMAPHORE_WORKFLOW_ID").or_else(|| get("SEMAPHORE_JOB_ID")),
            pull_request: get("SEMAPHORE_GIT_PR_NUMBER").and_then(|v| said("SEMAPHORE_GIT_PR_NUMBER", &v)),
        }
    } else if set("CIRCLECI") {
        CiBuild {
            provider: Some("CircleCI"),
            branch: get("CIRCLE_BRANCH"),
            commit: get("CIRCLE_SHA1"),
            commit_var: Some("CIRCLE_SHA1"),
            build: get("CIRCLE_BUILD_NUM"),
            pull_request: get("CIRCLE_PULL_REQUEST").and_then(|v| said("CIRCLE_PULL_REQUEST", &v)),
        }
    } else if set("BUILDKITE") {
        CiBuild {
            provider: Some("Buildkite"),
            branch: get("BUILDKITE_BRANCH"),
            commit: get("BUILDKITE_COMMIT"),
            commit_var: Some("BUILDKITE_COMMIT"),
            build: get("BUILDKITE_BUILD_NUMBER"),
            pull_request: get("BUILDKITE_PULL_REQUEST")
                .filter(|v| v != "false")
                .and_then(|v| said("BUILDKITE_PULL_REQUEST", &v)),
        }
    } else if set("JENKINS_URL") {
        let branch = get("BRANCH_NAME")
            .or_else(|| get("GIT_BRANCH").map(|b| b.strip_prefix("origin/").map(str::to_string).unwrap_or(b)));
        CiBuild {
            provider: Some("Jenkins"),
            branch,
            commit: get("GIT_COMMIT"),
            commit_var: Some("GIT_COMMIT"),
            build: get("BUILD_NUMBER"),
            pull_request: get("CHANGE_ID").and_then(|v| said("CHANGE_ID", &v)),
        }
    } else {
        CiBuild::default()
    };
    if let Some(b) = get("PIER_BRANCH") {
        build.branch = Some(b);
    }
    if let Some(c) = get("PIER_COMMIT") {
        build.commit = Some(c);
        build.commit_var = Some("PIER_COMMIT");
    }
    if let Some(b) = get("PIER_BUILD") {
        build.build = Some(b);
    }
    build
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    /// Variables, then the branch, commit and build they should give.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str, &'a str);

    #[test]
    fn each_ci_is_read() {
        let cases: &[Case] = &[
            (
                &[
                    ("GITHUB_ACTIONS", "true"),
                    ("GITHUB_REF_NAME", "main"),
                    ("GITHUB_SHA", "a1"),
                    ("GITHUB_RUN_ID", "7"),
                ],
                "main",
                "a1",
                "7",
            ),
            (
                &[("GITLAB_CI", "true"), ("CI_COMMIT_BRANCH", "dev"), ("CI_COMMIT_SHA", "b2"), ("CI_PIPELINE_ID", "8")],
                "dev",
                "b2",
                "8",
            ),
            (
                &[
                    ("SEMAPHORE", "true"),
                    ("SEMAPHORE_GIT_BRANCH", "main"),
                    ("SEMAPHORE_GIT_SHA", "c3"),
                    ("SEMAPHORE_WORKFLOW_ID", "w"),
                ],
                "main",
                "c3",
                "w",
            ),
            (
                &[("CIRCLECI", "true"), ("CIRCLE_BRANCH", "x"), ("CIRCLE_SHA1", "d4"), ("CIRCLE_BUILD_NUM", "9")],
                "x",
                "d4",
                "9",
            ),
            (
                &[
                    ("BUILDKITE", "true"),
                    ("BUILDKITE_BRANCH", "y"),
                    ("BUILDKITE_COMMIT", "e5"),
                    ("BUILDKITE_BUILD_NUMBER", "10"),
                ],
                "y",
                "e5",
                "10",
            ),
            (
                &[
                    ("JENKINS_URL", "http://j"),
                    ("GIT_BRANCH", "origin/z"),
                    ("GIT_COMMIT", "f6"),
                    ("BUILD_NUMBER", "11"),
                ],
                "z",
                "f6",
                "11",
            ),
        ];
        for (vars, branch, commit, id) in cases {
            let b = detect(&env(vars));
            assert_eq!(
                (b.branch.as_deref(), b.commit.as_deref(), b.build.as_deref()),
                (Some(*branch), Some(*commit), Some(*id)),
                "{vars:?}"
            );
        }
    }

    #[test]
    fn overrides_and_pull_requests() {
        let b = detect(&env(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REF_NAME", "main"),
            ("GITHUB_SHA", "a"),
            ("PIER_BRANCH", "other"),
        ]));
        assert_eq!(b.branch.as_deref(), Some("other"));
        assert_eq!(b.commit_var, Some("GITHUB_SHA"));
        let b = detect(&env(&[("GITLAB_CI", "true"), ("CI_COMMIT_SHA", "b2"), ("PIER_COMMIT", "c3")]));
        assert_eq!((b.commit.as_deref(), b.commit_var), (Some("c3"), Some("PIER_COMMIT")));
        assert_eq!(detect(&env(&[])), CiBuild::default());
    }

    #[test]
    fn pull_and_merge_requests_are_recognised_on_each_ci() {
        let cases: &[&[(&str, &str)]] = &[
            &[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_EVENT_NAME", "pull_request_target"),
                ("GITHUB_REF_NAME", "main"),
                ("GITHUB_HEAD_REF", "main"),
            ],
            &[("GITHUB_ACTIONS", "true"), ("GITHUB_EVENT_NAME", "pull_request"), ("GITHUB_HEAD_REF", "main")],
            &[("GITLAB_CI", "true"), ("CI_MERGE_REQUEST_IID", "4"), ("CI_COMMIT_BRANCH", "main")],
            &[("GITLAB_CI", "true"), ("CI_PIPELINE_SOURCE", "merge_request_event")],
            &[("SEMAPHORE", "true"), ("SEMAPHORE_GIT_PR_NUMBER", "12"), ("SEMAPHORE_GIT_BRANCH", "main")],
            &[
                ("CIRCLECI", "true"),
                ("CIRCLE_PULL_REQUEST", "https://github.com/o/r/pull/3"),
                ("CIRCLE_BRANCH", "main"),
            ],
            &[("BUILDKITE", "true"), ("BUILDKITE_PULL_REQUEST", "7"), ("BUILDKITE_BRANCH", "main")],
            &[("JENKINS_URL", "http://j"), ("CHANGE_ID", "9"), ("BRANCH_NAME", "main")],
        ];
        for vars in cases {
            let b = detect(&env(vars));
            assert!(b.pull_request.is_some(), "{vars:?}");
            // Even an explicit branch does not turn it into a branch build.
            let mut with_branch = vars.to_vec();
            with_branch.push(("PIER_BRANCH", "main"));
            assert!(detect(&env(&with_branch)).pull_request.is_some(), "{vars:?}");
        }
        // The twins: branch builds of the same CIs are not pull requests.
        let branch_builds: &[&[(&str, &str)]] = &[
            &[("GITHUB_ACTIONS", "true"), ("GITHUB_EVENT_NAME", "push"), ("GITHUB_REF_NAME", "main")],
            &[("GITLAB_CI", "true"), ("CI_PIPELINE_SOURCE", "push"), ("CI_COMMIT_BRANCH", "main")],
            &[("BUILDKITE", "true"), ("BUILDKITE_PULL_REQUEST", "false"), ("BUILDKITE_BRANCH", "main")],
            &[("JENKINS_URL", "http://j"), ("BRANCH_NAME", "main")],
        ];
        for vars in branch_builds {
            let b = detect(&env(vars));
            assert_eq!((b.pull_request, b.branch.as_deref()), (None, Some("main")), "{vars:?}");
        }
    }
}
