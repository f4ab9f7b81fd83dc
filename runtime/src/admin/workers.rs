//! The admin API's worker endpoints: deploy, list, describe, roll back, delete, secrets.
//! Secret values travel only from the request body into the store: no answer or log line
//! carries them.

use crate::body::Body;
use bytes::Bytes;
use http::{Response, StatusCode};
use serde::Deserialize;

use super::{Admin, error, json, routes_json};
use crate::deployments::{DeployError, Deployed, error_chain};

impl Admin {
    pub(super) async fn list(&self) -> Response<Body> {
        let workers: Vec<_> = self
            .deployments
            .list()
            .await
            .into_iter()
            .map(|w| {
                serde_json::json!({
                    "name": w.name,
                    "version": w.version,
                    "routes": routes_json(&w.routes),
                })
            })
            .collect();
        json(StatusCode::OK, &serde_json::Value::Array(workers))
    }

    pub(super) async fn deploy(&self, name: &str, body: &[u8]) -> Response<Body> {
        let started = std::time::Instant::now();
        match self.deployments.deploy(name, body).await {
            Ok(deployed) => {
                let status = if deployed.created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                let mut answer = deployed_json(name, &deployed);
                answer["startup_ms"] = (started.elapsed().as_secs_f64() * 1000.0).into();
                json(status, &answer)
            }
            Err(e) => refused(name, "deploy", &e),
        }
    }

    pub(super) async fn describe(&self, name: &str) -> Response<Body> {
        let described = match self.deployments.describe(name).await {
            Ok(described) => described,
            Err(e) => return refused(name, "describe", &e),
        };
        let active = described.active.as_deref();
        let versions: Vec<_> = described
            .versions
            .iter()
            .map(|v| {
                let created =
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(v.created_ms);
                serde_json::json!({
                    "version": v.id,
                    "created": httpdate::fmt_http_date(created),
                    "created_ms": v.created_ms,
                    "active": Some(v.id.as_str()) == active,
                    "secrets": v.secrets,
                })
            })
            .collect();
        json(
            StatusCode::OK,
            &serde_json::json!({
                "name": name,
                "source": if described.configured { "config" } else { "upload" },
                "active": active,
                "previous": described.previous,
                "versions": versions,
                "split": described.split,
                "routes": routes_json(&described.routes),
                "secrets": described.secrets,
            }),
        )
    }

    pub(super) async fn rollback(&self, name: &str, body: &[u8]) -> Response<Body> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Rollback {
            version: String,
        }
        let rollback: Rollback = match serde_json::from_slice(body) {
            Ok(rollback) => rollback,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("expected {{\"version\": ID}}: {e}"),
                );
            }
        };
        match self.deployments.rollback(name, &rollback.version).await {
            Ok(deployed) => json(StatusCode::OK, &deployed_json(name, &deployed)),
            Err(e) => refused(name, "rollback", &e),
        }
    }

    pub(super) async fn split(&self, name: &str, body: &[u8]) -> Response<Body> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Split {
            split: std::collections::BTreeMap<String, u32>,
        }
        let split: Split = match serde_json::from_slice(body) {
            Ok(split) => split,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("expected {{\"split\": {{ID: percent, ...}}}}: {e}"),
                );
            }
        };
        match self.deployments.split(name, split.split).await {
            Ok(deployed) => json(StatusCode::OK, &deployed_json(name, &deployed)),
            Err(e) => refused(name, "split", &e),
        }
    }

    pub(super) async fn delete(&self, name: &str) -> Response<Body> {
        match self.deployments.delete(name).await {
            Ok(()) => {
                let ledger = std::sync::Arc::clone(&self.ledger);
                let worker = name.to_owned();
                match tokio::task::spawn_blocking(move || ledger.forget(&worker)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(worker = name, "cannot remove its usage: {e}"),
                    Err(e) => tracing::error!(worker = name, "cannot remove its usage: {e}"),
                }
                json(StatusCode::NO_CONTENT, &serde_json::Value::Null)
            }
            Err(e) => refused(name, "delete", &e),
        }
    }

    pub(super) async fn put_secret(&self, name: &str, key: &str, body: Bytes) -> Response<Body> {
        let Ok(value) = String::from_utf8(body.to_vec()) else {
            return error(
                StatusCode::BAD_REQUEST,
                "a secret's value must be UTF-8 text".into(),
            );
        };
        match self.deployments.put_secret(name, key, value).await {
            Ok(created) => json(
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                &serde_json::json!({ "name": name, "secret": key }),
            ),
            Err(e) => refused(name, "secret", &e),
        }
    }

    pub(super) async fn delete_secret(&self, name: &str, key: &str) -> Response<Body> {
        match self.deployments.delete_secret(name, key).await {
            Ok(()) => json(StatusCode::NO_CONTENT, &serde_json::Value::Null),
            Err(e) => refused(name, "secret", &e),
        }
    }
}

fn deployed_json(name: &str, deployed: &Deployed) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "version": deployed.version,
        "routes": routes_json(&deployed.routes),
    })
}

/// The answer to a failed change: 400 for bad input, 404, 409 (naming the owner of a taken
/// route), or 500 for the node's own failures, which are logged with their causes.
fn refused(name: &str, action: &str, e: &DeployError) -> Response<Body> {
    let status = match e {
        DeployError::Invalid(_) | DeployError::BadRequest(_) | DeployError::Start(_) => {
            StatusCode::BAD_REQUEST
        }
        DeployError::NotFound(_) => StatusCode::NOT_FOUND,
        DeployError::Configured(_) | DeployError::RouteTaken { .. } => StatusCode::CONFLICT,
        DeployError::Code(_) | DeployError::Write { .. } | DeployError::Record(_) => {
            let chain = error_chain(e);
            tracing::error!(worker = name, "{action} failed: {chain}");
            return error(StatusCode::INTERNAL_SERVER_ERROR, chain);
        }
    };
    tracing::info!(worker = name, "{action} refused: {e}");
    let at = match e {
        DeployError::Start(start) => start.source_error(),
        _ => None,
    };
    let mut answer = crate::code::refusal(&e.to_string(), at);
    if let DeployError::RouteTaken { owner, .. } = e {
        answer["owner"] = owner.as_str().into();
    }
    json(status, &answer)
}
