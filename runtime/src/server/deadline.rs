//! The wall-clock limit of requests served on an executor thread, checked by one ticker per
//! thread every [`TICK`] instead of a timer per request in tokio's timer wheel: registering
//! and clearing that timer, and the driver's work for it, cost hello ~5 % of its CPU under 64
//! connections (wrk; ~1 % of its instructions on one connection). A deadline so fires up to
//! one tick late. Requests on other threads (a multi-thread runtime, where a task may move
//! between threads) keep tokio's timer.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How often a thread's deadlines are checked, so how late one may fire.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// The deadline passed before the future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

/// Runs `future` until `deadline`: its output, or [`Elapsed`] (the future is then dropped).
/// As `tokio::time::timeout_at`, the future is polled first, so an output ready at the
/// deadline wins.
pub(crate) fn within<F: Future>(deadline: Instant, future: F) -> Within<F> {
    let timer = if crate::executor::current().is_none() {
        Timer::Tokio(None)
    } else {
        Timer::Ticker(Slot(None))
    };
    Within {
        future,
        deadline,
        timer,
    }
}

/// [`within`] on this thread's [`Deadlines`]: only for a future that never leaves the thread.
#[cfg(test)]
fn on_this_thread<F: Future>(deadline: Instant, future: F) -> Within<F> {
    Within {
        future,
        deadline,
        timer: Timer::Ticker(Slot(None)),
    }
}

pin_project_lite::pin_project! {
    /// The future of [`within`]: written out rather than an `async fn`, which held `future`
    /// two or three times over (once per nested call and `pin!`), and so made every request's
    /// future, copied into its box on each request, larger by as much.
    pub(crate) struct Within<F> {
        #[pin]
        future: F,
        deadline: Instant,
        timer: Timer,
    }
}

/// What tells a [`Within`] that its deadline passed.
enum Timer {
    /// The thread's ticker, on an executor thread.
    Ticker(Slot),
    /// Tokio's timer elsewhere (a task of a multi-thread runtime may move between threads),
    /// made when the future first waits.
    Tokio(Option<Pin<Box<tokio::time::Sleep>>>),
}

impl<F: Future> Future for Within<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match this.timer {
            Timer::Ticker(slot) => slot.poll_elapsed(*this.deadline, cx).map(Err),
            Timer::Tokio(sleep) => sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until((*this.deadline).into())))
                .as_mut()
                .poll(cx)
                .map(|()| Err(Elapsed)),
        }
    }
}

thread_local! {
    static DEADLINES: RefCell<Deadlines> = const { RefCell::new(Deadlines::new()) };
}

/// One waiting future's place in its thread's [`Deadlines`], given back when it is dropped.
struct Slot(Option<usize>);

impl Slot {
    fn poll_elapsed(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<Elapsed> {
        DEADLINES.with_borrow_mut(|deadlines| match self.0 {
            None => {
                self.0 = Some(deadlines.insert(deadline, cx.waker().clone()));
                Poll::Pending
            }
            Some(index) => deadlines.poll(index, cx.waker()),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(index) = self.0 {
            // At thread exit the table may be gone already, and its entries with it.
            let _ = DEADLINES.try_with(|deadlines| {
                if let Ok(mut deadlines) = deadlines.try_borrow_mut() {
                    deadlines.remove(index);
                }
            });
        }
    }
}

/// A waiting future: when it must give up, and how to wake it.
struct Entry {
    deadline: Instant,
    waker: Option<Waker>,
    elapsed: bool,
}

/// The deadlines of one thread's waiting futures, in a slab (a place is reused once freed).
struct Deadlines {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// Whether this thread's ticker runs (it stops when no deadline is left).
    ticking: bool,
}

impl Deadlines {
    const fn new() -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
            ticking: false,
        }
    }

    fn insert(&mut self, deadline: Instant, waker: Waker) -> usize {
        let entry = Some(Entry {
            deadline,
            waker: Some(waker),
            elapsed: false,
        });
        let index = match self.free.pop() {
            Some(index) => {
                self.entries[index] = entry;
                index
            }
            None => {
                self.entries.push(entry);
                self.entries.len() - 1
            }
        };
        if !self.ticking {
            self.ticking = true;
            tokio::spawn(tick());
        }
        index
    }

    fn poll(&mut self, index: usize, waker: &Waker) -> Poll<Elapsed> {
        match self.entries.get_mut(index).and_then(Option::as_mut) {
            Some(entry) if entry.elapsed => Poll::Ready(Elapsed),
            Some(entry) => {
                if !entry.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    entry.waker = Some(waker.clone());
                }
                Poll::Pending
            }
            None => Poll::Ready(Elapsed),
        }
    }

    fn remove(&mut self, index: usize) {
        if let Some(place) = self.entries.get_mut(index)
            && place.take().is_some()
        {
            self.free.push(index);
        }
    }

    /// Wakes the futures whose deadline passed by `now`; whether any deadline is left.
    fn fire(&mut self, now: Instant) -> bool {
        let mut left = false;
        for entry in self.entries.iter_mut().flatten() {
            if entry.elapsed {
                continue;
            }
            if entry.deadline <= now {
                entry.elapsed = true;
                if let Some(waker) = entry.waker.take() {
                    // Schedules the task; nothing is polled here.
                    waker.wake();
                }
            } else {
                left = true;
            }
        }
        if !left {
            self.ticking = false;
        }
        left
    }
}

/// The thread's ticker: checks its deadlines every [`TICK`] while any is left.
async fn tick() {
    // Dropped unfinished with its runtime: the next runtime on this thread starts its own.
    let _stopped = Stopped;
    loop {
        tokio::time::sleep(TICK).await;
        let now = Instant::now();
        if !DEADLINES.with_borrow_mut(|deadlines| deadlines.fire(now)) {
            return;
        }
    }
}

/// Marks the thread's ticker stopped when it ends or is dropped.
struct Stopped;

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = DEADLINES.try_with(|deadlines| {
            if let Ok(mut deadlines) = deadlines.try_borrow_mut() {
                deadlines.ticking = false;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a current-thread runtime, as an executor's.
    fn on_executor_like_thread<F: Future>(future: F) -> F::Output {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|error| panic!("runtime: {error}"));
        runtime.block_on(future)
    }

    #[test]
    fn a_deadline_fires_within_a_tick_and_a_finished_future_wins() {
        on_executor_like_thread(async {
            let started = Instant::now();
            let never = std::future::pending::<()>();
            let outcome = on_this_thread(started + Duration::from_millis(30), never).await;
            let took = started.elapsed();
            assert_eq!(outcome, Err(Elapsed));
            assert!(took >= Duration::from_millis(30), "{took:?}");
            assert!(took < Duration::from_millis(30) + 10 * TICK, "{took:?}");
            let quick = on_this_thread(Instant::now() + Duration::from_secs(5), async { 7 }).await;
            assert_eq!(quick, Ok(7));
            DEADLINES.with_borrow(|deadlines| {
                assert!(
                    deadlines.entries.iter().all(Option::is_none),
                    "places given back"
                );
            });
        });
    }

    #[test]
    fn places_are_reused_and_the_ticker_stops_when_none_is_left() {
        on_executor_like_thread(async {
            for _ in 0..3 {
                let soon = Instant::now() + Duration::from_millis(10);
                let a = on_this_thread(soon, std::future::pending::<()>());
                let b = on_this_thread(soon, tokio::time::sleep(Duration::from_millis(1)));
                let (a, b) = tokio::join!(a, b);
                assert_eq!((a, b), (Err(Elapsed), Ok(())));
            }
            tokio::time::sleep(3 * TICK).await;
            DEADLINES.with_borrow(|deadlines| {
                assert!(deadlines.entries.len() <= 2, "{}", deadlines.entries.len());
                assert!(!deadlines.ticking, "the ticker stopped");
            });
        });
    }
}
