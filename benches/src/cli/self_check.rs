//! `self-check`: the generator must not be the bottleneck. It and wrk measure the same raw
//! hyper baseline (started here) with one client thread, the same connections and duration;
//! if the generator is as fast as wrk, the server was the limit for both.

use std::time::Duration;

use anyhow::Context as _;

use super::BenchEnv;
use super::measure;
use crate::cpu;
use crate::generator::{H1Client, LoadSpec};
use crate::server::ServerProcess;

/// What wrk reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WrkResult {
    pub rps: f64,
    pub requests: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Reads `Requests/sec`, the request count and the 50 % / 99 % latencies of `wrk --latency`.
pub(crate) fn parse_wrk(text: &str) -> Option<WrkResult> {
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let latency = |label: &str| {
        text.lines().find_map(|l| {
            let rest = l.trim().strip_prefix(label)?;
            wrk_duration_ms(rest.trim())
        })
    };
    Some(WrkResult {
        rps,
        requests,
        p50_ms: latency("50%"),
        p99_ms: latency("99%"),
    })
}

/// `512.00us`, `1.23ms`, `2.00s` in milliseconds.
fn wrk_duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    match unit {
        "us" => Some(value / 1000.0),
        "ms" => Some(value),
        "s" => Some(value * 1000.0),
        "m" => Some(value * 60_000.0),
        _ => None,
    }
}

/// How self-check runs.
#[derive(Debug, Clone, Copy)]
pub(super) struct SelfCheckArgs {
    pub duration: Duration,
    pub connections: usize,
    pub baseline_threads: usize,
    pub repeat: usize,
    pub pin: bool,
}

/// Core of the baseline server and core of the client when pinned.
const SERVER_CPU: usize = 0;
const CLIENT_CPU: usize = 1;

/// Measures the baseline with this generator and with wrk, alternating `repeat` times, and
/// compares the medians; hyper's client is measured once for reference.
pub(super) fn run(env: &BenchEnv, args: SelfCheckArgs) -> anyhow::Result<()> {
    let mut command = env.self_cmd.clone();
    anyhow::ensure!(!command.is_empty(), "no command to start the baseline with");
    command.extend([
        "serve-baseline".into(),
        "--exit-on-stdin-eof".into(),
        "--threads".into(),
        args.baseline_threads.max(1).to_string().into(),
    ]);
    let baseline = ServerProcess::start(&command)?;
    let pin = args.pin && crate::pin::available();
    if pin {
        crate::pin::pin_process(baseline.pid(), SERVER_CPU).context("pinning the baseline")?;
    }
    let url = format!("{}/", baseline.url);
    println!(
        "baseline: raw hyper, {} thread(s), {url}; each client: 1 thread, {} connections, {:?}, {} round(s){}",
        args.baseline_threads,
        args.connections,
        args.duration,
        args.repeat,
        if pin {
            format!("; server pinned to CPU {SERVER_CPU}, clients to CPU {CLIENT_CPU}")
        } else {
            String::new()
        }
    );
    let mut ratios = Vec::new();
    let mut busy = Vec::new();
    for round in 1..=args.repeat.max(1) {
        let summary = measure_ours(&baseline, &url, args, H1Client::Fast, pin)?;
        print_ours(H1Client::Fast, &summary, round);
        if let Some(cpu_ms) = summary.server_cpu_ms_per_request {
            busy.push(summary.rps * cpu_ms / 1000.0);
        }
        match run_wrk(&baseline, &url, args, pin)? {
            Some((wrk, server_cpu)) => {
                println!(
                    "round {round} wrk (-t1)                     : {:>8.0} rps  p50 {:.3} ms  p99 {:.3} ms  (server CPU {:.4} ms/req; wrk's latency is not corrected for coordinated omission)",
                    wrk.rps,
                    wrk.p50_ms.unwrap_or(f64::NAN),
                    wrk.p99_ms.unwrap_or(f64::NAN),
                    server_cpu.unwrap_or(f64::NAN),
                );
                ratios.push(summary.rps / wrk.rps.max(1e-9));
            }
            None => {
                println!(
                    "wrk: not installed (Debian package `wrk`); skipped, only isola-bench was measured"
                );
                return Ok(());
            }
        }
    }
    let hyper = measure_ours(&baseline, &url, args, H1Client::Hyper, pin)?;
    print_ours(H1Client::Hyper, &hyper, 1);
    // Each round compares the two clients back to back, so the machine's drift between rounds
    // cancels out of the round's ratio.
    let ratio = median(&mut ratios);
    let busy = median(&mut busy);
    println!(
        "isola-bench / wrk, median of the rounds' ratios: {ratio:.2}; the server used {busy:.2} of its {} core(s) while isola-bench measured it",
        args.baseline_threads
    );
    if busy >= 0.9 * args.baseline_threads as f64 {
        println!("the server's cores were saturated: the server, not the generator, set the rate");
    }
    if ratio < 0.95 {
        println!(
            "the generator is slower than wrk here: with one thread it may be the bottleneck; use --threads 2 or more for the heaviest targets"
        );
    } else {
        println!("the generator keeps up with wrk: it is not the bottleneck at this load");
    }
    Ok(())
}

fn measure_ours(
    baseline: &ServerProcess,
    url: &str,
    args: SelfCheckArgs,
    client: H1Client,
    pin: bool,
) -> anyhow::Result<crate::stats::Summary> {
    let spec = LoadSpec {
        connections: args.connections,
        duration: Some(args.duration),
        warmup: Duration::from_millis(500),
        h1_client: client,
        ..LoadSpec::get(url.parse()?)
    };
    // One generator thread: the current-thread runtime runs on this thread.
    let _pinned = if pin {
        Some(crate::pin::PinnedThread::to(CLIENT_CPU).context("pinning the generator")?)
    } else {
        None
    };
    Ok(measure::measure(
        spec,
        1,
        Some(baseline.pid()),
        None,
        "isola-bench".to_owned(),
    )?
    .summary)
}

fn print_ours(client: H1Client, summary: &crate::stats::Summary, round: usize) {
    println!(
        "round {round} isola-bench ({:<5} HTTP/1.1): {:>8.0} rps  p50 {:.3} ms  p99 {:.3} ms  errors {}  (its CPU {:.0}%, server CPU {:.4} ms/req)",
        format!("{client:?}").to_lowercase(),
        summary.rps,
        summary.latency_ms.p50,
        summary.latency_ms.p99,
        summary.error_count(),
        summary.generator_cpu_pct.unwrap_or(f64::NAN),
        summary.server_cpu_ms_per_request.unwrap_or(f64::NAN),
    );
}

/// wrk's result and the server CPU per request it caused; `None` when wrk is not installed.
fn run_wrk(
    baseline: &ServerProcess,
    url: &str,
    args: SelfCheckArgs,
    pin: bool,
) -> anyhow::Result<Option<(WrkResult, Option<f64>)>> {
    let seconds = args.duration.as_secs_f64().ceil().max(1.0) as u64;
    let wrk_args = [
        "-t1".to_owned(),
        format!("-c{}", args.connections),
        format!("-d{seconds}s"),
        "--latency".to_owned(),
        url.to_owned(),
    ];
    let mut command = if pin {
        let mut taskset = std::process::Command::new("taskset");
        taskset.args(["-c", &CLIENT_CPU.to_string(), "wrk"]);
        taskset
    } else {
        std::process::Command::new("wrk")
    };
    command.args(wrk_args);
    let before = baseline.cpu();
    let output = command.output();
    let after = baseline.cpu();
    let output = match output {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).context("running wrk"),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && stderr.contains("wrk") && stderr.contains("No such file") {
        return Ok(None);
    }
    anyhow::ensure!(output.status.success(), "wrk failed: {text}{stderr}");
    let wrk = parse_wrk(&text).with_context(|| format!("cannot read wrk's output:\n{text}"))?;
    let server_cpu = match (&before, &after) {
        (Some(before), Some(after)) if wrk.requests > 0 => cpu::used_between(before, after)
            .map(|cpu| cpu.as_secs_f64() * 1000.0 / wrk.requests as f64),
        _ => None,
    };
    Ok(Some((wrk, server_cpu)))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 2s test @ http://127.0.0.1:4000/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   542.11us  100.00us   3.00ms   90.00%
  Latency Distribution
     50%  512.00us
     75%  600.00us
     90%  700.00us
     99%    1.23ms
  225000 requests in 2.00s, 30.00MB read
Requests/sec: 112500.50
Transfer/sec:     15.00MB
";

    #[test]
    fn reads_wrk_output() {
        let wrk = parse_wrk(WRK);
        assert_eq!(
            wrk,
            Some(WrkResult {
                rps: 112_500.5,
                requests: 225_000,
                p50_ms: Some(0.512),
                p99_ms: Some(1.23),
            })
        );
        assert_eq!(parse_wrk("garbage"), None);
    }
}
