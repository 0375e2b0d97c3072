//! `timeout(duration, exception_spec, move_on_value) { }`: runs the block with
//! a timer that, on expiry, raises a private marker exception in this fiber.
//! The marker is recognised by identity, so nested timeouts unwind to their
//! own scope. The timer is removed on every exit, and a marker already
//! queued but not yet delivered is withdrawn from the run queue.
//!
//! [`within`] is the same for one native operation (no block, so nothing
//! nests inside it): it shares one marker object per process, made once.

use crate::rt::hooks::{call_hook, Hook};
use crate::rt::id;
use std::time::Duration;

use crate::rt::Error;
use rb_sys::VALUE;

use crate::core::Backend;
use crate::rt::{call, protect, QNIL};

pub fn timeout(
    b: &Backend,
    d: Duration,
    spec: VALUE,
    move_on_value: VALUE,
) -> Result<VALUE, Error> {
    let fiber = b.current_fiber();
    let marker_class = crate::rt::consts::timeout_exception();
    let marker = call(marker_class, id!("new"), &[])?;
    let id = b.sched.timers.borrow_mut().add(d, fiber, marker);
    // SAFETY: inside `protect`: what the call raises (or throws) comes back as `Err` instead of
    // unwinding over Rust frames; GVL held, arguments are live objects the caller holds.
    let r = protect(|| unsafe { rb_sys::rb_yield(QNIL) });
    b.sched.timers.borrow_mut().cancel(id);
    b.sched.rq.borrow_mut().remove_if_value(fiber, marker);
    rb_sys::rb_gc_guard!(marker);
    match r {
        Ok(v) => Ok(v),
        Err(e) => {
            let is_ours = e.exception() == Some(marker);
            if !is_ours {
                return Err(e);
            }
            if crate::rt::is_nil(spec) {
                return Ok(move_on_value);
            }
            let exc = call_hook(Hook::TimeoutException, &[spec])?;
            Err(crate::rt::exception_error(exc))
        }
    }
}

/// The marker of [`within`]: one `Polyphony::TimeoutException`, made once
/// and never collected (registered with the GC).
fn within_marker() -> VALUE {
    use std::sync::atomic::{AtomicU64, Ordering};
    static MARKER: AtomicU64 = AtomicU64::new(0);
    let v = MARKER.load(Ordering::Relaxed);
    if v != 0 {
        return v;
    }
    let m = call(crate::rt::consts::timeout_exception(), id!("new"), &[]).unwrap_or(QNIL);
    if crate::rt::is_nil(m) {
        return m;
    }
    // SAFETY: GVL held; `m` is a live object, kept alive from now on.
    unsafe { rb_sys::rb_gc_register_mark_object(m) };
    MARKER.store(m, Ordering::Relaxed);
    m
}

/// Runs `op` (one operation of the current fiber, which runs no block of
/// its caller's) with a deadline `d` away: `Ok(None)` if the deadline came
/// first. The operation ends as any interrupted one does (delivered, or
/// undone: docs/io-semantics.md); a marker that arrived with a completed
/// operation is withdrawn, never raised later.
pub fn within<T>(
    b: &Backend,
    d: Duration,
    op: impl FnOnce() -> Result<T, Error>,
) -> Result<Option<T>, Error> {
    let marker = within_marker();
    if crate::rt::is_nil(marker) {
        return op().map(Some);
    }
    let fiber = b.current_fiber();
    let id = b.sched.timers.borrow_mut().add(d, fiber, marker);
    let r = op();
    b.sched.timers.borrow_mut().cancel(id);
    b.sched.rq.borrow_mut().remove_if_value(fiber, marker);
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.exception() == Some(marker) => Ok(None),
        Err(e) => Err(e),
    }
}
