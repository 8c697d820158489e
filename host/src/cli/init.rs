//! `pier init`: start a project here.

use super::{CliError, Output};
use crate::exit::Exit;
use crate::project::config::TEMPLATE;
use crate::project::{CONFIG_FILE, masterkey, write_atomic};

pub fn run(json: bool, out: &mut Output) -> Result<Exit, CliError> {
    let cwd =
        std::env::current_dir().map_err(|e| CliError::Usage(format!("cannot read the current directory: {e}")))?;
    let config = cwd.join(CONFIG_FILE);
    let created_config = if config.exists() {
        false
    } else {
        write_atomic(&config, TEMPLATE.as_bytes(), 0o644)
            .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", config.display())))?;
        true
    };
    // Every project has an id, so that several can share one database for their state.
    let loaded = crate::project::config::Config::load(&config)?;
    let had_id = loaded.project_id().is_some();
    let (_, project_id) = loaded.ensure_project_id()?;
    let from_env = std::env::var(masterkey::ENV).is_ok_and(|v| !v.trim().is_empty());
    let key_file = if from_env { None } else { masterkey::create_file()? };
    let key_path = if from_env { None } else { Some(masterkey::key_file()?) };
    if json {
        out.json(&serde_json::json!({
            "config": config,
            "created_config": created_config,
            "master_key": if from_env { "env".to_string() } else { key_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default() },
            "created_master_key": key_file.is_some(),
            "project_id": project_id,
        }))?;
        return Ok(Exit::Success);
    }
    if created_config {
        out.line(format!("created {}", config.display()))?;
    } else if had_id {
        out.line(format!("{} already exists; left as it is", config.display()))?;
    } else {
        out.line(format!("{} already exists; gave the project the id {project_id}", config.display()))?;
    }
    match (&key_file, &key_path) {
        (_, None) => out.line(format!("the master key comes from {}", masterkey::ENV))?,
        (Some(path), _) => {
            out.line(format!("created the master key {} (readable only by you)", path.display()))?;
            out.line(format!(
                "in CI, set the secret {} to its contents; keep a copy: without it pier.secrets cannot be opened",
                masterkey::ENV
            ))?;
        }
        (None, Some(path)) => out.line(format!("using the existing master key {}", path.display()))?,
    }
    Ok(Exit::Success)
}
