#![allow(deprecated)]
//! `Polyphony::Backend`: one per thread (`Thread#backend`), created lazily.
//!
//! It owns the thread's run queue, timers, in-flight operations and the
//! selector (io_uring or epoll). Every blocking method parks only the calling
//! fiber; other fibers of the thread run meanwhile. Every blocking method is
//! interruptible: an exception scheduled on the fiber (`Fiber#raise`, `stop`,
//! a timeout) cancels the kernel operation and is raised from the call. Plain
//! (non-exception) wake-ups do not interrupt I/O operations (D10); they do end
//! `sleep` and `wait_event`, which return the value.

use crate::helpers::id;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;

use magnus::{
    block::Proc, gc, method, prelude::*, typed_data::Obj, DataTypeFunctions, Error, RHash, RModule,
    Ruby, Symbol, TryConvert, TypedData, Value,
};
use rb_sys::VALUE;
use slab::Slab;

use crate::helpers::{
    arg_error, duration, expect_string, io_fd, io_fd_owner, is_nil, opt_len, protect, raw, val,
    Dir, QNIL, QTRUE,
};
use crate::op::{self, OpSlot};
use crate::runqueue::{AddrMap, RunQueue};
use crate::selector::{Choice, Event, Selector};
use crate::timers::Timers;

/// A schedule sent from another thread (see `Backend::post`).
pub struct Mail {
    pub fiber: VALUE,
    pub value: VALUE,
    pub priority: bool,
    /// Not queued over an exception already on its way to the fiber (a
    /// close's `IOError` does not replace a stop).
    pub soft: bool,
}

/// A runner's loop frame: `child` is the fiber it resumed (0 if none).
pub struct Frame {
    pub runner: VALUE,
    pub child: VALUE,
}

#[derive(TypedData)]
#[magnus(class = "Polyphony::Backend", free_immediately, size, mark)]
pub struct Backend {
    pub thread: Cell<VALUE>,
    pub rq: RefCell<RunQueue>,
    pub inbox: Mutex<Vec<Mail>>,
    pub inbox_flag: AtomicBool,
    pub timers: RefCell<Timers>,
    pub ops: RefCell<Slab<OpSlot>>,
    pub ready_waiters: RefCell<AddrMap<Vec<usize>>>,
    /// Bytes an interrupted io_uring read of a bare fd number (no IO object)
    /// took after its fiber gave up, served first by the next read of that
    /// fd in this thread (see `crate::kept`).
    pub fd_kept: RefCell<std::collections::HashMap<i32, Vec<u8>>>,
    /// io_uring: the fd whose last read filled the whole buffer (more data is
    /// likely waiting, so the next read tries a direct non-blocking call
    /// first); -1 if none. See `op::read::read_once`.
    pub read_full_fd: std::cell::Cell<i32>,
    /// io_uring: receives ask the kernel to poll first (false once a kernel
    /// older than 5.19 refused the flag with EINVAL). See `op::read`.
    pub recv_poll_first: std::cell::Cell<bool>,
    /// Fibers with an exception put off by `pend` (see
    /// `Backend::raise_pending`). Not marked: an entry is only compared
    /// with the current fiber, and a stale one (its fiber already raised it
    /// by a switch, or died) costs one harmless look-up when its address
    /// comes up again; `post_fork` and the look-ups themselves clear them.
    pub pended: RefCell<Vec<VALUE>>,
    /// Read buffers to reuse (see `op::take_buf`): an 8 KiB allocation per
    /// read of a 64-byte message cost more than the read.
    pub buf_pool: RefCell<Vec<Vec<u8>>>,
    /// Capacity of the buffers in `buf_pool`, in bytes.
    pub pool_bytes: std::cell::Cell<usize>,
    pub sel: RefCell<Selector>,
    pub runners: RefCell<Vec<Frame>>,
    /// Fibers a runner's loop set aside (see `run_loop`): kept here so they
    /// and their resume values are marked.
    pub deferred: RefCell<Vec<(VALUE, VALUE)>>,
    pub held: RefCell<Vec<(VALUE, VALUE)>>,
    pub events_buf: RefCell<Vec<Event>>,
    /// Fibers woken by one poll (reused: no allocation per poll).
    pub wake_buf: RefCell<Vec<VALUE>>,
    pub wake_fd: AtomicI32,
    pub active_ops: Cell<usize>,
    pub event_waiters: Cell<usize>,
    pub entered: Cell<bool>,
    pub switch_count: Cell<u64>,
    /// Fibers taken from the run queue (drives the anti-starvation poll).
    pub picks: Cell<u64>,
    /// The state object of the fiber that spun last (usually spins again):
    /// saves a lookup per `spin`. Marked, so it can never dangle.
    pub spinner_state: Cell<VALUE>,
    pub op_count: Cell<u64>,
    pub poll_count: Cell<u64>,
    pub idle_proc: Cell<VALUE>,
    pub idle_gc_period: Cell<f64>,
    pub last_gc: Cell<u64>,
    pub finalized: Cell<bool>,
    pub choice: Cell<Choice>,
    /// `"io_uring"` or `"epoll"` (read by `kind` from any thread).
    pub kind: Cell<&'static str>,
}

// Ruby objects are only touched with the GVL held; other threads only use the
// inbox (a Mutex) and the wake-up fd.
unsafe impl Send for Backend {}

fn mark_cell<T>(cell: &RefCell<T>) -> &T {
    match cell.try_borrow() {
        Ok(r) => unsafe { &*(&*r as *const T) },
        // Borrowed mutably by code that was interrupted by this GC: read it
        // anyway (never panic in mark; the structure is consistent between
        // statements).
        Err(_) => unsafe { &*cell.as_ptr() },
    }
}

impl DataTypeFunctions for Backend {
    fn mark(&self, marker: &gc::Marker) {
        let m = |v: VALUE| {
            if v != 0 {
                marker.mark(val(v));
            }
        };
        m(self.thread.get());
        m(self.idle_proc.get());
        m(self.spinner_state.get());
        mark_cell(&self.rq).for_each_value(m);
        mark_cell(&self.timers).for_each_value(m);
        for (_, s) in mark_cell(&self.ops).iter() {
            m(s.fiber);
            m(s.keep);
            if let op::Undo::Read { owner } | op::Undo::Accept { owner } = s.undo {
                m(owner);
            }
        }
        for (f, v) in mark_cell(&self.deferred)
            .iter()
            .chain(mark_cell(&self.held).iter())
        {
            m(*f);
            m(*v);
        }
        for f in mark_cell(&self.runners).iter() {
            m(f.runner);
            m(f.child);
        }
        if let Ok(inbox) = self.inbox.try_lock() {
            for mail in inbox.iter() {
                m(mail.fiber);
                m(mail.value);
            }
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let me = self as *const Backend as usize;
        FORK_REGISTRY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| *p != me);
        self.release_kernel_resources();
    }
}

/// Every live backend of the process (by address), so
/// that a forked child can disown those of the threads it does not have
/// (`post_fork`). Locked briefly, never across a Ruby call; an entry is
/// removed by the backend's `Drop`, so a listed address is a live backend.
static FORK_REGISTRY: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// `fd` is being closed by this thread: the fibers of *other* threads
/// waiting on it get `IOError` too, as stock Ruby wakes every thread blocked
/// on a closed fd (`rb_notify_fd_close`). Their operation would otherwise
/// wait forever: an io_uring op holds its own reference to the file, and a
/// closed fd silently leaves the epoll set. Done now, under the GVL, so that
/// a waiter of a later file that reuses the number is never hit.
pub fn notify_close_elsewhere(me: &Backend, fd: i32) {
    let me = me as *const Backend as usize;
    let reg = FORK_REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    for &p in reg.iter().filter(|p| **p != me) {
        // SAFETY: listed backends are alive (their `Drop`, which runs in GC
        // under the GVL we hold, unlists them first). Another thread's slab
        // is only ever changed by that thread with the GVL held, and no
        // borrow of it is kept across a GVL release, so reading it here
        // (GVL held) sees it whole; `try_borrow` guards the rest.
        let other = unsafe { &*(p as *const Backend) };
        let Ok(ops) = other.ops.try_borrow() else {
            continue;
        };
        let waiters: Vec<VALUE> = ops
            .iter()
            .filter(|(_, s)| s.fd == fd && s.fiber != 0 && s.result.is_none())
            .map(|(_, s)| s.fiber)
            .collect();
        drop(ops);
        for fiber in waiters {
            other.post(Mail {
                fiber,
                value: crate::op::closed_in_another_fiber(),
                priority: true,
                soft: true,
            });
        }
    }
}

fn register(b: &Backend) {
    let me = b as *const Backend as usize;
    let mut reg = FORK_REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    if !reg.contains(&me) {
        reg.push(me);
    }
}

/// In a forked child: the backends of the parent's other threads (which do
/// not exist here) close their copies of the selector fds now, instead of
/// keeping them open until GC.
fn disown_other_backends(me: &Backend) {
    let me = me as *const Backend as usize;
    let others: Vec<usize> = FORK_REGISTRY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .copied()
        .filter(|p| *p != me)
        .collect();
    for p in others {
        // SAFETY: listed backends are alive (their `Drop` unlists them under
        // the lock, and this child has a single thread, so none is being
        // dropped now). Their owner threads do not exist in the child, so no
        // borrow of `sel` can be active: read it through the cell's pointer.
        unsafe { (*(*(p as *const Backend)).sel.as_ptr()).disown() };
    }
}

thread_local! {
    static CURRENT: Cell<(VALUE, *const Backend)> = const { Cell::new((0, std::ptr::null())) };
}

impl Backend {
    pub fn build(choice: Choice) -> Result<Backend, Error> {
        let sel = Selector::new(choice).map_err(crate::helpers::runtime_error)?;
        let wake = sel.wake_fd();
        let kind = sel.kind();
        Ok(Backend {
            thread: Cell::new(unsafe { rb_sys::rb_thread_current() }),
            rq: RefCell::new(RunQueue::default()),
            inbox: Mutex::new(Vec::new()),
            inbox_flag: AtomicBool::new(false),
            timers: RefCell::new(Timers::default()),
            ops: RefCell::new(Slab::new()),
            ready_waiters: RefCell::new(AddrMap::default()),
            fd_kept: RefCell::new(Default::default()),
            read_full_fd: std::cell::Cell::new(-1),
            recv_poll_first: std::cell::Cell::new(true),
            pended: RefCell::new(Vec::new()),
            buf_pool: RefCell::new(Vec::new()),
            pool_bytes: std::cell::Cell::new(0),
            sel: RefCell::new(sel),
            runners: RefCell::new(Vec::new()),
            deferred: RefCell::new(Vec::new()),
            held: RefCell::new(Vec::new()),
            events_buf: RefCell::new(Vec::new()),
            wake_buf: RefCell::new(Vec::new()),
            wake_fd: AtomicI32::new(wake),
            active_ops: Cell::new(0),
            event_waiters: Cell::new(0),
            entered: Cell::new(false),
            switch_count: Cell::new(0),
            picks: Cell::new(0),
            spinner_state: Cell::new(QNIL),
            op_count: Cell::new(0),
            poll_count: Cell::new(0),
            idle_proc: Cell::new(QNIL),
            idle_gc_period: Cell::new(0.0),
            last_gc: Cell::new(crate::timers::now_ns()),
            finalized: Cell::new(false),
            choice: Cell::new(choice),
            kind: Cell::new(kind),
        })
    }

    fn rb_new() -> Result<Obj<Backend>, Error> {
        let choice = Choice::from_env().map_err(arg_error)?;
        let obj = Obj::wrap(Backend::build(choice)?);
        register(&obj);
        Ok(obj)
    }

    /// `ThreadError` unless called from the thread that owns this backend:
    /// its state is only ever touched by that thread (docs/scheduling.md);
    /// other threads may only `schedule` fibers (through the inbox),
    /// `break` a wait, and ask its `kind`.
    /// Also `IOError` once the backend is finalized (its selector is
    /// closed).
    #[inline]
    pub fn own(&self) -> Result<(), Error> {
        self.own_thread()?;
        if self.finalized.get() {
            return Err(Error::new(
                crate::helpers::ruby().exception_io_error(),
                "this backend is finalized",
            ));
        }
        Ok(())
    }

    #[inline]
    fn own_thread(&self) -> Result<(), Error> {
        if self.is_owner_thread() {
            return Ok(());
        }
        Err(Error::new(
            crate::helpers::ruby().exception_thread_error(),
            "this backend belongs to another thread",
        ))
    }

    #[inline]
    pub fn is_owner_thread(&self) -> bool {
        self.thread.get() == unsafe { rb_sys::rb_thread_current() }
    }

    /// The current thread's backend, created on first use.
    pub fn current() -> Result<&'static Backend, Error> {
        let th = unsafe { rb_sys::rb_thread_current() };
        let (cth, ptr) = CURRENT.with(|c| c.get());
        if cth == th && !ptr.is_null() {
            return Ok(unsafe { &*ptr });
        }
        let id = id!("@backend");
        let mut b = unsafe { rb_sys::rb_ivar_get(th, id) };
        let finalized = !is_nil(b)
            && <Obj<Backend> as TryConvert>::try_convert(val(b))
                .map(|o| o.finalized.get())
                .unwrap_or(false);
        if is_nil(b) || finalized {
            let obj = Backend::rb_new()?;
            b = raw(obj.as_value());
            unsafe { rb_sys::rb_ivar_set(th, id, b) };
        }
        let obj: Obj<Backend> = TryConvert::try_convert(val(b))?;
        let ptr: *const Backend = &*obj;
        CURRENT.with(|c| c.set((th, ptr)));
        Ok(unsafe { &*ptr })
    }

    /// The backend of `thread` (the current thread's is created on first
    /// use; another thread's may not exist yet → None).
    pub fn of_thread(thread: VALUE) -> Result<Option<&'static Backend>, Error> {
        let cur = unsafe { rb_sys::rb_thread_current() };
        if is_nil(thread) || thread == cur {
            return Backend::current().map(Some);
        }
        let b = unsafe { rb_sys::rb_ivar_get(thread, id!("@backend")) };
        if is_nil(b) {
            return Ok(None);
        }
        let obj: Obj<Backend> = TryConvert::try_convert(val(b))?;
        let ptr: *const Backend = &*obj;
        // Held by the thread object, which outlives this call.
        Ok(Some(unsafe { &*ptr }))
    }

    fn forget_current(&self) {
        CURRENT.with(|c| {
            if std::ptr::eq(c.get().1, self) {
                c.set((0, std::ptr::null()));
            }
        });
    }

    /// Cancels every in-flight io_uring operation and waits for the kernel to
    /// report them, so no buffer is freed while the kernel may write into it.
    fn release_kernel_resources(&self) {
        let Ok(mut sel) = self.sel.try_borrow_mut() else {
            return;
        };
        let Ok(mut ops) = self.ops.try_borrow_mut() else {
            return;
        };
        if sel.disowned() {
            // Its fds are closed (their numbers may be another file's now):
            // nothing can be cancelled. A finalized backend has no ops left;
            // a forked child's copy of another thread's has the parent's,
            // whose buffers the kernel writes in the parent, not here.
            ops.clear();
            return;
        }
        if let Selector::Uring(u) = &mut *sel {
            let keys: Vec<usize> = ops.iter().map(|(k, _)| k).collect();
            for k in &keys {
                u.cancel(*k);
            }
            let mut tries = 0;
            while !ops.is_empty() && tries < 100 {
                let mut evs = Vec::new();
                u.drain_blocking(&mut evs);
                for e in evs {
                    if let Event::Op {
                        key, more: false, ..
                    } = e
                    {
                        if ops.contains(key) {
                            ops.remove(key);
                        }
                    }
                }
                tries += 1;
            }
            // Anything the kernel never reported is leaked rather than freed.
            for (_, s) in std::mem::take(&mut *ops).into_iter() {
                std::mem::forget(s);
            }
        } else {
            ops.clear();
        }
    }

    /// Every I/O call is a switchpoint even when it completed at once. The
    /// operation has completed, so it is delivered: an exception that
    /// arrives here waits for the fiber's next switchpoint
    /// (docs/io-semantics.md).
    pub fn switchpoint_after_sync(&self) -> Result<(), Error> {
        if self.rq.borrow().is_empty() && !self.inbox_flag.load(Ordering::Relaxed) {
            return Ok(());
        }
        match self.snooze() {
            Ok(_) => Ok(()),
            // Still the same fiber: this is where it resumed.
            Err(e) => self.pend(self.current_fiber(), e),
        }
    }

    // ---- Ruby methods ---------------------------------------------------

    /// `kind`: callable from any thread (it reads no state another thread
    /// may be changing).
    fn kind(&self) -> Symbol {
        Symbol::new(self.kind.get())
    }

    /// `finalize`: cancels what is in flight, drops the queues and closes
    /// the selector's fds (the ring or epoll fd and the eventfd: a thread's
    /// backend is finalized when the thread ends, so short-lived threads do
    /// not hold them until GC). Idempotent. Afterwards the backend's methods
    /// raise `IOError`, and the thread gets a new backend on its next use.
    fn finalize(rb_self: Obj<Backend>) -> Result<Obj<Backend>, Error> {
        let b: &Backend = &rb_self;
        b.own_thread()?;
        if !b.finalized.replace(true) {
            b.release_kernel_resources();
            b.rq.borrow_mut().clear();
            b.timers.borrow_mut().clear();
            b.forget_current();
            // The wake-up fd is gone: other threads' `post` writes nothing.
            b.wake_fd.store(-1, Ordering::SeqCst);
            b.sel.borrow_mut().disown();
        }
        Ok(rb_self)
    }

    /// Rebuilds the selector and clears all queues in a forked child. The
    /// parent's in-flight operations are forgotten, never cancelled: the
    /// child only closes its copies of the ring (or epoll) fd and eventfd,
    /// which leaves the parent's untouched. Their buffers are the child's
    /// copies (the kernel writes into the parent's memory), freed here.
    fn post_fork(rb_self: Obj<Backend>) -> Result<Obj<Backend>, Error> {
        let b: &Backend = &rb_self;
        let sel = Selector::new(b.choice.get()).map_err(crate::helpers::runtime_error)?;
        drop(b.sel.replace(sel));
        b.kind.set(b.sel.borrow().kind());
        disown_other_backends(b);
        b.ops.borrow_mut().clear();
        b.wake_fd.store(b.sel.borrow().wake_fd(), Ordering::SeqCst);
        b.ready_waiters.borrow_mut().clear();
        b.fd_kept.borrow_mut().clear();
        b.pended.borrow_mut().clear();
        b.rq.borrow_mut().clear();
        b.timers.borrow_mut().clear();
        b.inbox.lock().unwrap_or_else(|e| e.into_inner()).clear();
        b.runners.borrow_mut().clear();
        b.active_ops.set(0);
        b.event_waiters.set(0);
        b.switch_count.set(0);
        b.op_count.set(0);
        b.poll_count.set(0);
        b.thread.set(unsafe { rb_sys::rb_thread_current() });
        b.finalized.set(false);
        b.forget_current();
        Ok(rb_self)
    }

    fn stats(&self) -> Result<RHash, Error> {
        self.own()?;
        let h = RHash::new();
        let (cap, len, hw) = {
            let mut rq = self.rq.borrow_mut();
            (rq.capacity(), rq.len(), rq.take_high_water())
        };
        h.aset(Symbol::new("runqueue_size"), cap)?;
        h.aset(Symbol::new("runqueue_length"), len)?;
        h.aset(Symbol::new("runqueue_max_length"), hw)?;
        h.aset(Symbol::new("op_count"), self.op_count.replace(0))?;
        h.aset(Symbol::new("switch_count"), self.switch_count.replace(0))?;
        h.aset(Symbol::new("poll_count"), self.poll_count.replace(0))?;
        h.aset(Symbol::new("pending_ops"), self.pending())?;
        Ok(h)
    }

    /// Wakes a blocked poll from any thread. `true` (the wake-up is always
    /// delivered, even if the thread was not polling yet).
    fn break_(&self) -> bool {
        crate::selector::wake(self.wake_fd.load(Ordering::SeqCst));
        true
    }

    /// `idle_proc=`: nil, or anything that responds to `call` (TypeError
    /// otherwise: it is called later, from whatever operation idles).
    fn set_idle_proc(&self, p: Value) -> Result<Value, Error> {
        self.own()?;
        // SAFETY: `p` is a live object.
        if !p.is_nil() && unsafe { rb_sys::rb_respond_to(raw(p), id!("call")) } == 0 {
            return Err(crate::helpers::type_error(format!(
                "idle proc must respond to call, got {}",
                crate::helpers::inspect_class(raw(p))
            )));
        }
        self.idle_proc.set(raw(p));
        Ok(p)
    }

    fn set_idle_gc_period(&self, p: Value) -> Result<Value, Error> {
        self.own()?;
        let f: f64 = if p.is_nil() {
            0.0
        } else {
            TryConvert::try_convert(p)?
        };
        self.idle_gc_period.set(f.max(0.0));
        self.last_gc.set(crate::timers::now_ns());
        Ok(p)
    }

    fn rb_poll(&self, blocking: Value) -> Result<(), Error> {
        self.own()?;
        self.poll(blocking.to_bool())
    }

    /// `schedule(fiber, value = nil, priority = false)`: the run-queue rules of §2.3.
    fn rb_schedule(&self, args: &[Value]) -> Result<Value, Error> {
        if args.is_empty() || args.len() > 3 {
            return Err(arg_error(format!(
                "wrong number of arguments (given {}, expected 1..3)",
                args.len()
            )));
        }
        let fiber = raw(args[0]);
        if unsafe { rb_sys::rb_obj_is_fiber(fiber) } != QTRUE {
            return Err(crate::helpers::type_error("not a fiber"));
        }
        let value = args.get(1).map(|v| raw(*v)).unwrap_or(QNIL);
        let prio = args.get(2).map(|v| v.to_bool()).unwrap_or(false);
        self.schedule(fiber, value, prio);
        Ok(args[0])
    }

    /// `unschedule(fiber)` removes the fiber from the run queue;
    /// `unschedule(fiber, value)` only if it is queued with exactly that
    /// value (used to withdraw a timeout's exception that was not delivered).
    fn rb_unschedule(&self, args: &[Value]) -> Result<bool, Error> {
        self.own()?;
        match args {
            [f] => Ok(self.rq.borrow_mut().remove(raw(*f))),
            [f, v] => Ok(self.rq.borrow_mut().remove_if_value(raw(*f), raw(*v))),
            _ => Err(arg_error(format!(
                "wrong number of arguments (given {}, expected 1..2)",
                args.len()
            ))),
        }
    }

    fn rb_runnable(&self, fiber: Value) -> Result<bool, Error> {
        self.own()?;
        Ok(self.rq.borrow().contains(raw(fiber)))
    }

    fn rb_switch_fiber(&self) -> Result<Value, Error> {
        self.own()?;
        self.switch_fiber().map(val)
    }

    fn rb_snooze(&self) -> Result<Value, Error> {
        self.own()?;
        self.snooze().map(val)
    }

    fn rb_wait_event(&self, args: &[Value]) -> Result<Value, Error> {
        self.own()?;
        let raise = args.first().map(|v| v.to_bool()).unwrap_or(false);
        self.wait_event(raise).map(val)
    }

    fn rb_sleep(&self, d: Value) -> Result<Value, Error> {
        self.own()?;
        let d = duration(raw(d))?;
        op::sleep::sleep(self, d).map(val)
    }

    fn rb_timer_loop(&self, interval: Value) -> Result<Value, Error> {
        self.own()?;
        let d = duration(raw(interval))?;
        op::sleep::timer_loop(self, d).map(val)
    }

    fn rb_timeout(&self, args: &[Value]) -> Result<Value, Error> {
        self.own()?;
        if args.len() < 2 || args.len() > 3 {
            return Err(arg_error(format!(
                "wrong number of arguments (given {}, expected 2..3)",
                args.len()
            )));
        }
        let d = duration(raw(args[0]))?;
        let mv = args.get(2).map(|v| raw(*v)).unwrap_or(QNIL);
        op::timeout::timeout(self, d, raw(args[1]), mv).map(val)
    }

    fn rb_wait_io(&self, io: Value, write: Value) -> Result<Value, Error> {
        self.own()?;
        let fd = io_fd(
            raw(io),
            if write.to_bool() {
                Dir::Write
            } else {
                Dir::Read
            },
        )?;
        op::poll::wait_io(self, fd, write.to_bool())?;
        Ok(val(QTRUE))
    }

    /// `read(io, buffer, length, to_eof, pos)`.
    fn rb_read(&self, args: &[Value]) -> Result<Value, Error> {
        self.own()?;
        self.read_common(args, false)
    }

    /// `recv(io, buffer, length, pos)`.
    fn rb_recv(&self, args: &[Value]) -> Result<Value, Error> {
        self.own()?;
        if args.len() < 3 || args.len() > 4 {
            return Err(arg_error(format!(
                "wrong number of arguments (given {}, expected 3..4)",
                args.len()
            )));
        }
        let pos = args.get(3).copied().unwrap_or_else(|| val(QNIL));
        self.read_common(
            &[args[0], args[1], args[2], val(crate::helpers::QFALSE), pos],
            true,
        )
    }

    fn read_common(&self, args: &[Value], recv: bool) -> Result<Value, Error> {
        self.own()?;
        if args.len() < 3 || args.len() > 5 {
            return Err(arg_error(format!(
                "wrong number of arguments (given {}, expected 3..5)",
                args.len()
            )));
        }
        let (fd, owner) = crate::helpers::readable_fd_owner(raw(args[0]))?;
        let mut buf = raw(args[1]);
        if is_nil(buf) {
            buf = op::read::new_binary_string();
        } else {
            expect_string(buf)?;
            protect(|| unsafe {
                rb_sys::rb_str_modify(buf);
                QNIL
            })?;
        }
        let len = opt_len(raw(args[2]), "length")?;
        let to_eof = args.get(3).map(|v| v.to_bool()).unwrap_or(false);
        let pos: i64 = match args.get(4) {
            Some(v) if !v.is_nil() => TryConvert::try_convert(*v)?,
            _ => -1,
        };
        op::read::read(self, (fd, owner), buf, len, to_eof, pos, recv).map(val)
    }

    /// `write(io, str, *more)` → total bytes written.
    fn rb_write(&self, args: &[Value]) -> Result<usize, Error> {
        self.own()?;
        if args.len() < 2 {
            return Err(arg_error(format!(
                "wrong number of arguments (given {}, expected 2+)",
                args.len()
            )));
        }
        let fd = io_fd(raw(args[0]), Dir::Write)?;
        let mut strs = Vec::with_capacity(args.len() - 1);
        for a in &args[1..] {
            // As stock `IO#write`: `to_s`, and `Object#to_s` if that does
            // not give a String (`rb_obj_as_string`).
            let v = raw(*a);
            // SAFETY: `v` is a live object; `protect` catches what `to_s`
            // raises.
            strs.push(protect(|| unsafe { rb_sys::rb_obj_as_string(v) })?);
        }
        op::write::write(self, fd, &strs)
    }

    /// `send(io, str, flags)` → bytes sent (all of them).
    fn rb_send(&self, args: &[Value]) -> Result<usize, Error> {
        self.own()?;
        if args.len() < 2 || args.len() > 3 {
            return Err(arg_error(format!(
                "wrong number of arguments (given {}, expected 2..3)",
                args.len()
            )));
        }
        let fd = io_fd(raw(args[0]), Dir::Write)?;
        let s = expect_string(raw(args[1]))?;
        let flags: i32 = match args.get(2) {
            Some(v) if !v.is_nil() => TryConvert::try_convert(*v)?,
            _ => 0,
        };
        op::send::send_all(self, fd, s, Some(flags))
    }

    fn chunk_loop(&self, args: &[Value], recv: bool) -> Result<Value, Error> {
        self.own()?;
        if args.is_empty() || args.len() > 2 {
            return Err(arg_error(format!(
                "wrong number of arguments (given {}, expected 1..2)",
                args.len()
            )));
        }
        let (fd, owner) = crate::helpers::readable_fd_owner(raw(args[0]))?;
        let maxlen = match args.get(1) {
            Some(v) if !v.is_nil() => opt_len(raw(*v), "maxlen")?.unwrap_or(8192).max(1),
            _ => 8192,
        };
        let flags = if recv { Some(0) } else { None };
        loop {
            let Some(s) = op::read::read_chunk(self, owner, fd, maxlen, flags)? else {
                return Ok(args[0]);
            };
            protect(|| unsafe { rb_sys::rb_yield(s) })?;
        }
    }

    fn rb_read_loop(&self, args: &[Value]) -> Result<Value, Error> {
        self.own()?;
        self.chunk_loop(args, false)
    }

    fn rb_recv_loop(&self, args: &[Value]) -> Result<Value, Error> {
        self.own()?;
        self.chunk_loop(args, true)
    }

    /// `feed_loop(io, receiver, method) { }`: `receiver.__send__(method, chunk, &block)` per chunk.
    fn rb_feed_loop(
        ruby: &Ruby,
        rb_self: &Backend,
        io: Value,
        receiver: Value,
        meth: Value,
    ) -> Result<Value, Error> {
        rb_self.own()?;
        let (fd, owner) = crate::helpers::readable_fd_owner(raw(io))?;
        let mid = unsafe { rb_sys::rb_to_id(raw(meth)) };
        let block: Option<Proc> = ruby.block_proc().ok();
        let block_raw = block.map(|p| raw(p.as_value())).unwrap_or(QNIL);
        loop {
            let Some(s) = op::read::read_chunk(rb_self, owner, fd, 8192, None)? else {
                return Ok(io);
            };
            protect(|| unsafe {
                rb_sys::rb_funcall_with_block(raw(receiver), mid, 1, &s, block_raw)
            })?;
            std::hint::black_box(block_raw);
        }
    }

    fn rb_accept(&self, server: Value, klass: Value) -> Result<Value, Error> {
        self.own()?;
        let (fd, owner) = io_fd_owner(raw(server), Dir::Read)?;
        op::accept::accept(self, owner, fd, raw(klass)).map(val)
    }

    fn rb_accept_loop(&self, server: Value, klass: Value) -> Result<Value, Error> {
        self.own()?;
        let (fd, owner) = io_fd_owner(raw(server), Dir::Read)?;
        loop {
            let sock = op::accept::accept(self, owner, fd, raw(klass))?;
            protect(|| unsafe { rb_sys::rb_yield(sock) })?;
        }
    }

    fn rb_connect(&self, sock: Value, host: Value, port: Value) -> Result<Value, Error> {
        self.own()?;
        let fd = io_fd(raw(sock), Dir::Write)?;
        let host: String = TryConvert::try_convert(host)?;
        let port: i64 = TryConvert::try_convert(port)?;
        if !(0..=65535).contains(&port) {
            return Err(arg_error(format!("invalid port {port}")));
        }
        op::connect::connect(self, fd, &host, port as u16)?;
        Ok(sock)
    }

    /// `connect_addr(sock, sockaddr)`: connects to a packed sockaddr String
    /// (`Addrinfo#to_sockaddr`, `Socket.sockaddr_in`) without blocking the
    /// thread.
    fn rb_connect_addr(&self, sock: Value, addr: Value) -> Result<Value, Error> {
        self.own()?;
        let fd = io_fd(raw(sock), Dir::Write)?;
        let s = expect_string(raw(addr))?;
        let bytes = unsafe { crate::helpers::str_bytes(s) };
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        if bytes.len() < 2 || bytes.len() > std::mem::size_of::<libc::sockaddr_storage>() {
            return Err(arg_error(format!(
                "invalid socket address ({} bytes)",
                bytes.len()
            )));
        }
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), &mut ss as *mut _ as *mut u8, bytes.len())
        };
        op::connect::connect_sockaddr(self, fd, (ss, bytes.len() as _), "connect(2)")?;
        Ok(sock)
    }

    /// `close(io)`: closes `io` (an IO or an Integer fd). Other fibers of
    /// this thread waiting on its fd get `IOError`. Returns `nil` if `io` is
    /// already closed.
    fn rb_close(&self, io: Value) -> Result<Value, Error> {
        self.own()?;
        let r = raw(io);
        if rb_sys::FIXNUM_P(r) {
            let fd = io_fd(r, Dir::Read)?;
            self.fd_closing(fd);
            if unsafe { libc::close(fd) } < 0 {
                return Err(crate::helpers::errno_error(
                    crate::helpers::last_errno(),
                    "close",
                ));
            }
            return Ok(io);
        }
        if unsafe { rb_sys::RB_TYPE_P(r, rb_sys::ruby_value_type::RUBY_T_FILE) } {
            if crate::helpers::call(r, id!("closed?"), &[])? == crate::helpers::QTRUE {
                return Ok(val(QNIL));
            }
            let (fd, owner) = io_fd_owner(r, Dir::Read)?;
            self.fd_closing(fd);
            crate::kept::discard(owner);
            protect(|| unsafe { rb_sys::rb_io_close(r) })?;
            return Ok(io);
        }
        // SAFETY: `r` is a live object.
        if rb_sys::SPECIAL_CONST_P(r) || unsafe { rb_sys::rb_respond_to(r, id!("close")) } == 0 {
            return Err(crate::helpers::type_error(format!(
                "expected an IO or a file descriptor, got {}",
                crate::helpers::inspect_class(r)
            )));
        }
        crate::helpers::call(r, id!("close"), &[])?;
        Ok(io)
    }

    fn rb_splice(&self, src: Value, dest: Value, maxlen: Value) -> Result<usize, Error> {
        self.own()?;
        let s = io_fd(raw(src), Dir::Read)?;
        let d = io_fd(raw(dest), Dir::Write)?;
        let m: i64 = TryConvert::try_convert(maxlen)?;
        op::splice::splice(self, s, d, m, op::splice::Kind::Splice)
    }

    fn rb_tee(&self, src: Value, dest: Value, maxlen: Value) -> Result<usize, Error> {
        self.own()?;
        let s = io_fd(raw(src), Dir::Read)?;
        let d = io_fd(raw(dest), Dir::Write)?;
        let m: i64 = TryConvert::try_convert(maxlen)?;
        op::splice::splice(self, s, d, m, op::splice::Kind::Tee)
    }

    fn rb_double_splice(&self, src: Value, dest: Value) -> Result<usize, Error> {
        self.own()?;
        let s = io_fd(raw(src), Dir::Read)?;
        let d = io_fd(raw(dest), Dir::Write)?;
        op::splice::double_splice(self, s, d)
    }

    fn rb_waitpid(&self, pid: Value) -> Result<(i32, i32), Error> {
        self.own()?;
        let pid: i32 = TryConvert::try_convert(pid)?;
        op::waitpid::waitpid(self, pid)
    }

    /// `wait_child(pid) → true | false`: parks the calling fiber until child
    /// `pid` has exited, leaving it unreaped (false if it is not a child).
    fn rb_wait_child(&self, pid: Value) -> Result<bool, Error> {
        self.own()?;
        let pid: i32 = TryConvert::try_convert(pid)?;
        op::waitpid::wait_child(self, pid)
    }

    fn rb_pending_count(&self) -> Result<usize, Error> {
        self.own()?;
        Ok(self.pending())
    }

    fn rb_runqueue_length(&self) -> Result<usize, Error> {
        self.own()?;
        Ok(self.rq.borrow().len())
    }
}

/// `Thread#backend`: the thread's backend (created lazily for the current
/// thread; `nil` for another thread that has none yet).
fn thread_backend(thread: Value) -> Result<Value, Error> {
    let th = raw(thread);
    if th == unsafe { rb_sys::rb_thread_current() } {
        Backend::current()?; // creates it on first use
    }
    Ok(val(unsafe { rb_sys::rb_ivar_get(th, id!("@backend")) }))
}

/// `IO#__discard_kept__` (private): what interrupted operations kept for
/// this IO dies with its file (`close_read`, `reopen`; see `crate::kept`).
fn io_discard_kept(io: Value) -> Value {
    crate::kept::discard(raw(io));
    io
}

/// `IO#__write_io__` (private): the IO that writes go to, which differs from
/// the receiver for duplex IOs (`IO.popen(cmd, 'r+')`).
fn io_write_io(io: Value) -> Value {
    val(unsafe { rb_sys::rb_io_get_write_io(raw(io)) })
}

/// `IO#write(*objects)` (installed by `extensions/io.rb`): the common case,
/// one String to an IO without transcoding (no external encoding, or a
/// binary one, as for sockets), goes straight to the backend; everything
/// else, and the errors that need Ruby's wording, through the Ruby
/// `IO#__write__`. Returns the bytes written (all of them: a fiber-aware
/// write waits until the fd took everything).
fn io_write_fast(rb_self: Value, args: &[Value]) -> Result<Value, Error> {
    let io = raw(rb_self);
    let route = write_route(io);
    if let (WriteRoute::Direct(fd), [s]) = (route, args) {
        let s = raw(*s);
        if unsafe { rb_sys::RB_TYPE_P(s, rb_sys::ruby_value_type::RUBY_T_STRING) } {
            let bs = basic_socket();
            let socket = bs != rb_sys::special_consts::Qfalse as VALUE
                && unsafe { rb_sys::rb_obj_is_kind_of(io, bs) } == QTRUE;
            let b = Backend::current()?;
            // send(2) on sockets: a shorter kernel path than write(2).
            let r = if socket {
                op::write::write_all(b, fd, s, Some(0))
            } else {
                op::write::write(b, fd, &[s])
            };
            match r {
                Ok(n) => return Ok(val(unsafe { rb_sys::rb_uint2inum(n as _) })),
                // Not writable: nothing was written; Ruby words it.
                Err(e) if is_ebadf(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let mid = match route {
        WriteRoute::Stdlib => id!("orig_write"),
        _ => id!("__write__"),
    };
    let argv: Vec<VALUE> = args.iter().map(|a| raw(*a)).collect();
    protect(|| unsafe { rb_sys::rb_funcallv(io, mid, argv.len() as _, argv.as_ptr()) }).map(val)
}

/// How `IO#write` writes to an IO.
#[derive(Clone, Copy)]
enum WriteRoute {
    /// A String's bytes go unchanged to this fd: the (write end of the) IO
    /// is open and writable, and neither transcodes (no external encoding,
    /// or a binary one) nor converts newlines.
    Direct(i32),
    /// Ruby's own `IO#write` (`orig_write`): the IO converts newlines
    /// (`newline: :crlf`, text mode) or holds bytes in Ruby's write buffer,
    /// which only that method handles.
    Stdlib,
    /// `IO#__write__`: transcoding, and the errors of closed or read-only
    /// IOs, worded as Ruby does.
    Ruby,
}

/// Picks the `WriteRoute` of `io` from the `rb_io_t` fields that
/// `IO#external_encoding` reads, without a method call.
fn write_route(io: VALUE) -> WriteRoute {
    unsafe {
        if rb_sys::SPECIAL_CONST_P(io)
            || !rb_sys::RB_TYPE_P(io, rb_sys::ruby_value_type::RUBY_T_FILE)
        {
            return WriteRoute::Ruby;
        }
        let wio = rb_sys::rb_io_get_write_io(io);
        let fptr = (*(wio as *const rb_sys::RFile)).fptr;
        if fptr.is_null() {
            return WriteRoute::Ruby;
        }
        let f = &*fptr;
        if f.fd < 0 || f.mode as u32 & rb_sys::FMODE_WRITABLE == 0 {
            return WriteRoute::Ruby;
        }
        let decorators = rb_sys::ruby_econv_flag_type::RUBY_ECONV_DECORATOR_MASK as i32
            | rb_sys::ruby_econv_flag_type::RUBY_ECONV_STATEFUL_DECORATOR_MASK as i32;
        if f.encs.ecflags & decorators != 0
            || f.mode as u32 & rb_sys::FMODE_TEXTMODE != 0
            || f.wbuf.len != 0
        {
            return WriteRoute::Stdlib;
        }
        let binary = rb_sys::rb_ascii8bit_encoding() as *const rb_sys::OnigEncodingTypeST;
        let enc = f.encs.enc;
        if !f.encs.enc2.is_null() || !(enc.is_null() || enc == binary) {
            return WriteRoute::Ruby;
        }
        WriteRoute::Direct(f.fd)
    }
}

/// `BasicSocket` (false if the socket library is not loaded).
fn basic_socket() -> VALUE {
    static C: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let v = C.load(Ordering::Relaxed);
    if v != 0 {
        return v as VALUE;
    }
    let id = id!("BasicSocket");
    if unsafe { rb_sys::rb_const_defined(rb_sys::rb_cObject, id) } == 0 {
        return rb_sys::special_consts::Qfalse as VALUE;
    }
    let c = unsafe { rb_sys::rb_const_get(rb_sys::rb_cObject, id) };
    C.store(c as u64, Ordering::Relaxed);
    c
}

fn is_ebadf(e: &Error) -> bool {
    let Some(exc) = e.value() else {
        return false;
    };
    unsafe {
        let errno = rb_sys::rb_const_get(rb_sys::rb_cObject, id!("Errno"));
        let ebadf = rb_sys::rb_const_get(errno, id!("EBADF"));
        rb_sys::rb_obj_is_kind_of(raw(exc), ebadf) == QTRUE
    }
}

fn current_snooze() -> Result<Value, Error> {
    Backend::current()?.snooze().map(val)
}

/// `sleep(duration = nil)`: parks the current fiber for `duration` seconds
/// (a timer; woken early by any schedule, whose value it returns), or until
/// scheduled when no duration is given. Exceptions scheduled meanwhile are
/// raised; the timer is cancelled either way.
fn current_sleep(args: &[Value]) -> Result<Value, Error> {
    crate::helpers::check_arity(args, 0, 1)?;
    let b = Backend::current()?;
    match args.first().map(|v| raw(*v)).filter(|v| !is_nil(*v)) {
        None => b.wait_event(true).map(val),
        Some(d) => op::sleep::sleep(b, duration(d)?).map(val),
    }
}

fn current_suspend() -> Result<Value, Error> {
    let v = Backend::current()?.switch_fiber()?;
    crate::helpers::raise_if_exception(v).map(val)
}

pub fn init(ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    let class = polyphony.define_class("Backend", ruby.class_object())?;
    class.define_singleton_method("new", magnus::function!(Backend::rb_new, 0))?;
    class.define_method("kind", method!(Backend::kind, 0))?;
    class.define_method("finalize", method!(Backend::finalize, 0))?;
    class.define_method("post_fork", method!(Backend::post_fork, 0))?;
    class.define_method("stats", method!(Backend::stats, 0))?;
    class.define_method("break", method!(Backend::break_, 0))?;
    class.define_method("wakeup", method!(Backend::break_, 0))?;
    class.define_method("idle_proc=", method!(Backend::set_idle_proc, 1))?;
    class.define_method("idle_gc_period=", method!(Backend::set_idle_gc_period, 1))?;
    class.define_method("poll", method!(Backend::rb_poll, 1))?;
    class.define_method("schedule", method!(Backend::rb_schedule, -1))?;
    class.define_method("unschedule", method!(Backend::rb_unschedule, -1))?;
    class.define_method("runnable?", method!(Backend::rb_runnable, 1))?;
    class.define_method("switch_fiber", method!(Backend::rb_switch_fiber, 0))?;
    class.define_method("snooze", method!(Backend::rb_snooze, 0))?;
    class.define_method("wait_event", method!(Backend::rb_wait_event, -1))?;
    class.define_method("sleep", method!(Backend::rb_sleep, 1))?;
    class.define_method("timer_loop", method!(Backend::rb_timer_loop, 1))?;
    class.define_method("timeout", method!(Backend::rb_timeout, -1))?;
    class.define_method("wait_io", method!(Backend::rb_wait_io, 2))?;
    class.define_method("read", method!(Backend::rb_read, -1))?;
    class.define_method("recv", method!(Backend::rb_recv, -1))?;
    class.define_method("write", method!(Backend::rb_write, -1))?;
    class.define_method("send", method!(Backend::rb_send, -1))?;
    class.define_method("read_loop", method!(Backend::rb_read_loop, -1))?;
    class.define_method("recv_loop", method!(Backend::rb_recv_loop, -1))?;
    class.define_method("feed_loop", method!(Backend::rb_feed_loop, 3))?;
    class.define_method("recv_feed_loop", method!(Backend::rb_feed_loop, 3))?;
    class.define_method("accept", method!(Backend::rb_accept, 2))?;
    class.define_method("accept_loop", method!(Backend::rb_accept_loop, 2))?;
    class.define_method("connect", method!(Backend::rb_connect, 3))?;
    class.define_method("connect_addr", method!(Backend::rb_connect_addr, 2))?;
    class.define_method("close", method!(Backend::rb_close, 1))?;
    class.define_method("splice", method!(Backend::rb_splice, 3))?;
    class.define_method("tee", method!(Backend::rb_tee, 3))?;
    class.define_method("double_splice", method!(Backend::rb_double_splice, 2))?;
    class.define_method("waitpid", method!(Backend::rb_waitpid, 1))?;
    class.define_method("wait_child", method!(Backend::rb_wait_child, 1))?;
    class.define_method("pending_count", method!(Backend::rb_pending_count, 0))?;
    class.define_method("runqueue_length", method!(Backend::rb_runqueue_length, 0))?;

    // What interrupted operations give back (see `crate::kept`): no
    // instances are made from Ruby.
    let kept = class.define_class("Kept", ruby.class_object())?;
    kept.undef_default_alloc_func();
    ruby.class_io()
        .define_private_method("__discard_kept__", method!(io_discard_kept, 0))?;
    polyphony.define_module_function("__kept_count__", magnus::function!(crate::kept::live, 0))?;

    let thread = ruby.class_thread();
    thread.define_method("backend", method!(thread_backend, 0))?;
    ruby.class_io()
        .define_private_method("__write_io__", method!(io_write_io, 0))?;
    ruby.class_io()
        .define_method("__write_fast__", method!(io_write_fast, -1))?;
    let kernel = ruby.module_kernel();
    kernel.define_private_method("snooze", magnus::function!(current_snooze, 0))?;
    kernel.define_private_method("suspend", magnus::function!(current_suspend, 0))?;
    ruby.class_object()
        .define_method("sleep", magnus::function!(current_sleep, -1))?;
    Ok(())
}
