//! What build a CI job is running: branch, commit and build id from the environment of
//! GitHub Actions, GitLab CI, Semaphore, CircleCI, Buildkite and Jenkins. `PIER_BRANCH`,
//! `PIER_COMMIT` and `PIER_BUILD` override whatever the CI says.

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
    let mut build = if get("GITHUB_ACTIONS").as_deref() == Some("true") {
        // On pull requests GITHUB_REF_NAME is `N/merge`: the branch is the head ref.
        let branch = if get("GITHUB_EVENT_NAME").as_deref().is_some_and(|e| e.starts_with("pull_request")) {
            get("GITHUB_HEAD_REF")
        } else if get("GITHUB_REF_TYPE").as_deref() == Some("tag") {
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
        }
    } else if set("GITLAB_CI") {
        CiBuild {
            provider: Some("GitLab CI"),
            branch: get("CI_COMMIT_BRANCH").or_else(|| get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME")),
            commit: get("CI_COMMIT_SHA"),
            commit_var: Some("CI_COMMIT_SHA"),
            build: get("CI_PIPELINE_ID"),
        }
    } else if set("SEMAPHORE") {
        CiBuild {
            provider: Some("Semaphore"),
            branch: get("SEMAPHORE_GIT_WORKING_BRANCH").or_else(|| get("SEMAPHORE_GIT_BRANCH")),
            commit: get("SEMAPHORE_GIT_SHA"),
            commit_var: Some("SEMAPHORE_GIT_SHA"),
            build: get("SEMAPHORE_WORKFLOW_ID").or_else(|| get("SEMAPHORE_JOB_ID")),
        }
    } else if set("CIRCLECI") {
        CiBuild {
            provider: Some("CircleCI"),
            branch: get("CIRCLE_BRANCH"),
            commit: get("CIRCLE_SHA1"),
            commit_var: Some("CIRCLE_SHA1"),
            build: get("CIRCLE_BUILD_NUM"),
        }
    } else if set("BUILDKITE") {
        CiBuild {
            provider: Some("Buildkite"),
            branch: get("BUILDKITE_BRANCH"),
            commit: get("BUILDKITE_COMMIT"),
            commit_var: Some("BUILDKITE_COMMIT"),
            build: get("BUILDKITE_BUILD_NUMBER"),
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
        let pr = detect(&env(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_EVENT_NAME", "pull_request"),
            ("GITHUB_REF_NAME", "5/merge"),
            ("GITHUB_HEAD_REF", "feature"),
        ]));
        assert_eq!(pr.branch.as_deref(), Some("feature"));
        assert_eq!(detect(&env(&[])), CiBuild::default());
    }
}
