//! `pier timeline`: the deploys of every server (S10), and one deploy's log.

use clap::{Args, Subcommand};

use super::deploy::state_error;
use super::project::Project;
use super::table::{self, Column};
use super::{CliError, Output};
use crate::exit::Exit;
use crate::project::STATE_DIR;
use crate::project::state::State;
use crate::project::timeline::{Deploy, Found};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TimelineArgs {
    #[command(subcommand)]
    command: Option<TimelineCommand>,
    /// Only this server's deploys (alias or name).
    server: Option<String>,
    /// How many deploys to show, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    limit: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum TimelineCommand {
    /// Show one deploy and its log.
    Show {
        /// The deploy id as `pier timeline` lists it, or any part of it that begins or
        /// ends only that id (its last characters, say).
        deploy_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(args: TimelineArgs, out: &mut Output) -> Result<Exit, CliError> {
    let project = Project::open()?;
    let timeline = State::open(&project.config, &project.root.join(STATE_DIR)).await.map_err(state_error)?;
    timeline.reconcile(None).await.map_err(state_error)?;
    match args.command {
        Some(TimelineCommand::Show { deploy_id, json }) => {
            let no_deploy = || CliError::Usage(format!("no deploy `{deploy_id}` in the timeline"));
            let id = match timeline.find(&deploy_id).await.map_err(state_error)? {
                Found::One(id) => id,
                Found::None => return Err(no_deploy()),
                Found::Several(ids, all) => return Err(ambiguous(&deploy_id, &ids, all)),
            };
            let (deploy, log) = timeline.get(&id).await.map_err(state_error)?.ok_or_else(no_deploy)?;
            if json {
                out.json(&serde_json::json!({ "deploy": deploy, "log": log }))?;
            } else {
                out.line(format!("deploy {} of {} ({})", deploy.id, deploy.server, deploy.method))?;
                out.line(format!(
                    "  status:   {}{}",
                    deploy.status,
                    deploy.exit_code.map(|c| format!(" (exit {c})")).unwrap_or_default()
                ))?;
                if !deploy.commit.is_empty() {
                    out.line(format!("  commit:   {} on {}", deploy.commit, deploy.branch))?;
                }
                if let Some(b) = &deploy.build {
                    out.line(format!("  build:    {b}"))?;
                }
                out.line(format!("  trigger:  {} by {}", deploy.trigger, deploy.actor))?;
                if let Some(r) = &deploy.runner {
                    out.line(format!("  runner:   {r}"))?;
                }
                out.line(format!("  started:  {}", deploy.started_at))?;
                if let Some(e) = &deploy.ended_at {
                    out.line(format!("  ended:    {e}"))?;
                }
                if let Some(s) = &deploy.summary {
                    out.line(format!("  summary:  {s}"))?;
                }
                if let Some(r) = &deploy.release {
                    out.line(format!("  release:  {r}"))?;
                }
                if let Some(u) = &deploy.url {
                    out.line(format!("  url:      {u}"))?;
                }
                out.line("")?;
                for line in log.lines() {
                    out.line(line)?;
                }
            }
        }
        None => {
            let server = match &args.server {
                Some(s) => Some(project.server(s)?.alias.clone()),
                None => None,
            };
            let deploys = timeline.list(server.as_deref(), args.limit as usize).await.map_err(state_error)?;
            if args.json {
                out.json(&deploys)?;
            } else if deploys.is_empty() {
                out.line("no deploys yet")?;
            } else {
                for line in table::render(&COLUMNS, &deploys.iter().map(cells).collect::<Vec<_>>(), table::width()) {
                    out.line(line)?;
                }
            }
        }
    }
    Ok(Exit::Success)
}

/// The columns of `pier timeline`; when room is short, TRIGGER goes first, then BRANCH,
/// then COMMIT (`pier timeline show` has them all).
const COLUMNS: [Column; 8] = [
    Column::new("DEPLOY", 40),
    Column::new("SERVER", 16),
    Column::new("STATUS", 11),
    Column::new("TRIGGER", 9).spare(3),
    Column::new("COMMIT", 7).spare(1),
    Column::new("BRANCH", 16).spare(2),
    Column::new("STARTED (UTC)", 16),
    Column::new("SUMMARY", 0),
];

/// One deploy's cells under [`COLUMNS`], redacted before they are cut.
fn cells(d: &Deploy) -> Vec<String> {
    let redact = |text: &str| crate::caps::secrets::redact(text).into_owned();
    vec![
        d.id.clone(),
        d.server.clone(),
        d.status.to_string(),
        d.trigger.clone(),
        d.commit.get(..7).unwrap_or(&d.commit).to_string(),
        d.branch.clone(),
        started(&d.started_at),
        redact(d.summary.as_deref().unwrap_or_default()),
    ]
}

/// `2026-12-01T15:04:21Z` as `2026-12-01 15:04`; anything else as it is.
fn started(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(10..11), rfc3339.get(11..16)) {
        (Some(date), Some("T"), Some(time)) => format!("{date} {time}"),
        _ => rfc3339.to_string(),
    }
}

/// The usage error for a deploy id that names several deploys.
fn ambiguous(given: &str, ids: &[String], all: usize) -> CliError {
    let mut named = ids.join(", ");
    if all > ids.len() {
        named.push_str(&format!(" and {} more", all - ids.len()));
    }
    CliError::Usage(format!(
        "`{given}` names {all} deploys ({named}): give more of the id, or all of it, as `pier timeline` lists it"
    ))
}
