//! `timeout(duration, exception_spec, move_on_value) { }`: runs the block with
//! a timer that, on expiry, raises a private marker exception in this fiber.
//! The marker is recognised by identity, so nested timeouts unwind to their
//! own scope. The timer is removed on every exit, and a marker already
//! queued but not yet delivered is withdrawn from the run queue.

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
