//! The metrics listener: `GET /metrics` in the Prometheus text format, behind a read-only
//! bearer token when `[node] metrics_token_env` names one (401 without it).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;

use crate::metrics::render;

/// Answers `GET /metrics` on `listener` until the process ends; with `token`, only to
/// requests that carry it (`Authorization: Bearer …`).
pub async fn serve_metrics(
    listener: TcpListener,
    http: &edge_config::HttpLimits,
    token: Option<std::sync::Arc<[u8]>>,
) {
    super::connection::serve_control(
        listener,
        http,
        move |request: http::Request<hyper::body::Incoming>| {
            let token = token.clone();
            async move {
                if let Some(token) = &token
                    && !super::bearer::matches(request.headers(), token)
                {
                    let mut response = Response::new(Full::new(Bytes::from_static(
                        b"a valid bearer token is required\n",
                    )));
                    *response.status_mut() = StatusCode::UNAUTHORIZED;
                    response.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        http::HeaderValue::from_static("Bearer"),
                    );
                    return response;
                }
                let mut response = if request.uri().path() == "/metrics" {
                    Response::new(Full::new(Bytes::from(render())))
                } else {
                    let mut response =
                        Response::new(Full::new(Bytes::from_static(b"metrics are at /metrics\n")));
                    *response.status_mut() = StatusCode::NOT_FOUND;
                    response
                };
                if response.status() == StatusCode::OK {
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                }
                response
            }
        },
    )
    .await;
}
