//! Executor threads (`[node] executor_threads`): a fixed set of OS threads, each running a
//! current-thread tokio runtime that hosts many isolates and the connections the front end
//! hands it, as workerd runs many isolates per thread. A request whose connection lives on the
//! thread of the isolate that serves it crosses no thread and wakes no other thread; one OS
//! thread per isolate (the default, `executor_threads = 0`) pays a wake-up and two context
//! switches per request instead, and a thread per idle tenant.
//!
//! Isolates never move between threads (V8 binds an isolate to the thread that created it
//! when there is no `v8::Locker`), so an isolate's task is spawned on one executor for life;
//! `isolate::host` enters and exits its isolate around every poll.

use std::cell::Cell;
use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The node's executor threads, if it has any.
static EXECUTORS: OnceLock<Executors> = OnceLock::new();

thread_local! {
    /// The index of the executor this thread is, if it is one.
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The executor threads of the process.
#[derive(Debug)]
pub struct Executors {
    threads: Vec<Executor>,
    /// Round robin for connections.
    next: AtomicUsize,
}

/// One executor thread, as the rest of the node reaches it.
#[derive(Debug)]
struct Executor {
    handle: tokio::runtime::Handle,
    /// Isolates (and spares) hosted there now.
    isolates: AtomicUsize,
}

/// Why the executors could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The OS refused a thread or its runtime.
    #[error("cannot start executor thread {index}")]
    Spawn {
        /// Which thread.
        index: usize,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// Starts `threads` executor threads for the rest of the process (nothing for 0, and nothing
/// the second time).
pub fn start(threads: usize) -> Result<(), ExecutorError> {
    if threads == 0 || EXECUTORS.get().is_some() {
        return Ok(());
    }
    let mut started = Vec::with_capacity(threads);
    for index in 0..threads {
        started.push(Executor {
            handle: spawn_thread(index).map_err(|source| ExecutorError::Spawn { index, source })?,
            isolates: AtomicUsize::new(0),
        });
    }
    let _ = EXECUTORS.set(Executors {
        threads: started,
        next: AtomicUsize::new(0),
    });
    Ok(())
}

/// The executors, when the node runs isolates on them.
pub fn executors() -> Option<&'static Executors> {
    EXECUTORS.get()
}

/// The executor the calling thread is, if it is one.
pub fn current() -> Option<usize> {
    CURRENT.get()
}

fn spawn_thread(index: usize) -> std::io::Result<tokio::runtime::Handle> {
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("executor-{index}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = handle_tx.send(Err(error));
                    return;
                }
            };
            CURRENT.set(Some(index));
            let _ = handle_tx.send(Ok(runtime.handle().clone()));
            runtime.block_on(std::future::pending::<()>());
        })?;
    handle_rx
        .recv()
        .map_err(|_| std::io::Error::other("the executor thread exited while starting"))?
}

impl Executors {
    /// Where a new isolate goes: the calling executor (so its connections reach it without
    /// crossing threads), else the one hosting the fewest isolates.
    pub fn place_isolate(&self) -> usize {
        if let Some(index) = current() {
            return index;
        }
        self.least_loaded()
    }

    /// The executor hosting the fewest isolates.
    pub fn least_loaded(&self) -> usize {
        self.threads
            .iter()
            .enumerate()
            .min_by_key(|(_, executor)| executor.isolates.load(Ordering::Relaxed))
            .map_or(0, |(index, _)| index)
    }

    /// The executor for a new connection (round robin).
    pub fn next_for_connection(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.threads.len().max(1)
    }

    /// The runtime of executor `index` (for `Send` tasks such as connections).
    pub fn handle(&self, index: usize) -> &tokio::runtime::Handle {
        &self.threads[index % self.threads.len()].handle
    }

    /// Runs `make` on executor `index` and spawns the isolate task it returns there for life;
    /// the executor counts it as hosted until it ends.
    pub fn spawn_isolate<M, F>(&self, index: usize, make: M)
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future<Output = ()> + 'static,
    {
        let index = index % self.threads.len();
        let executor = &self.threads[index];
        executor.isolates.fetch_add(1, Ordering::Relaxed);
        let hosted = Hosted { index };
        executor.handle.spawn(async move {
            let task = make();
            // An isolate is bound to this thread: its task must never run elsewhere, which a
            // current-thread runtime guarantees.
            deno_core::unsync::spawn(async move {
                task.await;
                drop(hosted);
            });
        });
    }
}

/// Counts an isolate as hosted on its executor while it lives.
struct Hosted {
    index: usize,
}

impl Drop for Hosted {
    fn drop(&mut self) {
        if let Some(executors) = executors() {
            executors.threads[self.index]
                .isolates
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}
