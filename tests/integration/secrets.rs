//! Secrets over real sockets: they reach the worker's `env`, survive restarts, can be
//! replaced and removed, and their values appear in no answer of the admin API and no log
//! line.

use crate::support::{ADMIN_TOKEN, Isola, Reply, get_host};
use crate::versions::{body, data_dir, node, upload};

const FIRST: &str = "s3cr3t-first-Qx7pZ";
const SECOND: &str = "s3cr3t-second-Mv2kW";

/// Every answer of the admin API in the test, to grep for the values.
struct Answers(Vec<String>);

impl Answers {
    async fn admin(&mut self, isola: &Isola, method: &str, path: &str, body: &str) -> Reply {
        let reply = isola.admin(ADMIN_TOKEN, method, path, body).await;
        self.0.push(format!("{:?} {}", reply.headers, reply.text()));
        reply
    }
}

#[tokio::test]
async fn secrets_reach_env_and_never_leak() {
    let dir = data_dir("secrets");
    let isola = node(&dir);
    let mut answers = Answers(Vec::new());
    let early = answers
        .admin(&isola, "PUT", "/workers/vault/secrets/TOKEN", FIRST)
        .await;
    assert_eq!(
        early.status, 201,
        "a secret may come before the first upload"
    );
    let deployed = answers
        .admin(&isola, "PUT", "/workers/vault", &upload("v:", "vault.test"))
        .await;
    assert_eq!(deployed.status, 201, "{}", deployed.text());
    assert_eq!(
        get_host(&isola, "vault.test", "/").await.text(),
        format!("v:{FIRST}")
    );

    let replaced = answers
        .admin(&isola, "PUT", "/workers/vault/secrets/TOKEN", SECOND)
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.text());
    assert_eq!(
        get_host(&isola, "vault.test", "/").await.text(),
        format!("v:{SECOND}"),
        "a new value reaches the running worker"
    );
    let described = answers.admin(&isola, "GET", "/workers/vault", "").await;
    assert_eq!(body(&described)["secrets"], serde_json::json!(["TOKEN"]));
    assert_eq!(
        body(&described)["versions"][0]["secrets"],
        serde_json::json!(["TOKEN"])
    );
    answers.admin(&isola, "GET", "/workers", "").await;

    for (path, value, status) in [
        ("/workers/site/secrets/TOKEN", FIRST, 409),
        ("/workers/vault/secrets/not-an-identifier", FIRST, 400),
        ("/workers/bad.name/secrets/TOKEN", SECOND, 400),
    ] {
        let refused = answers.admin(&isola, "PUT", path, value).await;
        assert_eq!(refused.status, status, "{path}: {}", refused.text());
    }
    let broken = serde_json::json!({ "code": "export default {\n  fetch( {\n}" });
    let refused = answers
        .admin(&isola, "PUT", "/workers/vault", &broken.to_string())
        .await;
    assert_eq!(refused.status, 400);

    let mut logs = isola.logs();
    drop(isola);
    let isola = node(&dir);
    assert_eq!(
        get_host(&isola, "vault.test", "/").await.text(),
        format!("v:{SECOND}"),
        "secrets survive a restart"
    );
    let removed = answers
        .admin(&isola, "DELETE", "/workers/vault/secrets/TOKEN", "")
        .await;
    assert_eq!(removed.status, 204);
    assert_eq!(get_host(&isola, "vault.test", "/").await.text(), "v:");
    let again = answers
        .admin(&isola, "DELETE", "/workers/vault/secrets/TOKEN", "")
        .await;
    assert_eq!(again.status, 404);

    for answer in &answers.0 {
        assert!(
            !answer.contains(FIRST) && !answer.contains(SECOND),
            "an answer carries a secret: {answer}"
        );
    }
    // The log line can reach the reader after the answer: wait for it (bounded).
    logs.push_str(&isola.wait_for_log("secret deleted"));
    assert!(
        logs.contains("secret set") && logs.contains("secret deleted"),
        "{logs}"
    );
    assert!(!logs.contains(FIRST) && !logs.contains(SECOND), "{logs}");
    drop(isola);
    let _ = std::fs::remove_dir_all(&dir);
}
