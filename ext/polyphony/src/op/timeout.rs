//! `timeout(duration, exception_spec, move_on_value) { }`: runs the block with
//! a timer that, on expiry, raises a private marker exception in this fiber.
//! The marker is recognised by identity, so nested timeouts unwind to their
//! own scope. The timer is removed on every exit, and a marker already
//! queued but not yet delivered is withdrawn from the run queue.

use crate::helpers::id;
use std::time::Duration;

use magnus::Error;
use rb_sys::VALUE;

use crate::helpers::{call, protect, raw, QNIL};
use crate::ruby_api::backend::Backend;

pub fn timeout(
    b: &Backend,
    d: Duration,
    spec: VALUE,
    move_on_value: VALUE,
) -> Result<VALUE, Error> {
    let fiber = b.current_fiber();
    let marker_class = crate::ruby_api::timeout_exception_class();
    let marker = call(marker_class, id!("new"), &[])?;
    let id = b.timers.borrow_mut().add(d, fiber, marker);
    let r = protect(|| unsafe { rb_sys::rb_yield(QNIL) });
    b.timers.borrow_mut().cancel(id);
    b.rq.borrow_mut().remove_if_value(fiber, marker);
    std::hint::black_box(marker);
    match r {
        Ok(v) => Ok(v),
        Err(e) => {
            let is_ours = e.value().map(|v| raw(v) == marker).unwrap_or(false);
            if !is_ours {
                return Err(e);
            }
            if crate::helpers::is_nil(spec) {
                return Ok(move_on_value);
            }
            let exc = call(
                crate::ruby_api::polyphony_module(),
                id!("__timeout_exception__"),
                &[spec],
            )?;
            Err(crate::helpers::exception_error(exc))
        }
    }
}
