//! The hooks of the `grad` calls running on this thread (debugger, profiler), kept on a
//! thread-local stack while each call runs. When none is active, applying a primitive pays
//! one thread-local read.

use std::cell::{Cell, RefCell};
use std::panic::Location;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::debug::{DebugEvent, DebugHook, Phase};
use crate::op::Op;
use crate::profile::Profile;
use crate::Tensor;

/// What one `grad` call asked to observe.
pub(crate) struct Hooks {
    pub id: u64,
    pub debug: Option<DebugHook>,
    pub profile: Option<Arc<Mutex<Profile>>>,
    /// Names of this call's parameter leaves, by node id, for graphs.
    pub leaf_names: Mutex<Vec<(usize, String)>>,
}

thread_local! {
    static STACK: RefCell<Vec<Arc<Hooks>>> = const { RefCell::new(Vec::new()) };
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// The hooks whose own backward pass is running (they account for it themselves).
    static IN_BACKWARD: Cell<u64> = const { Cell::new(0) };
}

/// True when some `grad` on this thread has a debugger or profiler.
#[inline]
pub(crate) fn active() -> bool {
    DEPTH.with(|d| d.get() > 0)
}

/// Removes the hooks when the `grad` call ends (also on panic).
pub(crate) struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        STACK.with(|s| s.borrow_mut().pop());
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

pub(crate) fn push(hooks: Arc<Hooks>) -> Guard {
    STACK.with(|s| s.borrow_mut().push(hooks));
    DEPTH.with(|d| d.set(d.get() + 1));
    Guard
}

fn snapshot() -> Vec<Arc<Hooks>> {
    STACK.with(|s| s.borrow().clone())
}

/// Marks the backward pass of `hooks` as running until the returned guard drops.
pub(crate) fn backward_scope(hooks: &Hooks) -> BackwardScope {
    BackwardScope(IN_BACKWARD.with(|b| b.replace(hooks.id)))
}

pub(crate) struct BackwardScope(u64);

impl Drop for BackwardScope {
    fn drop(&mut self) {
        IN_BACKWARD.with(|b| b.set(self.0));
    }
}

/// Reports one applied primitive (forward) to every active hook.
pub(crate) fn record(
    op: &Op,
    location: &'static Location<'static>,
    elapsed: Duration,
    inputs: &[&Tensor],
    out: &Tensor,
) {
    let skip = IN_BACKWARD.with(|b| b.get());
    for hooks in snapshot() {
        if hooks.id == skip {
            continue;
        }
        if let Some(p) = &hooks.profile {
            p.lock()
                .expect("profile lock")
                .add(&op.name(), location, Phase::Forward, elapsed);
        }
        if let Some(hook) = &hooks.debug {
            if let Some(what) = crate::debug::nonfinite(out.data()) {
                let event = DebugEvent::new(
                    op.name().into_owned(),
                    location,
                    Phase::Forward,
                    what,
                    inputs.iter().map(|&t| t.clone()).collect(),
                    out.clone(),
                    &hooks,
                );
                hook(&event);
            }
        }
    }
}

/// Reports the backward step of one node to `hooks` (its own `grad` call).
pub(crate) fn record_backward(
    hooks: &Hooks,
    op: &Op,
    location: &'static Location<'static>,
    elapsed: Duration,
    grads: &[Option<Tensor>],
    root: &Tensor,
) {
    if let Some(p) = &hooks.profile {
        p.lock()
            .expect("profile lock")
            .add(&op.name(), location, Phase::Backward, elapsed);
    }
    if let Some(hook) = &hooks.debug {
        for g in grads.iter().flatten() {
            if let Some(what) = crate::debug::nonfinite(g.data()) {
                let event = DebugEvent::new(
                    op.name().into_owned(),
                    location,
                    Phase::Backward,
                    what,
                    vec![root.clone()],
                    g.clone(),
                    hooks,
                );
                hook(&event);
                break;
            }
        }
    }
}
