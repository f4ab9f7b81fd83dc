//! Crash safety: the node is SIGKILLed at random moments of uploads, rollbacks and deletes
//! (50 rounds, bounded in time); after each restart it serves either the state before the
//! change or the state after it, and the admin API's view agrees with what is served.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::support::{ADMIN_TOKEN, Isola, get_host};
use crate::versions::{body, data_dir, node, upload};

/// Sends an admin request that may never be answered (the node is killed meanwhile).
async fn try_admin(authority: String, method: &'static str, path: String, body: String) {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(&authority).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &authority)
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Full::new(Bytes::from(body)))
            .ok()?;
        let response = sender.send_request(request).await.ok()?;
        response.into_body().collect().await.ok()
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), attempt).await;
}

/// What the node serves on `crash.test`: the text, or `None` for 404.
async fn served(isola: &Isola) -> Option<String> {
    let reply = get_host(isola, "crash.test", "/").await;
    match reply.status {
        200 => Some(reply.text()),
        404 => None,
        other => panic!("a torn state answers {other}: {}", reply.text()),
    }
}

/// A small xorshift generator, seeded from the clock (the seed is printed on failure).
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[tokio::test]
async fn sigkill_at_any_moment_leaves_the_old_or_the_new_state() {
    let dir = data_dir("crash");
    let seed = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos(),
    ) | 1;
    let mut random = Random(seed);
    let deadline = Instant::now() + Duration::from_secs(150);
    // What each version serves, as learnt from answers and observations.
    let mut texts: HashMap<String, String> = HashMap::new();
    let mut isola = node(&dir);
    let mut rounds = 0;
    let mut changed = 0;
    for round in 0..50 {
        if Instant::now() > deadline {
            break;
        }
        let before = served(&isola).await;
        let described = isola.admin(ADMIN_TOKEN, "GET", "/workers/crash", "").await;
        let kept: Vec<String> = body(&described)["versions"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|v| v["version"].as_str().map(str::to_owned))
                    .filter(|id| texts.contains_key(id))
                    .collect()
            })
            .unwrap_or_default();
        let (method, path, payload, after) = match random.below(4) {
            0 if before.is_some() => ("DELETE", "/workers/crash".to_owned(), String::new(), None),
            1 if !kept.is_empty() && before.is_some() => {
                let id = &kept[usize::try_from(random.below(kept.len() as u64)).unwrap()];
                (
                    "POST",
                    "/workers/crash/rollback".to_owned(),
                    format!(r#"{{"version":"{id}"}}"#),
                    Some(texts[id].clone()),
                )
            }
            _ => {
                let text = format!("r{round}");
                (
                    "PUT",
                    "/workers/crash".to_owned(),
                    upload(&text, "crash.test"),
                    Some(text),
                )
            }
        };
        let authority = isola
            .printed_url("admin on ")
            .await
            .trim_start_matches("http://")
            .to_owned();
        let call = tokio::spawn(try_admin(authority, method, path.clone(), payload));
        tokio::time::sleep(Duration::from_millis(random.below(40))).await;
        std::process::Command::new("kill")
            .args(["-KILL", &isola.pid().to_string()])
            .status()
            .unwrap();
        drop(isola);
        let _ = call.await;

        isola = node(&dir);
        let now = served(&isola).await;
        assert!(
            now == before || now == after,
            "seed {seed}, round {round}, {method} {path}: served {now:?}, expected {before:?} or {after:?}"
        );
        if now != before {
            changed += 1;
        }
        let described = isola.admin(ADMIN_TOKEN, "GET", "/workers/crash", "").await;
        match &now {
            None => assert_eq!(described.status, 404, "seed {seed}: {}", described.text()),
            Some(text) => {
                assert_eq!(described.status, 200, "seed {seed}: {}", described.text());
                let view = body(&described);
                let active = view["active"].as_str().unwrap().to_owned();
                assert!(
                    view["versions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|v| v["version"] == active.as_str()),
                    "seed {seed}: the active version is kept: {view}"
                );
                let known = texts.entry(active).or_insert_with(|| text.clone());
                assert_eq!(
                    known, text,
                    "seed {seed}: the active version serves its own code"
                );
            }
        }
        rounds += 1;
    }
    eprintln!(
        "seed {seed}: {rounds} rounds, {changed} changes survived the kill, the others were lost whole"
    );
    assert!(rounds >= 10, "only {rounds} rounds in the time allowed");
    assert!(
        changed > 0,
        "seed {seed}: no change ever committed before the kill"
    );
    drop(isola);
    let _ = std::fs::remove_dir_all(&dir);
}
