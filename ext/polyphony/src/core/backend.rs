//! The thread's engine and its lifetime: [`Backend`] (its state, in the
//! three parts `Sched`, `Io` and `Stats`), how a thread finds its backend
//! ([`Backend::current`]), what is marked, how it ends (`finalize`, `Drop`)
//! and what a forked child does with it (`post_fork`). The switch algorithm
//! is in `scheduler.rs`, the operations in `op/`. The rules every field
//! follows are in `core/mod.rs`.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;

use rb_sys::VALUE;
use slab::Slab;

use crate::core::op::{self, OpSlot};
use crate::rt::data::{self, Handle};
use crate::rt::{id, is_nil, Error, QNIL};
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

/// The thread's engine: one per Ruby thread, wrapped by the Ruby object
/// `Polyphony::Backend` (`ruby_api/backend.rs`), which marks it
/// ([`Backend::mark`]). Its state is in three parts, each private to
/// `core`: the scheduler's queues, the I/O state and the counters.
pub struct Backend {
    /// The owning thread (marked). Only it touches `sched`, `io` and
    /// `stats`.
    pub(in crate::core) thread: Cell<VALUE>,
    pub(in crate::core) finalized: Cell<bool>,
    pub(in crate::core) sched: Sched,
    pub(in crate::core) io: Io,
    pub(in crate::core) stats: Stats,
}

/// What decides which fiber runs next (`core/scheduler.rs`).
pub(in crate::core) struct Sched {
    pub rq: RefCell<RunQueue>,
    /// Schedules from other threads: the only field another thread writes
    /// (under the lock), with `inbox_flag` and `Io::wake_fd`.
    pub inbox: Mutex<Vec<Mail>>,
    pub inbox_flag: AtomicBool,
    pub timers: RefCell<Timers>,
    /// Fibers with an exception put off by `pend` (see
    /// `Backend::raise_pending`). Not marked: an entry is only compared
    /// with the current fiber, and a stale one (its fiber already raised it
    /// by a switch, or died) costs one harmless look-up when its address
    /// comes up again; `post_fork` and the look-ups themselves clear them.
    pub pended: RefCell<Vec<VALUE>>,
    pub runners: RefCell<Vec<Frame>>,
    /// Fibers a runner's loop set aside (see `run_loop`): kept here so they
    /// and their resume values are marked.
    pub deferred: RefCell<Vec<(VALUE, VALUE)>>,
    pub held: RefCell<Vec<(VALUE, VALUE)>>,
    /// Fibers woken by one poll (reused: no allocation per poll).
    pub wake_buf: RefCell<Vec<VALUE>>,
    pub event_waiters: Cell<usize>,
    pub entered: Cell<bool>,
    /// Switchpoints skipped in a row (`Backend::may_skip_switchpoint`).
    pub skips: Cell<u32>,
    /// Fibers taken from the run queue (drives the anti-starvation poll).
    pub picks: Cell<u64>,
    /// The state object of the fiber that spun last (usually spins again):
    /// saves a lookup per `spin`. Marked, so it can never dangle.
    pub spinner_state: Cell<VALUE>,
    /// The trace proc (nil: tracing off; marked), and whether it is
    /// running (`core/trace.rs`).
    pub trace_proc: Cell<VALUE>,
    pub in_trace: Cell<bool>,
    /// True while the thread runs the scheduler's own code (`in_scheduler`).
    pub in_scheduler: Cell<bool>,
    pub idle_proc: Cell<VALUE>,
    pub idle_gc_period: Cell<f64>,
    pub last_gc: Cell<u64>,
}

/// In-flight operations and the kernel interface (`core/op/`).
pub(in crate::core) struct Io {
    pub ops: RefCell<Slab<OpSlot>>,
    pub ready_waiters: RefCell<AddrMap<Vec<usize>>>,
    /// Bytes an interrupted io_uring read of a bare fd number (no IO object)
    /// took after its fiber gave up, served first by the next read of that
    /// fd in this thread (see `core/kept.rs`).
    pub fd_kept: RefCell<std::collections::HashMap<i32, Vec<u8>>>,
    /// io_uring: the fd whose last read filled the whole buffer (more data is
    /// likely waiting, so the next read tries a direct non-blocking call
    /// first); -1 if none. See `op::read::read_once`.
    pub read_full_fd: Cell<i32>,
    /// io_uring: receives ask the kernel to poll first (false once a kernel
    /// older than 5.19 refused the flag with EINVAL). See `op::read`.
    pub recv_poll_first: Cell<bool>,
    /// Read buffers to reuse (see `op::take_buf`): an 8 KiB allocation per
    /// read of a 64-byte message cost more than the read.
    pub buf_pool: RefCell<Vec<Vec<u8>>>,
    /// Capacity of the buffers in `buf_pool`, in bytes.
    pub pool_bytes: Cell<usize>,
    pub sel: RefCell<Selector>,
    pub events_buf: RefCell<Vec<Event>>,
    /// The selector's wake-up fd (-1 once finalized): read by other threads.
    pub wake_fd: AtomicI32,
    pub active_ops: Cell<usize>,
    pub choice: Cell<Choice>,
    /// `"io_uring"` or `"epoll"` (read by `kind` from any thread).
    pub kind: Cell<&'static str>,
}

/// Counters read (and reset) by `Backend#stats`.
#[derive(Default)]
pub(in crate::core) struct Stats {
    pub switch_count: Cell<u64>,
    pub op_count: Cell<u64>,
    pub poll_count: Cell<u64>,
}

// SAFETY: a `Backend` is only used by its owning thread with the GVL held;
// other threads only reach the inbox (a Mutex), `inbox_flag` and `wake_fd`
// (atomics) and `kind` (a `&'static str` written before the backend is
// shared, and by `post_fork` in a single-threaded child).
unsafe impl Send for Backend {}

/// Reads a cell for `mark`, even while it is mutably borrowed.
fn mark_cell<T>(cell: &RefCell<T>) -> &T {
    // SAFETY: `mark` runs in GC, which Ruby only starts at an allocation or
    // a safepoint of this same thread; a `RefCell` borrowed mutably by the
    // interrupted code is consistent between statements, and `mark` only
    // reads it. Never panic in mark.
    unsafe { &*cell.as_ptr() }
}

impl Backend {
    /// Calls `m` with every Ruby object this backend holds: the thread, the
    /// idle proc, queued fibers and values, timers' fibers and values, the
    /// waiting fibers, kept objects and undo owners of in-flight
    /// operations, the runners' frames and the inbox.
    pub fn mark(&self, m: &mut dyn FnMut(VALUE)) {
        let mut m = |v: VALUE| {
            if v != 0 {
                m(v)
            }
        };
        m(self.thread.get());
        m(self.sched.idle_proc.get());
        m(self.sched.spinner_state.get());
        m(self.sched.trace_proc.get());
        mark_cell(&self.sched.rq).for_each_value(&mut m);
        mark_cell(&self.sched.timers).for_each_value(&mut m);
        for (_, s) in mark_cell(&self.io.ops).iter() {
            m(s.fiber);
            m(s.keep);
            if let op::Undo::Read { owner } | op::Undo::Accept { owner } = s.undo {
                m(owner);
            }
        }
        for (f, v) in mark_cell(&self.sched.deferred)
            .iter()
            .chain(mark_cell(&self.sched.held).iter())
        {
            m(*f);
            m(*v);
        }
        for f in mark_cell(&self.sched.runners).iter() {
            m(f.runner);
            m(f.child);
        }
        if let Ok(inbox) = self.sched.inbox.try_lock() {
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
        let Ok(ops) = other.io.ops.try_borrow() else {
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
                value: crate::core::op::closed_in_another_fiber(),
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
        unsafe { (*(*(p as *const Backend)).io.sel.as_ptr()).disown() };
    }
}

thread_local! {
    /// This thread and its backend object, as last looked up (a cache of
    /// the thread's hidden backend ivar, which keeps the object alive; not marked).
    static CURRENT: Cell<(VALUE, VALUE, *const Backend)> =
        const { Cell::new((0, 0, std::ptr::null())) };
}

impl Backend {
    /// A backend for the current thread on the selector `choice`.
    pub fn build(choice: Choice) -> Result<Backend, Error> {
        let sel = Selector::new(choice).map_err(crate::rt::runtime_error)?;
        let wake = sel.wake_fd();
        let kind = sel.kind();
        Ok(Backend {
            // SAFETY: GVL held (every caller is a Ruby method).
            thread: Cell::new(unsafe { rb_sys::rb_thread_current() }),
            finalized: Cell::new(false),
            sched: Sched {
                rq: RefCell::new(RunQueue::default()),
                inbox: Mutex::new(Vec::new()),
                inbox_flag: AtomicBool::new(false),
                timers: RefCell::new(Timers::default()),
                pended: RefCell::new(Vec::new()),
                runners: RefCell::new(Vec::new()),
                deferred: RefCell::new(Vec::new()),
                held: RefCell::new(Vec::new()),
                wake_buf: RefCell::new(Vec::new()),
                event_waiters: Cell::new(0),
                entered: Cell::new(false),
                skips: Cell::new(0),
                picks: Cell::new(0),
                spinner_state: Cell::new(QNIL),
                trace_proc: Cell::new(QNIL),
                in_trace: Cell::new(false),
                in_scheduler: Cell::new(false),
                idle_proc: Cell::new(QNIL),
                idle_gc_period: Cell::new(0.0),
                last_gc: Cell::new(crate::timers::now_ns()),
            },
            io: Io {
                ops: RefCell::new(Slab::new()),
                ready_waiters: RefCell::new(AddrMap::default()),
                fd_kept: RefCell::new(Default::default()),
                read_full_fd: Cell::new(-1),
                recv_poll_first: Cell::new(true),
                buf_pool: RefCell::new(Vec::new()),
                pool_bytes: Cell::new(0),
                sel: RefCell::new(sel),
                events_buf: RefCell::new(Vec::new()),
                wake_fd: AtomicI32::new(wake),
                active_ops: Cell::new(0),
                choice: Cell::new(choice),
                kind: Cell::new(kind),
            },
            stats: Stats::default(),
        })
    }

    /// A new `Polyphony::Backend` object for the current thread (the
    /// selector chosen by `POLYPHONY_BACKEND`, see `Choice::from_env`).
    pub fn new_object() -> Result<VALUE, Error> {
        let choice = Choice::from_env().map_err(crate::rt::arg_error)?;
        let obj = data::wrap(Backend::build(choice)?);
        let b = data::get::<Backend>(obj).ok_or_else(|| crate::rt::runtime_error("backend"))?;
        register(&b);
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
            return Err(crate::rt::io_error("this backend is finalized"));
        }
        Ok(())
    }

    #[inline]
    fn own_thread(&self) -> Result<(), Error> {
        if self.is_owner_thread() {
            return Ok(());
        }
        Err(crate::rt::thread_error(
            "this backend belongs to another thread",
        ))
    }

    #[inline]
    pub fn is_owner_thread(&self) -> bool {
        // SAFETY: GVL held (this runs in a Ruby method of the current thread); no arguments, never
        // raises.
        self.thread.get() == unsafe { rb_sys::rb_thread_current() }
    }

    /// The current thread's backend (held in its hidden ivar `__polyphony_backend__`), created on first use
    /// and again after `finalize`.
    #[inline]
    pub fn current() -> Result<Handle<Backend>, Error> {
        // SAFETY: GVL held.
        let th = unsafe { rb_sys::rb_thread_current() };
        let (cth, obj, ptr) = CURRENT.with(|c| c.get());
        if cth == th && obj != 0 {
            // SAFETY: `CURRENT` holds this thread's backend object, which
            // its hidden ivar keeps alive, and the address of its value; it
            // is reset (`forget_current`) before the ivar is replaced.
            return Ok(unsafe { Handle::from_parts(obj, ptr) });
        }
        Backend::current_slow(th)
    }

    #[cold]
    fn current_slow(th: VALUE) -> Result<Handle<Backend>, Error> {
        let id = id!("__polyphony_backend__");
        // SAFETY: GVL held; `th` is the current thread.
        let mut obj = unsafe { rb_sys::rb_ivar_get(th, id) };
        let usable = data::get::<Backend>(obj).is_some_and(|b| !b.finalized.get());
        if !usable {
            obj = Backend::new_object()?;
            // SAFETY: as above; `obj` is a new live object.
            unsafe { rb_sys::rb_ivar_set(th, id, obj) };
        }
        let h = data::get::<Backend>(obj).ok_or_else(|| {
            crate::rt::type_error("the thread's backend slot holds something else")
        })?;
        CURRENT.with(|c| c.set((th, obj, &*h as *const Backend)));
        Ok(h)
    }

    /// The backend of `thread` (the current thread's is created on first
    /// use; another thread's may not exist yet → None).
    pub fn of_thread(thread: VALUE) -> Result<Option<Handle<Backend>>, Error> {
        // SAFETY: GVL held.
        let cur = unsafe { rb_sys::rb_thread_current() };
        if is_nil(thread) || thread == cur {
            return Backend::current().map(Some);
        }
        // SAFETY: GVL held; `thread` is a live Thread (the caller's).
        let obj = unsafe { rb_sys::rb_ivar_get(thread, id!("__polyphony_backend__")) };
        if is_nil(obj) {
            return Ok(None);
        }
        data::get::<Backend>(obj)
            .map(Some)
            .ok_or_else(|| crate::rt::type_error("the thread's backend slot holds something else"))
    }

    /// `Thread#backend=`: makes `obj` (a backend made by this thread) the
    /// current thread's backend from the next switch on. The one it
    /// replaces is finalized (if it was not already): as with `finalize`,
    /// what was waiting on it is dropped with its queues and its in-flight
    /// operations are cancelled.
    pub fn replace_current(obj: VALUE) -> Result<(), Error> {
        let new = data::get::<Backend>(obj)
            .ok_or_else(|| crate::rt::type_error("expected a Polyphony::Backend"))?;
        new.own()?;
        // SAFETY: GVL held.
        let th = unsafe { rb_sys::rb_thread_current() };
        let id = id!("__polyphony_backend__");
        // SAFETY: GVL held; the hidden ivar of the current thread.
        let old = unsafe { rb_sys::rb_ivar_get(th, id) };
        if old != obj {
            if let Some(old) = data::get::<Backend>(old) {
                old.finalize()?;
            }
        }
        // SAFETY: as above; `obj` is a live backend object.
        unsafe { rb_sys::rb_ivar_set(th, id, obj) };
        CURRENT.with(|c| c.set((th, obj, &*new as *const Backend)));
        Ok(())
    }

    fn forget_current(&self) {
        CURRENT.with(|c| c.set((0, 0, std::ptr::null())));
    }

    /// Cancels every in-flight io_uring operation and waits for the kernel to
    /// report them, so no buffer is freed while the kernel may write into it.
    fn release_kernel_resources(&self) {
        let Ok(mut sel) = self.io.sel.try_borrow_mut() else {
            return;
        };
        let Ok(mut ops) = self.io.ops.try_borrow_mut() else {
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

    /// `"io_uring"` or `"epoll"`. Any thread may ask.
    pub fn kind(&self) -> &'static str {
        self.io.kind.get()
    }

    /// Wakes this backend's blocked poll. Any thread may call it; the
    /// wake-up is delivered even if the thread was not polling yet.
    pub fn wake(&self) {
        crate::selector::wake(self.io.wake_fd.load(Ordering::SeqCst));
    }

    /// Cancels what is in flight, drops the queues and closes the
    /// selector's fds (the ring or epoll fd and the eventfd: a thread's
    /// backend is finalized when the thread ends, so short-lived threads do
    /// not hold them until GC). Idempotent. Afterwards `own` fails with
    /// `IOError`, and the thread gets a new backend on its next use.
    pub fn finalize(&self) -> Result<(), Error> {
        self.own_thread()?;
        if !self.finalized.replace(true) {
            self.release_kernel_resources();
            self.sched.rq.borrow_mut().clear();
            self.sched.timers.borrow_mut().clear();
            self.forget_current();
            // The wake-up fd is gone: other threads' `post` writes nothing.
            self.io.wake_fd.store(-1, Ordering::SeqCst);
            self.io.sel.borrow_mut().disown();
        }
        Ok(())
    }

    /// Rebuilds the selector and clears all queues in a forked child. The
    /// parent's in-flight operations are forgotten, never cancelled: the
    /// child only closes its copies of the ring (or epoll) fd and eventfd,
    /// which leaves the parent's untouched. Their buffers are the child's
    /// copies (the kernel writes into the parent's memory), freed here.
    pub fn post_fork(&self) -> Result<(), Error> {
        let sel = Selector::new(self.io.choice.get()).map_err(crate::rt::runtime_error)?;
        drop(self.io.sel.replace(sel));
        self.io.kind.set(self.io.sel.borrow().kind());
        disown_other_backends(self);
        self.io.ops.borrow_mut().clear();
        self.io
            .wake_fd
            .store(self.io.sel.borrow().wake_fd(), Ordering::SeqCst);
        self.io.ready_waiters.borrow_mut().clear();
        self.io.fd_kept.borrow_mut().clear();
        self.sched.pended.borrow_mut().clear();
        self.sched.rq.borrow_mut().clear();
        self.sched.timers.borrow_mut().clear();
        self.sched
            .inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.sched.runners.borrow_mut().clear();
        self.io.active_ops.set(0);
        self.sched.event_waiters.set(0);
        self.stats.switch_count.set(0);
        self.stats.op_count.set(0);
        self.stats.poll_count.set(0);
        // SAFETY: GVL held.
        self.thread.set(unsafe { rb_sys::rb_thread_current() });
        self.finalized.set(false);
        self.forget_current();
        Ok(())
    }

    /// The counters since the last call (which resets them), in the order
    /// of `Backend#stats`: run queue capacity, length and high-water mark,
    /// operations, switches, polls, pending.
    pub fn take_stats(&self) -> [(&'static str, u64); 7] {
        let (cap, len, hw) = {
            let mut rq = self.sched.rq.borrow_mut();
            (rq.capacity(), rq.len(), rq.take_high_water())
        };
        [
            ("runqueue_size", cap as u64),
            ("runqueue_length", len as u64),
            ("runqueue_max_length", hw as u64),
            ("op_count", self.stats.op_count.replace(0)),
            ("switch_count", self.stats.switch_count.replace(0)),
            ("poll_count", self.stats.poll_count.replace(0)),
            ("pending_ops", self.pending() as u64),
        ]
    }

    /// The proc called when the thread is about to wait (nil: none).
    pub fn set_idle_proc(&self, p: VALUE) {
        self.sched.idle_proc.set(p);
    }

    /// Seconds between `GC.start`s run when the thread is about to wait (0:
    /// never).
    pub fn set_idle_gc_period(&self, secs: f64) {
        self.sched.idle_gc_period.set(secs.max(0.0));
        self.sched.last_gc.set(crate::timers::now_ns());
    }

    /// Removes `fiber` from the run queue (only if queued with exactly
    /// `value`, if given). True if it was queued.
    pub fn unschedule(&self, fiber: VALUE, value: Option<VALUE>) -> bool {
        let mut rq = self.sched.rq.borrow_mut();
        match value {
            None => rq.remove(fiber),
            Some(v) => rq.remove_if_value(fiber, v),
        }
    }

    /// True if `fiber` is in the run queue.
    pub fn is_queued(&self, fiber: VALUE) -> bool {
        self.sched.rq.borrow().contains(fiber)
    }

    /// Fibers in the run queue.
    pub fn runqueue_len(&self) -> usize {
        self.sched.rq.borrow().len()
    }

    /// The state object of the fiber that spun last (nil if none): see
    /// `Sched::spinner_state`.
    pub fn spinner_state(&self) -> VALUE {
        self.sched.spinner_state.get()
    }

    pub fn set_spinner_state(&self, v: VALUE) {
        self.sched.spinner_state.set(v)
    }
}
