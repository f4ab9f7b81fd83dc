//! The admin API (`[admin] address`): operators deploy, inspect, roll back and delete
//! workers, set their secrets and purge the response cache over HTTP/1.1. Every request needs
//! `Authorization: Bearer <token>`, the token coming from an environment variable; it is
//! compared in constant time and never logged.
//!
//! - `GET /workers`: `[{"name", "version", "routes": [{"host", "path_prefix"}]}]`
//! - `PUT /workers/NAME` with `{"code", "vars", "limits", "outbound", "routes", …}` (the keys
//!   of a `[workers.NAME]` entry; or `modules` + `main_module` instead of `code`): a new
//!   version, active at once: 201 when the name is new,
//!   else 200, `{"name", "version", "routes", "startup_ms"}`; 400 naming the key, or a syntax error's
//!   `file`, `line`, `column` and `source_line` (the previous version keeps serving); 409 when the
//!   worker is in the config file or a route is another worker's (`"owner"`)
//! - `GET /workers/NAME`: `{"name", "source", "active", "versions": [{"version", "created",
//!   "created_ms", "active", "secrets"}], "split", "routes", "secrets"}` (secret names only)
//! - `POST /workers/NAME/rollback` with `{"version": ID}`: 200 `{"name", "version", "routes"}`
//! - `POST /workers/NAME/split` with `{"split": {ID: percent, …}}`: a gradual rollout, 200
//! - `DELETE /workers/NAME`: 204 (versions, secrets, routes and cached responses go), or 404
//! - `PUT /workers/NAME/secrets/KEY` with the value as the body: 201 or 200; `DELETE`: 204
//! - `GET /workers/NAME/usage?from=&to=` (Unix seconds): invocations, cache hits, CPU ms and
//!   GB-seconds per minute and version (see `usage.rs`); 400 naming a bad parameter, 404
//! - `GET /workers/NAME/tail`: server-sent events, one per finished request and console line
//!   (see `tail.rs`); 404 for an unknown worker, 429 past 10 tails of one worker
//! - `POST /cache/purge` with `{"worker": NAME}` (or `{}` for everything), or with
//!   `{"tags": [TAG, …]}` (the responses' `Cache-Tag`) and/or `{"prefixes": [PREFIX, …]}`
//!   (`host/path` or `https://host/path`), optionally scoped by `"worker"`: 200
//!   `{"purged", "urls"}`; the response cache and the Cache API alike, done when it answers

mod tail;
mod usage;
mod workers;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::body::Body;
use crate::cache::{ResponseCache, Selector};
use crate::deployments::Deployments;
use crate::usage::Ledger;

/// Why the admin API cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The token's environment variable is unset or too short.
    #[error(
        "the admin API needs a bearer token of at least {MIN_TOKEN_CHARS} characters in the environment variable {0} (see [admin] token_env)"
    )]
    Token(String),
}

use crate::server::bearer::MIN_TOKEN_CHARS;

/// The admin API's state.
pub struct Admin {
    token: Vec<u8>,
    deployments: Arc<Deployments>,
    cache: Option<ResponseCache>,
    ledger: Arc<Ledger>,
    max_upload_bytes: usize,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// The admin API over `deployments` and their usage in `ledger`, its token read from the
    /// variable `token_env`.
    pub fn new(
        token_env: &str,
        deployments: Arc<Deployments>,
        cache: Option<ResponseCache>,
        ledger: Arc<Ledger>,
        max_upload_bytes: u64,
    ) -> Result<Self, AdminError> {
        let Some(token) = crate::server::bearer::from_env(token_env) else {
            return Err(AdminError::Token(token_env.to_owned()));
        };
        Ok(Self {
            token,
            deployments,
            cache,
            ledger,
            max_upload_bytes: usize::try_from(max_upload_bytes).unwrap_or(usize::MAX),
        })
    }

    /// Serves the API on `listener` until the process ends.
    pub async fn serve_api(self: Arc<Self>, listener: TcpListener, http: &edge_config::HttpLimits) {
        crate::server::connection::serve_control(listener, http, move |request| {
            let admin = Arc::clone(&self);
            async move { admin.handle(request).await }
        })
        .await;
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        if !self.authorized(&request) {
            let mut response = json(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({ "error": "a valid bearer token is required" }),
            );
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
            return response;
        }
        let path = request.uri().path().to_owned();
        let query = request.uri().query().map(str::to_owned);
        let method = request.method().clone();
        if method == Method::GET && path == "/workers" {
            return self.list().await;
        }
        if method == Method::POST && path == "/cache/purge" {
            return match self.body(request).await {
                Ok(body) => self.purge(&body),
                Err(response) => response,
            };
        }
        let segments: Vec<&str> = match path.strip_prefix("/workers/") {
            Some(rest) => rest.split('/').collect(),
            None => Vec::new(),
        };
        match (method, segments.as_slice()) {
            (Method::GET, [name]) => self.describe(name).await,
            (Method::PUT, [name]) => match self.body(request).await {
                Ok(body) => self.deploy(name, &body).await,
                Err(response) => response,
            },
            (Method::DELETE, [name]) => self.delete(name).await,
            (Method::GET, [name, "usage"]) => self.usage(name, query.as_deref()).await,
            (Method::GET, [name, "tail"]) => self.tail(name).await,
            (Method::POST, [name, "rollback"]) => match self.body(request).await {
                Ok(body) => self.rollback(name, &body).await,
                Err(response) => response,
            },
            (Method::POST, [name, "split"]) => match self.body(request).await {
                Ok(body) => self.split(name, &body).await,
                Err(response) => response,
            },
            (Method::PUT, [name, "secrets", key]) => match self.body(request).await {
                Ok(body) => self.put_secret(name, key, body).await,
                Err(response) => response,
            },
            (Method::DELETE, [name, "secrets", key]) => self.delete_secret(name, key).await,
            _ => error(
                StatusCode::NOT_FOUND,
                "expected GET /workers, GET, PUT or DELETE /workers/NAME, GET /workers/NAME/usage or /tail, POST /workers/NAME/rollback or /split, PUT or DELETE /workers/NAME/secrets/KEY, or POST /cache/purge".into(),
            ),
        }
    }

    /// Constant-time comparison of the bearer token.
    fn authorized(&self, request: &Request<Incoming>) -> bool {
        crate::server::bearer::matches(request.headers(), &self.token)
    }

    async fn body(&self, request: Request<Incoming>) -> Result<Bytes, Response<Body>> {
        match Limited::new(request.into_body(), self.max_upload_bytes)
            .collect()
            .await
        {
            Ok(body) => Ok(body.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request is larger than [admin] max_upload_bytes ({})",
                    self.max_upload_bytes
                ),
            )),
            Err(e) => Err(error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )),
        }
    }

    fn purge(&self, body: &[u8]) -> Response<Body> {
        /// Most tags or prefixes one purge names.
        const MAX_SELECTORS: usize = 1000;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Purge {
            worker: Option<String>,
            tags: Option<Vec<String>>,
            prefixes: Option<Vec<String>>,
        }
        let expected = "expected {\"worker\": NAME}, {} (everything), or {\"tags\": [TAG, …]} and/or {\"prefixes\": [PREFIX, …]} (optionally with \"worker\")";
        let purge: Purge = match serde_json::from_slice(body) {
            Ok(purge) => purge,
            Err(e) => {
                return error(StatusCode::BAD_REQUEST, format!("{expected}: {e}"));
            }
        };
        let lists = [("tags", &purge.tags), ("prefixes", &purge.prefixes)];
        for (key, list) in lists {
            if let Some(list) = list
                && (list.is_empty()
                    || list.len() > MAX_SELECTORS
                    || list.iter().any(|item| item.trim().is_empty()))
            {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("{expected}: `{key}` must list 1 to {MAX_SELECTORS} non-empty strings"),
                );
            }
        }
        let Some(cache) = &self.cache else {
            return error(StatusCode::CONFLICT, "the response cache is off".into());
        };
        let scope = purge.worker.as_deref().unwrap_or("*");
        if purge.tags.is_none() && purge.prefixes.is_none() {
            match &purge.worker {
                Some(worker) => cache.purge_worker(worker),
                None => cache.purge_all(),
            }
            return json(StatusCode::OK, &serde_json::json!({ "purged": scope }));
        }
        let mut urls = 0;
        if let Some(tags) = &purge.tags {
            urls += cache.purge_selected(purge.worker.as_deref(), Selector::Tags(tags));
        }
        if let Some(prefixes) = &purge.prefixes {
            urls += cache.purge_selected(purge.worker.as_deref(), Selector::Prefixes(prefixes));
        }
        json(
            StatusCode::OK,
            &serde_json::json!({
                "purged": scope,
                "tags": purge.tags,
                "prefixes": purge.prefixes,
                "urls": urls,
            }),
        )
    }
}

fn routes_json(routes: &[edge_config::Route]) -> serde_json::Value {
    routes
        .iter()
        .map(|r| serde_json::json!({ "host": r.host, "path_prefix": r.path_prefix }))
        .collect()
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let body = if value.is_null() {
        Body::Empty
    } else {
        Body::text(format!("{value}\n"))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if !value.is_null() {
        response.headers_mut().insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    }
    response
}

fn error(status: StatusCode, message: String) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}
