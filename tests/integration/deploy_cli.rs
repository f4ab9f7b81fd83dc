//! The deploy CLI over real sockets: a node (`isola serve` with an admin API) and the real
//! `isola` binary as its client, driven by a project file (`isola.toml`): deploy, serve,
//! deploy again, versions, rollback, secrets (the value never printed), delete; and the errors
//! a user can act on (unreachable node, 401, 409 naming the owner, 400 with a caret); `isola
//! dev` with no argument serving the project.

use std::path::{Path, PathBuf};

use crate::support::{ADMIN_TOKEN, Isola, Proto, Ran, get, get_host, run_cli};
use crate::versions::{data_dir, node};

const SECRET: &str = "cli-s3cr3t-Zr8uQ";

/// A project directory: `isola.toml` and a worker of three modules (`src/index.js` importing
/// `./lib/greet.js` and `../data/names.json`).
fn project(test: &str, greeting: &str, routes: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("isola-project-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src/lib")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("isola.toml"),
        format!(
            "name = \"hello\"\nmain = \"src/index.js\"\nroutes = [{routes}]\nvars = {{ PUNCT = \"!\" }}\n[limits]\ncpu_ms = 200\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("src/index.js"),
        "import { greet } from './lib/greet.js';\nimport names from '../data/names.json';\nexport default {\n  fetch(request, env) {\n    return new Response(greet(names.first) + env.PUNCT + (env.EXTRA ?? '') + (env.TOKEN ?? ''));\n  },\n};\n",
    )
    .unwrap();
    write_greeting(&dir, greeting);
    std::fs::write(dir.join("data/names.json"), "{\"first\": \"world\"}").unwrap();
    dir
}

fn write_greeting(dir: &Path, greeting: &str) {
    std::fs::write(
        dir.join("src/lib/greet.js"),
        format!("export const greet = (name) => `{greeting} ${{name}}`;\n"),
    )
    .unwrap();
}

/// `isola <args…> --admin URL` with the node's token.
fn cli(admin: &str, args: &[&str], stdin: &str) -> Ran {
    cli_with_token(admin, ADMIN_TOKEN, args, stdin)
}

fn cli_with_token(admin: &str, token: &str, args: &[&str], stdin: &str) -> Ran {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--admin", admin]);
    run_cli(&all, &[("ISOLA_ADMIN_TOKEN", token)], stdin)
}

fn config_arg(dir: &Path) -> String {
    dir.join("isola.toml").display().to_string()
}

#[tokio::test]
async fn deploy_versions_rollback_secret_delete() {
    let isola = node(&data_dir("deploy-cli"));
    let admin = isola.printed_url("admin on ").await;
    let dir = project("cycle", "hello", "\"hello.test/*\"");
    let config = config_arg(&dir);

    let first = cli(
        &admin,
        &[
            "deploy",
            "--config",
            &config,
            "--var",
            "EXTRA=?",
            "--route",
            "alias.test/*",
        ],
        "",
    );
    assert!(first.success, "{}", first.stderr);
    assert!(
        first.stdout.contains("created worker hello: version"),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("route hello.test/"),
        "{}",
        first.stdout
    );
    assert_eq!(
        get_host(&isola, "hello.test", "/").await.text(),
        "hello world!?"
    );
    assert_eq!(
        get_host(&isola, "alias.test", "/").await.text(),
        "hello world!?",
        "--route adds to the project's routes"
    );

    write_greeting(&dir, "bonjour");
    let second = cli(&admin, &["deploy", "--config", &config], "");
    assert!(second.success, "{}", second.stderr);
    assert!(
        second.stdout.contains("updated worker hello"),
        "{}",
        second.stdout
    );
    assert_eq!(
        get_host(&isola, "hello.test", "/").await.text(),
        "bonjour world!"
    );

    let versions = cli(&admin, &["versions", "hello"], "");
    assert!(versions.success, "{}", versions.stderr);
    let rows: Vec<&str> = versions
        .stdout
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(rows.len(), 2, "{}", versions.stdout);
    assert!(
        rows[1].starts_with('*'),
        "the newest is active: {}",
        versions.stdout
    );

    let rollback = cli(&admin, &["rollback", "hello"], "");
    assert!(rollback.success, "{}", rollback.stderr);
    assert_eq!(
        get_host(&isola, "hello.test", "/").await.text(),
        "hello world!?",
        "rollback without an id serves the version active before"
    );
    let again = cli(&admin, &["rollback", "hello"], "");
    assert!(again.success, "{}", again.stderr);
    assert_eq!(
        get_host(&isola, "hello.test", "/").await.text(),
        "bonjour world!",
        "and back: the previous one is the version replaced last"
    );

    let put = cli(
        &admin,
        &["secret", "put", "hello", "TOKEN"],
        &format!("{SECRET}\n"),
    );
    assert!(put.success, "{}", put.stderr);
    assert!(put.stdout.contains("secret TOKEN"), "{}", put.stdout);
    assert_eq!(
        get_host(&isola, "hello.test", "/").await.text(),
        format!("bonjour world!{SECRET}"),
        "the secret reaches env without its trailing newline"
    );
    let listed = cli(&admin, &["versions", "hello"], "");
    let deleted_secret = cli(&admin, &["secret", "delete", "hello", "TOKEN"], "");
    assert!(deleted_secret.success, "{}", deleted_secret.stderr);
    assert_eq!(
        get_host(&isola, "hello.test", "/").await.text(),
        "bonjour world!"
    );
    for ran in [
        &first,
        &second,
        &versions,
        &rollback,
        &put,
        &listed,
        &deleted_secret,
    ] {
        assert!(
            !ran.stdout.contains(SECRET) && !ran.stderr.contains(SECRET),
            "the secret is never printed"
        );
    }
    assert!(!isola.logs().contains(SECRET), "the secret is never logged");

    let deleted = cli(&admin, &["delete", "hello"], "");
    assert!(deleted.success, "{}", deleted.stderr);
    assert_eq!(get_host(&isola, "hello.test", "/").await.status, 404);
    let gone = cli(&admin, &["versions", "hello"], "");
    assert!(!gone.success);
    assert!(gone.stderr.contains("no worker `hello`"), "{}", gone.stderr);
}

#[tokio::test]
async fn errors_say_what_to_do() {
    let isola = node(&data_dir("deploy-cli-errors"));
    let admin = isola.printed_url("admin on ").await;
    let dir = project("errors", "hello", "\"site.test/*\"");
    let config = config_arg(&dir);

    // Nothing listens on a port just released.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let unreachable = cli(&nowhere, &["deploy", "--config", &config], "");
    assert!(!unreachable.success);
    assert!(
        unreachable
            .stderr
            .contains(&format!("cannot reach the admin API at {nowhere}")),
        "{}",
        unreachable.stderr
    );

    let unauthorized = cli_with_token(
        &admin,
        "not-the-token-0123456789",
        &["deploy", "--config", &config],
        "",
    );
    assert!(!unauthorized.success);
    assert!(
        unauthorized.stderr.contains("401") && unauthorized.stderr.contains("ISOLA_ADMIN_TOKEN"),
        "{}",
        unauthorized.stderr
    );
    let no_token = run_cli(&["versions", "hello", "--admin", &admin], &[], "");
    assert!(
        no_token.stderr.contains("set ISOLA_ADMIN_TOKEN"),
        "{}",
        no_token.stderr
    );

    let taken = cli(&admin, &["deploy", "--config", &config], "");
    assert!(!taken.success);
    assert!(
        taken.stderr.contains("409") && taken.stderr.contains("owner: `site`"),
        "{}",
        taken.stderr
    );

    std::fs::write(
        dir.join("isola.toml"),
        "name = \"hello\"\nmain = \"src/index.js\"\nroutes = [\"other.test/\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("src/lib/greet.js"),
        "export const greet = (name) => {\n  return 'hi ' + (name +);\n};\n",
    )
    .unwrap();
    let refused = cli(
        &admin,
        &["deploy", "--config", &config, "--name", "other"],
        "",
    );
    assert!(!refused.success);
    let lines: Vec<&str> = refused.stderr.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("src/lib/greet.js:2:"))
        .unwrap_or_else(|| panic!("names file:line:column: {}", refused.stderr));
    assert!(lines[at].contains("400"), "{}", refused.stderr);
    let column: usize = lines[at]
        .split("src/lib/greet.js:2:")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("a column: {}", refused.stderr));
    assert_eq!(
        lines[at + 1],
        "    return 'hi ' + (name +);",
        "{}",
        refused.stderr
    );
    assert_eq!(
        lines[at + 2],
        format!("  {}^", " ".repeat(column - 1)),
        "a caret under the column: {}",
        refused.stderr
    );
    assert_eq!(
        get_host(&isola, "other.test", "/").await.status,
        404,
        "nothing was deployed"
    );
}

#[tokio::test]
async fn dev_without_an_argument_serves_the_project() {
    let dir = project("dev", "hey", "\"hello.test/*\"");
    let isola = Isola::start_in(
        &dir,
        &[
            "dev".into(),
            "--port".into(),
            "0".into(),
            "--var".into(),
            "EXTRA:a:b".into(),
        ],
    );
    assert_eq!(
        get(Proto::H1, &isola, "/").await.text(),
        "hey world!a:b",
        "the project's main module and vars, wrangler's --var NAME:VALUE over them"
    );
    std::fs::write(
        dir.join("isola.toml"),
        "name = \"hello\"\nmain = \"src/index.js\"\n[limits]\ncpu_ms = \"fast\"\n",
    )
    .unwrap();
    let config = config_arg(&dir);
    let bad = run_cli(&["dev", "--config", &config, "--port", "0"], &[], "");
    assert!(!bad.success);
    let bad = bad.stderr;
    assert!(
        bad.contains("isola.toml") && bad.contains("`limits.cpu_ms`") && bad.contains("expected"),
        "{bad}"
    );
}
