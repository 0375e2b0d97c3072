//! The lifecycle of a spun fiber ([`fiber_body`]): run the block (again on
//! `Polyphony::Restart`), turn `MoveOn`/`Terminate` into a quiet result,
//! shut down the children still running (the hook `finalize_children`,
//! which may switch fibers), inform monitors and awaiters, leave the parent
//! and hand an uncaught error to it. Also `spin` itself, and the rules the
//! run loop asks about fibers that never started (`core::lifecycle`).
//! Everything that can raise runs under `rb_protect`; nothing unwinds over
//! Rust frames.

use crate::rt::hooks::{call_hook, Hook};
use std::sync::atomic::{AtomicU64, Ordering};

use super::awaiting;
use super::state::*;
use std::cell::Cell;

use crate::rt::Error;
use magnus::{prelude::*, Value};
use rb_sys::VALUE;

use crate::core::Backend;
use crate::rt::{
    arg_error, call, consts, id, is_array, is_nil, kind_of, protect, raw, type_error, val, QNIL,
    QTRUE,
};

/// The one proc every Polyphony fiber is created with: its body is
/// [`fiber_body`]. Sharing it saves two allocations per spin.
pub(super) fn body_proc() -> VALUE {
    static PROC: AtomicU64 = AtomicU64::new(0);
    let v = PROC.load(Ordering::Relaxed);
    if v != 0 {
        return v as VALUE;
    }
    // SAFETY: GVL held; `fiber_body` has the signature of a block function.
    let p = unsafe { rb_sys::rb_proc_new(Some(fiber_body), QNIL) };
    // SAFETY: GVL held; `p` is a new live object, kept for the life of the process.
    unsafe { rb_sys::rb_gc_register_mark_object(p) };
    PROC.store(p as u64, Ordering::Relaxed);
    p
}

// ---- lifecycle -------------------------------------------------------------

pub(super) enum Outcome {
    Done,
    /// A non-exception jump (thread kill): resumed once the fiber is tidied.
    Jump(i32),
    /// An uncaught exception in a fiber that became its thread's root fiber
    /// (the forking fiber, in the child of a fork): it has no parent to
    /// report to, so it ends the thread (the process) as in plain Ruby.
    Raise(VALUE),
}

/// Body of every spun fiber. `arg` is the value of its first resume.
///
/// # Safety
/// Called by Ruby only, as the block function of [`body_proc`], in the new
/// fiber with the GVL held. It never unwinds: a Rust panic is caught here
/// and raised as a `RuntimeError` in the fiber (which ends with it), after
/// every Rust value of the lifecycle was dropped.
pub(super) unsafe extern "C" fn fiber_body(
    arg: VALUE,
    _callback: VALUE,
    _argc: std::os::raw::c_int,
    _argv: *const VALUE,
    _blockarg: VALUE,
) -> VALUE {
    let r = std::panic::catch_unwind(|| {
        if let Ok(b) = Backend::current() {
            b.fiber_entered();
        }
        // SAFETY: GVL held, in the fiber being started.
        let fiber = unsafe { rb_sys::rb_fiber_current() };
        run(fiber, arg)
    });
    // SAFETY: nothing below holds a Rust value that needs dropping when the
    // jump or raise leaves this frame (the panic payload is dropped first).
    unsafe {
        match r {
            Ok(Outcome::Jump(tag)) => rb_sys::rb_jump_tag(tag),
            Ok(Outcome::Raise(exc)) => rb_sys::rb_exc_raise(exc),
            Ok(Outcome::Done) => QNIL,
            Err(payload) => {
                let exc = crate::rt::panic_error(payload);
                rb_sys::rb_exc_raise(exc)
            }
        }
    }
}

pub(super) fn run(fiber: VALUE, value: VALUE) -> Outcome {
    let st = state(fiber);
    st.running.set(RUNNING);
    let (result, uncaught, jump) = run_block(fiber, &st, value);
    let reraise = uncaught && st.main.get() && is_nil(st.parent.get());
    if let Err(e) = finalize(fiber, &st, result, uncaught, jump.is_some()) {
        if let Some(exc) = e.exception() {
            let _ = call_hook(Hook::FiberBodyError, &[exc]);
        }
    }
    match jump {
        Some(tag) => Outcome::Jump(tag),
        None if reraise => Outcome::Raise(st.result.get()),
        None => Outcome::Done,
    }
}

/// Runs the block until it returns or raises; a `Restart` runs it again.
/// Returns (result, uncaught error?, jump tag).
pub(super) fn run_block(
    fiber: VALUE,
    st: &FiberState,
    mut value: VALUE,
) -> (VALUE, bool, Option<i32>) {
    loop {
        let block = st.block.get();
        // SAFETY: inside `protect`: what the call raises (or throws) comes back as `Err` instead of
        // unwinding over Rust frames; GVL held, arguments are live objects the caller holds.
        let r = protect(|| unsafe {
            if crate::rt::is_exception(value) {
                rb_sys::rb_funcallv(value, id!("invoke"), 0, std::ptr::null());
            }
            if is_nil(block) {
                rb_sys::rb_raise(
                    rb_sys::rb_eNoMethodError,
                    c"undefined method `call' for nil".as_ptr(),
                );
            }
            rb_sys::rb_proc_call_with_block(block, 1, &value, QNIL)
        });
        let err = match r {
            Ok(v) => return (v, false, None),
            Err(e) => e,
        };
        let Some(exc) = err.exception() else {
            return (QNIL, false, err.jump_tag());
        };
        if kind_of(exc, consts::restart()) {
            let mb = st.mailbox.get();
            if !is_nil(mb) {
                let _ = call(mb, id!("clear"), &[]);
            }
            value = call(exc, id!("value"), &[]).unwrap_or(QNIL);
            continue;
        }
        if kind_of(exc, consts::move_on()) || kind_of(exc, consts::terminate()) {
            return (call(exc, id!("value"), &[]).unwrap_or(QNIL), false, None);
        }
        set_source_fiber(exc, fiber);
        return (exc, true, None);
    }
}

/// `exc.source_fiber ||= fiber`.
pub(super) fn set_source_fiber(exc: VALUE, fiber: VALUE) {
    let id = id!("@source_fiber");
    // SAFETY: GVL held; `exc` is a live exception, and a frozen one is left alone (an ivar set
    // on it would raise).
    unsafe {
        if is_nil(rb_sys::rb_ivar_get(exc, id)) && rb_sys::rb_obj_frozen_p(exc) != QTRUE {
            rb_sys::rb_ivar_set(exc, id, fiber);
        }
    }
}

/// Children first, then result, monitors, parent, run queue.
pub(super) fn finalize(
    fiber: VALUE,
    st: &FiberState,
    mut result: VALUE,
    mut uncaught: bool,
    jumping: bool,
) -> Result<(), Error> {
    // Once: `Fiber#finalize` may have ended the fiber's life in the tree
    // before its block returned.
    if st.running.get() == FINISHED {
        return Ok(());
    }
    if st.has_children() && !jumping {
        let u = if uncaught {
            QTRUE
        } else {
            rb_sys::special_consts::Qfalse as VALUE
        };
        let pair = call_hook(Hook::FinalizeChildren, &[fiber, result, u])?;
        // SAFETY: a live Array (checked or made by this code); an index past its end reads nil,
        // nothing raises.
        result = unsafe { rb_sys::rb_ary_entry(pair, 0) };
        // SAFETY: a live Array (checked or made by this code); an index past its end reads nil,
        // nothing raises.
        uncaught = val(unsafe { rb_sys::rb_ary_entry(pair, 1) }).to_bool();
    }
    st.result.set(result);
    st.running.set(FINISHED);
    if let Ok(b) = Backend::current() {
        if b.tracing() {
            b.emit("terminate", &[fiber, result], false);
        }
    }
    let parent = st.parent.get();
    // Everything waiting on the fiber is woken in the order it started
    // waiting: awaits and monitors (supervisors among them) alike.
    enum Waiter {
        Await(std::sync::Arc<awaiting::AwaitCtx>),
        Monitor(VALUE),
    }
    let mut waiters: Vec<(u64, Waiter)> = awaiting::take(st)
        .into_iter()
        .map(|c| (c.seq, Waiter::Await(c)))
        .collect();
    st.each_monitor_seq(|m, seq| waiters.push((seq, Waiter::Monitor(m))));
    waiters.sort_by_key(|(seq, _)| *seq);
    let mut awaited_by_parent = false;
    for (_, w) in &waiters {
        match w {
            Waiter::Await(ctx) => {
                awaited_by_parent |= awaiting::notify_one(ctx, fiber, result, parent)?
            }
            Waiter::Monitor(m) => {
                // SAFETY: GVL held; a new Array of live values, no `RefCell` borrow held.
                let msg = unsafe {
                    let a = rb_sys::rb_ary_new_capa(2);
                    rb_sys::rb_ary_push(a, fiber);
                    rb_sys::rb_ary_push(a, result);
                    a
                };
                let mb = monitor_mailbox(*m)?;
                call(mb, id!("push"), &[msg])?;
            }
        }
    }
    st.unlink();
    if !is_nil(parent) && uncaught && !awaited_by_parent && !st.has_monitor(parent) {
        schedule(parent, result, true)?;
    }
    if let Ok(b) = Backend::current() {
        b.unschedule(fiber, None);
    }
    Ok(())
}

/// Called by a runner before resuming `fiber` with `value`: a Polyphony
/// fiber that has not started yet and is stopped, terminated, cancelled or
/// raised into never needs a stack. It ends at once, as if its block had been
/// interrupted at its first line. Returns true if it was ended here.
pub(crate) fn end_unstarted(fiber: VALUE, value: VALUE) -> Result<bool, Error> {
    if !crate::rt::is_exception(value) {
        return Ok(false);
    }
    let Some(st) = try_state(fiber) else {
        return Ok(false);
    };
    if st.running.get() != NOT_STARTED || is_nil(st.block.get()) || st.has_children() {
        return Ok(false);
    }
    if kind_of(value, consts::restart()) || kind_of(value, consts::interjection()) {
        return Ok(false);
    }
    if kind_of(value, consts::move_on()) || kind_of(value, consts::terminate()) {
        let v = call(value, id!("value"), &[])?;
        finalize(fiber, &st, v, false, true)?;
    } else {
        set_source_fiber(value, fiber);
        finalize(fiber, &st, value, true, true)?;
    }
    Ok(true)
}

/// True for a Polyphony fiber whose block has not started.
pub(crate) fn is_unstarted(fiber: VALUE) -> bool {
    try_state(fiber)
        .map(|s| s.running.get() == NOT_STARTED && !is_nil(s.block.get()))
        .unwrap_or(false)
}

/// Called by a runner when resuming `fiber` failed before its body ran
/// (e.g. `FiberError`: no memory or no map left for its stack). A Polyphony
/// fiber that never started ends with that error, as if its block had
/// raised it. Returns false for other fibers (the caller retries later).
pub(crate) fn fail_to_start(fiber: VALUE, exc: VALUE) -> Result<bool, Error> {
    let Some(st) = try_state(fiber) else {
        return Ok(false);
    };
    if st.running.get() != NOT_STARTED || is_nil(st.block.get()) {
        return Ok(false);
    }
    set_source_fiber(exc, fiber);
    finalize(fiber, &st, exc, true, true)?;
    Ok(true)
}

/// Queues `fiber` on its thread's backend (cross-thread safe). Finished
/// fibers and threads without a backend are ignored.
pub(crate) fn schedule(fiber: VALUE, value: VALUE, priority: bool) -> Result<(), Error> {
    let st = try_state(fiber);
    if st.as_ref().is_some_and(|s| s.finished()) {
        return Ok(());
    }
    let th = st.map(|s| s.thread.get()).unwrap_or(QNIL);
    if let Some(b) = Backend::of_thread(th)? {
        b.schedule(fiber, value, priority);
    }
    Ok(())
}

pub(super) fn monitor_mailbox(fiber: VALUE) -> Result<VALUE, Error> {
    lazy_queue(&state(fiber).monitor_mailbox)
}

pub(super) fn mailbox(fiber: VALUE) -> Result<VALUE, Error> {
    lazy_queue(&state(fiber).mailbox)
}

/// The Polyphony::Queue in `cell`, created on first use.
pub(super) fn lazy_queue(cell: &Cell<VALUE>) -> Result<VALUE, Error> {
    let q = cell.get();
    if !is_nil(q) {
        return Ok(q);
    }
    let q = call(consts::queue(), id!("new"), &[])?;
    // `Queue.new` is Ruby code: another thread may have created and used
    // the mailbox meanwhile (a cross-thread `<<` racing the owner's first
    // `receive`). Keep the first one, or a message would be lost.
    let won = cell.get();
    if !is_nil(won) {
        return Ok(won);
    }
    cell.set(q);
    Ok(q)
}

// ---- spin ------------------------------------------------------------------

/// Records the spin site: the `skip`-th Ruby frame (native frames, such as
/// the `spin` method itself, are passed over).
pub(super) fn capture_site(st: &FiberState, skip: usize) {
    const MAX: usize = 16;
    let mut frames = [0 as VALUE; MAX];
    let mut lines = [0i32; MAX];
    let want = (skip + 3).min(MAX);
    let n =
        // SAFETY: GVL held; frames come from `rb_profile_frames` just above, which returns live
        // frame objects.
        unsafe { rb_sys::rb_profile_frames(0, want as _, frames.as_mut_ptr(), lines.as_mut_ptr()) };
    let mut left = skip;
    for i in 0..(n.max(0) as usize).min(MAX) {
        // Native frames have no path.
        // SAFETY: GVL held; frames come from `rb_profile_frames` just above, which returns live
        // frame objects.
        if is_nil(unsafe { rb_sys::rb_profile_frame_path(frames[i]) }) {
            continue;
        }
        if left == 0 {
            st.frame.set(frames[i]);
            st.line.set(lines[i]);
            return;
        }
        left -= 1;
    }
}

/// Creates a child of `parent` running `block`, belonging to the current
/// thread, and queues it. `site`: nil (record the caller's location), an
/// Integer (skip that many more Ruby frames), an Array (explicit backtrace)
/// or a Fiber (copy its spin site).
pub(super) fn spin_child(
    parent: VALUE,
    tag: VALUE,
    site: VALUE,
    block: VALUE,
) -> Result<VALUE, Error> {
    // SAFETY: inside `protect`: what the call raises (or throws) comes back as `Err` instead of
    // unwinding over Rust frames; GVL held, arguments are live objects the caller holds.
    let fiber = protect(|| unsafe {
        let id = id!("new");
        rb_sys::rb_funcall_with_block(consts::fiber(), id, 0, std::ptr::null(), body_proc())
    })?;
    adopt(fiber, parent, tag, site, block)
}

/// Makes `fiber` (new, not started) a Polyphony fiber: a child of
/// `parent` with `tag`, `block` and the spin site `site`, scheduled. What
/// `spin` does after making the fiber, and `Fiber#prepare` for one made by
/// hand.
pub(super) fn adopt(
    fiber: VALUE,
    parent: VALUE,
    tag: VALUE,
    site: VALUE,
    block: VALUE,
) -> Result<VALUE, Error> {
    let backend = Backend::current()?;
    // SAFETY: GVL held (this runs in a Ruby method of the current thread); no arguments, never
    // raises.
    let st = FiberState::new(unsafe { rb_sys::rb_thread_current() });
    st.parent.set(parent);
    st.tag.set(tag);
    st.block.set(block);
    if is_nil(site) {
        capture_site(&st, 0);
    } else if rb_sys::FIXNUM_P(site) {
        // SAFETY: GVL held; the argument is an Integer (checked by the caller), so the conversion
        // does not raise.
        let n = unsafe { rb_sys::rb_num2long(site) };
        if n < 0 {
            return Err(arg_error("negative frame count"));
        }
        capture_site(&st, n as usize);
    // SAFETY: GVL held; reads the type or state of a live object the caller holds, never raises.
    } else if unsafe { rb_sys::rb_obj_is_fiber(site) } == QTRUE {
        let other = state(site);
        st.caller.set(other.caller.get());
        st.frame.set(other.frame.get());
        st.line.set(other.line.get());
    } else if is_array(site) {
        st.caller.set(site);
    } else {
        return Err(type_error(format!(
            "spin site must be nil, an Integer, an Array or a Fiber, got {}",
            crate::rt::inspect_class(site)
        )));
    }
    let (obj, st) = attach_state(fiber, st);
    let cached = backend.spinner_state();
    let pobj = if !is_nil(cached) && state_of_obj(cached).fiber.get() == parent {
        cached
    } else {
        let o = state_obj(parent);
        backend.set_spinner_state(o);
        o
    };
    let ps = state_of_obj(pobj);
    ps.link_child(pobj, obj);
    if ps.supervise.get() {
        st.add_monitor(parent);
    }
    if backend.tracing() {
        backend.emit("spin", &[fiber], true);
    }
    backend.schedule(fiber, QNIL, false);
    Ok(fiber)
}

pub(super) fn block_or_nil() -> VALUE {
    // SAFETY: GVL held; asks for the current block, which does not raise.
    unsafe {
        if rb_sys::rb_block_given_p() != 0 {
            rb_sys::rb_block_proc()
        } else {
            QNIL
        }
    }
}

/// `Fiber#spin(tag = nil, orig_caller = nil) { |v| }`.
pub(super) fn rb_fiber_spin(rb_self: Value, args: &[Value]) -> Result<Value, magnus::Error> {
    crate::rt::check_arity(args, 0, 2)?;
    let tag = args.first().map(|v| raw(*v)).unwrap_or(QNIL);
    let site = args.get(1).map(|v| raw(*v)).unwrap_or(QNIL);
    spin_child(raw(rb_self), tag, site, block_or_nil())
        .map(val)
        .map_err(Into::into)
}

/// `Kernel#spin(tag = nil) { |v| }`: a child of the current fiber.
pub(super) fn rb_object_spin(args: &[Value]) -> Result<Value, magnus::Error> {
    crate::rt::check_arity(args, 0, 1)?;
    let tag = args.first().map(|v| raw(*v)).unwrap_or(QNIL);
    // SAFETY: GVL held (this runs in a Ruby method of the current thread); no arguments, never
    // raises.
    let cur = unsafe { rb_sys::rb_fiber_current() };
    spin_child(cur, tag, QNIL, block_or_nil())
        .map(val)
        .map_err(Into::into)
}
