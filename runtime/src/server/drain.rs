//! Graceful shutdown of the HTTP connections: when the node stops, every connection is told
//! once to finish the requests it has and accept no more, and the node waits until they have
//! ended.
//!
//! hyper_util's `GracefulShutdown` does the same, but polls a `watch::Receiver::changed`
//! future on every poll of the connection, i.e. on every request, and each such poll locks the
//! channel's list of waiters (~340 instructions per request in callgrind). Here a connection
//! registers its task's waker once, registers again only if the waker changes, and otherwise
//! reads one flag per poll.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use hyper_util::server::graceful::GracefulConnection;
use pin_project_lite::pin_project;
use tokio::sync::{Notify, watch};

/// The order to wind down: a flag read on every poll, and the wake-up of every task waiting.
#[derive(Default)]
struct Signal {
    begun: AtomicBool,
    notify: Notify,
}

/// The node's side of the graceful shutdown: hands out a [`Watcher`] per connection, then
/// tells them all to wind down and waits until they have ended.
pub struct Drain {
    signal: Arc<Signal>,
    /// Its receivers are the watched connections: `closed` once all have ended.
    open: watch::Sender<()>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    /// No connection watched yet.
    pub fn new() -> Self {
        Self {
            signal: Arc::default(),
            open: watch::channel(()).0,
        }
    }

    /// What one connection is watched with ([`Watcher::watch`]).
    pub fn watcher(&self) -> Watcher {
        Watcher {
            signal: self.signal.clone(),
            _open: self.open.subscribe(),
        }
    }

    /// Connections watched and not ended (watchers not yet used included).
    pub fn count(&self) -> usize {
        self.open.receiver_count()
    }

    /// Tells every connection to wind down, then waits until all of them have ended.
    pub async fn shutdown(self) {
        // Set before the wake-up: a connection registering concurrently either is woken or,
        // checking the flag after registering, sees it.
        self.signal.begun.store(true, Ordering::SeqCst);
        self.signal.notify.notify_waiters();
        self.open.closed().await;
    }
}

/// One connection's tie to the [`Drain`]; counted as open until it is dropped.
pub struct Watcher {
    signal: Arc<Signal>,
    _open: watch::Receiver<()>,
}

impl Watcher {
    /// `connection`, told to wind down when the node shuts down.
    pub fn watch<C: GracefulConnection>(self, connection: C) -> Draining<C> {
        Draining {
            connection,
            watch: Watch {
                watcher: self,
                wake_up: None,
                registered: None,
                told: false,
            },
        }
    }
}

/// The wait for the shutdown's wake-up, owning what it waits on.
type WakeUp = Pin<Box<dyn Future<Output = ()> + Send>>;

pin_project! {
    /// A connection watched by a [`Drain`]; ends when the connection does.
    pub struct Draining<C> {
        #[pin]
        connection: C,
        watch: Watch,
    }
}

/// A [`Draining`] connection's registration with the [`Signal`].
struct Watch {
    watcher: Watcher,
    /// The wait for the wake-up, made on the first poll.
    wake_up: Option<WakeUp>,
    /// The waker `wake_up` was last polled with.
    registered: Option<Waker>,
    /// The connection was told to wind down.
    told: bool,
}

impl Watch {
    /// Whether the connection is to be told now: the node has begun to shut down and it was
    /// not told yet. Registers this task for the wake-up when its waker is not the one
    /// registered.
    fn tell_now(&mut self, cx: &mut Context<'_>) -> bool {
        if self.told {
            return false;
        }
        let registered = self
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        let woken = !registered && {
            let signal = self.watcher.signal.clone();
            let wake_up = self
                .wake_up
                .get_or_insert_with(|| Box::pin(async move { signal.notify.notified().await }));
            self.registered = Some(cx.waker().clone());
            wake_up.as_mut().poll(cx).is_ready()
        };
        if woken || self.watcher.signal.begun.load(Ordering::Acquire) {
            self.told = true;
            self.wake_up = None;
            self.registered = None;
            return true;
        }
        false
    }
}

impl<C: GracefulConnection> Future for Draining<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if this.watch.tell_now(cx) {
            this.connection.as_mut().graceful_shutdown();
        }
        this.connection.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::io::DuplexStream;

    use super::*;

    type Client = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

    /// A served HTTP/1.1 connection watched by `drain` whose handler answers after
    /// `answer_after`, and a client on its other end.
    async fn connection(
        drain: &Drain,
        answer_after: Duration,
    ) -> (Client, tokio::task::JoinHandle<()>) {
        let (client_io, server_io): (DuplexStream, DuplexStream) = tokio::io::duplex(4096);
        let service = service_fn(move |_request| async move {
            tokio::time::sleep(answer_after).await;
            Ok::<_, Infallible>(hyper::Response::new(Empty::<Bytes>::new()))
        });
        let served = drain
            .watcher()
            .watch(http1::Builder::new().serve_connection(TokioIo::new(server_io), service));
        let server = tokio::spawn(async move {
            let _ = served.await;
        });
        let Ok((client, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(client_io)).await
        else {
            panic!("handshake failed");
        };
        tokio::spawn(conn);
        (client, server)
    }

    fn get() -> hyper::Request<Empty<Bytes>> {
        hyper::Request::get("/")
            .header("host", "a.test")
            .body(Empty::new())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_and_a_busy_one_finishes_its_request_first() {
        let drain = Drain::new();
        let (mut idle, idle_served) = connection(&drain, Duration::ZERO).await;
        let answered = idle.send_request(get()).await;
        assert_eq!(
            answered.map(|r| r.status()).ok(),
            Some(http::StatusCode::OK)
        );
        let (mut busy, busy_served) = connection(&drain, Duration::from_millis(300)).await;
        let in_flight = tokio::spawn(async move {
            let response = busy.send_request(get()).await?;
            let status = response.status();
            let closing = response.headers().get(http::header::CONNECTION).cloned();
            response.into_body().collect().await?;
            Ok::<_, hyper::Error>((status, closing))
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(drain.count(), 2);

        let shutdown = tokio::time::timeout(Duration::from_secs(5), drain.shutdown()).await;
        assert!(shutdown.is_ok(), "the drain waited past its bound");
        assert!(idle_served.is_finished() && busy_served.is_finished());
        let Ok(Ok((status, closing))) = in_flight.await else {
            panic!("the request in flight was cut off");
        };
        assert_eq!(status, http::StatusCode::OK);
        assert_eq!(closing.as_ref().map(|v| v.as_bytes()), Some(&b"close"[..]));
    }

    #[tokio::test]
    async fn a_connection_first_polled_after_the_shutdown_began_is_told_at_once() {
        let drain = Drain::new();
        let watcher = drain.watcher();
        let signal = drain.signal.clone();
        let shutdown = tokio::spawn(drain.shutdown());
        // The flag is set before the watcher's connection is ever polled.
        while !signal.begun.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        let (client_io, server_io) = tokio::io::duplex(4096);
        let service = service_fn(|_request| async {
            Ok::<_, Infallible>(hyper::Response::new(Empty::<Bytes>::new()))
        });
        let served =
            watcher.watch(http1::Builder::new().serve_connection(TokioIo::new(server_io), service));
        // Told before any request: the connection ends without reading one.
        let ended = tokio::time::timeout(Duration::from_secs(5), served).await;
        assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
        drop(client_io);
        let drained = tokio::time::timeout(Duration::from_secs(5), shutdown).await;
        assert!(drained.is_ok());
    }
}
