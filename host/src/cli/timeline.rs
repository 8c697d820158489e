//! `pier timeline`: the deploys of every server (S10), and one deploy's log.

use clap::{Args, Subcommand};

use super::project::Project;
use super::{CliError, Output};
use crate::exit::Exit;
use crate::project::STATE_DIR;
use crate::project::timeline::Timeline;

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
        /// The deploy id (as `pier timeline` lists it).
        deploy_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: TimelineArgs, out: &mut Output) -> Result<Exit, CliError> {
    let project = Project::open()?;
    let state = project.root.join(STATE_DIR);
    let timeline = Timeline::open(&state)?;
    crate::deploy::reconcile(&state, &timeline, None)?;
    match args.command {
        Some(TimelineCommand::Show { deploy_id, json }) => {
            let (deploy, log) = timeline
                .get(&deploy_id)?
                .ok_or_else(|| CliError::Usage(format!("no deploy `{deploy_id}` in the timeline")))?;
            if json {
                out.json(&serde_json::json!({ "deploy": deploy, "log": log }))?;
            } else {
                out.line(format!("deploy {} of {} ({})", deploy.id, deploy.server, deploy.method))?;
                out.line(format!(
                    "  status:   {}{}",
                    deploy.status,
                    deploy.exit_code.map(|c| format!(" (exit {c})")).unwrap_or_default()
                ))?;
                out.line(format!("  commit:   {} on {}", deploy.commit, deploy.branch))?;
                if let Some(b) = &deploy.build {
                    out.line(format!("  build:    {b}"))?;
                }
                out.line(format!("  trigger:  {} by {}", deploy.trigger, deploy.actor))?;
                out.line(format!("  started:  {}", deploy.started_at))?;
                if let Some(e) = &deploy.ended_at {
                    out.line(format!("  ended:    {e}"))?;
                }
                if let Some(s) = &deploy.summary {
                    out.line(format!("  summary:  {s}"))?;
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
            let deploys = timeline.list(server.as_deref(), args.limit as usize)?;
            if args.json {
                out.json(&deploys)?;
            } else if deploys.is_empty() {
                out.line("no deploys yet")?;
            } else {
                out.line(format!(
                    "{:<18} {:<16} {:<12} {:<10} {:<9} {:<12} {:<21} SUMMARY",
                    "DEPLOY", "SERVER", "STATUS", "TRIGGER", "COMMIT", "BRANCH", "STARTED"
                ))?;
                for d in deploys {
                    out.line(format!(
                        "{:<18} {:<16} {:<12} {:<10} {:<9} {:<12} {:<21} {}",
                        d.id,
                        d.server,
                        d.status,
                        d.trigger,
                        d.commit.get(..7).unwrap_or(&d.commit),
                        d.branch,
                        d.started_at,
                        d.summary.unwrap_or_default()
                    ))?;
                }
            }
        }
    }
    Ok(Exit::Success)
}
