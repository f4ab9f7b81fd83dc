//! `[node] metrics_token_env`: `/metrics` answers 401 without its bearer token (and with the
//! admin token), the metrics with it; a node whose variable is unset does not start.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::support::{ADMIN_TOKEN, Isola, Proto, run_to_exit, send};

const METRICS_TOKEN: &str = "metrics-read-only-token-42";

fn config(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("isola-{name}-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        r#"
[node]
metrics_address = "127.0.0.1:0"
metrics_token_env = "ISOLA_TEST_METRICS_TOKEN"

[[listeners]]
address = "127.0.0.1:0"
"#,
    )
    .expect("config");
    path
}

async fn scrape(authority: &str, token: Option<&str>) -> crate::support::Reply {
    let mut request = Request::get("/metrics").header("host", authority);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    send(
        Proto::H1,
        authority,
        request.body(Full::new(Bytes::new())).expect("request"),
    )
    .await
}

#[tokio::test]
async fn metrics_need_their_own_token_when_one_is_set() {
    let path = config("metrics-token");
    let isola = Isola::start_with_prefix(
        &["env", &format!("ISOLA_TEST_METRICS_TOKEN={METRICS_TOKEN}")],
        &[
            "serve".into(),
            "--config".into(),
            path.display().to_string(),
        ],
    );
    let url = isola.printed_url("metrics on ").await;
    let authority = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let open = scrape(&authority, None).await;
    assert_eq!(open.status, 401);
    assert_eq!(open.headers["www-authenticate"], "Bearer");
    assert!(!open.text().contains("isola_"), "{}", open.text());
    assert_eq!(scrape(&authority, Some(ADMIN_TOKEN)).await.status, 401);
    let allowed = scrape(&authority, Some(METRICS_TOKEN)).await;
    assert_eq!(allowed.status, 200);
    assert!(
        allowed.text().contains("process_cpu_seconds_total"),
        "{}",
        allowed.text()
    );
    assert!(!isola.logs().contains(METRICS_TOKEN));
    drop(isola);

    // Unset: the node refuses to start rather than serve metrics openly.
    let (status, stderr) = run_to_exit(&["serve", "--config", &path.display().to_string()]);
    assert!(!status.success());
    assert!(stderr.contains("ISOLA_TEST_METRICS_TOKEN"), "{stderr}");
    let _ = std::fs::remove_file(&path);
}
