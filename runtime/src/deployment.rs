//! A deployment: one worker (code + vars + limits) and the isolate that serves it.
//! Reloading swaps in a new isolate only once the new code has started successfully, so a
//! broken edit never takes a working deployment down.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Mutex;

use crate::isolate::StartError;
use crate::isolate::thread::{IsolateThread, Message};
use crate::worker::WorkerSource;

/// A worker and its running isolate.
#[derive(Debug)]
pub struct Deployment {
    worker: ArcSwap<WorkerSource>,
    isolate: ArcSwap<IsolateThread>,
    restart: Mutex<()>,
}

/// The deployment could not take the request.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The isolate is gone and a new one failed to start.
    #[error("the worker could not be started: {0}")]
    Unavailable(#[from] StartError),
}

impl Deployment {
    /// Starts the worker's isolate.
    pub async fn start(worker: Arc<WorkerSource>) -> Result<Self, StartError> {
        let isolate = IsolateThread::spawn(worker.clone()).await?;
        Ok(Self {
            worker: ArcSwap::new(worker),
            isolate: ArcSwap::from_pointee(isolate),
            restart: Mutex::new(()),
        })
    }

    /// The worker this deployment runs now.
    pub fn worker(&self) -> Arc<WorkerSource> {
        self.worker.load_full()
    }

    /// Starts `worker` and, if it starts, serves new requests with it; the old isolate
    /// finishes what it has in flight.
    pub async fn reload(&self, worker: Arc<WorkerSource>) -> Result<(), StartError> {
        let isolate = IsolateThread::spawn(worker.clone()).await?;
        let _guard = self.restart.lock().await;
        self.worker.store(worker);
        self.isolate.store(Arc::new(isolate));
        Ok(())
    }

    /// Sends a message to a live isolate, restarting the isolate if it has died.
    pub(crate) async fn send(&self, message: Message) -> Result<Arc<IsolateThread>, DispatchError> {
        let isolate = self.isolate.load_full();
        let message = match isolate.send(message) {
            Ok(()) => return Ok(isolate),
            Err(message) => message,
        };
        let isolate = self.restarted().await?;
        match isolate.send(message) {
            Ok(()) => Ok(isolate),
            Err(_) => Err(DispatchError::Unavailable(StartError::Runtime(
                "the new isolate exited at once".to_owned(),
            ))),
        }
    }

    async fn restarted(&self) -> Result<Arc<IsolateThread>, StartError> {
        let _guard = self.restart.lock().await;
        let current = self.isolate.load_full();
        if current.is_alive() {
            return Ok(current);
        }
        tracing::warn!(worker = %self.worker.load().name, "isolate exited; starting a new one");
        let isolate = Arc::new(IsolateThread::spawn(self.worker.load_full()).await?);
        self.isolate.store(isolate.clone());
        Ok(isolate)
    }
}
