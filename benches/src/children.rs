//! Child processes the harness started (servers): registered so that Ctrl-C, SIGTERM or
//! SIGHUP kill them before this process exits, never leaving a server behind.

use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError};

/// A registered child, shared with the signal watcher.
pub type SharedChild = Arc<Mutex<Child>>;

static CHILDREN: Mutex<Vec<(u64, SharedChild)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
static WATCH: Once = Once::new();

/// Registers `child` to be killed on a termination signal; returns its registration id.
pub fn register(child: SharedChild) -> u64 {
    WATCH.call_once(watch_signals);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((id, child));
    id
}

/// Forgets a child (it has been killed and reaped).
pub fn unregister(id: u64) {
    CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|(other, _)| *other != id);
}

/// Kills and reaps every registered child.
pub fn kill_all() {
    let children: Vec<SharedChild> = CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain(..)
        .map(|(_, child)| child)
        .collect();
    for child in children {
        let mut child = child.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A thread that waits for SIGINT, SIGTERM or SIGHUP, kills the children and exits.
fn watch_signals() {
    let spawned = std::thread::Builder::new()
        .name("isola-bench-signals".to_owned())
        .spawn(|| {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            let code = runtime.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                    signal(SignalKind::hangup()),
                ) else {
                    return None;
                };
                Some(tokio::select! {
                    _ = int.recv() => 130,
                    _ = term.recv() => 143,
                    _ = hup.recv() => 129,
                })
            });
            if let Some(code) = code {
                kill_all();
                eprintln!("\ninterrupted: stopped the servers this run started");
                std::process::exit(code);
            }
        });
    if let Err(error) = spawned {
        eprintln!("warning: cannot watch for Ctrl-C ({error}); servers may outlive an interrupt");
    }
}
