//! Turns the front end runs. A request for an isolate hosted on the connection's own executor
//! is dispatched, and the isolate's turn run, in the connection's task as the request is sent,
//! instead of through the isolate's channel and a wake-up of its task: a response that
//! JavaScript gives at once is ready in the same poll of the connection that read the request
//! (one task poll per request instead of three). Everything else about the turn is the
//! isolate's own: its residence is entered as its task would be (`host::Residence`), the turn
//! is charged by its enforcer, and its I/O and timers wake its task.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use isola_bindings::context::IdMap;

use super::host::Residence;
use super::served::Served;
use crate::exchange::IncomingRequest;

thread_local! {
    /// The isolates hosted on this executor thread that take turns run by the front end, by
    /// id (`IsolateThread::id`, the node's own sequence number: hashed by a multiply).
    static HOSTED: RefCell<IdMap<Hosted>> = RefCell::new(IdMap::default());
}

/// An isolate hosted on this thread: how to reach its state and enter it.
struct Hosted {
    served: Weak<RefCell<Served>>,
    residence: Rc<Residence>,
}

/// An isolate's place in its thread's table; removed when dropped.
pub(super) struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        // Absent only while the thread's locals are being destroyed.
        let _ = HOSTED.try_with(|hosted| hosted.borrow_mut().remove(&self.0));
    }
}

/// Lets the front end run turns for isolate `id` (called from its task's poll: only `Host`
/// tasks, which run on executors, have a residence; none elsewhere).
pub(super) fn register(id: u64, served: &Rc<RefCell<Served>>) -> Option<Registration> {
    let residence = Residence::running()?;
    HOSTED.with_borrow_mut(|hosted| {
        hosted.insert(
            id,
            Hosted {
                served: Rc::downgrade(served),
                residence,
            },
        )
    });
    Some(Registration(id))
}

/// Dispatches `request` into isolate `id` and runs its turn now, if that isolate is hosted on
/// this thread, takes requests, and no isolate's code runs here already (a turn that hands a
/// queued request on must not run another isolate inside it). Gives the request back
/// otherwise, for the isolate's channel.
pub(crate) fn run(id: u64, request: Box<IncomingRequest>) -> Result<(), Box<IncomingRequest>> {
    if Residence::any_running() {
        return Err(request);
    }
    let found = HOSTED.with_borrow(|hosted| {
        let isolate = hosted.get(&id)?;
        Some((isolate.served.upgrade()?, isolate.residence.clone()))
    });
    let Some((served, residence)) = found else {
        return Err(request);
    };
    let Ok(mut served) = served.try_borrow_mut() else {
        return Err(request);
    };
    residence.run(|| served.turn_for(request))
}
