//! Polyphony's state of one fiber ([`FiberState`]), kept in a hidden
//! instance variable of the fiber: thread, parent, tag, block, spin
//! location, result, children (an intrusive list), monitors and mailboxes.
//! Keeping them in one native object (instead of a dozen Ruby instance
//! variables) is what makes `spin` cheap.

use std::sync::atomic::{AtomicU64, Ordering};

use magnus::{gc, DataTypeFunctions, TypedData};

use super::awaiting;
use crate::rt::data::Handle;
use std::cell::Cell;

use crate::rt::Error;
use magnus::prelude::*;
use rb_sys::VALUE;

use crate::rt::{id, is_nil, raw, type_error, val, QNIL, QTRUE};

pub(super) const NOT_STARTED: u8 = 0;
pub(super) const RUNNING: u8 = 1;
pub(super) const FINISHED: u8 = 2;

/// The Polyphony state of one fiber. Created by `spin`, or lazily for fibers
/// Polyphony did not create (main fibers, `Enumerator` fibers, `Fiber.new`).
#[derive(TypedData)]
#[magnus(class = "Polyphony::FiberState", free_immediately, size, mark)]
pub struct FiberState {
    pub(super) thread: Cell<VALUE>,
    pub(super) parent: Cell<VALUE>,
    pub(super) tag: Cell<VALUE>,
    pub(super) block: Cell<VALUE>,
    /// An explicit spin-site backtrace (`set_caller`, `spin(tag, array)`).
    pub(super) caller: Cell<VALUE>,
    /// The spin site as recorded by `rb_profile_frames` (an iseq or method
    /// entry, formatted only when asked for), and its line.
    pub(super) frame: Cell<VALUE>,
    pub(super) line: Cell<i32>,
    pub(super) result: Cell<VALUE>,
    /// The fiber this state belongs to.
    pub(super) fiber: Cell<VALUE>,
    /// Children, in spin order: an intrusive doubly linked list of the
    /// children's state objects (O(1) insert and removal, no allocation,
    /// no object ids). `list_owner`/`prev`/`next` are this fiber's links in
    /// its parent's list.
    pub(super) first_child: Cell<VALUE>,
    pub(super) last_child: Cell<VALUE>,
    pub(super) n_children: Cell<usize>,
    pub(super) list_owner: Cell<VALUE>,
    pub(super) prev: Cell<VALUE>,
    pub(super) next: Cell<VALUE>,
    /// Fibers blocked in `await` on this one (see `awaiting.rs`).
    pub(crate) awaiters: awaiting::Awaiters,
    /// The first monitor inline (the common case: one monitoring fiber),
    /// the others in a Hash.
    pub(super) monitor: Cell<VALUE>,
    /// When `monitor` started watching (see `wait_seq`).
    pub(super) monitor_seq: Cell<u64>,
    pub(super) monitors: Cell<VALUE>,
    pub(super) mailbox: Cell<VALUE>,
    pub(super) monitor_mailbox: Cell<VALUE>,
    pub(super) running: Cell<u8>,
    pub(super) main: Cell<bool>,
    pub(super) graceful: Cell<bool>,
    pub(super) supervise: Cell<bool>,
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
    pub(super) fn new(thread: VALUE) -> Self {
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
            monitor_seq: Cell::new(0),
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
        // SAFETY: GVL held; reads the type or state of a live object the caller holds, never
        // raises.
        self.finished() || unsafe { rb_sys::rb_fiber_alive_p(fiber) } != QTRUE
    }

    pub(super) fn finished(&self) -> bool {
        self.running.get() == FINISHED
    }

    pub(super) fn each_monitor(&self, mut f: impl FnMut(VALUE)) {
        self.each_monitor_seq(|m, _| f(m));
    }

    /// Every monitor with the sequence number of when it started watching
    /// (the extra monitors' numbers are their Hash values).
    pub(super) fn each_monitor_seq(&self, mut f: impl FnMut(VALUE, u64)) {
        let m = self.monitor.get();
        if !is_nil(m) {
            f(m, self.monitor_seq.get());
        }
        let h = self.monitors.get();
        if !is_nil(h) {
            for k in hash_keys(h) {
                // SAFETY: GVL held; a lookup in our own Hash, whose values
                // are Integers this file stores.
                let v = unsafe { rb_sys::rb_hash_lookup2(h, k, QNIL) };
                let seq = if rb_sys::FIXNUM_P(v) {
                    // SAFETY: `v` is a Fixnum (checked).
                    unsafe { rb_sys::rb_num2long(v) as u64 }
                } else {
                    0
                };
                f(k, seq);
            }
        }
    }

    pub(super) fn has_monitor(&self, fiber: VALUE) -> bool {
        if self.monitor.get() == fiber {
            return true;
        }
        let h = self.monitors.get();
        // SAFETY: GVL held; allocates or updates an object from live values, with no `RefCell`
        // borrow held (a GC here may mark).
        !is_nil(h) && unsafe { rb_sys::rb_hash_lookup2(h, fiber, QNIL) } != QNIL
    }

    pub(super) fn add_monitor(&self, fiber: VALUE) {
        if self.has_monitor(fiber) {
            return;
        }
        let seq = wait_seq();
        let h = self.monitors.get();
        let hash_empty = is_nil(h) || hash_size(h) == 0;
        if is_nil(self.monitor.get()) && hash_empty {
            self.monitor.set(fiber);
            self.monitor_seq.set(seq);
        } else {
            let h = if is_nil(h) {
                // SAFETY: GVL held; allocates or updates an object from live values, with no
                // `RefCell` borrow held (a GC here may mark).
                let h = unsafe { rb_sys::rb_hash_new() };
                self.monitors.set(h);
                h
            } else {
                h
            };
            // SAFETY: GVL held; allocates or updates an object from live values, with no `RefCell`
            // borrow held (a GC here may mark).
            unsafe { rb_sys::rb_hash_aset(h, fiber, rb_sys::rb_uint2inum(seq as _)) };
        }
    }

    pub(super) fn remove_monitor(&self, fiber: VALUE) {
        if self.monitor.get() == fiber {
            self.monitor.set(QNIL);
        }
        let h = self.monitors.get();
        if !is_nil(h) {
            // SAFETY: GVL held; allocates or updates an object from live values, with no `RefCell`
            // borrow held (a GC here may mark).
            unsafe { rb_sys::rb_hash_delete(h, fiber) };
        }
    }

    /// Appends the fiber whose state object is `child_obj` to this fiber's
    /// children (`self_obj` is this state's object), leaving any other list
    /// first.
    pub(super) fn link_child(&self, self_obj: VALUE, child_obj: VALUE) {
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
    pub(super) fn unlink(&self) {
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

    pub(super) fn has_children(&self) -> bool {
        self.n_children.get() > 0
    }

    /// The children's fibers, in spin order.
    pub(super) fn child_fibers(&self) -> Vec<VALUE> {
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

/// The next number of a process-wide sequence: when a monitor or an await
/// started waiting for a fiber. A fiber that ends wakes them in this order.
pub(super) fn wait_seq() -> u64 {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The state inside a `FiberState` object (one made by [`attach_state`]).
/// The handle keeps the object alive while it is used.
pub(super) fn state_of_obj(obj: VALUE) -> Handle<FiberState> {
    // SAFETY: only state objects are passed here (the list links and the
    // fibers' hidden ivar, both type-checked when set), and typed data
    // never moves.
    unsafe { Handle::from_parts(obj, rb_sys::RTYPEDDATA_GET_DATA(obj) as *const FiberState) }
}

pub(super) fn hash_size(h: VALUE) -> usize {
    // SAFETY: GVL held; allocates or updates an object from live values, with no `RefCell` borrow
    // held (a GC here may mark).
    unsafe { rb_sys::rb_num2long(rb_sys::rb_hash_size(h)) as usize }
}

pub(super) fn ary_from(v: &[VALUE]) -> VALUE {
    // SAFETY: GVL held; allocates or updates an object from live values, with no `RefCell` borrow
    // held (a GC here may mark).
    unsafe { rb_sys::rb_ary_new_from_values(v.len() as _, v.as_ptr()) }
}

pub(super) fn hash_keys(h: VALUE) -> Vec<VALUE> {
    // SAFETY: GVL held; `h` is one of our own Hashes (never exposed to Ruby code), whose `keys`
    // cannot raise.
    let keys = unsafe { rb_sys::rb_funcallv(h, id!("keys"), 0, std::ptr::null()) };
    array_to_vec(keys)
}

pub(crate) fn array_to_vec(a: VALUE) -> Vec<VALUE> {
    // SAFETY: a live Array (checked or made by this code); an index past its end reads nil, nothing
    // raises.
    let n = unsafe { rb_sys::RARRAY_LEN(a) };
    (0..n)
        // SAFETY: a live Array (checked or made by this code); an index past its end reads nil,
        // nothing raises.
        .map(|i| unsafe { rb_sys::rb_ary_entry(a, i) })
        .collect()
}

pub(super) fn state_id() -> rb_sys::ID {
    // No leading `@`: a hidden instance variable, invisible to
    // `instance_variables` and `instance_variable_get`.
    id!("__polyphony_state__")
}

/// The `rb_data_type_t` of state objects, recorded when the first one is
/// made (0 before: then no fiber has a state).
pub(super) static STATE_TYPE: AtomicU64 = AtomicU64::new(0);

/// The state object of `fiber`, or nil.
pub(super) fn try_state_obj(fiber: VALUE) -> VALUE {
    // SAFETY: GVL held; a hidden instance variable of a live object (hidden ivars cannot be frozen
    // out by Ruby code).
    let v = unsafe { rb_sys::rb_ivar_get(fiber, state_id()) };
    if rb_sys::SPECIAL_CONST_P(v)
        // SAFETY: GVL held; reads the type or state of a live object the caller holds, never
        // raises.
        || !unsafe { rb_sys::RB_TYPE_P(v, rb_sys::ruby_value_type::RUBY_T_DATA) }
        // SAFETY: GVL held; reads the type or state of a live object the caller holds, never
        // raises.
        || !unsafe { rb_sys::RTYPEDDATA_P(v) }
        // SAFETY: GVL held; reads the type or state of a live object the caller holds, never
        // raises.
        || unsafe { rb_sys::RTYPEDDATA_TYPE(v) } as u64 != STATE_TYPE.load(Ordering::Relaxed)
    {
        return QNIL;
    }
    v
}

/// The state of `fiber`, if it has one.
pub(crate) fn try_state(fiber: VALUE) -> Option<Handle<FiberState>> {
    let v = try_state_obj(fiber);
    if is_nil(v) {
        return None;
    }
    // The state object lives as long as the fiber, which the caller holds.
    Some(state_of_obj(v))
}

/// The state object of `fiber`, created (unadopted: no thread, not started)
/// if missing. `fiber` must be a Fiber.
pub(super) fn state_obj(fiber: VALUE) -> VALUE {
    let v = try_state_obj(fiber);
    if !is_nil(v) {
        return v;
    }
    attach_state(fiber, FiberState::new(QNIL)).0
}

/// The state of `fiber`, created if missing (see [`state_obj`]).
pub(crate) fn state(fiber: VALUE) -> Handle<FiberState> {
    state_of_obj(state_obj(fiber))
}

pub(super) fn attach_state(fiber: VALUE, st: FiberState) -> (VALUE, Handle<FiberState>) {
    st.fiber.set(fiber);
    let obj = crate::rt::ruby().obj_wrap(st);
    let v = raw(obj.as_value());
    if STATE_TYPE.load(Ordering::Relaxed) == 0 {
        STATE_TYPE.store(
            // SAFETY: GVL held; reads the type or state of a live object the caller holds, never
            // raises.
            unsafe { rb_sys::RTYPEDDATA_TYPE(v) } as u64,
            Ordering::Relaxed,
        );
    }
    // SAFETY: GVL held; a hidden instance variable of a live object (hidden ivars cannot be frozen
    // out by Ruby code).
    unsafe { rb_sys::rb_ivar_set(fiber, state_id(), v) };
    (v, state_of_obj(v))
}

pub(crate) fn expect_fiber(v: VALUE) -> Result<VALUE, Error> {
    // SAFETY: GVL held; reads the type or state of a live object the caller holds, never raises.
    if unsafe { rb_sys::rb_obj_is_fiber(v) } == QTRUE {
        Ok(v)
    } else {
        Err(type_error(format!(
            "expected a Fiber, got {}",
            crate::rt::inspect_class(v)
        )))
    }
}
