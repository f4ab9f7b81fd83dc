//! The metrics listener: `GET /metrics` in the Prometheus text format.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;

use crate::metrics::render;

/// Answers `GET /metrics` on `listener` until the process ends.
pub async fn serve_metrics(listener: TcpListener, http: &edge_config::HttpLimits) {
    super::connection::serve_control(
        listener,
        http,
        |request: http::Request<hyper::body::Incoming>| async move {
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
        },
    )
    .await;
}
