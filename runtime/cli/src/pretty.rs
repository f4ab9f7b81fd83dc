//! Printing live-tail events (`runtime/src/tail.rs`), shared by `isola tail` (a node's events
//! through its admin API) and `isola dev` (its own worker's, in the same process): `pretty`
//! is a line per request (status, method, URL, outcome, wall and CPU time, request id) with
//! its exceptions and console lines under it, coloured only on a terminal; `json` the events
//! as they come. Filters keep a request and its console lines together.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;

use clap::ValueEnum;
use serde_json::Value;

/// How events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A line per request, its exception and console lines under it.
    Pretty,
    /// The events as JSON lines.
    Json,
}

/// Which requests are printed (all when empty).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// A status class (`2xx` … `5xx`) or code (`404`).
    pub status: Option<String>,
    /// A method (`GET`, …), any case.
    pub method: Option<String>,
    /// Text that the URL, the exception or a console line must contain.
    pub search: Option<String>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.status.is_none() && self.method.is_none() && self.search.is_none()
    }
}

/// Requests remembered for their later console lines.
const REMEMBERED: usize = 4096;

/// Filters and prints events, holding console lines until their request is known.
pub struct Printer {
    filter: Filter,
    format: Format,
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
    /// A printer of the requests `filter` lets through, in `format`, with ANSI colours when
    /// `colour` (the caller's output is a terminal).
    pub fn new(filter: Filter, format: Format, colour: bool) -> Self {
        Self {
            filter,
            format,
            colour,
            waiting: HashMap::new(),
            shown: VecDeque::new(),
            shown_set: HashSet::new(),
            hidden: HashSet::new(),
        }
    }

    /// Prints what the event `raw` (one tail event as JSON) calls for on `out`: a request,
    /// with the console lines that came before it, or a line of a request printed already;
    /// other lines wait for their request. Text that is not an event is ignored.
    pub fn event(&mut self, out: &mut impl Write, raw: &str) -> std::io::Result<()> {
        let Ok(event) = serde_json::from_str::<Value>(raw) else {
            return Ok(());
        };
        if let Some(dropped) = event["dropped"].as_u64() {
            eprintln!("({dropped} events dropped: the tail fell behind)");
        }
        let id = event["request_id"].as_str().unwrap_or("").to_owned();
        match event["type"].as_str() {
            Some("request") => {
                let logs = self.waiting.remove(&id).unwrap_or_default();
                if !self.passes(&event, &logs) {
                    self.remember(&id, false);
                    return Ok(());
                }
                self.print_request(out, &event, raw)?;
                for (log, raw) in &logs {
                    self.print_line(out, log, raw)?;
                }
                self.remember(&id, true);
            }
            Some(_) if self.shown_set.contains(&id) => self.print_line(out, &event, raw)?,
            Some(_) if self.hidden.contains(&id) => {}
            // The worker's own lines (no request) only when nothing is filtered.
            Some(_) if id.is_empty() && self.filter.is_empty() => {
                self.print_line(out, &event, raw)?;
            }
            Some(_) if id.is_empty() => {}
            Some(_) => {
                // Lines of requests whose event never came (dropped) go first.
                if self.waiting.len() >= REMEMBERED {
                    self.waiting.clear();
                }
                self.waiting
                    .entry(id)
                    .or_default()
                    .push((event, raw.to_owned()));
            }
            None => {}
        }
        out.flush()
    }

    fn passes(&self, event: &Value, logs: &[(Value, String)]) -> bool {
        if let Some(method) = &self.filter.method
            && !event["method"]
                .as_str()
                .is_some_and(|m| m.eq_ignore_ascii_case(method))
        {
            return false;
        }
        if let Some(wanted) = &self.filter.status {
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
        if let Some(text) = &self.filter.search {
            let has = |value: &Value| value.as_str().is_some_and(|v| v.contains(text.as_str()));
            let in_event = has(&event["url"])
                || has(&event["exception"])
                || event["exceptions"]
                    .as_array()
                    .is_some_and(|list| list.iter().any(has));
            let in_logs = logs
                .iter()
                .any(|(log, _)| has(&log["message"]) || has(&log["exception"]));
            if !in_event && !in_logs {
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

    fn print_request(&self, out: &mut impl Write, event: &Value, raw: &str) -> std::io::Result<()> {
        if self.format == Format::Json {
            return writeln!(out, "{raw}");
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
        let cpu = event["cpu_ms"]
            .as_f64()
            .map(|cpu| format!(", CPU {cpu:.1} ms"))
            .unwrap_or_default();
        writeln!(
            out,
            "{} {} {} {} {:.1} ms{cpu} [{}]",
            self.paint(colour, &status),
            printable(event["method"].as_str().unwrap_or("?")),
            printable(event["url"].as_str().unwrap_or("?")),
            self.paint(colour, outcome),
            event["wall_ms"].as_f64().unwrap_or(0.0),
            printable(event["request_id"].as_str().unwrap_or("-")),
        )?;
        if let Some(exception) = event["exception"].as_str() {
            self.print_exception(out, exception)?;
        }
        for exception in event["exceptions"].as_array().into_iter().flatten() {
            self.print_exception(out, exception.as_str().unwrap_or(""))?;
        }
        Ok(())
    }

    /// A multi-line exception (message and stack), each line indented, in red.
    fn print_exception(&self, out: &mut impl Write, exception: &str) -> std::io::Result<()> {
        for line in exception.lines() {
            writeln!(out, "  {}", self.paint("31", &printable(line)))?;
        }
        Ok(())
    }

    /// A line under its request: a console line, or an exception of its work that came
    /// after its event.
    fn print_line(&self, out: &mut impl Write, event: &Value, raw: &str) -> std::io::Result<()> {
        if self.format == Format::Json {
            return writeln!(out, "{raw}");
        }
        if event["type"] == "exception" {
            return self.print_exception(out, event["exception"].as_str().unwrap_or(""));
        }
        if event["type"] != "log" {
            return Ok(());
        }
        let level = event["level"].as_str().unwrap_or("log");
        let colour = match level {
            "error" => "31",
            "warn" => "33",
            "debug" => "2",
            _ => "0",
        };
        let mut lines = event["message"].as_str().unwrap_or("").lines();
        writeln!(
            out,
            "  {} {}",
            self.paint(colour, &format!("({})", printable(level))),
            printable(lines.next().unwrap_or(""))
        )?;
        for line in lines {
            writeln!(out, "    {}", printable(line.trim_start()))?;
        }
        Ok(())
    }
}

/// `line` with control characters (tabs excepted) escaped, so a worker's text cannot drive
/// the terminal.
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
