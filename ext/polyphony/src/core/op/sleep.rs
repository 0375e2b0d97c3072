//! `sleep(duration)` and `timer_loop(interval)`: timers from the backend's
//! timer map (both selectors wait at most until the earliest deadline). A
//! fiber woken early has its timer removed, so it can never fire later.

use std::time::Duration;

use crate::rt::Error;
use rb_sys::VALUE;

use crate::core::Backend;
use crate::rt::{protect, raise_if_exception, QNIL};
use crate::timers::now_ns;

/// Parks the current fiber until `deadline` (monotonic ns) or an earlier
/// wake-up; returns the resume value (`nil` from the timer), raising a
/// scheduled exception.
pub fn sleep_until(b: &Backend, deadline: u64) -> Result<VALUE, Error> {
    let fiber = b.current_fiber();
    let id = b.sched.timers.borrow_mut().add_at(deadline, fiber, QNIL);
    let r = b.switch_fiber();
    b.sched.timers.borrow_mut().cancel(id);
    raise_if_exception(r?)
}

pub fn sleep(b: &Backend, d: Duration) -> Result<VALUE, Error> {
    sleep_until(
        b,
        now_ns().saturating_add(d.as_nanos().min(u64::MAX as u128 / 2) as u64),
    )
}

/// Calls the block every `interval`, on a fixed grid: if the block overruns,
/// missed ticks are skipped (no burst catch-up).
pub fn timer_loop(b: &Backend, interval: Duration) -> Result<VALUE, Error> {
    let step = (interval.as_nanos() as u64).max(1);
    let mut next = now_ns() + step;
    loop {
        sleep_until(b, next)?;
        // SAFETY: inside `protect`: what the call raises (or throws) comes back as `Err` instead of
        // unwinding over Rust frames; GVL held, arguments are live objects the caller holds.
        protect(|| unsafe { rb_sys::rb_yield(QNIL) })?;
        next += step;
        let now = now_ns();
        if next <= now {
            next += ((now - next) / step + 1) * step;
        }
    }
}
