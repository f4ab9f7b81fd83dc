//! V8's code cache over real sockets: a version's first isolate compiles its modules and
//! leaves the compiled code; the next isolate of that version starts from it (counted in
//! `isola_module_loads_total`), and still serves correctly.

use std::time::Duration;

use crate::support::{Isola, get_host};

/// The value of the `isola_module_loads_total` series of `worker` with `outcome`.
fn module_loads(metrics: &str, worker: &str, outcome: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("isola_module_loads_total{"))
        .filter(|l| l.contains(&format!("worker=\"{worker}\"")))
        .filter(|l| l.contains(&format!("code_cache=\"{outcome}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_second_isolate_starts_from_the_code_cache_of_the_first() {
    let isola = Isola::serve(
        r#"
[node]
metrics_address = "127.0.0.1:0"

[[listeners]]
address = "127.0.0.1:0"

[[routes]]
host = "a.test"
worker = "a"

[workers.a]
file = "{fixtures}/pool.js"
[workers.a.limits]
max_isolates = 2
"#,
    );
    // The warm isolate made at start compiled the module; a request that arrives while it is
    // busy gets a second isolate.
    let (slow, other) = tokio::join!(get_host(&isola, "a.test", "/slow?ms=1500"), async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        get_host(&isola, "a.test", "/count").await
    });
    assert_eq!(slow.status, 200, "{}", slow.text());
    assert_eq!(other.status, 200, "{}", other.text());
    let metrics = isola.metrics().await;
    assert_eq!(module_loads(&metrics, "a", "compiled"), 1, "{metrics}");
    assert!(module_loads(&metrics, "a", "offered") >= 1, "{metrics}");
    assert_eq!(module_loads(&metrics, "a", "rejected"), 0, "{metrics}");
}

#[tokio::test]
async fn a_new_version_whose_module_did_not_change_starts_from_its_code_cache() {
    let isola = Isola::serve(
        r#"
[node]
metrics_address = "127.0.0.1:0"

[admin]
address = "127.0.0.1:0"

[[listeners]]
address = "127.0.0.1:0"
"#,
    );
    let code = "export default { fetch(request, env) { return new Response(`v:${env.V}`); } };";
    for (value, host) in [("1", "one.test"), ("2", "one.test")] {
        let upload = serde_json::json!({
            "code": code,
            "vars": { "V": value },
            "routes": [{ "host": host }],
        })
        .to_string();
        let reply = isola
            .admin(crate::support::ADMIN_TOKEN, "PUT", "/workers/one", &upload)
            .await;
        assert!(
            reply.status == 200 || reply.status == 201,
            "{}",
            reply.text()
        );
        let served = get_host(&isola, host, "/").await;
        assert_eq!(served.text(), format!("v:{value}"));
    }
    let metrics = isola.metrics().await;
    assert_eq!(
        module_loads(&metrics, "one", "compiled"),
        1,
        "only the first version compiled the module: {metrics}"
    );
    assert!(module_loads(&metrics, "one", "offered") >= 1, "{metrics}");
}
