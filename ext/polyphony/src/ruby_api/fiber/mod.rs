//! The native parts of `Fiber`: `spin`, Polyphony's per-fiber accessors,
//! children and monitors, `await`, `schedule`. The fiber's state is in
//! `state.rs`, its lifecycle (body, finalization, the run loop's rules for
//! unstarted fibers) in `lifecycle.rs`, `await` in `awaiting.rs`. The rest
//! of the fiber API (stop, cancel, restart, messaging helpers) is Ruby, in
//! `lib/polyphony/extensions/fiber.rb`, built on the accessors defined here
//! (docs/structured-concurrency.md).

mod awaiting;
mod lifecycle;
mod state;

pub(crate) use lifecycle::schedule;
pub(crate) use state::{expect_fiber, state, try_state, FiberState};

use lifecycle::*;
use state::*;

use magnus::{method, RModule, Ruby};

use magnus::{prelude::*, Error, Value};
use rb_sys::VALUE;

use crate::core::Backend;
use crate::rt::data::Handle;
use crate::rt::{consts, id, intern, is_array, is_nil, protect, raw, type_error, val, QNIL, QTRUE};

// ---- accessors -------------------------------------------------------------

fn st_of(v: Value) -> Handle<FiberState> {
    state(raw(v))
}

fn get_tag(rb_self: Value) -> Value {
    val(st_of(rb_self).tag.get())
}

fn set_tag(rb_self: Value, tag: Value) -> Value {
    st_of(rb_self).tag.set(raw(tag));
    tag
}

fn get_thread(rb_self: Value) -> Value {
    val(st_of(rb_self).thread.get())
}

fn set_thread(rb_self: Value, th: Value) -> Result<Value, Error> {
    let t = raw(th);
    // SAFETY: GVL held; reads the type or state of a live object the caller holds, never raises.
    let is_thread = unsafe { rb_sys::rb_obj_is_kind_of(t, rb_sys::rb_cThread) } == QTRUE;
    if !is_nil(t) && !is_thread {
        return Err(type_error(format!(
            "expected a Thread, got {}",
            crate::rt::inspect_class(t)
        ))
        .into());
    }
    st_of(rb_self).thread.set(t);
    Ok(th)
}

fn get_parent(rb_self: Value) -> Value {
    val(st_of(rb_self).parent.get())
}

fn set_parent(rb_self: Value, p: Value) -> Result<Value, Error> {
    if !is_nil(raw(p)) {
        expect_fiber(raw(p))?;
    }
    st_of(rb_self).parent.set(raw(p));
    Ok(p)
}

fn get_result(rb_self: Value) -> Value {
    val(st_of(rb_self).result.get())
}

fn get_block(rb_self: Value) -> Value {
    val(st_of(rb_self).block.get())
}

/// nil before the block first ran, true while it runs, false once finished.
fn running_p(rb_self: Value) -> Value {
    val(match st_of(rb_self).running.get() {
        NOT_STARTED => QNIL,
        RUNNING => QTRUE,
        _ => rb_sys::special_consts::Qfalse as VALUE,
    })
}

fn main_p(rb_self: Value) -> Value {
    val(if st_of(rb_self).main.get() {
        QTRUE
    } else {
        QNIL
    })
}

fn graceful_p(rb_self: Value) -> bool {
    st_of(rb_self).graceful.get()
}

fn set_graceful(rb_self: Value, g: Value) -> Value {
    st_of(rb_self).graceful.set(g.to_bool());
    g
}

fn supervise_p(rb_self: Value) -> bool {
    st_of(rb_self).supervise.get()
}

fn set_supervise(rb_self: Value, g: Value) -> Value {
    st_of(rb_self).supervise.set(g.to_bool());
    g
}

/// True once the fiber finished (or, for a raw fiber, is no longer alive).
pub(crate) fn is_dead(fiber: VALUE) -> bool {
    let finished = try_state(fiber).map(|s| s.finished()).unwrap_or(false);
    // SAFETY: GVL held; reads the type or state of a live object the caller holds, never raises.
    finished || unsafe { rb_sys::rb_fiber_alive_p(fiber) } != QTRUE
}

/// The backend of `fiber`'s thread, which must be the current thread
/// (`ThreadError` otherwise: the run queue belongs to its thread).
fn own_backend(fiber: VALUE) -> Result<Handle<Backend>, Error> {
    let th = state(fiber).thread.get();
    let b = Backend::of_thread(th)?
        .ok_or_else(|| crate::rt::thread_error("the fiber's thread has no backend"))?;
    b.own()?;
    Ok(b)
}

/// `Fiber#prepare(tag, block, caller, parent)`: makes a fiber made by hand
/// (`f = Fiber.new { |v| f.run(v) }`) a Polyphony fiber, as `spin` does:
/// tag, block and spin site (`caller`: an Array, or nil for here) recorded,
/// a child of `parent`, scheduled. Returns self. FiberError for a fiber
/// that is running, was started, spun or prepared already.
fn prepare(
    rb_self: Value,
    tag: Value,
    block: Value,
    site: Value,
    parent: Value,
) -> Result<Value, magnus::Error> {
    let f = raw(rb_self);
    // SAFETY: GVL held; no arguments, never raises.
    if f == unsafe { rb_sys::rb_fiber_current() } || is_dead(f) {
        return Err(
            crate::rt::error_of("FiberError", "can't prepare a running or finished fiber").into(),
        );
    }
    if let Some(st) = try_state(f) {
        if st.running.get() != NOT_STARTED || !is_nil(st.block.get()) || st.main.get() {
            return Err(
                crate::rt::error_of("FiberError", "fiber already started or prepared").into(),
            );
        }
    }
    // SAFETY: GVL held; type checks of live objects, which never raise.
    if unsafe { rb_sys::rb_obj_is_proc(raw(block)) } != QTRUE {
        return Err(type_error(format!(
            "expected a Proc, got {}",
            crate::rt::inspect_class(raw(block))
        ))
        .into());
    }
    expect_fiber(raw(parent))?;
    lifecycle::adopt(f, raw(parent), raw(tag), raw(site), raw(block))?;
    Ok(rb_self)
}

/// `Fiber#run(first_value)`: runs a prepared fiber's life, from inside it:
/// its block with `first_value`, then its end as for a spun fiber (children
/// shut down, monitors and parent told). Returns the fiber's result.
/// FiberError from another fiber or for a fiber not prepared.
fn run(rb_self: Value, value: Value) -> Result<Value, magnus::Error> {
    let f = raw(rb_self);
    // SAFETY: GVL held; no arguments, never raises.
    if f != unsafe { rb_sys::rb_fiber_current() } {
        return Err(crate::rt::error_of(
            "FiberError",
            "a fiber runs itself (call run from inside it)",
        )
        .into());
    }
    let st = state(f);
    if st.running.get() != NOT_STARTED || is_nil(st.block.get()) {
        return Err(crate::rt::error_of("FiberError", "fiber not prepared, or already run").into());
    }
    if let Ok(b) = Backend::current() {
        b.fiber_entered();
    }
    match lifecycle::run(f, raw(value)) {
        Outcome::Done => Ok(val(st.result.get())),
        Outcome::Raise(exc) => Err(crate::rt::exception_error(exc).into()),
        Outcome::Jump(tag) => {
            drop(st);
            // SAFETY: resumes the non-local exit (throw, kill) the block
            // started, after the lifecycle tidied up; no Rust value of
            // this frame needs dropping.
            unsafe { rb_sys::rb_jump_tag(tag) }
        }
    }
}

/// `Fiber#finalize(result, uncaught = false)`, from inside the fiber: ends
/// its life in the fiber tree now, as when its block ends (children shut
/// down, result recorded, monitors and awaiters told, the parent given an
/// uncaught error); the lifecycle does not do it again. Returns self.
fn finalize_fiber(rb_self: Value, args: &[Value]) -> Result<Value, magnus::Error> {
    crate::rt::check_arity(args, 1, 2)?;
    let f = raw(rb_self);
    // SAFETY: GVL held; no arguments, never raises.
    if f != unsafe { rb_sys::rb_fiber_current() } {
        return Err(
            crate::rt::error_of("FiberError", "a fiber finalizes itself (from inside it)").into(),
        );
    }
    let st = state(f);
    if st.main.get() {
        return Err(crate::rt::error_of("FiberError", "can't finalize the main fiber").into());
    }
    let uncaught = args.get(1).is_some_and(|v| v.to_bool());
    lifecycle::finalize(f, &st, raw(args[0]), uncaught, false)?;
    Ok(rb_self)
}

/// `Fiber#__park__`: holds the fiber off the run queue (its wake-ups are
/// kept) until `__unpark__`. A debugging aid. Returns self.
fn park(rb_self: Value) -> Result<Value, magnus::Error> {
    own_backend(raw(rb_self))?.park(raw(rb_self));
    Ok(rb_self)
}

/// `Fiber#__unpark__`: lets a parked fiber run again; a wake-up it got
/// while parked is queued. Returns self.
fn unpark(rb_self: Value) -> Result<Value, magnus::Error> {
    own_backend(raw(rb_self))?.unpark(raw(rb_self));
    Ok(rb_self)
}

/// `Fiber#__parked__?`.
fn parked_p(rb_self: Value) -> Result<bool, magnus::Error> {
    Ok(own_backend(raw(rb_self))?.is_parked(raw(rb_self)))
}

fn dead_p(rb_self: Value) -> bool {
    is_dead(raw(rb_self))
}

/// `:dead`, `:running`, `:runnable` or `:waiting`.
fn fiber_state(rb_self: Value) -> Result<Value, Error> {
    let f = raw(rb_self);
    let name = if is_dead(f) {
        "dead"
    // SAFETY: GVL held (this runs in a Ruby method of the current thread); no arguments, never
    // raises.
    } else if f == unsafe { rb_sys::rb_fiber_current() } {
        "running"
    } else {
        let th = state(f).thread.get();
        match Backend::of_thread(th)? {
            Some(b) if b.is_queued(f) => "runnable",
            _ => "waiting",
        }
    };
    // SAFETY: GVL held; allocates or updates an object from live values, with no `RefCell` borrow
    // held (a GC here may mark).
    Ok(val(unsafe { rb_sys::rb_id2sym(intern(name)) }))
}

fn children(rb_self: Value) -> Value {
    val(ary_from(&st_of(rb_self).child_fibers()))
}

/// Makes `child` a child of this fiber (leaving its previous parent's list).
/// ArgumentError if that would make a cycle (the fiber itself or one of
/// its ancestors): awaiting or stopping such a tree would never end.
fn add_child(rb_self: Value, child: Value) -> Result<Value, Error> {
    let c = expect_fiber(raw(child))?;
    let mut a = raw(rb_self);
    // The parent chain is finite (this check keeps it so); the bound only
    // guards against a chain corrupted some other way.
    for _ in 0..1_000_000 {
        if a == c {
            return Err(crate::rt::arg_error(
                "a fiber cannot be a child of itself or of its descendants",
            )
            .into());
        }
        match try_state(a) {
            Some(s) if !is_nil(s.parent.get()) && s.parent.get() != 0 => a = s.parent.get(),
            _ => break,
        }
    }
    let pobj = state_obj(raw(rb_self));
    let cobj = state_obj(c);
    state_of_obj(pobj).link_child(pobj, cobj);
    state_of_obj(cobj).parent.set(raw(rb_self));
    Ok(rb_self)
}

/// Removes `child` from this fiber's children (no-op if it is not one).
fn remove_child(rb_self: Value, child: Value) -> Value {
    let me = try_state_obj(raw(rb_self));
    if let Some(c) = try_state(raw(child)) {
        if !is_nil(me) && c.list_owner.get() == me {
            c.unlink();
        }
    }
    child
}

fn add_monitor(rb_self: Value, fiber: Value) -> Result<Value, Error> {
    let f = expect_fiber(raw(fiber))?;
    st_of(rb_self).add_monitor(f);
    Ok(rb_self)
}

fn unmonitor(rb_self: Value, fiber: Value) -> Value {
    st_of(rb_self).remove_monitor(raw(fiber));
    rb_self
}

fn monitors(rb_self: Value) -> Value {
    // SAFETY: GVL held; a new Array.
    let a = unsafe { rb_sys::rb_ary_new() };
    // SAFETY: GVL held; `each_monitor` walks a snapshot of the keys (no
    // borrow held), so the push may allocate; `a` is on the stack.
    st_of(rb_self).each_monitor(|m| unsafe {
        rb_sys::rb_ary_push(a, m);
    });
    val(a)
}

fn rb_monitor_mailbox(rb_self: Value) -> Result<Value, Error> {
    monitor_mailbox(raw(rb_self)).map(val).map_err(Into::into)
}

fn reset_monitor_mailbox(rb_self: Value) -> Value {
    st_of(rb_self).monitor_mailbox.set(QNIL);
    rb_self
}

fn rb_mailbox(rb_self: Value) -> Result<Value, Error> {
    mailbox(raw(rb_self)).map(val).map_err(Into::into)
}

/// The mailbox if one was created, else nil (never creates one).
fn mailbox_if_any(rb_self: Value) -> Value {
    val(st_of(rb_self).mailbox.get())
}

/// `"path:line:in `label'"` of the spin site (the format of `caller`), or
/// nil if unknown. An explicit backtrace's first entry may be any object:
/// its `to_s` runs under `rb_protect`.
fn site_string(st: &FiberState) -> Result<VALUE, Error> {
    let caller = st.caller.get();
    if !is_nil(caller) {
        // SAFETY: a live Array (checked or made by this code); an index past its end reads nil,
        // nothing raises.
        let first = unsafe { rb_sys::rb_ary_entry(caller, 0) };
        if is_nil(first) {
            return Ok(QNIL);
        }
        // SAFETY: inside `protect`: what the call raises (or throws) comes back as `Err` instead of
        // unwinding over Rust frames; GVL held, arguments are live objects the caller holds.
        return protect(|| unsafe { rb_sys::rb_obj_as_string(first) }).map_err(Into::into);
    }
    let frame = st.frame.get();
    if is_nil(frame) {
        return Ok(QNIL);
    }
    // Both are Strings (or nil) taken from the iseq: nothing here can raise.
    // SAFETY: GVL held; frames come from `rb_profile_frames` just above, which returns live frame
    // objects.
    let path = unsafe { rb_sys::rb_profile_frame_path(frame) };
    // SAFETY: GVL held; frames come from `rb_profile_frames` just above, which returns live frame
    // objects.
    let label = unsafe { rb_sys::rb_profile_frame_label(frame) };
    if is_nil(path) {
        return Ok(QNIL);
    }
    let to_s = |v: VALUE| -> String {
        if is_nil(v) {
            String::new()
        } else {
            crate::rt::str_lossy(v)
        }
    };
    let s = format!("{}:{}:in `{}'", to_s(path), st.line.get(), to_s(label));
    // SAFETY: GVL held; allocates or updates an object from live values, with no `RefCell` borrow
    // held (a GC here may mark).
    Ok(unsafe { rb_sys::rb_utf8_str_new(s.as_ptr() as *const _, s.len() as _) })
}

fn location(rb_self: Value) -> Result<Value, Error> {
    let st = st_of(rb_self);
    if st.main.get() {
        // SAFETY: GVL held; a new String from a static C string of 6 bytes.
        return Ok(val(unsafe {
            rb_sys::rb_utf8_str_new(c"(root)".as_ptr(), 6)
        }));
    }
    let s = site_string(&st)?;
    if is_nil(s) {
        // SAFETY: GVL held; a new String from a static C string of 9 bytes.
        return Ok(val(unsafe {
            rb_sys::rb_utf8_str_new(c"(unknown)".as_ptr(), 9)
        }));
    }
    Ok(val(s))
}

/// The spin-site backtrace of this fiber alone (a fresh Array).
fn spin_caller(rb_self: Value) -> Result<Value, Error> {
    let st = st_of(rb_self);
    let caller = st.caller.get();
    if !is_nil(caller) {
        // SAFETY: GVL held; allocates or updates an object from live values, with no `RefCell`
        // borrow held (a GC here may mark).
        return Ok(val(unsafe { rb_sys::rb_ary_dup(caller) }));
    }
    // SAFETY: GVL held; allocates or updates an object from live values, with no `RefCell` borrow
    // held (a GC here may mark).
    let a = unsafe { rb_sys::rb_ary_new() };
    let s = site_string(&st)?;
    if !is_nil(s) {
        // SAFETY: GVL held; allocates or updates an object from live values, with no `RefCell`
        // borrow held (a GC here may mark).
        unsafe { rb_sys::rb_ary_push(a, s) };
    }
    Ok(val(a))
}

/// `set_caller(array)`: an explicit spin-site backtrace (TypeError unless an
/// Array).
fn set_caller(rb_self: Value, array: Value) -> Result<Value, Error> {
    if !is_array(raw(array)) {
        return Err(type_error(format!(
            "expected an Array, got {}",
            crate::rt::inspect_class(raw(array))
        ))
        .into());
    }
    let st = st_of(rb_self);
    st.caller.set(raw(array));
    st.frame.set(QNIL);
    Ok(rb_self)
}

fn setup_main_fiber(rb_self: Value) -> Value {
    let st = st_of(rb_self);
    st.main.set(true);
    // SAFETY: GVL held; allocates or updates an object from live values, with no `RefCell` borrow
    // held (a GC here may mark).
    st.tag.set(unsafe { rb_sys::rb_id2sym(id!("main")) });
    // SAFETY: GVL held (this runs in a Ruby method of the current thread); no arguments, never
    // raises.
    st.thread.set(unsafe { rb_sys::rb_thread_current() });
    st.parent.set(QNIL);
    st.running.set(RUNNING);
    rb_self
}

fn setup_raw(rb_self: Value) -> Value {
    let st = st_of(rb_self);
    // SAFETY: GVL held (this runs in a Ruby method of the current thread); no arguments, never
    // raises.
    st.thread.set(unsafe { rb_sys::rb_thread_current() });
    st.running.set(RUNNING);
    rb_self
}

fn rb_schedule(rb_self: Value, args: &[Value]) -> Result<Value, Error> {
    schedule_args(rb_self, args, false)
}

fn rb_schedule_with_priority(rb_self: Value, args: &[Value]) -> Result<Value, Error> {
    schedule_args(rb_self, args, true)
}

/// `schedule(value = nil)` with or without priority.
fn schedule_args(rb_self: Value, args: &[Value], priority: bool) -> Result<Value, Error> {
    crate::rt::check_arity(args, 0, 1)?;
    let v = args.first().map(|v| raw(*v)).unwrap_or(QNIL);
    schedule(raw(rb_self), v, priority)?;
    Ok(rb_self)
}

pub fn init(ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    crate::core::lifecycle::install(crate::core::lifecycle::Lifecycle {
        end_unstarted,
        is_unstarted,
        fail_to_start,
    });
    let _ = polyphony.define_class("FiberState", ruby.class_object())?;
    let fiber = magnus::RClass::from_value(val(consts::fiber()))
        .ok_or_else(|| type_error("Fiber is not a class"))?;
    fiber.define_method("spin", method!(rb_fiber_spin, -1))?;
    fiber.define_method("tag", method!(get_tag, 0))?;
    fiber.define_method("tag=", method!(set_tag, 1))?;
    fiber.define_method("thread", method!(get_thread, 0))?;
    fiber.define_method("thread=", method!(set_thread, 1))?;
    fiber.define_method("parent", method!(get_parent, 0))?;
    fiber.define_method("parent=", method!(set_parent, 1))?;
    fiber.define_method("result", method!(get_result, 0))?;
    fiber.define_method("__block__", method!(get_block, 0))?;
    fiber.define_method("running?", method!(running_p, 0))?;
    fiber.define_method("main?", method!(main_p, 0))?;
    fiber.define_method("graceful_shutdown?", method!(graceful_p, 0))?;
    fiber.define_method("graceful_shutdown=", method!(set_graceful, 1))?;
    fiber.define_method("supervising?", method!(supervise_p, 0))?;
    fiber.define_method("__supervising__=", method!(set_supervise, 1))?;
    fiber.define_method("prepare", method!(prepare, 4))?;
    fiber.define_method("run", method!(run, 1))?;
    fiber.define_method("finalize", method!(finalize_fiber, -1))?;
    fiber.define_method("__park__", method!(park, 0))?;
    fiber.define_method("__unpark__", method!(unpark, 0))?;
    fiber.define_method("__parked__?", method!(parked_p, 0))?;
    fiber.define_method("dead?", method!(dead_p, 0))?;
    fiber.define_method("state", method!(fiber_state, 0))?;
    fiber.define_method("children", method!(children, 0))?;
    fiber.define_method("await", method!(awaiting::rb_await, 0))?;
    fiber.define_method("join", method!(awaiting::rb_await, 0))?;
    fiber.define_method("value", method!(awaiting::rb_await, 0))?;
    fiber.define_singleton_method("await", magnus::function!(awaiting::rb_await_all, -1))?;
    fiber.define_singleton_method("join", magnus::function!(awaiting::rb_await_all, -1))?;
    fiber.define_method("add_child", method!(add_child, 1))?;
    fiber.define_method("__remove_child__", method!(remove_child, 1))?;
    fiber.define_method("remove_child", method!(remove_child, 1))?;
    fiber.define_method("__add_monitor__", method!(add_monitor, 1))?;
    fiber.define_method("unmonitor", method!(unmonitor, 1))?;
    fiber.define_method("monitors", method!(monitors, 0))?;
    fiber.define_method("monitor_mailbox", method!(rb_monitor_mailbox, 0))?;
    fiber.define_method(
        "__reset_monitor_mailbox__",
        method!(reset_monitor_mailbox, 0),
    )?;
    fiber.define_method("mailbox", method!(rb_mailbox, 0))?;
    fiber.define_method("__mailbox__", method!(mailbox_if_any, 0))?;
    fiber.define_method("location", method!(location, 0))?;
    fiber.define_method("__spin_caller__", method!(spin_caller, 0))?;
    fiber.define_method("set_caller", method!(set_caller, 1))?;
    fiber.define_method("setup_main_fiber", method!(setup_main_fiber, 0))?;
    fiber.define_method("setup_raw", method!(setup_raw, 0))?;
    fiber.define_method("schedule", method!(rb_schedule, -1))?;
    fiber.define_method(
        "schedule_with_priority",
        method!(rb_schedule_with_priority, -1),
    )?;
    ruby.class_object()
        .define_method("spin", magnus::function!(rb_object_spin, -1))?;
    Ok(())
}
