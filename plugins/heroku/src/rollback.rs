//! Rollback (`heroku releases:rollback`) and undoing setup (`heroku keys:remove`).
//!
//! A rollback is `POST /apps/{app}/releases {release: ID}`: Heroku makes a new release
//! running the old one's slug. Add-ons and config vars are not rolled back, which the user
//! is told. Without a target, the last succeeded release before the current one is used.

use pier_plugin_sdk::*;
use serde::Deserialize;

use crate::api::{Client, encode, error};
use crate::{APP, SSH_KEY, WEB_URL};

/// One release of `GET /apps/{app}/releases`.
#[derive(Debug, Clone, Deserialize)]
pub struct Release {
    pub id: String,
    pub version: u64,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub current: bool,
}

/// Every release of the app, oldest first.
pub fn releases(client: &Client, app: &str) -> Result<Vec<Release>, MethodError> {
    let mut releases: Vec<Release> =
        client.all(&format!("/apps/{}/releases", encode(app)), "version ..; max=200", "the app's releases")?;
    releases.sort_by_key(|r| r.version);
    Ok(releases)
}

/// The release to return to: the one named (`v41`, `41` or a release id), else the last
/// succeeded one before the current one, or before `before` when given.
pub fn target(releases: &[Release], named: Option<&str>, before: Option<u64>) -> Result<Release, MethodError> {
    if let Some(name) = named {
        let version = name.strip_prefix('v').unwrap_or(name).parse::<u64>().ok();
        return releases
            .iter()
            .find(|r| Some(r.version) == version || r.id == name)
            .cloned()
            .ok_or_else(|| MethodError::Provider(format!("the app has no release `{name}`")));
    }
    let current = before.or_else(|| releases.iter().rev().find(|r| r.current).map(|r| r.version));
    let current = current.or_else(|| releases.last().map(|r| r.version)).unwrap_or(0);
    releases.iter().rev().find(|r| r.version < current && r.status == "succeeded").cloned().ok_or_else(|| {
        MethodError::Provider(format!("the app has no succeeded release before v{current} to roll back to"))
    })
}

/// Makes `to` live again; returns the new release.
pub fn roll_back(client: &Client, app: &str, to: &Release) -> Result<Release, MethodError> {
    let body = serde_json::json!({ "release": to.id });
    let response = client.send(client.post(&format!("/apps/{}/releases", encode(app))).json(&body))?;
    if !response.ok() {
        return Err(error(&response, "the rollback"));
    }
    let release: Release = response
        .json()
        .map_err(|e| MethodError::Provider(format!("Heroku answered the rollback with unexpected JSON: {e}")))?;
    log::warn(&format!(
        "rolled back {app} to v{}: add-ons and config vars are not rolled back; change them by hand if they must be",
        to.version
    ));
    Ok(release)
}

/// `pier rollback`: the app back at `named`, or at the last good release.
pub fn rollback(ctx: &Context, settings: &[Answer], named: Option<String>) -> Result<DeployReport, MethodError> {
    let client = Client::new(ctx)?;
    let app = required(settings, APP, "the app")?;
    let all = releases(&client, app)?;
    let to = target(&all, named.as_deref(), None)?;
    let new = roll_back(&client, app, &to)?;
    let mut summary = format!("rolled back {app} to v{} (now v{})", to.version, new.version);
    let timeout = crate::deploy::health_timeout(settings)?;
    if !timeout.is_zero() {
        let up = crate::deploy::wait_for_dynos(&client, &format!("/apps/{}", encode(app)), new.version, timeout)?;
        summary.push_str(&format!("; {up}"));
    }
    Ok(DeployReport {
        summary,
        url: answer(settings, WEB_URL).map(str::to_string),
        release: Some(format!("v{}", new.version)),
    })
}

/// `pier server remove`: deregisters the SSH key setup registered, found by its public
/// key among the account's keys.
pub fn remove(ctx: &Context, _settings: &[Answer]) -> Result<Vec<String>, MethodError> {
    if !has_secret(SSH_KEY) {
        return Ok(vec![]);
    }
    let ours = keys::public_key(SSH_KEY)
        .map_err(|e| MethodError::Provider(format!("cannot read the server's SSH key: {e:?}")))?;
    let body = |key: &str| key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    #[derive(Deserialize)]
    struct Key {
        id: String,
        public_key: String,
        #[serde(default)]
        fingerprint: String,
    }
    let client = Client::new(ctx)?;
    let registered: Vec<Key> = client.json(client.get("/account/keys"), "the account's SSH keys")?;
    let Some(key) = registered.iter().find(|k| body(&k.public_key) == body(&ours)) else {
        return Ok(vec!["the server's SSH key was no longer registered with the Heroku account".into()]);
    };
    let response = client.send(client.delete(&format!("/account/keys/{}", encode(&key.id))))?;
    if !response.ok() && response.status() != 404 {
        return Err(error(&response, "removing the SSH key"));
    }
    let shown = if key.fingerprint.is_empty() { key.id.clone() } else { key.fingerprint.clone() };
    Ok(vec![format!("deregistered SSH key {shown} from the Heroku account")])
}
