//! `Polyphony::Queue`'s state and hot paths (`core::queue::Queue`): `push`
//! and a `shift` that finds an item and nothing else to run go no further
//! than here; the waiting paths are Ruby (lib/polyphony/core/queue.rb) built
//! on the private one-step methods below.

use magnus::{method, prelude::*, Error, RModule, Ruby, Value};
use rb_sys::VALUE;

use super::fiber::schedule;
use crate::core::queue::{Insert, Queue, Wake};
use crate::core::Backend;
use crate::rt::data::{self, typed_data, Handle};
use crate::rt::{error_of, id, is_nil, protect, raw, uint, val, QFALSE, QNIL, QTRUE};

typed_data!(Queue, "Polyphony::Queue", mark);

/// The queue of a method's receiver (a `Polyphony::Queue`, checked without
/// `rb_protect`: this is the hot path of every mailbox).
#[inline]
fn this(rb_self: Value) -> Result<Handle<Queue>, Error> {
    data::get::<Queue>(raw(rb_self))
        .ok_or_else(|| crate::rt::type_error("not a Polyphony::Queue").into())
}

fn closed_error() -> Error {
    error_of("ClosedQueueError", "queue closed").into()
}

fn bool_val(b: bool) -> Value {
    val(if b { QTRUE } else { QFALSE })
}

fn current_fiber() -> VALUE {
    // SAFETY: GVL held (a Ruby method of the current thread); never raises.
    unsafe { rb_sys::rb_fiber_current() }
}

/// Schedules the fibers a step woke, in order.
fn wake(fibers: Wake) -> Result<(), Error> {
    fibers.into_iter().try_for_each(|f| wake_one(Some(f)))
}

#[inline]
fn wake_one(fiber: Option<VALUE>) -> Result<(), Error> {
    match fiber {
        Some(f) => schedule(f, QNIL, false).map_err(Into::into),
        None => Ok(()),
    }
}

/// Calls the Ruby method `name` of `rb_self` with the arguments (and the
/// keyword flag) this native method got.
fn call_on(rb_self: Value, name: rb_sys::ID, args: &[Value]) -> Result<Value, Error> {
    // SAFETY: GVL held, in the native method whose keyword flag this reads.
    let kw = unsafe { rb_sys::rb_keyword_given_p() };
    let argv: Vec<VALUE> = args.iter().map(|v| raw(*v)).collect();
    // SAFETY: inside `protect`: what the call raises comes back as `Err`; GVL held, the
    // arguments are live (they are this method's arguments).
    protect(|| unsafe {
        rb_sys::rb_funcallv_kw(raw(rb_self), name, argv.len() as _, argv.as_ptr(), kw)
    })
    .map(val)
    .map_err(Into::into)
}

/// `push(value)` / `<<` / `enq` → self: appends and wakes the first waiting
/// shifter; a capped queue takes the Ruby path (it may park the pusher).
fn push(rb_self: Value, v: Value) -> Result<Value, Error> {
    add(rb_self, v, false)
}

/// `unshift(value)` → self: as `push`, at the head.
fn unshift(rb_self: Value, v: Value) -> Result<Value, Error> {
    add(rb_self, v, true)
}

fn add(rb_self: Value, v: Value, front: bool) -> Result<Value, Error> {
    let q = this(rb_self)?;
    match q.push_uncapped(raw(v), front) {
        Ok(shifter) => {
            wake_one(shifter)?;
            Ok(rb_self)
        }
        Err(true) => Err(closed_error()),
        Err(false) => {
            let how = val(if front { QTRUE } else { QFALSE });
            call_on(rb_self, id!("__insert__"), &[v, how])
        }
    }
}

/// `shift(non_block = false, timeout: nil)` / `pop` / `deq`. The blocking
/// form is a switchpoint; when an item is ready, no other fiber waits for
/// one and no other fiber is runnable, that switch would come straight back,
/// so the item is taken here (see `Backend::may_skip_switchpoint`).
/// Everything else is the Ruby `__shift__`.
fn shift(rb_self: Value, args: &[Value]) -> Result<Value, Error> {
    let q = this(rb_self)?;
    if args.is_empty() {
        let b = Backend::current()?;
        if b.may_skip_switchpoint() {
            if let Some(v) = q.take_uncontended() {
                return Ok(val(v));
            }
        } else if !b.has_runnable() && q.can_take_uncontended() {
            // Nothing else runnable: the switchpoint is a poll. (With other
            // fibers runnable, they run first while this fiber waits
            // registered as a shifter: the Ruby path.)
            b.snooze()?;
            if let Some(v) = q.take_uncontended() {
                return Ok(val(v));
            }
        }
    }
    call_on(rb_self, id!("__shift__"), args)
}

/// The head, waking the pusher it makes room for; `None` when empty.
fn take_head(rb_self: Value) -> Result<Option<Value>, Error> {
    match this(rb_self)?.take() {
        Some((v, pusher)) => wake_one(pusher).map(|_| Some(val(v))),
        None => Ok(None),
    }
}

/// `__take__(none)` → the head, or `none` when empty.
fn take(rb_self: Value, none: Value) -> Result<Value, Error> {
    Ok(take_head(rb_self)?.unwrap_or(none))
}

/// `__take_now__` → the head; `ThreadError` when empty.
fn take_now(rb_self: Value) -> Result<Value, Error> {
    take_head(rb_self)?.ok_or_else(|| error_of("ThreadError", "queue empty").into())
}

/// `__insert_or_wait__(value, front)` → true when the item is in, false when
/// the current fiber registered as a pusher (and must park).
fn insert_or_wait(rb_self: Value, v: Value, front: bool) -> Result<bool, Error> {
    let q = this(rb_self)?;
    match q.insert(raw(v), front, current_fiber()) {
        Insert::Done(shifter) => wake_one(shifter).map(|_| true),
        Insert::Wait(again) => wake_one(again).map(|_| false),
        Insert::Closed => Err(closed_error()),
    }
}

/// `__insert_after_wait__(value, front)` → true when the item is in, false
/// when the queue is still full (the pusher is no longer registered).
fn insert_after_wait(rb_self: Value, v: Value, front: bool) -> Result<bool, Error> {
    let q = this(rb_self)?;
    match q.insert_after_wait(raw(v), front, current_fiber()) {
        None => Ok(false),
        Some(Insert::Done(shifter)) => wake_one(shifter).map(|_| true),
        Some(Insert::Closed) | Some(Insert::Wait(_)) => Err(closed_error()),
    }
}

/// `__add_shifter__` registers the current fiber as a shifter (and
/// schedules it when an item is ready).
fn add_shifter(rb_self: Value) -> Result<(), Error> {
    let q = this(rb_self)?;
    wake_one(q.add_shifter(current_fiber()))
}

/// `__remove_waiter__(fiber, pusher)` → whether it was still registered.
fn remove_waiter(rb_self: Value, fiber: Value, pusher: bool) -> Result<bool, Error> {
    let q = this(rb_self)?;
    Ok(q.remove_waiter(raw(fiber), pusher))
}

/// `__pass_wake_on__`: a woken shifter leaving by an exception wakes the
/// next one if an item is ready.
fn pass_wake_on(rb_self: Value) -> Result<(), Error> {
    let q = this(rb_self)?;
    wake_one(q.pass_wake_on())
}

/// `__wake_pushers__`: wakes as many pushers as there is room for.
fn wake_pushers(rb_self: Value) -> Result<(), Error> {
    let q = this(rb_self)?;
    wake(q.wake_pushers())
}

fn new_array(vs: &[VALUE]) -> VALUE {
    // SAFETY: GVL held; `vs` are live (they are still in the queue).
    unsafe { rb_sys::rb_ary_new_from_values(vs.len() as _, vs.as_ptr()) }
}

/// `__items__` → a copy of the items (they stay in the queue).
fn items(rb_self: Value) -> Result<Value, Error> {
    let q = this(rb_self)?;
    Ok(val(new_array(&q.items())))
}

/// `shift_all` → every current item, removed.
fn shift_all(rb_self: Value) -> Result<Value, Error> {
    let q = this(rb_self)?;
    let items = q.items();
    let ary = new_array(&items);
    wake(q.drop_front(items.len()))?;
    Ok(val(ary))
}

/// `__shift_ready__(first)` → `[first, *every item present now]`, taken
/// without a switchpoint.
fn shift_ready(rb_self: Value, first: Value) -> Result<Value, Error> {
    let q = this(rb_self)?;
    let mut items = q.items();
    let n = items.len();
    items.insert(0, raw(first));
    let ary = new_array(&items);
    wake(q.drop_front(n))?;
    Ok(val(ary))
}

/// `__delete_identical__(item)`: removes the first item that is `item`.
fn delete_identical(rb_self: Value, v: Value) -> Result<(), Error> {
    let q = this(rb_self)?;
    wake(q.delete_identical(raw(v)))
}

/// `__append__(array)`: initial items.
fn append(rb_self: Value, ary: magnus::RArray) -> Result<(), Error> {
    let q = this(rb_self)?;
    // SAFETY: GVL held; `ary` is a live Array this call holds, read at once.
    let vs: Vec<VALUE> = unsafe { ary.as_slice() }.iter().map(|v| raw(*v)).collect();
    q.extend(&vs);
    Ok(())
}

/// `clear` → self.
fn clear(rb_self: Value) -> Result<Value, Error> {
    let q = this(rb_self)?;
    let n = q.len();
    wake(q.drop_front(n))?;
    Ok(rb_self)
}

/// `__set_cap__(size or nil)`: the Ruby `cap` checked the argument.
fn set_cap(rb_self: Value, size: Value) -> Result<(), Error> {
    let q = this(rb_self)?;
    let cap = if is_nil(raw(size)) {
        None
    } else {
        Some(usize::try_convert(size)?).filter(|c| *c > 0)
    };
    wake(q.set_cap(cap))
}

/// `capped?` → the capacity, or nil.
fn capped(rb_self: Value) -> Result<Value, Error> {
    let q = this(rb_self)?;
    Ok(val(q.cap().map(uint).unwrap_or(QNIL)))
}

fn size(rb_self: Value) -> Result<usize, Error> {
    let q = this(rb_self)?;
    Ok(q.len())
}

fn empty_p(rb_self: Value) -> Result<Value, Error> {
    let q = this(rb_self)?;
    Ok(bool_val(q.is_empty()))
}

/// `pending?`: any fiber waiting in `shift`.
fn pending_p(rb_self: Value) -> Result<Value, Error> {
    let q = this(rb_self)?;
    Ok(bool_val(q.num_waiting() > 0))
}

fn num_waiting(rb_self: Value) -> Result<usize, Error> {
    let q = this(rb_self)?;
    Ok(q.num_waiting())
}

/// `flush_waiters(value)` → self: resumes every fiber waiting in `shift`
/// with `value` (an exception is raised in them).
fn flush_waiters(rb_self: Value, v: Value) -> Result<Value, Error> {
    let q = this(rb_self)?;
    for f in q.take_shifters() {
        schedule(f, raw(v), false)?;
    }
    Ok(rb_self)
}

/// `close` → self (idempotent): pushes raise, waiting shifters get nil,
/// waiting pushers wake to raise.
fn close(rb_self: Value) -> Result<Value, Error> {
    let q = this(rb_self)?;
    wake(q.close())?;
    Ok(rb_self)
}

fn closed_p(rb_self: Value) -> Result<Value, Error> {
    let q = this(rb_self)?;
    Ok(bool_val(q.is_closed()))
}

pub fn init(ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    let class = polyphony.define_class("Queue", ruby.class_object())?;
    class.define_alloc_func::<Queue>();
    for name in ["push", "<<", "enq"] {
        class.define_method(name, method!(push, 1))?;
    }
    class.define_method("unshift", method!(unshift, 1))?;
    for name in ["shift", "pop", "deq"] {
        class.define_method(name, method!(shift, -1))?;
    }
    class.define_method("shift_all", method!(shift_all, 0))?;
    class.define_method("clear", method!(clear, 0))?;
    class.define_method("capped?", method!(capped, 0))?;
    class.define_method("size", method!(size, 0))?;
    class.define_method("length", method!(size, 0))?;
    class.define_method("empty?", method!(empty_p, 0))?;
    class.define_method("pending?", method!(pending_p, 0))?;
    class.define_method("num_waiting", method!(num_waiting, 0))?;
    class.define_method("flush_waiters", method!(flush_waiters, 1))?;
    class.define_method("close", method!(close, 0))?;
    class.define_method("closed?", method!(closed_p, 0))?;
    class.define_method("__shift_ready__", method!(shift_ready, 1))?;
    class.define_private_method("__take__", method!(take, 1))?;
    class.define_private_method("__take_now__", method!(take_now, 0))?;
    class.define_private_method("__insert_or_wait__", method!(insert_or_wait, 2))?;
    class.define_private_method("__insert_after_wait__", method!(insert_after_wait, 2))?;
    class.define_private_method("__add_shifter__", method!(add_shifter, 0))?;
    class.define_private_method("__remove_waiter__", method!(remove_waiter, 2))?;
    class.define_private_method("__pass_wake_on__", method!(pass_wake_on, 0))?;
    class.define_private_method("__wake_pushers__", method!(wake_pushers, 0))?;
    class.define_private_method("__items__", method!(items, 0))?;
    class.define_private_method("__delete_identical__", method!(delete_identical, 1))?;
    class.define_private_method("__append__", method!(append, 1))?;
    class.define_private_method("__set_cap__", method!(set_cap, 1))?;
    Ok(())
}
