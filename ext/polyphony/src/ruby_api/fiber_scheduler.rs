//! `Polyphony::FiberScheduler`: Ruby's `Fiber::Scheduler` interface on the
//! thread's own backend and run queue, so code we do not patch
//! (C extensions waiting through `rb_io_wait`, `Thread::SizedQueue`, a stdlib
//! `Mutex` held by C code, `Addrinfo.getaddrinfo`…) suspends only the calling
//! fiber. Ruby calls the hooks only in non-blocking fibers, which every
//! spun fiber is.
//!
//! The hot hooks live here: `io_wait` (a readiness wait on the fd),
//! `kernel_sleep`, `block` and `unblock`. Their forms with a timeout, and the
//! other hooks, are in `lib/polyphony/core/fiber_scheduler.rb`.
//!
//! Cancellation: every wait here is a backend switchpoint, so a fiber
//! stopped or raised into while parked leaves it with that exception (the
//! in-flight poll is cancelled as for `wait_io`).

use crate::rt::hooks::{call_hook, Hook};
use crate::rt::id;
use magnus::{method, prelude::*, Error, RClass, RModule, Ruby, Value};

use crate::core::op;
use crate::core::Backend;
use crate::rt::{call, duration, io_fd, is_nil, raw, val, Dir, QNIL, QTRUE};

/// `IO::READABLE | IO::PRIORITY | IO::WRITABLE`: the same bits as poll(2)'s
/// POLLIN, POLLPRI and POLLOUT.
const EVENTS: u32 = (libc::POLLIN | libc::POLLPRI | libc::POLLOUT) as u32;
const FAILED: u32 = (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) as u32;

fn int(v: i64) -> Value {
    // SAFETY: GVL held; allocates or updates an object from live values, with no `RefCell` borrow
    // held (a GC here may mark).
    val(unsafe { rb_sys::rb_int2inum(v as _) })
}

/// `io_wait(io, events, timeout) → ready events | false`: parks the fiber
/// until `io` is ready for one of `events`; false when `timeout` passes
/// first. An error or hang-up reports all the requested events, so the
/// caller's next read or write sees it.
fn io_wait(rb_self: Value, io: Value, events: Value, timeout: Value) -> Result<Value, Error> {
    if !is_nil(raw(timeout)) {
        return call_hook(
            Hook::IoWaitTimeout,
            &[raw(rb_self), raw(io), raw(events), raw(timeout)],
        )
        .map(val)
        .map_err(Into::into);
    }
    let wanted: i64 = magnus::TryConvert::try_convert(events)?;
    let wanted = wanted as u32 & EVENTS;
    let wanted = if wanted == 0 {
        libc::POLLIN as u32
    } else {
        wanted
    };
    let dir = if wanted & libc::POLLOUT as u32 != 0 && wanted & libc::POLLIN as u32 == 0 {
        Dir::Write
    } else {
        Dir::Read
    };
    let fd = io_fd(raw(io), dir)?;
    let got = Backend::current()?.wait_ready(fd, wanted)? as u32;
    let ready = if got & FAILED != 0 {
        wanted
    } else {
        got & wanted
    };
    Ok(int(if ready == 0 { wanted } else { ready } as i64))
}

/// `kernel_sleep(duration = nil)`: sleeps (nil: until scheduled).
fn kernel_sleep(_rb_self: Value, args: &[Value]) -> Result<Value, Error> {
    crate::rt::check_arity(args, 0, 1)?;
    let b = Backend::current()?;
    match args.first().map(|v| raw(*v)) {
        None => b.wait_event(true).map(val).map_err(Into::into),
        Some(d) if is_nil(d) => b.wait_event(true).map(val).map_err(Into::into),
        Some(d) => op::sleep::sleep(&b, duration(d)?)
            .map(val)
            .map_err(Into::into),
    }
}

/// `block(blocker, timeout = nil) → true | false`: parks the fiber until
/// `unblock` schedules it (true), or `timeout` passes (false).
fn block(rb_self: Value, args: &[Value]) -> Result<Value, Error> {
    crate::rt::check_arity(args, 1, 2)?;
    if let Some(t) = args.get(1).filter(|t| !is_nil(raw(**t))) {
        return call_hook(Hook::BlockTimeout, &[raw(rb_self), raw(args[0]), raw(*t)])
            .map(val)
            .map_err(Into::into);
    }
    Backend::current()?.wait_event(true)?;
    Ok(val(QTRUE))
}

/// `unblock(blocker, fiber)`: makes `fiber` runnable; may be called from
/// any thread (the fiber's own thread is woken).
fn unblock(_rb_self: Value, _blocker: Value, fiber: Value) -> Result<Value, Error> {
    call(raw(fiber), id!("schedule"), &[])?;
    Ok(val(QNIL))
}

pub fn init(ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    let class: RClass = polyphony.define_class("FiberScheduler", ruby.class_object())?;
    class.define_method("io_wait", method!(io_wait, 3))?;
    class.define_method("kernel_sleep", method!(kernel_sleep, -1))?;
    class.define_method("block", method!(block, -1))?;
    class.define_method("unblock", method!(unblock, 2))?;
    Ok(())
}
