//! Workers as module graphs and TypeScript, over real sockets: an upload with relative imports
//! between JavaScript, TypeScript, JSON, text and WebAssembly modules; the same graph served
//! and reloaded by `isola dev`; stack traces that name the TypeScript line; uploads refused
//! with the file, line, column and source line (or the rule they break) while the previous
//! version keeps serving.

use std::time::{Duration, Instant};

use crate::support::{ADMIN_TOKEN, Isola, Proto, fixture, get, get_host};

fn node() -> Isola {
    Isola::serve("[admin]\naddress = \"127.0.0.1:0\"\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\n")
}

/// `add(a, b)` in WebAssembly.
const ADD_WASM_BASE64: &str = "AGFzbQEAAAABBwFgAn9/AX8DAgEABwcBA2FkZAAACgkBBwAgACABags=";

fn graph_upload(main_code: &str) -> serde_json::Value {
    serde_json::json!({
        "main_module": "src/index.ts",
        "modules": [
            { "name": "src/index.ts", "content": main_code },
            { "name": "src/lib/math.js", "content": "import add from '../../add.wasm';\nconst instance = new WebAssembly.Instance(add);\nexport const sum = (a, b) => instance.exports.add(a, b);\n" },
            { "name": "data/config.json", "content": "{ \"name\": \"graph\" }" },
            { "name": "data/banner.txt", "content": "from a text module\n" },
            { "name": "add.wasm", "content_base64": ADD_WASM_BASE64 },
        ],
        "routes": [{ "host": "graph.test" }],
    })
}

const MAIN_TS: &str = r#"import { sum } from "./lib/math.js";
import config from "../data/config.json";
import banner from "../data/banner.txt";

const answer: number = sum(40, 2);

export default {
  fetch(): Response {
    return new Response(`${config.name} ${banner.trim()} ${answer}`);
  },
};
"#;

async fn put(isola: &Isola, name: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let reply = isola
        .admin(
            ADMIN_TOKEN,
            "PUT",
            &format!("/workers/{name}"),
            &body.to_string(),
        )
        .await;
    let json = serde_json::from_slice(&reply.body).unwrap_or(serde_json::Value::Null);
    (reply.status, json)
}

#[tokio::test]
async fn a_module_graph_is_deployed_and_refused_uploads_keep_it_serving() {
    let isola = node();
    let (status, answer) = put(&isola, "graph", &graph_upload(MAIN_TS)).await;
    assert_eq!(status, 201, "{answer}");
    let served = get_host(&isola, "graph.test", "/").await;
    assert_eq!(served.text(), "graph from a text module 42");

    // A syntax error in an imported TypeScript module: file, line, column and source line.
    let mut broken = graph_upload(MAIN_TS);
    broken["modules"][0]["content"] =
        serde_json::json!("import { sum } from './lib/math.js';\nconst x: number = sum(1,;\n");
    let (status, answer) = put(&isola, "graph", &broken).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["file"], "src/index.ts", "{answer}");
    assert_eq!(answer["line"], 2, "{answer}");
    assert!(answer["column"].as_u64().is_some(), "{answer}");
    assert_eq!(
        answer["source_line"], "const x: number = sum(1,;",
        "{answer}"
    );
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("src/index.ts:2:"),
        "{answer}"
    );

    // A syntax error V8 finds in an imported JavaScript module.
    let mut broken = graph_upload(MAIN_TS);
    broken["modules"][1]["content"] =
        serde_json::json!("export const sum = (a, b) => {\n  return a +;\n};\n");
    let (status, answer) = put(&isola, "graph", &broken).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["file"], "src/lib/math.js", "{answer}");
    assert_eq!(answer["line"], 2, "{answer}");
    assert!(
        answer["source_line"]
            .as_str()
            .unwrap()
            .contains("return a +;"),
        "{answer}"
    );
    assert!(
        !answer.to_string().contains("/tmp"),
        "no server path: {answer}"
    );

    // An import of a module that was not uploaded, and a bare (npm) import.
    for (import, expected) in [("./missing.js", "no such module"), ("hono", "esbuild")] {
        let mut broken = graph_upload(MAIN_TS);
        broken["modules"][0]["content"] =
            serde_json::json!(format!("import '{import}';\n{MAIN_TS}"));
        let (status, answer) = put(&isola, "graph", &broken).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["line"], 1, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(expected),
            "{answer}"
        );
    }

    // No fetch handler, a top-level throw, a top-level infinite loop.
    for (code, expected) in [
        ("export default { notFetch() {} };", "fetch"),
        (
            "throw new Error('top-level failure');\nexport default { fetch() {} };",
            "top-level failure",
        ),
        (
            "while (true) {}\nexport default { fetch() {} };",
            "startup_cpu_ms",
        ),
    ] {
        let body = serde_json::json!({ "code": code, "limits": { "startup_cpu_ms": 200 } });
        let (status, answer) = put(&isola, "graph", &body).await;
        assert_eq!(status, 400, "{code}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(expected), "{code}: {error}");
    }
    let (_, answer) = put(
        &isola,
        "graph",
        &serde_json::json!({ "code": "while (true) {}\nexport default {};", "limits": { "startup_cpu_ms": 200 } }),
    )
    .await;
    assert!(
        answer["error"].as_str().unwrap().contains("infinite loop"),
        "{answer}"
    );

    // Module-count and path limits.
    let mut many = graph_upload(MAIN_TS);
    let modules = many["modules"].as_array_mut().unwrap();
    for i in 0..100 {
        modules.push(serde_json::json!({ "name": format!("extra/m{i}.js"), "content": "" }));
    }
    let (status, answer) = put(&isola, "graph", &many).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("at most 100"),
        "{answer}"
    );
    for name in ["../escape.js", "/etc/passwd", "src/../../x.js"] {
        let mut bad = graph_upload(MAIN_TS);
        bad["modules"][1]["name"] = serde_json::json!(name);
        let (status, answer) = put(&isola, "graph", &bad).await;
        assert_eq!(status, 400, "{name}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("modules[1].name"),
            "{answer}"
        );
    }

    assert_eq!(
        get_host(&isola, "graph.test", "/").await.text(),
        "graph from a text module 42",
        "the first version served throughout"
    );
}

#[tokio::test]
async fn a_typescript_worker_s_stack_names_the_ts_line() {
    let isola = Isola::dev(&fixture("graph/main.ts"), &[]);
    let ok = get(Proto::H1, &isola, "/").await;
    assert_eq!(ok.text(), "hello graph from a text module");
    let failed = get(Proto::H1, &isola, "/throw").await;
    assert_eq!(failed.status, 500);
    let body = failed.text();
    let id = body
        .split("request id ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_hexdigit()).next())
        .expect("a request id")
        .to_owned();
    // The stack's lines follow the message's on stderr: wait for the one the test looks for.
    let logs = isola.wait_for_log("main.ts:15:");
    let logged = logs
        .split_once("thrown from TypeScript")
        .map(|(before, after)| {
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            format!("{}{after}", &before[start..])
        })
        .expect("the error is logged");
    let first_line = logged.lines().next().unwrap_or_default();
    assert!(
        first_line.contains(&id),
        "the line names the request: {logged}"
    );
    assert!(
        logged.lines().take(3).any(|l| l.contains("main.ts:15:")),
        "the stack names the TypeScript line: {logged}"
    );
}

#[tokio::test]
async fn isola_dev_serves_a_module_graph_and_reloads_when_an_import_changes() {
    let dir = std::env::temp_dir().join(format!("isola-graph-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::write(
        dir.join("worker.js"),
        "import { word } from './lib/word.js';\nimport data from './data.json';\nimport note from './note.txt';\nexport default { fetch() { return new Response(`${word} ${data.n} ${note}`); } };\n",
    )
    .unwrap();
    std::fs::write(dir.join("lib/word.js"), "export const word = 'one';\n").unwrap();
    std::fs::write(dir.join("data.json"), "{\"n\": 1}").unwrap();
    std::fs::write(dir.join("note.txt"), "text").unwrap();
    let isola = Isola::dev(&dir.join("worker.js"), &[]);
    assert_eq!(get(Proto::H1, &isola, "/").await.text(), "one 1 text");

    std::fs::write(dir.join("lib/word.js"), "export const word = 'two';\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = get(Proto::H1, &isola, "/").await.text();
        if text == "two 1 text" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        text, "two 1 text",
        "an imported module's change reloads the worker"
    );

    std::fs::write(dir.join("data.json"), "{\"n\": ").unwrap();
    let logs = isola.wait_for_log("data.json:1:");
    assert!(logs.contains("invalid JSON"), "{logs}");
    assert_eq!(get(Proto::H1, &isola, "/").await.text(), "two 1 text");
    drop(isola);
    let _ = std::fs::remove_dir_all(&dir);
}
