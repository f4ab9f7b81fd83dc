//! One connection's loop: take a request, (re)connect when needed, exchange, record. An
//! HTTP/2 connection runs `h2_streams` such loops over one shared connection.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::client::conn::http2;
use tokio::sync::Mutex;

use super::Shared;
use super::connection::{
    Body, Exchange, Failure, H1Conn, connect_h1, connect_h2, exchange_h1, exchange_h2,
};
use super::live::Recorder;
use super::schedule::{Source, Ticket};
use crate::stats::{ErrorKind, RunResult};

/// Pause after a refused connection, so a server that is down is not spun against.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// Runs one connection (and its streams) until the source runs dry.
pub(crate) async fn connection(shared: Arc<Shared>, source: Source) -> RunResult {
    let recorder = shared.live.as_ref().map(|live| live.recorder());
    let mut out = Out {
        result: RunResult::new(shared.measure_from),
        recorder: recorder.as_ref(),
    };
    if !shared.spec.http2 {
        h1_loop(&shared, &source, &mut out).await;
        return out.result;
    }
    if shared.spec.new_connection_per_request {
        h2_stream_loop(&shared, &source, &H2Cell::default(), &mut out).await;
        return out.result;
    }
    let cell = H2Cell::default();
    let streams = shared.spec.h2_streams.max(1);
    let mut outs: Vec<Out<'_>> = (0..streams)
        .map(|_| Out {
            result: RunResult::new(shared.measure_from),
            recorder: recorder.as_ref(),
        })
        .collect();
    futures::future::join_all(
        outs.iter_mut()
            .map(|out| h2_stream_loop(&shared, &source, &cell, out)),
    )
    .await;
    for stream in &outs {
        out.result.merge(&stream.result);
    }
    out.result
}

/// Where a loop records its requests.
struct Out<'a> {
    result: RunResult,
    recorder: Option<&'a Recorder>,
}

impl Out<'_> {
    async fn record(&mut self, ticket: &Ticket, outcome: Result<Exchange, ErrorKind>) {
        let done = Instant::now();
        let kind = match outcome {
            Ok((status, bytes, _)) => match ErrorKind::of_status(status) {
                None => {
                    if ticket.measured {
                        self.result.success(ticket.start, done, bytes);
                    }
                    if let Some(recorder) = self.recorder {
                        let micros = done.saturating_duration_since(ticket.start).as_micros();
                        recorder.success(u64::try_from(micros).unwrap_or(u64::MAX));
                    }
                    return;
                }
                Some(kind) => kind,
            },
            Err(kind) => kind,
        };
        if ticket.measured {
            self.result.error(kind);
        }
        if let Some(recorder) = self.recorder {
            recorder.error();
        }
        if kind == ErrorKind::Connect {
            tokio::time::sleep(CONNECT_BACKOFF).await;
        }
    }
}

/// The per-request timeout without a timer per request: one timer per loop, armed no later
/// than the current request's deadline and re-armed only when it fires early, so it is reset
/// about once per timeout period instead of once per request.
struct Watchdog {
    timer: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl Watchdog {
    fn new(timeout: Duration) -> Self {
        Self {
            timer: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }

    /// Runs `exchange` until it ends or the ticket's deadline (its start + the timeout).
    async fn bounded(
        &mut self,
        ticket: &Ticket,
        exchange: impl Future<Output = Result<Exchange, Failure>>,
    ) -> Result<Exchange, ErrorKind> {
        let deadline = tokio::time::Instant::from_std(ticket.start + self.timeout);
        if self.timer.deadline() > deadline {
            self.timer.as_mut().reset(deadline);
        }
        tokio::pin!(exchange);
        loop {
            tokio::select! {
                biased;
                outcome = &mut exchange => return outcome.map_err(|failure| failure.kind),
                () = &mut self.timer => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ErrorKind::Timeout);
                    }
                    self.timer.as_mut().reset(deadline);
                }
            }
        }
    }
}

/// A kept-alive connection idle this long is checked for a close by the server first.
const IDLE_CHECK: Duration = Duration::from_millis(1);

async fn h1_loop(shared: &Shared, source: &Source, out: &mut Out<'_>) {
    let mut watchdog = Watchdog::new(shared.spec.timeout);
    let mut conn: Option<H1Conn> = None;
    let mut last_used = Instant::now();
    while let Some(ticket) = source.next(shared).await {
        if shared.spec.new_connection_per_request
            || (ticket.start.saturating_duration_since(last_used) > IDLE_CHECK
                && conn.as_mut().is_some_and(H1Conn::is_closed))
        {
            conn = None;
        }
        let exchange = async {
            let conn = match &mut conn {
                Some(conn) => conn,
                None => conn.insert(connect_h1(&shared.spec, &shared.target).await?),
            };
            exchange_h1(conn, &shared.target).await
        };
        let outcome = watchdog.bounded(&ticket, exchange).await;
        if !matches!(outcome, Ok((_, _, true))) {
            conn = None;
        }
        last_used = Instant::now();
        out.record(&ticket, outcome).await;
    }
}

/// One HTTP/2 connection shared by several stream loops; whoever finds it missing or closed
/// reconnects while the others wait.
#[derive(Default)]
struct H2Cell(Mutex<Option<http2::SendRequest<Body>>>);

impl H2Cell {
    async fn sender(&self, shared: &Shared) -> Result<http2::SendRequest<Body>, Failure> {
        let mut slot = self.0.lock().await;
        match &*slot {
            Some(sender) if !sender.is_closed() => Ok(sender.clone()),
            _ => {
                let sender = connect_h2(&shared.spec, &shared.target).await?;
                *slot = Some(sender.clone());
                Ok(sender)
            }
        }
    }
}

async fn h2_stream_loop(shared: &Shared, source: &Source, cell: &H2Cell, out: &mut Out<'_>) {
    let mut watchdog = Watchdog::new(shared.spec.timeout);
    while let Some(ticket) = source.next(shared).await {
        let exchange = async {
            let mut sender = if shared.spec.new_connection_per_request {
                connect_h2(&shared.spec, &shared.target).await?
            } else {
                cell.sender(shared).await?
            };
            exchange_h2(&mut sender, shared.target.request()).await
        };
        let outcome = watchdog.bounded(&ticket, exchange).await;
        out.record(&ticket, outcome).await;
    }
}
