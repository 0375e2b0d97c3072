//! Operations, one file each. Every operation describes both its io_uring
//! submission and its readiness-based (epoll) fallback.
//!
//! In-flight state lives in the backend's slab ([`OpSlot`]), never on the
//! suspended fiber's stack. Memory the kernel may write into is owned by the
//! slot (`buf`); a Ruby object the kernel reads from is kept in `keep` and
//! marked.
//!
//! Every operation ends exactly once, delivered or undone
//! (docs/io-semantics.md): an exception that reaches a fiber parked on an
//! operation that already completed is put off to the fiber's next
//! switchpoint and the result delivered ([`Backend::pend`]); otherwise the
//! operation is cancelled and the kernel driven until it reports it
//! ([`Backend::settle`]), and whatever it still did is handed back to its
//! owner by the slot's [`Undo`] (bytes kept on the IO object, an accepted fd
//! kept for the server, a connection dissolved). No operation outlives the
//! wait of the fiber that asked for it.

pub mod accept;
pub mod connect;
pub mod poll;
pub mod read;
pub mod send;
pub mod sleep;
pub mod splice;
pub mod timeout;
pub mod waitpid;
pub mod write;

use crate::rt::Error;
use io_uring::squeue;
use rb_sys::VALUE;

use crate::core::Backend;
use crate::rt::{errno_error, raise_if_exception, QNIL};
use crate::selector::{Event, Selector};

/// What undoes an operation that completed after its fiber gave up.
#[derive(Clone, Copy)]
pub enum Undo {
    /// Nothing to give back (a wait for readiness, a timer), or nothing that
    /// can be taken back (bytes written are written).
    Nothing,
    /// Bytes read are kept for the next read of `owner` (the IO object; nil
    /// for a bare fd: kept for the next read of that fd number in this
    /// thread, see `crate::core::kept`).
    Read { owner: VALUE },
    /// An accepted fd is kept for the next accept of `owner` (the server).
    Accept { owner: VALUE },
    /// A connection that was made, or is still being made, is dissolved
    /// (`connect::dissolve`).
    Connect,
}

/// One in-flight operation (io_uring) or readiness waiter (epoll).
pub struct OpSlot {
    /// The waiting fiber; 0 once the waiter gave up (orphaned).
    pub fiber: VALUE,
    /// Completion result (`-errno` on failure; revents for readiness).
    pub result: Option<i32>,
    /// Kernel-written memory, owned until the completion arrives.
    pub buf: Vec<u8>,
    /// The Ruby object the kernel reads from while in flight (0 if none),
    /// marked until the completion arrives.
    pub keep: VALUE,
    pub addr: Option<Box<(libc::sockaddr_storage, libc::socklen_t)>>,
    /// The fd the operation works on (-1 if none): a close of that fd
    /// interrupts the waiter; epoll uses it to find readiness waiters.
    pub fd: i32,
    /// epoll: the interest of a readiness waiter.
    pub events: u32,
    /// How to give back what the kernel did if the fiber gives up first
    /// (its owner object is marked while the slot lives).
    pub undo: Undo,
}

impl OpSlot {
    pub fn new(fiber: VALUE) -> OpSlot {
        OpSlot {
            fiber,
            result: None,
            buf: Vec::new(),
            keep: 0,
            addr: None,
            fd: -1,
            events: 0,
            undo: Undo::Nothing,
        }
    }

    /// A slot for an operation on `fd`.
    pub fn on_fd(fiber: VALUE, fd: i32) -> OpSlot {
        let mut s = OpSlot::new(fiber);
        s.fd = fd;
        s
    }
}

/// The `IOError` a waiter gets when another fiber (or thread) closes its fd.
pub fn closed_in_another_fiber() -> VALUE {
    let msg = "stream closed in another fiber";
    // SAFETY: builds a new exception object from a valid class and a byte
    // range that outlives the call.
    unsafe {
        rb_sys::rb_exc_new(
            rb_sys::rb_eIOError,
            msg.as_ptr() as *const _,
            msg.len() as _,
        )
    }
}

/// Readiness interest.
pub const READABLE: u32 = libc::POLLIN as u32;
pub const WRITABLE: u32 = libc::POLLOUT as u32;

impl Backend {
    pub fn is_uring(&self) -> bool {
        matches!(&*self.io.sel.borrow(), Selector::Uring(_))
    }

    /// Submits `entry` (built by `build` from the slot, whose user data is set
    /// here) and parks the current fiber until it completes. Returns the
    /// slot's key and result; the caller reads what it needs from the slot and
    /// must call `free_op`. An exception scheduled on the fiber ends the wait
    /// as the module doc says (delivered or undone); plain wake-ups are
    /// ignored (docs/scheduling.md, "plain wake-ups").
    pub fn submit_and_await(
        &self,
        slot: OpSlot,
        build: impl FnOnce(&mut OpSlot) -> squeue::Entry,
    ) -> Result<(usize, i32), Error> {
        let fiber = slot.fiber;
        self.raise_pending()?;
        let key = {
            let mut ops = self.io.ops.borrow_mut();
            let entry = ops.vacant_entry();
            let key = entry.key();
            let slot = entry.insert(slot);
            let sqe = build(slot).user_data(key as u64);
            if let Selector::Uring(u) = &mut *self.io.sel.borrow_mut() {
                u.push(sqe);
            }
            key
        };
        self.io.active_ops.set(self.io.active_ops.get() + 1);
        self.stats.op_count.set(self.stats.op_count.get() + 1);
        let res = self.await_slot(key, fiber)?;
        Ok((key, res))
    }

    /// Parks `fiber` (the current fiber, the slot's waiter) until slot `key`
    /// has a result (see `submit_and_await`).
    pub fn await_slot(&self, key: usize, fiber: VALUE) -> Result<i32, Error> {
        loop {
            // An Interjection runs its block here (in `raise_if_exception`)
            // and the operation goes on; any other exception, or one raised
            // by that block, ends the wait.
            let r = self.switch_fiber_from(fiber).and_then(raise_if_exception);
            let done = self.io.ops.borrow().get(key).and_then(|s| s.result);
            match (r, done) {
                (Ok(_), Some(res)) => return Ok(res),
                (Ok(_), None) => {}
                // Completed before the fiber saw the exception: delivered;
                // the exception waits for the next switchpoint.
                (Err(e), Some(res)) => match self.pend(fiber, e) {
                    Ok(()) => return Ok(res),
                    Err(e) => {
                        // A jump (throw, kill) cannot wait: undone instead.
                        if let Some(slot) = self.free_op(key) {
                            self.undo(&slot, res);
                        }
                        return Err(e);
                    }
                },
                (Err(e), None) => {
                    self.io
                        .active_ops
                        .set(self.io.active_ops.get().saturating_sub(1));
                    if let Some((slot, res)) = self.settle(key) {
                        self.undo(&slot, res);
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Puts exception `e` off to `fiber`'s next switchpoint (the fiber is the
    /// current one and goes on running): it is queued like any scheduled
    /// exception, so the next switch raises it, and the next operation raises
    /// it before it starts ([`Backend::raise_pending`]). A non-exception
    /// error (a `throw`, a thread kill) cannot wait and is returned.
    pub fn pend(&self, fiber: VALUE, e: Error) -> Result<(), Error> {
        let Some(exc) = e.exception() else {
            return Err(e);
        };
        // A queued exception (a stop that came after the one being put
        // off) is kept: the earlier one is dropped, as if it had been raised
        // and replaced.
        self.sched
            .rq
            .borrow_mut()
            .push_unless_exception(fiber, exc, true, false);
        let mut pended = self.sched.pended.borrow_mut();
        if !pended.contains(&fiber) {
            pended.push(fiber);
        }
        Ok(())
    }

    /// Raises an exception put off by [`Backend::pend`] (or scheduled on the
    /// running fiber by itself) before an operation starts, so that a fiber
    /// whose operations all complete at once still sees it. Costs one check
    /// while no exception is put off (the usual case).
    #[inline]
    pub fn raise_pending(&self) -> Result<(), Error> {
        if self.sched.pended.borrow().is_empty() {
            return Ok(());
        }
        self.raise_pending_slow()
    }

    #[cold]
    fn raise_pending_slow(&self) -> Result<(), Error> {
        let fiber = self.current_fiber();
        let exc = {
            let mut pended = self.sched.pended.borrow_mut();
            let Some(i) = pended.iter().position(|f| *f == fiber) else {
                return Ok(());
            };
            pended.swap_remove(i);
            // Already raised by a switch since it was put off: None.
            self.sched.rq.borrow_mut().take_exception(fiber)
        };
        match exc {
            Some(v) => raise_if_exception(v).map(|_| ()),
            None => Ok(()),
        }
    }

    /// The waiter of slot `key` gave up before it completed: the operation is
    /// cancelled and the kernel driven until it reports it. Returns the slot
    /// (taken out of the slab) and its result, for [`Backend::undo`]; `None`
    /// if there is nothing to undo (epoll waiters, which the kernel never
    /// completes by itself).
    fn settle(&self, key: usize) -> Option<(OpSlot, i32)> {
        let uring = {
            let mut ops = self.io.ops.borrow_mut();
            let slot = ops.get_mut(key)?;
            slot.fiber = 0;
            match &mut *self.io.sel.borrow_mut() {
                Selector::Uring(u) => {
                    u.cancel(key);
                    true
                }
                Selector::Epoll(_) => false,
            }
        };
        if !uring {
            let slot = self.free_op(key)?;
            self.remove_ready_waiter(slot.fd, key);
            return None;
        }
        let mut events = Vec::new();
        let mut wake = Vec::new();
        loop {
            let done = self.io.ops.borrow().get(key).and_then(|s| s.result);
            if let Some(res) = done {
                let slot = self.free_op(key)?;
                return Some((slot, res));
            }
            events.clear();
            // Cancelling an operation that waits for readiness completes at
            // once; one running in the kernel's worker finishes or is
            // interrupted. Other threads run meanwhile (GVL released).
            let r = self
                .io
                .sel
                .borrow_mut()
                .wait(Some(std::time::Duration::from_millis(100)), &mut events);
            if r.is_err() {
                // The ring itself failed: the kernel may still write into
                // the slot's buffer, so it is leaked, never freed.
                if let Some(slot) = self.free_op(key) {
                    std::mem::forget(slot);
                }
                return None;
            }
            for ev in events.drain(..) {
                if let Event::Op { key: k, res, .. } = ev {
                    self.complete_op(k, res, &mut wake);
                }
            }
            let mut rq = self.sched.rq.borrow_mut();
            for f in wake.drain(..) {
                rq.push(f, QNIL, false, false);
            }
        }
    }

    /// Gives back what the kernel did for an operation whose fiber gave up
    /// (see [`Undo`]).
    fn undo(&self, slot: &OpSlot, res: i32) {
        if let Undo::Connect = slot.undo {
            // Even a cancelled connect may go on in the kernel.
            return connect::dissolve(slot.fd);
        }
        if res < 0 {
            return;
        }
        match slot.undo {
            Undo::Nothing => {}
            Undo::Read { owner } => {
                let n = res as usize;
                if n > 0 && n <= slot.buf.capacity() {
                    // SAFETY: the kernel wrote `n` bytes into `buf`, whose
                    // capacity is at least `n` (checked above).
                    let data = unsafe { std::slice::from_raw_parts(slot.buf.as_ptr(), n) };
                    crate::core::kept::keep_bytes(self, owner, slot.fd, data);
                }
            }
            Undo::Accept { owner } => crate::core::kept::keep_fd(owner, res),
            Undo::Connect => {}
        }
    }

    /// A buffer of at least `cap` bytes' capacity (empty), reused if one of
    /// the last few pooled fits (a new one has at least `MIN_POOLED`, so
    /// that small requests do not fill the pool with buffers too small for
    /// the next read). Give it back with [`Backend::give_buf`].
    pub fn take_buf(&self, cap: usize) -> Vec<u8> {
        let mut pool = self.io.buf_pool.borrow_mut();
        let from = pool.len().saturating_sub(4);
        if let Some(i) = pool[from..].iter().rposition(|b| b.capacity() >= cap) {
            let buf = pool.swap_remove(from + i);
            self.io
                .pool_bytes
                .set(self.io.pool_bytes.get() - buf.capacity());
            return buf;
        }
        Vec::with_capacity(cap.max(MIN_POOLED))
    }

    /// Returns a buffer to the pool: small ones only, up to `POOL_BYTES` in
    /// all, enough for one read buffer per connection of a busy server (each
    /// read in flight on io_uring holds its own).
    pub fn give_buf(&self, mut buf: Vec<u8>) {
        let mut pool = self.io.buf_pool.borrow_mut();
        let cap = buf.capacity();
        if cap <= SMALL_READ && self.io.pool_bytes.get() + cap <= POOL_BYTES {
            buf.clear();
            pool.push(buf);
            self.io.pool_bytes.set(self.io.pool_bytes.get() + cap);
        }
    }

    pub fn free_op(&self, key: usize) -> Option<OpSlot> {
        let mut ops = self.io.ops.borrow_mut();
        if ops.contains(key) {
            Some(ops.remove(key))
        } else {
            None
        }
    }

    /// Called for each io_uring completion: records the result and wakes the
    /// fiber (a slot being settled has no fiber to wake).
    pub fn complete_op(&self, key: usize, res: i32, wake: &mut Vec<VALUE>) {
        let mut ops = self.io.ops.borrow_mut();
        let Some(slot) = ops.get_mut(key) else { return };
        if slot.result.is_some() {
            return;
        }
        slot.result = Some(res);
        if slot.fiber == 0 {
            return;
        }
        wake.push(slot.fiber);
        self.io
            .active_ops
            .set(self.io.active_ops.get().saturating_sub(1));
    }

    /// `fd` is being closed: every other fiber of this thread waiting on it
    /// gets `IOError` (as Ruby does for threads), unless an exception is
    /// already on its way to it (a fiber that was stopped stays stopped).
    pub fn fd_closing(&self, fd: i32) {
        crate::core::kept::forget_fd(self, fd);
        let cur = self.current_fiber();
        let waiters: Vec<VALUE> = self
            .io
            .ops
            .borrow()
            .iter()
            .filter(|(_, s)| s.fd == fd && s.fiber != 0 && s.fiber != cur && s.result.is_none())
            .map(|(_, s)| s.fiber)
            .collect();
        for f in waiters {
            let exc = closed_in_another_fiber();
            self.sched
                .rq
                .borrow_mut()
                .push_unless_exception(f, exc, true, true);
        }
        crate::core::backend::notify_close_elsewhere(self, fd);
    }

    /// Parks the current fiber until `fd` is ready for `events` (READABLE /
    /// WRITABLE). io_uring: a one-shot poll operation; epoll: a one-shot
    /// registration. Returns the ready events.
    pub fn wait_ready(&self, fd: i32, events: u32) -> Result<i32, Error> {
        if self.is_uring() {
            // (`submit_and_await` raises a pending exception first.)
            let (key, res) = self
                .submit_and_await(OpSlot::on_fd(self.current_fiber(), fd), |_| {
                    io_uring::opcode::PollAdd::new(io_uring::types::Fd(fd), events).build()
                })?;
            self.free_op(key);
            return if res < 0 {
                Err(errno_error(-res, "poll"))
            } else {
                Ok(res)
            };
        }
        self.raise_pending()?;
        let fiber = self.current_fiber();
        let key = {
            let mut slot = OpSlot::new(fiber);
            slot.fd = fd;
            slot.events = events;
            self.io.ops.borrow_mut().insert(slot)
        };
        let union = self.ready_waiters_add(fd, key);
        let armed = match &mut *self.io.sel.borrow_mut() {
            Selector::Epoll(e) => e.arm(fd, to_epoll(union)),
            Selector::Uring(_) => Ok(()),
        };
        if let Err(e) = armed {
            self.free_op(key);
            self.remove_ready_waiter(fd, key);
            return Err(crate::rt::os_error(&e, "epoll_ctl"));
        }
        self.io.active_ops.set(self.io.active_ops.get() + 1);
        self.stats.op_count.set(self.stats.op_count.get() + 1);
        let res = self.await_slot(key, fiber)?;
        self.free_op(key);
        Ok(res)
    }

    /// Adds waiter `key` for `fd`; returns the union of all interests on fd.
    fn ready_waiters_add(&self, fd: i32, key: usize) -> u32 {
        let mut w = self.io.ready_waiters.borrow_mut();
        let list = w.entry(fd as VALUE).or_default();
        list.push(key);
        let ops = self.io.ops.borrow();
        list.iter()
            .filter_map(|k| ops.get(*k))
            .fold(0, |acc, s| acc | s.events)
    }

    fn remove_ready_waiter(&self, fd: i32, key: usize) {
        let mut w = self.io.ready_waiters.borrow_mut();
        if let Some(list) = w.get_mut(&(fd as VALUE)) {
            list.retain(|k| *k != key);
            if list.is_empty() {
                w.remove(&(fd as VALUE));
            }
        }
    }

    /// epoll: `fd` reported `revents`; wake matching waiters, re-arm for the rest.
    pub fn fd_ready(&self, fd: i32, revents: u32, wake: &mut Vec<VALUE>) {
        let mut w = self.io.ready_waiters.borrow_mut();
        let Some(list) = w.get_mut(&(fd as VALUE)) else {
            return;
        };
        let mut ops = self.io.ops.borrow_mut();
        let poll_rev = from_epoll(revents);
        let mut remaining = 0u32;
        list.retain(|k| {
            let Some(slot) = ops.get_mut(*k) else {
                return false;
            };
            if poll_rev & (slot.events | (libc::POLLERR | libc::POLLHUP) as u32) != 0 {
                slot.result = Some(poll_rev as i32);
                wake.push(slot.fiber);
                self.io
                    .active_ops
                    .set(self.io.active_ops.get().saturating_sub(1));
                false
            } else {
                remaining |= slot.events;
                true
            }
        });
        if list.is_empty() {
            w.remove(&(fd as VALUE));
        } else if let Selector::Epoll(e) = &mut *self.io.sel.borrow_mut() {
            let _ = e.arm(fd, to_epoll(remaining));
        }
    }
}

fn to_epoll(poll_events: u32) -> u32 {
    let mut e = 0;
    if poll_events & READABLE != 0 {
        e |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
    }
    if poll_events & WRITABLE != 0 {
        e |= libc::EPOLLOUT as u32;
    }
    e
}

fn from_epoll(ev: u32) -> u32 {
    let mut p = 0;
    if ev & (libc::EPOLLIN | libc::EPOLLRDHUP) as u32 != 0 {
        p |= READABLE;
    }
    if ev & libc::EPOLLOUT as u32 != 0 {
        p |= WRITABLE;
    }
    if ev & libc::EPOLLERR as u32 != 0 {
        p |= libc::POLLERR as u32;
    }
    if ev & libc::EPOLLHUP as u32 != 0 {
        p |= libc::POLLHUP as u32;
    }
    p
}

/// Makes sure `fd` is non-blocking (epoll fallback only: a blocking fd would
/// block the whole thread on a read that the readiness check raced with).
///
/// The standard streams (fds 0–2) are left as they are when they are
/// blocking pipes or terminals: their file description is usually shared
/// with the parent shell, which breaks if it becomes non-blocking. Returns
/// `false` in that case; the caller then waits for readiness before a read.
pub fn ensure_nonblock(fd: i32) -> bool {
    // SAFETY: fcntl on an fd number: an invalid one gives an error, which is checked.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 && fl & libc::O_NONBLOCK == 0 {
            if (0..=2).contains(&fd) {
                let mut st: libc::stat = std::mem::zeroed();
                let regular =
                    libc::fstat(fd, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG;
                return regular;
            }
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        true
    }
}

/// Reads up to this size go through a pooled buffer and are copied into
/// their string, which then holds exactly the bytes read; larger ones read
/// straight into the string.
pub const SMALL_READ: usize = 65536;

/// Most bytes of read buffers a backend keeps for reuse.
pub const POOL_BYTES: usize = 1 << 20;

/// Smallest buffer `take_buf` makes: the read loops' chunk size, so that a
/// pooled buffer fits any of their reads (and the sends of `op::write`).
pub const MIN_POOLED: usize = 8192;

/// Runs a non-blocking system call, parking on readiness while it says
/// EAGAIN. Used by every epoll-path operation (and by io_uring ops that the
/// kernel refused with EAGAIN).
pub fn retry_nonblocking(
    backend: &Backend,
    fd: i32,
    events: u32,
    mut syscall: impl FnMut() -> isize,
) -> Result<isize, Error> {
    loop {
        let n = syscall();
        if n >= 0 {
            return Ok(n);
        }
        let err = crate::rt::last_errno();
        match err {
            libc::EAGAIN => {
                backend.wait_ready(fd, events)?;
            }
            libc::EINTR => {}
            _ => return Err(errno_error(err, "")),
        }
    }
}
