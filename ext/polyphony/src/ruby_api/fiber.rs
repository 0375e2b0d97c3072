//! Polyphony's per-fiber state and the native parts of `Fiber` (spec §3, §6).
//!
//! Every fiber Polyphony knows about carries one hidden instance variable
//! holding a [`FiberState`]: thread, parent, tag, block, spin location,
//! result, children, monitors and mailboxes. Keeping them in one native
//! object (instead of a dozen Ruby instance variables) is what makes `spin`
//! cheap: a spin allocates the fiber, its block's proc and this state, and
//! nothing else.
//!
//! The lifecycle of a spun fiber is native too ([`fiber_body`]): run the
//! block (again on `Polyphony::Restart`), turn `MoveOn`/`Terminate` into a
//! quiet result, shut down the children still running (Ruby's
//! `Fiber#__finalize_children__`, which may switch fibers), inform monitors,
//! leave the parent and hand an uncaught error to it. Everything that can
//! raise runs under `rb_protect`; nothing unwinds over Rust frames.
//!
//! The rest of the fiber API (stop, cancel, await, restart, messaging
//! helpers) is Ruby, in `lib/polyphony/extensions/fiber.rb`, built on the
//! accessors defined here.

use crate::helpers::id;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use magnus::{gc, method, prelude::*, DataTypeFunctions, Error, RModule, Ruby, TypedData, Value};
use rb_sys::VALUE;

use crate::helpers::{arg_error, call, intern, is_nil, protect, raw, type_error, val, QNIL, QTRUE};
use crate::ruby_api::backend::Backend;

const NOT_STARTED: u8 = 0;
const RUNNING: u8 = 1;
const FINISHED: u8 = 2;

/// The Polyphony state of one fiber. Created by `spin`, or lazily for fibers
/// Polyphony did not create (main fibers, `Enumerator` fibers, `Fiber.new`).
#[derive(TypedData)]
#[magnus(class = "Polyphony::FiberState", free_immediately, size, mark)]
pub struct FiberState {
    thread: Cell<VALUE>,
    parent: Cell<VALUE>,
    tag: Cell<VALUE>,
    block: Cell<VALUE>,
    /// An explicit spin-site backtrace (`set_caller`, `spin(tag, array)`).
    caller: Cell<VALUE>,
    /// The spin site as recorded by `rb_profile_frames` (an iseq or method
    /// entry, formatted only when asked for), and its line.
    frame: Cell<VALUE>,
    line: Cell<i32>,
    result: Cell<VALUE>,
    /// The fiber this state belongs to.
    fiber: Cell<VALUE>,
    /// Children, in spin order: an intrusive doubly linked list of the
    /// children's state objects (O(1) insert and removal, no allocation,
    /// no object ids). `list_owner`/`prev`/`next` are this fiber's links in
    /// its parent's list.
    first_child: Cell<VALUE>,
    last_child: Cell<VALUE>,
    n_children: Cell<usize>,
    list_owner: Cell<VALUE>,
    prev: Cell<VALUE>,
    next: Cell<VALUE>,
    /// Fibers blocked in `await` on this one (see `fiber_await.rs`).
    pub(crate) awaiters: crate::ruby_api::fiber_await::Awaiters,
    /// The first monitor inline (the common case: one monitoring fiber),
    /// the others in a Hash.
    monitor: Cell<VALUE>,
    monitors: Cell<VALUE>,
    mailbox: Cell<VALUE>,
    monitor_mailbox: Cell<VALUE>,
    running: Cell<u8>,
    main: Cell<bool>,
    graceful: Cell<bool>,
    supervise: Cell<bool>,
}

impl DataTypeFunctions for FiberState {
    fn mark(&self, marker: &gc::Marker) {
        for c in [
            &self.thread,
            &self.parent,
            &self.tag,
            &self.block,
            &self.caller,
            &self.frame,
            &self.result,
            &self.fiber,
            &self.first_child,
            &self.last_child,
            &self.list_owner,
            &self.prev,
            &self.next,
            &self.monitor,
            &self.monitors,
            &self.mailbox,
            &self.monitor_mailbox,
        ] {
            let v = c.get();
            if !rb_sys::SPECIAL_CONST_P(v) {
                marker.mark(val(v));
            }
        }
        self.awaiters.mark(marker);
    }
}

impl FiberState {
    fn new(thread: VALUE) -> Self {
        FiberState {
            thread: Cell::new(thread),
            parent: Cell::new(QNIL),
            tag: Cell::new(QNIL),
            block: Cell::new(QNIL),
            caller: Cell::new(QNIL),
            frame: Cell::new(QNIL),
            line: Cell::new(0),
            result: Cell::new(QNIL),
            fiber: Cell::new(QNIL),
            first_child: Cell::new(QNIL),
            last_child: Cell::new(QNIL),
            n_children: Cell::new(0),
            list_owner: Cell::new(QNIL),
            prev: Cell::new(QNIL),
            next: Cell::new(QNIL),
            awaiters: Default::default(),
            monitor: Cell::new(QNIL),
            monitors: Cell::new(QNIL),
            mailbox: Cell::new(QNIL),
            monitor_mailbox: Cell::new(QNIL),
            running: Cell::new(NOT_STARTED),
            main: Cell::new(false),
            graceful: Cell::new(false),
            supervise: Cell::new(false),
        }
    }

    pub(crate) fn result(&self) -> VALUE {
        self.result.get()
    }

    /// True once finished, or for a fiber Polyphony does not run, once Ruby
    /// says it is no longer alive. `fiber` is the fiber of this state.
    pub(crate) fn is_dead(&self, fiber: VALUE) -> bool {
        self.finished() || unsafe { rb_sys::rb_fiber_alive_p(fiber) } != QTRUE
    }

    fn finished(&self) -> bool {
        self.running.get() == FINISHED
    }

    fn each_monitor(&self, mut f: impl FnMut(VALUE)) {
        let m = self.monitor.get();
        if !is_nil(m) {
            f(m);
        }
        let h = self.monitors.get();
        if !is_nil(h) {
            for k in hash_keys(h) {
                f(k);
            }
        }
    }

    fn has_monitor(&self, fiber: VALUE) -> bool {
        if self.monitor.get() == fiber {
            return true;
        }
        let h = self.monitors.get();
        !is_nil(h) && unsafe { rb_sys::rb_hash_lookup2(h, fiber, QNIL) } != QNIL
    }

    fn add_monitor(&self, fiber: VALUE) {
        if self.has_monitor(fiber) {
            return;
        }
        let h = self.monitors.get();
        let hash_empty = is_nil(h) || hash_size(h) == 0;
        if is_nil(self.monitor.get()) && hash_empty {
            self.monitor.set(fiber);
        } else {
            let h = if is_nil(h) {
                let h = unsafe { rb_sys::rb_hash_new() };
                self.monitors.set(h);
                h
            } else {
                h
            };
            unsafe { rb_sys::rb_hash_aset(h, fiber, QTRUE) };
        }
    }

    fn remove_monitor(&self, fiber: VALUE) {
        if self.monitor.get() == fiber {
            self.monitor.set(QNIL);
        }
        let h = self.monitors.get();
        if !is_nil(h) {
            unsafe { rb_sys::rb_hash_delete(h, fiber) };
        }
    }

    /// Appends the fiber whose state object is `child_obj` to this fiber's
    /// children (`self_obj` is this state's object), leaving any other list
    /// first.
    fn link_child(&self, self_obj: VALUE, child_obj: VALUE) {
        let c = state_of_obj(child_obj);
        if c.list_owner.get() == self_obj {
            return;
        }
        c.unlink();
        let last = self.last_child.get();
        c.list_owner.set(self_obj);
        c.prev.set(last);
        c.next.set(QNIL);
        if is_nil(last) {
            self.first_child.set(child_obj);
        } else {
            state_of_obj(last).next.set(child_obj);
        }
        self.last_child.set(child_obj);
        self.n_children.set(self.n_children.get() + 1);
    }

    /// Leaves the parent's children list, if in one.
    fn unlink(&self) {
        let owner = self.list_owner.get();
        if is_nil(owner) {
            return;
        }
        let o = state_of_obj(owner);
        let (prev, next) = (self.prev.get(), self.next.get());
        if is_nil(prev) {
            o.first_child.set(next);
        } else {
            state_of_obj(prev).next.set(next);
        }
        if is_nil(next) {
            o.last_child.set(prev);
        } else {
            state_of_obj(next).prev.set(prev);
        }
        o.n_children.set(o.n_children.get() - 1);
        self.list_owner.set(QNIL);
        self.prev.set(QNIL);
        self.next.set(QNIL);
    }

    fn has_children(&self) -> bool {
        self.n_children.get() > 0
    }

    /// The children's fibers, in spin order.
    fn child_fibers(&self) -> Vec<VALUE> {
        let mut out = Vec::with_capacity(self.n_children.get());
        let mut c = self.first_child.get();
        while !is_nil(c) {
            let s = state_of_obj(c);
            out.push(s.fiber.get());
            c = s.next.get();
        }
        out
    }
}

/// The state inside a `FiberState` object (one made by [`attach_state`]).
fn state_of_obj(obj: VALUE) -> &'static FiberState {
    // Only state objects are ever stored in the list links.
    unsafe { &*(rb_sys::RTYPEDDATA_GET_DATA(obj) as *const FiberState) }
}

fn hash_size(h: VALUE) -> usize {
    unsafe { rb_sys::rb_num2long(rb_sys::rb_hash_size(h)) as usize }
}

fn ary_from(v: &[VALUE]) -> VALUE {
    unsafe { rb_sys::rb_ary_new_from_values(v.len() as _, v.as_ptr()) }
}

fn hash_keys(h: VALUE) -> Vec<VALUE> {
    let keys = unsafe { rb_sys::rb_funcallv(h, id!("keys"), 0, std::ptr::null()) };
    array_to_vec(keys)
}

pub(crate) fn array_to_vec(a: VALUE) -> Vec<VALUE> {
    let n = unsafe { rb_sys::RARRAY_LEN(a) };
    (0..n)
        .map(|i| unsafe { rb_sys::rb_ary_entry(a, i) })
        .collect()
}

fn state_id() -> rb_sys::ID {
    // No leading `@`: a hidden instance variable, invisible to
    // `instance_variables` and `instance_variable_get`.
    id!("__polyphony_state__")
}

/// The `rb_data_type_t` of state objects, recorded when the first one is
/// made (0 before: then no fiber has a state).
static STATE_TYPE: AtomicU64 = AtomicU64::new(0);

/// The state object of `fiber`, or nil.
fn try_state_obj(fiber: VALUE) -> VALUE {
    let v = unsafe { rb_sys::rb_ivar_get(fiber, state_id()) };
    if rb_sys::SPECIAL_CONST_P(v)
        || !unsafe { rb_sys::RB_TYPE_P(v, rb_sys::ruby_value_type::RUBY_T_DATA) }
        || !unsafe { rb_sys::RTYPEDDATA_P(v) }
        || unsafe { rb_sys::RTYPEDDATA_TYPE(v) } as u64 != STATE_TYPE.load(Ordering::Relaxed)
    {
        return QNIL;
    }
    v
}

/// The state of `fiber`, if it has one.
pub(crate) fn try_state(fiber: VALUE) -> Option<&'static FiberState> {
    let v = try_state_obj(fiber);
    if is_nil(v) {
        return None;
    }
    // The state object lives as long as the fiber, which the caller holds.
    Some(state_of_obj(v))
}

/// The state object of `fiber`, created (unadopted: no thread, not started)
/// if missing. `fiber` must be a Fiber.
fn state_obj(fiber: VALUE) -> VALUE {
    let v = try_state_obj(fiber);
    if !is_nil(v) {
        return v;
    }
    attach_state(fiber, FiberState::new(QNIL)).0
}

/// The state of `fiber`, created if missing (see [`state_obj`]).
pub(crate) fn state(fiber: VALUE) -> &'static FiberState {
    state_of_obj(state_obj(fiber))
}

fn attach_state(fiber: VALUE, st: FiberState) -> (VALUE, &'static FiberState) {
    st.fiber.set(fiber);
    let obj = crate::helpers::ruby().obj_wrap(st);
    let v = raw(obj.as_value());
    if STATE_TYPE.load(Ordering::Relaxed) == 0 {
        STATE_TYPE.store(
            unsafe { rb_sys::RTYPEDDATA_TYPE(v) } as u64,
            Ordering::Relaxed,
        );
    }
    unsafe { rb_sys::rb_ivar_set(fiber, state_id(), v) };
    (v, state_of_obj(v))
}

pub(crate) fn expect_fiber(v: VALUE) -> Result<VALUE, Error> {
    if unsafe { rb_sys::rb_obj_is_fiber(v) } == QTRUE {
        Ok(v)
    } else {
        Err(type_error(format!(
            "expected a Fiber, got {}",
            crate::helpers::inspect_class(v)
        )))
    }
}

/// Cached constants of the Ruby layer (constants are never collected).
fn constant(slot: &'static AtomicU64, name: &str) -> VALUE {
    let v = slot.load(Ordering::Relaxed);
    if v != 0 {
        return v as VALUE;
    }
    let c = unsafe { rb_sys::rb_const_get(crate::ruby_api::polyphony_module(), intern(name)) };
    slot.store(c as u64, Ordering::Relaxed);
    c
}

fn fiber_class() -> VALUE {
    static C: AtomicU64 = AtomicU64::new(0);
    let v = C.load(Ordering::Relaxed);
    if v != 0 {
        return v as VALUE;
    }
    let c = unsafe { rb_sys::rb_const_get(rb_sys::rb_cObject, id!("Fiber")) };
    C.store(c as u64, Ordering::Relaxed);
    c
}

fn restart_class() -> VALUE {
    static C: AtomicU64 = AtomicU64::new(0);
    constant(&C, "Restart")
}

fn move_on_class() -> VALUE {
    static C: AtomicU64 = AtomicU64::new(0);
    constant(&C, "MoveOn")
}

fn terminate_class() -> VALUE {
    static C: AtomicU64 = AtomicU64::new(0);
    constant(&C, "Terminate")
}

fn interjection_class() -> VALUE {
    static C: AtomicU64 = AtomicU64::new(0);
    constant(&C, "Interjection")
}

/// True if `v` is a `Polyphony::Interjection`.
pub fn is_interjection(v: VALUE) -> bool {
    kind_of(v, interjection_class())
}

fn queue_class() -> VALUE {
    static C: AtomicU64 = AtomicU64::new(0);
    constant(&C, "Queue")
}

fn kind_of(v: VALUE, class: VALUE) -> bool {
    unsafe { rb_sys::rb_obj_is_kind_of(v, class) == QTRUE }
}

/// The one proc every Polyphony fiber is created with: its body is
/// [`fiber_body`]. Sharing it saves two allocations per spin.
fn body_proc() -> VALUE {
    static PROC: AtomicU64 = AtomicU64::new(0);
    let v = PROC.load(Ordering::Relaxed);
    if v != 0 {
        return v as VALUE;
    }
    let p = unsafe { rb_sys::rb_proc_new(Some(fiber_body), QNIL) };
    unsafe { rb_sys::rb_gc_register_mark_object(p) };
    PROC.store(p as u64, Ordering::Relaxed);
    p
}

// ---- lifecycle -------------------------------------------------------------

enum Outcome {
    Done,
    /// A non-exception jump (thread kill): resumed once the fiber is tidied.
    Jump(i32),
    /// An uncaught exception in a fiber that became its thread's root fiber
    /// (the forking fiber, in the child of a fork): it has no parent to
    /// report to, so it ends the thread (the process) as in plain Ruby.
    Raise(VALUE),
}

/// Body of every spun fiber. `arg` is the value of its first resume.
unsafe extern "C" fn fiber_body(
    arg: VALUE,
    _callback: VALUE,
    _argc: std::os::raw::c_int,
    _argv: *const VALUE,
    _blockarg: VALUE,
) -> VALUE {
    let r = std::panic::catch_unwind(|| {
        if let Ok(b) = Backend::current() {
            b.entered.set(true);
        }
        let fiber = rb_sys::rb_fiber_current();
        run(fiber, arg)
    });
    match r {
        Ok(Outcome::Jump(tag)) => rb_sys::rb_jump_tag(tag),
        Ok(Outcome::Raise(exc)) => rb_sys::rb_exc_raise(exc),
        _ => QNIL,
    }
}

fn run(fiber: VALUE, value: VALUE) -> Outcome {
    let st = state(fiber);
    st.running.set(RUNNING);
    let (result, uncaught, jump) = run_block(fiber, st, value);
    let reraise = uncaught && st.main.get() && is_nil(st.parent.get());
    if let Err(e) = finalize(fiber, st, result, uncaught, jump.is_some()) {
        if let Some(exc) = e.value() {
            let _ = call(
                crate::ruby_api::polyphony_module(),
                id!("__fiber_body_error__"),
                &[raw(exc)],
            );
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
fn run_block(fiber: VALUE, st: &FiberState, mut value: VALUE) -> (VALUE, bool, Option<i32>) {
    loop {
        let block = st.block.get();
        let r = protect(|| unsafe {
            if crate::helpers::is_exception(value) {
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
        let Some(exc) = err.value() else {
            return (QNIL, false, jump_tag(&err));
        };
        let exc = raw(exc);
        if kind_of(exc, restart_class()) {
            let mb = st.mailbox.get();
            if !is_nil(mb) {
                let _ = call(mb, id!("clear"), &[]);
            }
            value = call(exc, id!("value"), &[]).unwrap_or(QNIL);
            continue;
        }
        if kind_of(exc, move_on_class()) || kind_of(exc, terminate_class()) {
            return (call(exc, id!("value"), &[]).unwrap_or(QNIL), false, None);
        }
        set_source_fiber(exc, fiber);
        return (exc, true, None);
    }
}

/// `exc.source_fiber ||= fiber`.
fn set_source_fiber(exc: VALUE, fiber: VALUE) {
    let id = id!("@source_fiber");
    unsafe {
        if is_nil(rb_sys::rb_ivar_get(exc, id)) && rb_sys::rb_obj_frozen_p(exc) != QTRUE {
            rb_sys::rb_ivar_set(exc, id, fiber);
        }
    }
}

fn jump_tag(err: &Error) -> Option<i32> {
    match err.error_type() {
        magnus::error::ErrorType::Jump(tag) => Some(*tag as i32),
        _ => None,
    }
}

/// Children first, then result, monitors, parent, run queue.
fn finalize(
    fiber: VALUE,
    st: &FiberState,
    mut result: VALUE,
    mut uncaught: bool,
    jumping: bool,
) -> Result<(), Error> {
    if st.has_children() && !jumping {
        let u = if uncaught {
            QTRUE
        } else {
            rb_sys::special_consts::Qfalse as VALUE
        };
        let pair = call(fiber, id!("__finalize_children__"), &[result, u])?;
        result = unsafe { rb_sys::rb_ary_entry(pair, 0) };
        uncaught = val(unsafe { rb_sys::rb_ary_entry(pair, 1) }).to_bool();
    }
    st.result.set(result);
    st.running.set(FINISHED);
    let parent = st.parent.get();
    let awaited_by_parent = crate::ruby_api::fiber_await::notify(fiber, st, result, parent)?;
    let mut monitors = Vec::new();
    st.each_monitor(|m| monitors.push(m));
    for m in &monitors {
        let msg = unsafe {
            let a = rb_sys::rb_ary_new_capa(2);
            rb_sys::rb_ary_push(a, fiber);
            rb_sys::rb_ary_push(a, result);
            a
        };
        let mb = monitor_mailbox(*m)?;
        call(mb, id!("push"), &[msg])?;
    }
    st.unlink();
    if !is_nil(parent) && uncaught && !awaited_by_parent && !st.has_monitor(parent) {
        schedule(parent, result, true)?;
    }
    if let Ok(b) = Backend::current() {
        b.rq.borrow_mut().remove(fiber);
    }
    Ok(())
}

/// Called by a runner before resuming `fiber` with `value`: a Polyphony
/// fiber that has not started yet and is stopped, terminated, cancelled or
/// raised into never needs a stack. It ends at once, as if its block had been
/// interrupted at its first line. Returns true if it was ended here.
pub fn end_unstarted(fiber: VALUE, value: VALUE) -> Result<bool, Error> {
    if !crate::helpers::is_exception(value) {
        return Ok(false);
    }
    let Some(st) = try_state(fiber) else {
        return Ok(false);
    };
    if st.running.get() != NOT_STARTED || is_nil(st.block.get()) || st.has_children() {
        return Ok(false);
    }
    if kind_of(value, restart_class()) || kind_of(value, interjection_class()) {
        return Ok(false);
    }
    if kind_of(value, move_on_class()) || kind_of(value, terminate_class()) {
        let v = call(value, id!("value"), &[])?;
        finalize(fiber, st, v, false, true)?;
    } else {
        set_source_fiber(value, fiber);
        finalize(fiber, st, value, true, true)?;
    }
    Ok(true)
}

/// True for a Polyphony fiber whose block has not started.
pub fn is_unstarted(fiber: VALUE) -> bool {
    try_state(fiber)
        .map(|s| s.running.get() == NOT_STARTED && !is_nil(s.block.get()))
        .unwrap_or(false)
}

/// Called by a runner when resuming `fiber` failed before its body ran
/// (e.g. `FiberError`: no memory or no map left for its stack). A Polyphony
/// fiber that never started ends with that error, as if its block had
/// raised it. Returns false for other fibers (the caller retries later).
pub fn fail_to_start(fiber: VALUE, exc: VALUE) -> Result<bool, Error> {
    let Some(st) = try_state(fiber) else {
        return Ok(false);
    };
    if st.running.get() != NOT_STARTED || is_nil(st.block.get()) {
        return Ok(false);
    }
    set_source_fiber(exc, fiber);
    finalize(fiber, st, exc, true, true)?;
    Ok(true)
}

/// Queues `fiber` on its thread's backend (cross-thread safe). Finished
/// fibers and threads without a backend are ignored.
pub fn schedule(fiber: VALUE, value: VALUE, priority: bool) -> Result<(), Error> {
    let st = try_state(fiber);
    if st.map(|s| s.finished()).unwrap_or(false) {
        return Ok(());
    }
    let th = st.map(|s| s.thread.get()).unwrap_or(QNIL);
    if let Some(b) = Backend::of_thread(th)? {
        b.schedule(fiber, value, priority);
    }
    Ok(())
}

fn monitor_mailbox(fiber: VALUE) -> Result<VALUE, Error> {
    lazy_queue(&state(fiber).monitor_mailbox)
}

fn mailbox(fiber: VALUE) -> Result<VALUE, Error> {
    lazy_queue(&state(fiber).mailbox)
}

/// The Polyphony::Queue in `cell`, created on first use.
fn lazy_queue(cell: &Cell<VALUE>) -> Result<VALUE, Error> {
    let q = cell.get();
    if !is_nil(q) {
        return Ok(q);
    }
    let q = call(queue_class(), id!("new"), &[])?;
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
fn capture_site(st: &FiberState, skip: usize) {
    const MAX: usize = 16;
    let mut frames = [0 as VALUE; MAX];
    let mut lines = [0i32; MAX];
    let want = (skip + 3).min(MAX);
    let n =
        unsafe { rb_sys::rb_profile_frames(0, want as _, frames.as_mut_ptr(), lines.as_mut_ptr()) };
    let mut left = skip;
    for i in 0..(n.max(0) as usize).min(MAX) {
        // Native frames have no path.
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
fn spin_child(parent: VALUE, tag: VALUE, site: VALUE, block: VALUE) -> Result<VALUE, Error> {
    let backend = Backend::current()?;
    let fiber = protect(|| unsafe {
        let id = id!("new");
        rb_sys::rb_funcall_with_block(fiber_class(), id, 0, std::ptr::null(), body_proc())
    })?;
    let st = FiberState::new(unsafe { rb_sys::rb_thread_current() });
    st.parent.set(parent);
    st.tag.set(tag);
    st.block.set(block);
    if is_nil(site) {
        capture_site(&st, 0);
    } else if rb_sys::FIXNUM_P(site) {
        let n = unsafe { rb_sys::rb_num2long(site) };
        if n < 0 {
            return Err(arg_error("negative frame count"));
        }
        capture_site(&st, n as usize);
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
            crate::helpers::inspect_class(site)
        )));
    }
    let (obj, st) = attach_state(fiber, st);
    let cached = backend.spinner_state.get();
    let pobj = if !is_nil(cached) && state_of_obj(cached).fiber.get() == parent {
        cached
    } else {
        let o = state_obj(parent);
        backend.spinner_state.set(o);
        o
    };
    let ps = state_of_obj(pobj);
    ps.link_child(pobj, obj);
    if ps.supervise.get() {
        st.add_monitor(parent);
    }
    backend.schedule(fiber, QNIL, false);
    Ok(fiber)
}

fn block_or_nil() -> VALUE {
    unsafe {
        if rb_sys::rb_block_given_p() != 0 {
            rb_sys::rb_block_proc()
        } else {
            QNIL
        }
    }
}

/// `Fiber#spin(tag = nil, orig_caller = nil) { |v| }`.
fn rb_fiber_spin(rb_self: Value, args: &[Value]) -> Result<Value, Error> {
    crate::helpers::check_arity(args, 0, 2)?;
    let tag = args.first().map(|v| raw(*v)).unwrap_or(QNIL);
    let site = args.get(1).map(|v| raw(*v)).unwrap_or(QNIL);
    spin_child(raw(rb_self), tag, site, block_or_nil()).map(val)
}

/// `Kernel#spin(tag = nil) { |v| }`: a child of the current fiber.
fn rb_object_spin(args: &[Value]) -> Result<Value, Error> {
    crate::helpers::check_arity(args, 0, 1)?;
    let tag = args.first().map(|v| raw(*v)).unwrap_or(QNIL);
    let cur = unsafe { rb_sys::rb_fiber_current() };
    spin_child(cur, tag, QNIL, block_or_nil()).map(val)
}

// ---- accessors -------------------------------------------------------------

fn st_of(v: Value) -> &'static FiberState {
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
    let is_thread = unsafe { rb_sys::rb_obj_is_kind_of(t, rb_sys::rb_cThread) } == QTRUE;
    if !is_nil(t) && !is_thread {
        return Err(type_error(format!(
            "expected a Thread, got {}",
            crate::helpers::inspect_class(t)
        )));
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
    finished || unsafe { rb_sys::rb_fiber_alive_p(fiber) } != QTRUE
}

fn dead_p(rb_self: Value) -> bool {
    is_dead(raw(rb_self))
}

/// `:dead`, `:running`, `:runnable` or `:waiting`.
fn fiber_state(rb_self: Value) -> Result<Value, Error> {
    let f = raw(rb_self);
    let name = if is_dead(f) {
        "dead"
    } else if f == unsafe { rb_sys::rb_fiber_current() } {
        "running"
    } else {
        let th = state(f).thread.get();
        match Backend::of_thread(th)? {
            Some(b) if b.rq.borrow().contains(f) => "runnable",
            _ => "waiting",
        }
    };
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
            return Err(crate::helpers::arg_error(
                "a fiber cannot be a child of itself or of its descendants",
            ));
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
    let a = unsafe { rb_sys::rb_ary_new() };
    st_of(rb_self).each_monitor(|m| unsafe {
        rb_sys::rb_ary_push(a, m);
    });
    val(a)
}

fn rb_monitor_mailbox(rb_self: Value) -> Result<Value, Error> {
    monitor_mailbox(raw(rb_self)).map(val)
}

fn reset_monitor_mailbox(rb_self: Value) -> Value {
    st_of(rb_self).monitor_mailbox.set(QNIL);
    rb_self
}

fn rb_mailbox(rb_self: Value) -> Result<Value, Error> {
    mailbox(raw(rb_self)).map(val)
}

/// The mailbox if one was created, else nil (never creates one).
fn mailbox_if_any(rb_self: Value) -> Value {
    val(st_of(rb_self).mailbox.get())
}

fn is_array(v: VALUE) -> bool {
    unsafe { rb_sys::RB_TYPE_P(v, rb_sys::ruby_value_type::RUBY_T_ARRAY) }
}

/// `"path:line:in `label'"` of the spin site (the format of `caller`), or
/// nil if unknown. An explicit backtrace's first entry may be any object:
/// its `to_s` runs under `rb_protect`.
fn site_string(st: &FiberState) -> Result<VALUE, Error> {
    let caller = st.caller.get();
    if !is_nil(caller) {
        let first = unsafe { rb_sys::rb_ary_entry(caller, 0) };
        if is_nil(first) {
            return Ok(QNIL);
        }
        return protect(|| unsafe { rb_sys::rb_obj_as_string(first) });
    }
    let frame = st.frame.get();
    if is_nil(frame) {
        return Ok(QNIL);
    }
    // Both are Strings (or nil) taken from the iseq: nothing here can raise.
    let path = unsafe { rb_sys::rb_profile_frame_path(frame) };
    let label = unsafe { rb_sys::rb_profile_frame_label(frame) };
    if is_nil(path) {
        return Ok(QNIL);
    }
    let to_s = |v: VALUE| -> String {
        if is_nil(v) {
            String::new()
        } else {
            crate::helpers::str_lossy(v)
        }
    };
    let s = format!("{}:{}:in `{}'", to_s(path), st.line.get(), to_s(label));
    Ok(unsafe { rb_sys::rb_utf8_str_new(s.as_ptr() as *const _, s.len() as _) })
}

fn location(rb_self: Value) -> Result<Value, Error> {
    let st = st_of(rb_self);
    if st.main.get() {
        return Ok(val(unsafe {
            rb_sys::rb_utf8_str_new(c"(root)".as_ptr(), 6)
        }));
    }
    let s = site_string(st)?;
    if is_nil(s) {
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
        return Ok(val(unsafe { rb_sys::rb_ary_dup(caller) }));
    }
    let a = unsafe { rb_sys::rb_ary_new() };
    let s = site_string(st)?;
    if !is_nil(s) {
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
            crate::helpers::inspect_class(raw(array))
        )));
    }
    let st = st_of(rb_self);
    st.caller.set(raw(array));
    st.frame.set(QNIL);
    Ok(rb_self)
}

fn setup_main_fiber(rb_self: Value) -> Value {
    let st = st_of(rb_self);
    st.main.set(true);
    st.tag.set(unsafe { rb_sys::rb_id2sym(id!("main")) });
    st.thread.set(unsafe { rb_sys::rb_thread_current() });
    st.parent.set(QNIL);
    st.running.set(RUNNING);
    rb_self
}

fn setup_raw(rb_self: Value) -> Value {
    let st = st_of(rb_self);
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
    crate::helpers::check_arity(args, 0, 1)?;
    let v = args.first().map(|v| raw(*v)).unwrap_or(QNIL);
    schedule(raw(rb_self), v, priority)?;
    Ok(rb_self)
}

pub fn init(ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    let _ = polyphony.define_class("FiberState", ruby.class_object())?;
    let fiber = magnus::RClass::from_value(val(fiber_class()))
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
    fiber.define_method("dead?", method!(dead_p, 0))?;
    fiber.define_method("state", method!(fiber_state, 0))?;
    fiber.define_method("children", method!(children, 0))?;
    fiber.define_method("await", method!(crate::ruby_api::fiber_await::rb_await, 0))?;
    fiber.define_method("join", method!(crate::ruby_api::fiber_await::rb_await, 0))?;
    fiber.define_method("value", method!(crate::ruby_api::fiber_await::rb_await, 0))?;
    fiber.define_singleton_method(
        "await",
        magnus::function!(crate::ruby_api::fiber_await::rb_await_all, -1),
    )?;
    fiber.define_singleton_method(
        "join",
        magnus::function!(crate::ruby_api::fiber_await::rb_await_all, -1),
    )?;
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
