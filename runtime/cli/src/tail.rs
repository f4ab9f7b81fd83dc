//! `isola tail NAME`: prints a worker's live tail (`GET /workers/NAME/tail` on the admin API)
//! as it happens: one line per request with its exception, console lines and CPU time under it (`pretty`, coloured
//! on a terminal), or the events as JSON lines (`json`). Filters keep a request and its
//! console lines together.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{IsTerminal as _, Write as _};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

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
    #[arg(long, value_enum, default_value_t = TailFormat::Pretty)]
    format: TailFormat,
    /// The admin API (`[admin] address`); its token comes from ISOLA_ADMIN_TOKEN.
    #[arg(long, env = "ISOLA_ADMIN_URL", default_value = "http://127.0.0.1:9000")]
    admin: String,
}

/// How `isola tail` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TailFormat {
    Pretty,
    Json,
}

/// Requests remembered for their later console lines (`waitUntil` work).
const REMEMBERED: usize = 4096;

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
    let mut printer = Printer::new(args);
    let mut pending = String::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        pending.push_str(&String::from_utf8_lossy(&data));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            if let Some(json) = line.trim_end().strip_prefix("data: ")
                && let Ok(event) = serde_json::from_str::<Value>(json)
            {
                printer.event(&event, json)?;
            }
        }
    }
    bail!("the node closed the tail")
}

/// Filters and prints events, holding console lines until their request is known.
struct Printer {
    args: TailArgs,
    colour: bool,
    /// Console lines of requests not finished yet.
    waiting: HashMap<String, Vec<(Value, String)>>,
    /// Requests printed (their later console lines are printed too), oldest first.
    shown: VecDeque<String>,
    shown_set: HashSet<String>,
    /// Requests filtered out.
    hidden: HashSet<String>,
}

impl Printer {
    fn new(args: TailArgs) -> Self {
        Self {
            args,
            colour: std::io::stdout().is_terminal(),
            waiting: HashMap::new(),
            shown: VecDeque::new(),
            shown_set: HashSet::new(),
            hidden: HashSet::new(),
        }
    }

    fn event(&mut self, event: &Value, raw: &str) -> anyhow::Result<()> {
        if let Some(dropped) = event["dropped"].as_u64() {
            eprintln!("({dropped} events dropped: the tail fell behind)");
        }
        let id = event["request_id"].as_str().unwrap_or("").to_owned();
        match event["type"].as_str() {
            Some("request") => {
                let logs = self.waiting.remove(&id).unwrap_or_default();
                if !self.passes(event, &logs) {
                    self.remember(&id, false);
                    return Ok(());
                }
                self.print_request(event, raw)?;
                for (log, raw) in &logs {
                    self.print_log(log, raw)?;
                }
                self.remember(&id, true);
            }
            Some("log" | "done") if self.shown_set.contains(&id) => self.print_log(event, raw)?,
            Some("log" | "done") if self.hidden.contains(&id) => {}
            Some("log") if id.is_empty() && !self.filtered() => self.print_log(event, raw)?,
            Some("log" | "done") if !id.is_empty() => {
                // Lines of requests whose event never came (dropped) go first.
                if self.waiting.len() >= REMEMBERED {
                    self.waiting.clear();
                }
                self.waiting
                    .entry(id)
                    .or_default()
                    .push((event.clone(), raw.to_owned()));
            }
            _ => {}
        }
        Ok(())
    }

    fn filtered(&self) -> bool {
        self.args.status.is_some() || self.args.method.is_some() || self.args.search.is_some()
    }

    fn passes(&self, event: &Value, logs: &[(Value, String)]) -> bool {
        if let Some(method) = &self.args.method
            && !event["method"]
                .as_str()
                .is_some_and(|m| m.eq_ignore_ascii_case(method))
        {
            return false;
        }
        if let Some(wanted) = &self.args.status {
            let status = event["status"].as_u64().map(|s| s.to_string());
            let matches = status.as_deref().is_some_and(|s| {
                let wanted = wanted.to_ascii_lowercase();
                match wanted.strip_suffix("xx") {
                    Some(class) => s.starts_with(class),
                    None => s == wanted,
                }
            });
            if !matches {
                return false;
            }
        }
        if let Some(text) = &self.args.search {
            let in_url = event["url"]
                .as_str()
                .is_some_and(|u| u.contains(text.as_str()));
            let in_exception = event["exception"]
                .as_str()
                .is_some_and(|e| e.contains(text.as_str()));
            let in_logs = logs.iter().any(|(log, _)| {
                log["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(text.as_str()))
            });
            if !in_url && !in_exception && !in_logs {
                return false;
            }
        }
        true
    }

    fn remember(&mut self, id: &str, shown: bool) {
        if shown {
            self.shown.push_back(id.to_owned());
            self.shown_set.insert(id.to_owned());
            if self.shown.len() > REMEMBERED
                && let Some(old) = self.shown.pop_front()
            {
                self.shown_set.remove(&old);
            }
        } else {
            if self.hidden.len() >= REMEMBERED {
                self.hidden.clear();
            }
            self.hidden.insert(id.to_owned());
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn print_request(&self, event: &Value, raw: &str) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.args.format == TailFormat::Json {
            writeln!(out, "{raw}")?;
            return Ok(());
        }
        let status = event["status"].as_u64();
        let outcome = event["outcome"].as_str().unwrap_or("?");
        let colour = match (status, outcome) {
            (_, o) if o != "ok" => "31",
            (Some(s), _) if s >= 500 => "31",
            (Some(s), _) if s >= 400 => "33",
            _ => "32",
        };
        let status = status.map_or_else(|| "---".to_owned(), |s| s.to_string());
        writeln!(
            out,
            "{} {} {} {} {:.1} ms [{}]",
            self.paint(colour, &status),
            event["method"].as_str().unwrap_or("?"),
            event["url"].as_str().unwrap_or("?"),
            self.paint(colour, outcome),
            event["wall_ms"].as_f64().unwrap_or(0.0),
            event["request_id"].as_str().unwrap_or("-"),
        )?;
        if let Some(exception) = event["exception"].as_str() {
            for line in exception.lines() {
                writeln!(out, "  {}", self.paint("31", &printable(line)))?;
            }
        }
        Ok(())
    }

    fn print_log(&self, event: &Value, raw: &str) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.args.format == TailFormat::Json {
            writeln!(out, "{raw}")?;
            return Ok(());
        }
        if event["type"] == "done" {
            let line = format!(
                "  (done) CPU {:.1} ms, {} subrequests",
                event["cpu_ms"].as_f64().unwrap_or(0.0),
                event["subrequests"].as_u64().unwrap_or(0)
            );
            writeln!(out, "{}", self.paint("2", &line))?;
            return Ok(());
        }
        let level = event["level"].as_str().unwrap_or("log");
        let colour = match level {
            "error" => "31",
            "warn" => "33",
            "debug" => "2",
            _ => "0",
        };
        writeln!(
            out,
            "  {} {}",
            self.paint(colour, &format!("({level})")),
            event["message"].as_str().unwrap_or("")
        )?;
        Ok(())
    }
}

/// `line` with control characters (tabs excepted) escaped, so a worker's exception text
/// cannot drive the terminal.
fn printable(line: &str) -> String {
    line.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
