//! `isola versions`, `isola rollback`, `isola delete` and `isola secret`: the admin API's
//! worker endpoints as commands. A secret's value is read from stdin (not echoed when typed
//! at a terminal) and never printed.

use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use http::Method;

use crate::client::AdminClient;

/// The admin API to talk to.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The node's admin API.
    #[arg(long, env = "ISOLA_ADMIN_URL", default_value = "http://127.0.0.1:9000")]
    pub admin: String,
}

/// `isola secret …`.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set secret KEY of worker NAME to the value read from stdin (one trailing newline is
    /// dropped; typed at a terminal, it is not echoed). The value is never printed.
    Put {
        /// The worker.
        name: String,
        /// The secret's name (`env.KEY` in the worker).
        key: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove secret KEY of worker NAME.
    Delete {
        /// The worker.
        name: String,
        /// The secret's name.
        key: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Lists the kept versions of `name`, oldest first, marking the active one.
pub async fn versions(name: &str, admin: &AdminArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&admin.admin)?;
    let answer = client.call(Method::GET, &worker_path(name)?, "").await?;
    let body = &answer.body;
    if body["source"] == "config" {
        println!("{name} is defined in the node's config file: it has no versions");
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "  {:<32}  {:<29}  secrets", "version", "created")?;
    for version in body["versions"].as_array().into_iter().flatten() {
        let marker = if version["active"] == true { "*" } else { " " };
        let secrets: Vec<&str> = version["secrets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str())
            .collect();
        writeln!(
            out,
            "{marker} {:<32}  {:<29}  {}",
            version["version"].as_str().unwrap_or("?"),
            version["created"].as_str().unwrap_or("?"),
            secrets.join(",")
        )?;
    }
    if let Some(split) = body["split"].as_object() {
        let parts: Vec<String> = split.iter().map(|(id, p)| format!("{id} {p}%")).collect();
        writeln!(out, "rollout: {}", parts.join(", "))?;
    }
    Ok(())
}

/// Makes version `id` of `name` serve again; without one, the version that was active
/// before the current one.
pub async fn rollback(name: &str, id: Option<String>, admin: &AdminArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&admin.admin)?;
    let path = worker_path(name)?;
    let id = match id {
        Some(id) => id,
        None => {
            let answer = client.call(Method::GET, &path, "").await?;
            previous_version(&answer.body).with_context(|| {
                format!("worker {name} has no earlier version to roll back to; name one (see `isola versions {name}`)")
            })?
        }
    };
    let body = serde_json::json!({ "version": id }).to_string();
    let answer = client
        .call(Method::POST, &format!("{path}/rollback"), body)
        .await?;
    println!(
        "rolled back worker {name}: version {} is active",
        answer.body["version"].as_str().unwrap_or(&id)
    );
    Ok(())
}

/// The version to go back to: the one active before the current one, else (a record from
/// before the node remembered it) the kept version made just before the active one.
fn previous_version(body: &serde_json::Value) -> Option<String> {
    if let Some(previous) = body["previous"].as_str() {
        return Some(previous.to_owned());
    }
    let versions = body["versions"].as_array()?;
    let active = versions.iter().position(|v| v["active"] == true)?;
    let before = versions.get(active.checked_sub(1)?)?;
    before["version"].as_str().map(str::to_owned)
}

/// Deletes worker `name` with its versions, secrets and routes.
pub async fn delete(name: &str, admin: &AdminArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&admin.admin)?;
    client.call(Method::DELETE, &worker_path(name)?, "").await?;
    println!("deleted worker {name}");
    Ok(())
}

/// `isola secret put|delete`.
pub async fn secret(command: SecretCommand) -> anyhow::Result<()> {
    match command {
        SecretCommand::Put { name, key, admin } => {
            let client = AdminClient::new(&admin.admin)?;
            let path = format!("{}/secrets/{}", worker_path(&name)?, segment(&key)?);
            let value = read_secret(&key)?;
            let answer = client.call(Method::PUT, &path, value).await?;
            let verb = if answer.status == http::StatusCode::CREATED {
                "created"
            } else {
                "replaced"
            };
            println!("{verb} secret {key} of worker {name}");
        }
        SecretCommand::Delete { name, key, admin } => {
            let client = AdminClient::new(&admin.admin)?;
            let path = format!("{}/secrets/{}", worker_path(&name)?, segment(&key)?);
            client.call(Method::DELETE, &path, "").await?;
            println!("deleted secret {key} of worker {name}");
        }
    }
    Ok(())
}

/// The secret's value from stdin: all of it from a pipe or file, one line from a terminal
/// (with echo off); one trailing newline dropped.
fn read_secret(key: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let mut value = String::new();
    if stdin.is_terminal() {
        eprint!("value of secret {key}: ");
        let _ = std::io::stderr().flush();
        let echo = crate::terminal::EchoOff::new(&stdin);
        stdin
            .lock()
            .read_line(&mut value)
            .context("cannot read the secret from the terminal")?;
        drop(echo);
        eprintln!();
    } else {
        stdin
            .lock()
            .read_to_string(&mut value)
            .context("cannot read the secret from stdin (expected UTF-8 text)")?;
    }
    if let Some(stripped) = value.strip_suffix('\n') {
        value.truncate(stripped.strip_suffix('\r').unwrap_or(stripped).len());
    }
    if value.is_empty() {
        bail!("the secret's value on stdin is empty");
    }
    Ok(value)
}

/// `/workers/NAME`, refusing names that would change the path.
fn worker_path(name: &str) -> anyhow::Result<String> {
    Ok(format!("/workers/{}", segment(name)?))
}

/// `text` as one path segment; a name with characters the node never accepts is refused
/// here, before it could change the request's path.
fn segment(text: &str) -> anyhow::Result<&str> {
    if text.is_empty()
        || !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '$'))
    {
        bail!("`{text}`: expected letters, digits, '-', '_' or '$'");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_goes_to_the_previous_version() {
        let body = serde_json::json!({ "previous": "b", "versions": [
            { "version": "a", "active": false }, { "version": "b", "active": false },
            { "version": "c", "active": true } ] });
        assert_eq!(previous_version(&body).as_deref(), Some("b"));
        let older = serde_json::json!({ "versions": [
            { "version": "a", "active": false }, { "version": "c", "active": true } ] });
        assert_eq!(previous_version(&older).as_deref(), Some("a"));
        let first = serde_json::json!({ "versions": [{ "version": "a", "active": true }] });
        assert_eq!(previous_version(&first), None);
    }
}
