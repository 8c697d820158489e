//! `pier conformance`: run the contract's checks against a plugin.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{CliError, Globals, Output};
use crate::conformance::{self, Outcome};
use crate::exit::Exit;

#[derive(Debug, Args)]
pub struct ConformanceArgs {
    /// A plugin file (.wasm) or the name of a built-in plugin.
    plugin: String,
    /// Also write the results as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// The longest any one call may run, in seconds, before the plugin is stopped and the
    /// `limits.default` check fails naming the call (the runner's provider is on loopback,
    /// so a slower call is a plugin stuck in a loop). `PIER_LIMIT_SECONDS` overrides it.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// Scripted answers of the fake provider, so that `deploy` is exercised to success:
    /// a JSON file `{"responses": [{"method", "path", "status", "body", "times"}, ...]}`.
    #[arg(long, value_name = "FILE")]
    responses: Option<PathBuf>,
}

pub async fn run(args: ConformanceArgs, globals: &Globals, out: &mut Output) -> Result<Exit, CliError> {
    // Calls answer a fake provider on loopback: anything slower than this is a plugin
    // stuck in a loop, not a slow network.
    let limit = Duration::from_secs(args.timeout);
    let mut limits = crate::runtime::Limits {
        describe_time: crate::runtime::Limits::default().describe_time.min(limit),
        setup_time: limit,
        deploy_time: limit,
        ..Default::default()
    };
    globals.apply_env_limits(&mut limits)?;
    let runtime = globals.runtime_with(limits)?;
    let plugin = super::plugins::load(&runtime, &args.plugin)?;
    // One line per call on stderr, so that a plugin that hangs is seen where it hangs.
    let name = plugin.name().to_string();
    let progress = |call: &str| eprintln!("conformance: {name}: calling {call}");
    let responses = match &args.responses {
        Some(path) => {
            conformance::provider::load_responses(path).map_err(|e| CliError::Usage(format!("--responses {e}")))?
        }
        None => vec![],
    };
    let options = conformance::RunOptions { progress: &progress, responses };
    let report = conformance::run_with(&runtime, &plugin, options)
        .await
        .map_err(|e| CliError::Usage(format!("conformance could not run: {e}")))?;
    if let Some(path) = &args.junit {
        let xml = report.junit().map_err(|e| CliError::Usage(format!("JUnit report: {e}")))?;
        crate::project::write_atomic(path, xml.as_bytes(), 0o644)
            .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", path.display())))?;
    }
    let (passed, failed, skipped) = report.counts();
    if args.json {
        out.json(&serde_json::json!({
            "plugin": report.plugin,
            "name": report.name,
            "version": report.version,
            "contract": report.contract,
            "passed": report.passed(),
            "checks": report.checks,
        }))?;
    } else {
        out.line(format!(
            "conformance of {} ({} {}, pier:deploy@{})",
            report.plugin, report.name, report.version, report.contract
        ))?;
        for check in &report.checks {
            out.line(format!("  {:<5} {:<26} {}", check.outcome.to_string(), check.id, check.description))?;
            match &check.outcome {
                Outcome::Fail(reason) => out.line(format!("        → {reason}"))?,
                Outcome::Skip(reason) => out.line(format!("        skipped: {reason}"))?,
                Outcome::Pass => {}
            }
        }
        out.line(format!("{} checks: {passed} passed, {failed} failed, {skipped} skipped", report.checks.len()))?;
    }
    Ok(if report.passed() { Exit::Success } else { Exit::PluginFault })
}
