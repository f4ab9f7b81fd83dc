//! Connections and their limits: every listener (data plane, admin API, metrics) keeps a
//! table of its open connections, admits a new one only under `max_connections` and the
//! node's file-descriptor budget (closing the longest idle connection to make room), and
//! watches each with a watchdog that closes it when a request head takes longer than
//! `header_read_timeout_ms` (the first one counted from the accept, so a silent socket, a
//! partial HTTP/2 preface or a TLS session that never sends a request are all closed) or when
//! it has had nothing in flight for `connection_idle_timeout_ms`. A connection upgraded to a
//! WebSocket keeps its place, busy, until the socket closes ([`ConnectionHold`]).

mod io;
mod state;
mod tracked;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Duration;

pub(crate) use io::GuardedIo;
pub(crate) use state::{ConnectionState, Timeouts};
pub(crate) use tracked::InFlight;

use state::Close;

/// How long a connection told to close may take to wind down before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// File descriptors kept out of the data plane's reach, so the admin API, metrics, isolates
/// and files still get some when clients hold every connection they can.
fn reserved_fds(limit: usize) -> usize {
    256 + limit / 8
}

/// The node's budget of data-plane connections: the file-descriptor limit minus a reserve.
#[derive(Debug)]
pub struct ConnectionBudget {
    open: AtomicUsize,
    max: usize,
}

impl ConnectionBudget {
    /// Raises the process's soft file-descriptor limit to its hard limit and budgets the
    /// data plane's connections under it.
    pub fn from_process_limit() -> Arc<Self> {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current != limit.maximum {
            limit.current = limit.maximum;
            if let Err(error) = setrlimit(Resource::Nofile, limit) {
                tracing::warn!("cannot raise the file-descriptor limit: {error}");
            }
            limit = getrlimit(Resource::Nofile);
        }
        let fds = limit
            .current
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let max = fds.saturating_sub(reserved_fds(fds)).max(16);
        tracing::debug!(fds, max_connections = max, "connection budget");
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
        })
    }
}

/// The open connections of one listener.
#[derive(Debug)]
pub(crate) struct ConnectionTable {
    open: Mutex<HashMap<u64, Arc<ConnectionState>>>,
    next_id: AtomicUsize,
    max: usize,
    budget: Option<Arc<ConnectionBudget>>,
    timeouts: Timeouts,
}

impl ConnectionTable {
    /// A table of at most `max` connections (and within `budget`), watched under `timeouts`.
    pub(crate) fn new(
        max: usize,
        budget: Option<Arc<ConnectionBudget>>,
        timeouts: Timeouts,
    ) -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::new(HashMap::new()),
            next_id: AtomicUsize::new(0),
            max: max.max(1),
            budget,
            timeouts,
        })
    }

    /// Admits a connection just accepted, closing the longest idle one if the table or the
    /// budget is full; `None` (close the new one) when every open connection is busy.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut open = self.lock();
        let budget_full = self
            .budget
            .as_ref()
            .is_some_and(|b| b.open.load(Ordering::Acquire) >= b.max);
        if open.len() >= self.max || budget_full {
            let (&idlest, _) = open
                .iter()
                .filter(|(_, state)| state.is_idle())
                .min_by_key(|(_, state)| state.idle_since())?;
            if let Some(shed) = self.remove(&mut open, idlest) {
                tracing::debug!("connection limit reached: closing the longest idle connection");
                shed.close(Close::Quietly);
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) as u64;
        let state = Arc::new(ConnectionState::new());
        open.insert(id, state.clone());
        if let Some(budget) = &self.budget {
            budget.open.fetch_add(1, Ordering::AcqRel);
        }
        Some(Admitted {
            place: Arc::new(Place {
                table: self.clone(),
                id,
            }),
            state,
        })
    }

    fn remove(
        &self,
        open: &mut HashMap<u64, Arc<ConnectionState>>,
        id: u64,
    ) -> Option<Arc<ConnectionState>> {
        let removed = open.remove(&id)?;
        if let Some(budget) = &self.budget {
            budget.open.fetch_sub(1, Ordering::AcqRel);
        }
        Some(removed)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<ConnectionState>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection's place in its table; the last of its holders to leave (drop) frees it.
#[derive(Debug)]
struct Place {
    table: Arc<ConnectionTable>,
    id: u64,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.table.lock();
        self.table.remove(&mut open, self.id);
    }
}

/// An admitted connection: its place in its table and what it is doing.
#[derive(Debug)]
pub(crate) struct Admitted {
    place: Arc<Place>,
    /// What the connection is doing.
    pub(crate) state: Arc<ConnectionState>,
}

/// What an upgrade request may take to keep its connection counted ([`ConnectionHold`]).
#[derive(Debug, Clone)]
pub(crate) struct ConnectionSlot {
    place: Arc<Place>,
    state: Arc<ConnectionState>,
}

impl ConnectionSlot {
    /// Holds the connection in its table, busy (never shed as idle), while the WebSocket it
    /// was upgraded to is open.
    pub(crate) fn hold(self, version: http::Version) -> ConnectionHold {
        ConnectionHold {
            _in_flight: InFlight::begin(&self.state, version),
            _place: self.place,
        }
    }
}

/// Keeps an upgraded connection in its listener's table, under `max_connections` and the fd
/// budget, as a connection with a request in flight, until dropped (the socket closed).
#[derive(Debug)]
pub(crate) struct ConnectionHold {
    _in_flight: InFlight,
    _place: Arc<Place>,
}

impl Admitted {
    /// What a request on this connection that may be upgraded carries, to keep the
    /// connection counted after hyper has let go of it.
    pub(crate) fn slot(&self) -> ConnectionSlot {
        ConnectionSlot {
            place: self.place.clone(),
            state: self.state.clone(),
        }
    }

    /// Runs `connection` (hyper serving the socket wrapped in a [`GuardedIo`] of this
    /// state) until it ends, closing it when its table's timeouts pass.
    pub(crate) async fn watch<F: Future>(self, connection: F) {
        let _counted = crate::executor::ServedConnection::begin();
        let timeouts = self.place.table.timeouts;
        tokio::pin!(connection);
        let mut told = false;
        loop {
            let wait = match self.state.check(&timeouts) {
                _ if told => CLOSE_GRACE,
                Ok(wait) => wait,
                Err(Close::Abort) => {
                    tracing::debug!("closing a connection whose client stopped reading");
                    return;
                }
                Err(how) => {
                    tracing::debug!(?how, "closing a connection past its timeout");
                    self.state.close(how);
                    told = true;
                    CLOSE_GRACE
                }
            };
            if until_ended_or(connection.as_mut(), wait).await == Watched::Ended || told {
                // Ended, or told to close and it did not wind down in time (e.g. a write the
                // client never reads).
                return;
            }
        }
    }
}

/// How a spell of watching a connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Watched {
    Ended,
    TimedOut,
}

/// Polls `connection` until it ends or `wait` passes. The timer is registered once, then only
/// read: a `select!` over the two would poll the timer (and draw a random branch order) on
/// every wake-up of the connection's task, i.e. on every request it serves.
async fn until_ended_or<F: Future>(mut connection: Pin<&mut F>, wait: Duration) -> Watched {
    let sleep = tokio::time::sleep(wait);
    tokio::pin!(sleep);
    let mut registered = false;
    std::future::poll_fn(|cx| {
        if connection.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Watched::Ended);
        }
        // The task's waker does not change (tokio's wakers name the task), so the timer keeps
        // the one it was registered with; after that a fired timer shows as elapsed. The
        // first poll is outside tokio's task budget, which could otherwise leave it
        // unregistered.
        let elapsed = if registered {
            sleep.is_elapsed()
        } else {
            registered = true;
            Pin::new(&mut tokio::task::unconstrained(sleep.as_mut()))
                .poll(cx)
                .is_ready()
        };
        if elapsed {
            Poll::Ready(Watched::TimedOut)
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Connections a control-plane listener (admin API, metrics) keeps open at once.
const CONTROL_MAX_CONNECTIONS: usize = 64;

/// Serves a control-plane listener (admin API, metrics) over cleartext HTTP/1.1 with
/// `handler`, under the same timeouts as the data plane and a table of its own (outside the
/// data plane's budget, so it stays reachable when clients hold every data connection).
pub(crate) async fn serve_control<F, Fut, B>(
    listener: tokio::net::TcpListener,
    http: &edge_config::HttpLimits,
    handler: F,
) where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<B>> + Send + 'static,
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let table = ConnectionTable::new(CONTROL_MAX_CONNECTIONS, None, Timeouts::of(http, false));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Some(admitted) = table.admit() else {
            continue;
        };
        let state = admitted.state.clone();
        let io = GuardedIo::new(stream, state.clone());
        let handler = handler.clone();
        tokio::spawn(admitted.watch(async move {
            let service = hyper::service::service_fn(move |request: http::Request<_>| {
                let in_flight = InFlight::begin(&state, request.version());
                let response = handler(request);
                async move { Ok::<_, std::convert::Infallible>(in_flight.hold(response.await)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(io), service)
                .await;
        }));
    }
}
