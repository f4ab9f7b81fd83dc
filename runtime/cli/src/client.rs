//! A small HTTP/1.1 client (hyper) for a node's admin API: one request per connection, the
//! bearer token from `ISOLA_ADMIN_TOKEN`, and failures turned into messages a user can act on
//! (the URL that could not be reached, the variable to set, the owner of a taken route, the
//! source line with a caret under the column).

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;

/// The environment variable holding the admin token.
pub const TOKEN_ENV: &str = "ISOLA_ADMIN_TOKEN";

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one request may take (a deploy starts the new version before it answers).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A node's admin API at `base` (`http://host:port`).
#[derive(Debug)]
pub struct AdminClient {
    base: String,
    authority: String,
    token: String,
}

/// A successful answer: its status and JSON body (`null` when empty).
#[derive(Debug)]
pub struct Answer {
    /// The status (2xx).
    pub status: StatusCode,
    /// The body as JSON.
    pub body: serde_json::Value,
}

impl AdminClient {
    /// A client for the admin API at `url`, the token read from [`TOKEN_ENV`].
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().with_context(|| {
            format!("--admin `{url}`: expected a URL such as http://127.0.0.1:9000")
        })?;
        if uri.scheme_str() != Some("http") {
            bail!(
                "--admin `{url}`: expected an http:// URL (the admin API speaks plain HTTP on a private address)"
            );
        }
        let Some(authority) = uri.authority() else {
            bail!("--admin `{url}`: expected a host and port, e.g. http://127.0.0.1:9000");
        };
        let authority = match authority.port_u16() {
            Some(_) => authority.to_string(),
            None => format!("{}:80", authority.host()),
        };
        let token = std::env::var(TOKEN_ENV).unwrap_or_default();
        if token.trim().is_empty() {
            bail!(
                "set {TOKEN_ENV} to the node's admin token (the value of the variable its [admin] token_env names)"
            );
        }
        Ok(Self {
            base: format!("http://{authority}"),
            authority,
            token: token.trim().to_owned(),
        })
    }

    /// `method path` with `body`; a non-2xx answer becomes an error saying what to do.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Answer> {
        let (status, bytes) =
            tokio::time::timeout(REQUEST_TIMEOUT, self.send(method, path, body.into()))
                .await
                .map_err(|_| {
                    anyhow!(
                        "the admin API at {} did not answer within {} s",
                        self.base,
                        REQUEST_TIMEOUT.as_secs()
                    )
                })??;
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(
                |_| serde_json::json!({ "error": String::from_utf8_lossy(&bytes).trim() }),
            )
        };
        if status.is_success() {
            return Ok(Answer { status, body });
        }
        Err(anyhow!(refusal(&self.base, status, &body)))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let unreachable = |why: String| {
            anyhow!(
                "cannot reach the admin API at {} ({why}): is `isola serve` running with an [admin] address? Pass the right one with --admin URL or ISOLA_ADMIN_URL",
                self.base
            )
        };
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(&self.authority),
        )
        .await
        .map_err(|_| {
            unreachable(format!(
                "no connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.authority)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .context("cannot build the request")?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        Ok((status, bytes))
    }
}

/// What a refused request means to the user, from the answer's status and JSON.
fn refusal(base: &str, status: StatusCode, body: &serde_json::Value) -> String {
    let message = body["error"].as_str().unwrap_or("").trim();
    match status {
        StatusCode::UNAUTHORIZED => format!(
            "the node at {base} refused the admin token (401): set {TOKEN_ENV} to the token the node was started with"
        ),
        StatusCode::CONFLICT => match body["owner"].as_str() {
            Some(owner) => format!("{message} (409; owner: `{owner}`)"),
            None => format!("{message} (409)"),
        },
        StatusCode::BAD_REQUEST => match source_place(body) {
            Some(place) => format!("refused (400): {place}"),
            None => format!("refused (400): {message}"),
        },
        _ if message.is_empty() => format!("the node answered {status}"),
        _ => format!("{message} ({})", status.as_u16()),
    }
}

/// `file:line:column: message`, then the source line and a caret under the column, when the
/// answer names a place in the source.
fn source_place(body: &serde_json::Value) -> Option<String> {
    let file = body["file"].as_str()?;
    let line = body["line"].as_u64()?;
    let column = body["column"].as_u64()?;
    let message = body["error"].as_str().unwrap_or("");
    // The node's message may already carry the place and its own excerpt: keep its first
    // line, without the place.
    let first = message.lines().next().unwrap_or("");
    let prefix = format!("{file}:{line}:{column}: ");
    let what = first.strip_prefix(&prefix).unwrap_or(first);
    let mut text = format!("{file}:{line}:{column}: {what}");
    if let Some(source) = body["source_line"]
        .as_str()
        .filter(|l| !l.trim().is_empty())
    {
        let chars: Vec<char> = source
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let at = usize::try_from(column)
            .unwrap_or(usize::MAX)
            .saturating_sub(1)
            .min(chars.len());
        // Long (minified) lines are cut around the column.
        let start = at.saturating_sub(60);
        let end = (at + 60).min(chars.len());
        let shown: String = chars[start..end].iter().collect();
        text.push_str(&format!("\n  {shown}\n  {}^", " ".repeat(at - start)));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_shows_the_line_and_a_caret() {
        let body = serde_json::json!({
            "error": "src/a.js:2:9: SyntaxError: Unexpected token ')'\n  let x = );\n          ^",
            "file": "src/a.js", "line": 2, "column": 9, "source_line": "let x = );"
        });
        assert_eq!(
            refusal("http://n", StatusCode::BAD_REQUEST, &body),
            "refused (400): src/a.js:2:9: SyntaxError: Unexpected token ')'\n  let x = );\n          ^"
        );
    }

    #[test]
    fn a_conflict_names_the_owner() {
        let body =
            serde_json::json!({ "error": "route a.test/ is owned by worker `b`", "owner": "b" });
        assert!(refusal("http://n", StatusCode::CONFLICT, &body).contains("owner: `b`"));
        let unauthorized = refusal("http://n", StatusCode::UNAUTHORIZED, &body);
        assert!(unauthorized.contains(TOKEN_ENV), "{unauthorized}");
    }
}
