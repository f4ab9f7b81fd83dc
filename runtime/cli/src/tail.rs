//! `isola tail NAME`: follows a worker's live tail (`GET /workers/NAME/tail` on the admin API)
//! and prints it as it happens (`pretty.rs`).

use std::io::IsTerminal as _;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;

use crate::pretty::{Filter, Format, Printer};

/// `isola tail` arguments.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The worker to follow.
    name: String,
    /// Only requests with this status: a class (`2xx` … `5xx`) or a code (`404`).
    #[arg(long)]
    status: Option<String>,
    /// Only requests with this method (`GET`, `POST`, …).
    #[arg(long)]
    method: Option<String>,
    /// Only requests whose URL, exception or one of whose console lines contains TEXT.
    #[arg(long, value_name = "TEXT")]
    search: Option<String>,
    /// `pretty`: a line per request, its exception (in red) and console lines under it;
    /// `json`: the events.
    #[arg(long, value_enum, default_value_t = Format::Pretty)]
    format: Format,
    /// The admin API (`[admin] address`); its token comes from ISOLA_ADMIN_TOKEN.
    #[arg(long, env = "ISOLA_ADMIN_URL", default_value = "http://127.0.0.1:9000")]
    admin: String,
}

/// Follows the tail until the node closes it.
pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let token = std::env::var("ISOLA_ADMIN_TOKEN")
        .context("the admin token must be in ISOLA_ADMIN_TOKEN")?;
    let authority = args
        .admin
        .trim_end_matches('/')
        .strip_prefix("http://")
        .context("--admin must be an http:// URL")?
        .to_owned();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .with_context(|| format!("cannot reach the admin API at {authority}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("cannot talk HTTP to the admin API")?;
    tokio::spawn(connection);
    let request = http::Request::get(format!("/workers/{}/tail", args.name))
        .header(http::header::HOST, &authority)
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", token.trim()),
        )
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        bail!("{status}: {}", String::from_utf8_lossy(&text).trim());
    }
    eprintln!("following {} (Ctrl-C to stop)", args.name);
    let filter = Filter {
        status: args.status,
        method: args.method,
        search: args.search,
    };
    let mut printer = Printer::new(filter, args.format, std::io::stdout().is_terminal());
    let mut pending = String::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        pending.push_str(&String::from_utf8_lossy(&data));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            if let Some(json) = line.trim_end().strip_prefix("data: ") {
                printer.event(&mut std::io::stdout().lock(), json)?;
            }
        }
    }
    bail!("the node closed the tail")
}
