//! `Fiber#await` and `Fiber.await`, natively.
//!
//! An awaiting fiber does not go through its monitor mailbox: it registers
//! one [`AwaitCtx`] with every live fiber it waits for and parks. When an
//! awaited fiber finishes, [`notify`] (called from the fiber's native
//! lifecycle) counts it down and wakes the awaiter once all of them finished,
//! or at the first one that ended with an exception. No message, no Queue,
//! no Hash: a thousand fibers awaited at once cost one wake-up.
//!
//! What it waits for: every given fiber to finish. How it is cancelled: any
//! exception scheduled into the awaiting fiber (`stop`, `raise`, a timeout)
//! unregisters it from the fibers still running and is raised; a plain
//! `schedule(value)` is ignored and the wait goes on. On the first error the
//! other fibers are sent `terminate`, waited for, then the error is raised.

use crate::rt::id;
use std::cell::Cell;
use std::sync::Arc;

use crate::rt::Error;
use magnus::{gc, Value};
use rb_sys::VALUE;

use super::{expect_fiber, is_dead, state, try_state, FiberState};
use crate::core::Backend;
use crate::rt::data::Handle;
use crate::rt::{call, is_array, is_exception, is_nil, raise_if_exception, raw, val, QNIL};

/// One `await` call in progress. Shared by the awaited fibers' states; only
/// touched with the GVL held.
pub struct AwaitCtx {
    awaiter: VALUE,
    /// When the await started (`state::wait_seq`).
    pub(super) seq: u64,
    pending: Cell<usize>,
    /// The first awaited fiber that finished with an exception, or nil.
    failed: Cell<VALUE>,
    parked: Cell<bool>,
}

// The context is only read and written by Ruby threads holding the GVL, one
// at a time; it is shared across threads only when a fiber awaits a fiber of
// another thread.
// SAFETY: the context is only read and written by Ruby threads holding the GVL, one at a time
// (see above).
unsafe impl Send for AwaitCtx {}
// SAFETY: as for `Send`.
unsafe impl Sync for AwaitCtx {}

impl AwaitCtx {
    pub fn mark(&self, marker: &gc::Marker) {
        marker.mark(val(self.awaiter));
        let f = self.failed.get();
        if !is_nil(f) {
            marker.mark(val(f));
        }
    }
}

/// The awaits waiting for one fiber: the first inline (the common case, no
/// allocation), the others boxed.
#[derive(Default)]
pub struct Awaiters {
    first: Cell<Option<Arc<AwaitCtx>>>,
    /// Boxed: one word in every fiber's state instead of three.
    #[allow(clippy::box_collection)]
    more: Cell<Option<Box<Vec<Arc<AwaitCtx>>>>>,
}

impl Awaiters {
    /// Registers `ctx`; false if it already was.
    fn add(&self, ctx: &Arc<AwaitCtx>) -> bool {
        let first = self.first.take();
        let Some(f) = first else {
            self.first.set(Some(ctx.clone()));
            return true;
        };
        let dup = Arc::ptr_eq(&f, ctx);
        self.first.set(Some(f));
        if dup {
            return false;
        }
        let mut more = self.more.take().unwrap_or_default();
        let fresh = !more.iter().any(|c| Arc::ptr_eq(c, ctx));
        if fresh {
            more.push(ctx.clone());
        }
        self.more.set(Some(more));
        fresh
    }

    fn remove(&self, ctx: &Arc<AwaitCtx>) {
        if let Some(f) = self.first.take() {
            if !Arc::ptr_eq(&f, ctx) {
                self.first.set(Some(f));
            }
        }
        if let Some(mut more) = self.more.take() {
            more.retain(|c| !Arc::ptr_eq(c, ctx));
            if !more.is_empty() {
                self.more.set(Some(more));
            }
        }
    }

    fn take_all(&self) -> impl Iterator<Item = Arc<AwaitCtx>> {
        let first = self.first.take();
        let more = self.more.take();
        first
            .into_iter()
            .chain(more.into_iter().flat_map(|b| b.into_iter()))
    }

    pub fn mark(&self, marker: &gc::Marker) {
        let first = self.first.take();
        if let Some(c) = &first {
            c.mark(marker);
        }
        self.first.set(first);
        let more = self.more.take();
        if let Some(list) = &more {
            for c in list.iter() {
                c.mark(marker);
            }
        }
        self.more.set(more);
    }
}

/// The awaits waiting for a fiber that finished (they are notified one by
/// one, in the order everything waiting on it started: see `finalize`).
pub fn take(st: &FiberState) -> Vec<Arc<AwaitCtx>> {
    st.awaiters.take_all().collect()
}

/// Counts `fiber`, finished with `result`, down in the await `ctx`, waking
/// its awaiter if the await is done. True if the awaiter is `parent` (it
/// then gets an error from `await`, not as an asynchronous raise).
pub fn notify_one(
    ctx: &AwaitCtx,
    fiber: VALUE,
    result: VALUE,
    parent: VALUE,
) -> Result<bool, Error> {
    ctx.pending.set(ctx.pending.get().saturating_sub(1));
    let mut wake = ctx.pending.get() == 0;
    if is_exception(result) && is_nil(ctx.failed.get()) {
        ctx.failed.set(fiber);
        wake = true;
    }
    if wake && ctx.parked.get() {
        crate::ruby_api::fiber::schedule(ctx.awaiter, QNIL, false)?;
    }
    Ok(ctx.awaiter == parent)
}

/// Parks until `done` holds, raising a scheduled exception.
fn wait_until(ctx: &AwaitCtx, done: impl Fn() -> bool) -> Result<(), Error> {
    let backend = Backend::current()?;
    while !done() {
        ctx.parked.set(true);
        let r = backend.wait_event(false);
        ctx.parked.set(false);
        raise_if_exception(r?)?;
    }
    Ok(())
}

fn entry(ary: VALUE, i: usize) -> VALUE {
    // SAFETY: a live Array (checked or made by this code); an index past its end reads nil, nothing
    // raises.
    unsafe { rb_sys::rb_ary_entry(ary, i as _) }
}

fn len(ary: VALUE) -> usize {
    // SAFETY: a live Array (checked or made by this code); an index past its end reads nil, nothing
    // raises.
    unsafe { rb_sys::RARRAY_LEN(ary) as usize }
}

/// Waits for every fiber in `ary` (a private Array, kept alive by the
/// caller). Returns their states once all finished; raises the first error.
fn await_all(ary: VALUE) -> Result<Vec<Handle<FiberState>>, Error> {
    // SAFETY: GVL held (this runs in a Ruby method of the current thread); no arguments, never
    // raises.
    let cur = unsafe { rb_sys::rb_fiber_current() };
    let mut states = Vec::with_capacity(len(ary));
    for i in 0..len(ary) {
        let f = expect_fiber(entry(ary, i))?;
        if f == cur {
            return Err(crate::rt::error_of(
                "FiberError",
                "a fiber cannot await itself",
            ));
        }
        states.push(state(f));
    }
    let ctx = Arc::new(AwaitCtx {
        awaiter: cur,
        seq: super::state::wait_seq(),
        pending: Cell::new(0),
        failed: Cell::new(QNIL),
        parked: Cell::new(false),
    });
    let mut dead_error = QNIL;
    for (i, st) in states.iter().enumerate() {
        let f = entry(ary, i);
        if st.is_dead(f) {
            if is_nil(dead_error) && is_exception(st.result()) {
                dead_error = f;
            }
            continue;
        }
        if st.awaiters.add(&ctx) {
            ctx.pending.set(ctx.pending.get() + 1);
        }
    }
    let r = wait_and_settle(ary, &ctx, dead_error);
    // Leave the fibers still running (after an exception in this fiber).
    if ctx.pending.get() > 0 {
        for st in &states {
            st.awaiters.remove(&ctx);
        }
    }
    r.map(|_| states)
}

fn wait_and_settle(ary: VALUE, ctx: &AwaitCtx, dead_error: VALUE) -> Result<(), Error> {
    let mut failed = dead_error;
    if is_nil(failed) {
        wait_until(ctx, || ctx.pending.get() == 0 || !is_nil(ctx.failed.get()))?;
        failed = ctx.failed.get();
    }
    if is_nil(failed) {
        return Ok(());
    }
    // First error: terminate the others, wait for them, raise it.
    for i in 0..len(ary) {
        let f = entry(ary, i);
        if !is_dead(f) {
            call(f, id!("terminate"), &[])?;
        }
    }
    wait_until(ctx, || ctx.pending.get() == 0)?;
    let exc = try_state(failed).map(|s| s.result()).unwrap_or(QNIL);
    raise_if_exception(exc).map(|_| ())
}

/// `Fiber.await(*fibers)` / `Fiber.await([fibers])` (alias `Fiber.join`):
/// the results in argument order.
pub fn rb_await_all(args: &[Value]) -> Result<Value, magnus::Error> {
    let ary = if args.len() == 1 && is_array(raw(args[0])) {
        // SAFETY: GVL held; allocates or updates an object from live values, with no `RefCell`
        // borrow held (a GC here may mark).
        unsafe { rb_sys::rb_ary_dup(raw(args[0])) }
    } else {
        let v: Vec<VALUE> = args.iter().map(|a| raw(*a)).collect();
        // SAFETY: GVL held; allocates or updates an object from live values, with no `RefCell`
        // borrow held (a GC here may mark).
        unsafe { rb_sys::rb_ary_new_from_values(v.len() as _, v.as_ptr()) }
    };
    let r = await_all(ary);
    let out = r.map(|states| {
        let results: Vec<VALUE> = states.iter().map(|s| s.result()).collect();
        // SAFETY: GVL held; allocates or updates an object from live values, with no `RefCell`
        // borrow held (a GC here may mark).
        val(unsafe { rb_sys::rb_ary_new_from_values(results.len() as _, results.as_ptr()) })
    });
    // Keeps `ary` (and the fibers in it) visible to the GC until here.
    rb_sys::rb_gc_guard!(ary);
    out.map_err(Into::into)
}

/// `Fiber#await` (aliases `join`, `value`): the fiber's result, raised if it
/// is an exception.
pub fn rb_await(rb_self: Value) -> Result<Value, magnus::Error> {
    let f = raw(rb_self);
    if !is_dead(f) {
        // SAFETY: GVL held; allocates or updates an object from live values, with no `RefCell`
        // borrow held (a GC here may mark).
        let ary = unsafe { rb_sys::rb_ary_new_from_values(1, &f) };
        let r = await_all(ary);
        rb_sys::rb_gc_guard!(ary);
        r?;
    }
    let res = try_state(f).map(|s| s.result()).unwrap_or(QNIL);
    raise_if_exception(res).map(val).map_err(Into::into)
}
