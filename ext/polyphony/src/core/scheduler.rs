//! The switch algorithm (docs/scheduling.md) and polling.
//!
//! Fibers are run by *runners*: the thread's root fiber (or any fiber that was
//! not started by a runner, such as an `Enumerator` fiber doing I/O) runs the
//! loop below and `resume`s the next runnable fiber; a fiber started by a
//! runner gives control back with `Fiber.yield`. Because every spun fiber is
//! resumed, its stack goes back to Ruby's fiber pool the moment its block
//! ends, instead of waiting for GC as with `transfer`.

use crate::rt::id;
use rb_sys::VALUE;

use crate::core::backend::{Backend, Frame, Mail};
use crate::core::lifecycle;
use crate::rt::Error;
use crate::rt::{call, is_exception, is_nil, protect, QNIL, QTRUE};
use crate::selector::Event;

impl Backend {
    /// Every I/O call is a switchpoint even when it completed at once. The
    /// operation has completed, so it is delivered: an exception that
    /// arrives here waits for the fiber's next switchpoint
    /// (docs/io-semantics.md).
    pub fn switchpoint_after_sync(&self) -> Result<(), Error> {
        if !self.has_runnable() {
            return Ok(());
        }
        match self.snooze() {
            Ok(_) => Ok(()),
            // Still the same fiber: this is where it resumed.
            Err(e) => self.pend(self.current_fiber(), e),
        }
    }

    /// Whether a switchpoint may go on without switching: no other fiber is
    /// runnable and no mail from another thread waits, so a switch would
    /// come straight back. Every `SKIP_LIMIT`th call says no all the same
    /// (and the caller snoozes, which polls without a fiber switch when
    /// nothing else is runnable): a fiber looping over skipped switchpoints
    /// still lets expired timers and I/O completions in.
    #[inline]
    pub fn may_skip_switchpoint(&self) -> bool {
        const SKIP_LIMIT: u32 = 64;
        if self.has_runnable() {
            return false;
        }
        let n = self.sched.skips.get() + 1;
        if n >= SKIP_LIMIT {
            self.sched.skips.set(0);
            return false;
        }
        self.sched.skips.set(n);
        true
    }

    /// Whether another fiber is runnable or mail from another thread waits.
    #[inline]
    pub fn has_runnable(&self) -> bool {
        !self.sched.rq.borrow().is_empty()
            || self
                .sched
                .inbox_flag
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Parks `fiber` (a debugging aid): it leaves the run queue, and its
    /// wake-ups are held until `unpark` (see `RunQueue::park`).
    pub fn park(&self, fiber: VALUE) {
        self.sched.rq.borrow_mut().park(fiber);
    }

    /// Unparks `fiber`: a wake-up it got meanwhile is queued. False if it
    /// was not parked.
    pub fn unpark(&self, fiber: VALUE) -> bool {
        self.sched.rq.borrow_mut().unpark(fiber)
    }

    pub fn is_parked(&self, fiber: VALUE) -> bool {
        self.sched.rq.borrow().is_parked(fiber)
    }

    /// Called first thing by a spun fiber's body: the runner's resume
    /// reached it (see `run_loop`, which tells a fiber that could not start
    /// from one that raised).
    #[inline]
    pub fn fiber_entered(&self) {
        self.sched.entered.set(true);
    }

    #[inline]
    pub fn current_fiber(&self) -> VALUE {
        // SAFETY: GVL held (this runs in a Ruby method of the current thread); no arguments, never
        // raises.
        unsafe { rb_sys::rb_fiber_current() }
    }

    /// Number of things that can make a fiber runnable later: in-flight
    /// operations, timers and fibers parked in `wait_event`.
    #[inline]
    pub fn pending(&self) -> usize {
        self.io.active_ops.get() + self.sched.timers.borrow().len() + self.sched.event_waiters.get()
    }

    /// Queues `fiber` to be resumed with `value` (see `RunQueue::push`). Dead
    /// fibers are ignored. From another thread the fiber goes to the inbox and
    /// the owning thread is woken.
    pub fn schedule(&self, fiber: VALUE, value: VALUE, priority: bool) {
        if !self.is_owner_thread() {
            return self.post(Mail {
                fiber,
                value,
                priority,
                soft: false,
            });
        }
        // SAFETY: GVL held; reads the type or state of a live object the caller holds, never
        // raises.
        if unsafe { rb_sys::rb_fiber_alive_p(fiber) } != QTRUE {
            return;
        }
        let exc = is_exception(value);
        self.sched.rq.borrow_mut().push(fiber, value, exc, priority);
        if self.tracing() {
            let prio = if priority { QTRUE } else { crate::rt::QFALSE };
            self.emit("schedule", &[fiber, value, prio], true);
        }
    }

    /// Hands `mail` to this backend's thread (from any thread) and wakes it.
    pub fn post(&self, mail: Mail) {
        self.sched
            .inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(mail);
        self.sched
            .inbox_flag
            .store(true, std::sync::atomic::Ordering::SeqCst);
        crate::selector::wake(self.io.wake_fd.load(std::sync::atomic::Ordering::SeqCst));
    }

    fn drain_inbox(&self) {
        // A plain load first: the flag is almost always clear, and the swap
        // is a locked instruction.
        if !self
            .sched
            .inbox_flag
            .load(std::sync::atomic::Ordering::Acquire)
            || !self
                .sched
                .inbox_flag
                .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let items: Vec<_> =
            std::mem::take(&mut *self.sched.inbox.lock().unwrap_or_else(|e| e.into_inner()));
        for m in items {
            // SAFETY: `m.fiber` is a live object (the inbox is marked).
            if unsafe { rb_sys::rb_fiber_alive_p(m.fiber) } == QTRUE {
                let exc = is_exception(m.value);
                let mut rq = self.sched.rq.borrow_mut();
                if m.soft {
                    rq.push_unless_exception(m.fiber, m.value, exc, m.priority);
                } else {
                    rq.push(m.fiber, m.value, exc, m.priority);
                }
            }
        }
    }

    /// Parks the current fiber until something schedules it, running other
    /// fibers meanwhile. Returns the resume value (exceptions are returned
    /// as values; callers decide whether to raise). Returns `nil` at once if
    /// nothing is runnable and nothing is pending. (The rules allow `nil`
    /// or the last dead fiber's value for `spin { :x }; suspend`; we
    /// consistently return `nil`.)
    pub fn switch_fiber(&self) -> Result<VALUE, Error> {
        self.switch_fiber_from(self.current_fiber())
    }

    /// `switch_fiber` for callers that know the current fiber `cur`
    /// (`rb_fiber_current` costs a thread-local lookup in libruby).
    pub fn switch_fiber_from(&self, cur: VALUE) -> Result<VALUE, Error> {
        self.stats
            .switch_count
            .set(self.stats.switch_count.get() + 1);
        if self.tracing() {
            self.emit("block", &[cur], true);
        }
        let yieldable = self
            .sched
            .runners
            .borrow()
            .last()
            .map(|f| f.child == cur)
            .unwrap_or(false);
        if !yieldable {
            return self.run_loop(cur);
        }
        // A fiber started by the runner: handle the cheap cases here, else
        // hand control back to the runner.
        self.drain_inbox();
        if self.sched.rq.borrow().is_empty() {
            self.run_idle()?;
            if self.sched.rq.borrow().is_empty() && self.pending() == 0 {
                return Ok(QNIL);
            }
        }
        if self.sched.rq.borrow_mut().peek() == Some(cur) {
            // Poll first: an expired timer (say a zero timeout) may replace
            // the queued value with its exception, which must win.
            if self.pending() > 0 {
                if let Err(e) = self.poll(false) {
                    self.sched.rq.borrow_mut().remove_if_value(cur, QNIL);
                    return Err(e);
                }
            }
            if self.sched.rq.borrow_mut().peek() == Some(cur) {
                if let Some((_, v)) = self.take_next() {
                    return Ok(v);
                }
            }
        }
        // SAFETY: inside `protect`: what the call raises (or throws) comes back as `Err` instead of
        // unwinding over Rust frames; GVL held, arguments are live objects the caller holds.
        let v = protect(|| unsafe { rb_sys::rb_fiber_yield(1, &QNIL) });
        self.sched.entered.set(true);
        v
    }

    fn run_loop(&self, cur: VALUE) -> Result<VALUE, Error> {
        self.sched.runners.borrow_mut().push(Frame {
            runner: cur,
            child: 0,
        });
        let deferred_base = self.sched.deferred.borrow().len();
        let held_base = self.sched.held.borrow().len();
        // After a fiber failed to start (no stack could be allocated), fibers
        // that have not started yet wait in `held` while started ones run:
        // they are the ones that can finish and free stacks, and trying to
        // allocate again costs Ruby milliseconds each time.
        let mut start_failed = false;
        let result = loop {
            if start_failed && self.sched.rq.borrow().is_empty() {
                start_failed = false;
                self.release_held(held_base);
            }
            let (f, v) = match self.pick_next(cur) {
                Err(e) => break Err(e),
                Ok(None) => break Ok(QNIL),
                Ok(Some(x)) => x,
            };
            if f == cur {
                break Ok(v);
            }
            // SAFETY: GVL held; reads the type or state of a live object the caller holds, never
            // raises.
            if unsafe { rb_sys::rb_fiber_alive_p(f) } != QTRUE {
                continue;
            }
            if self.sched.runners.borrow().iter().any(|fr| fr.runner == f) {
                // An outer runner: it continues when this loop ends.
                self.sched.deferred.borrow_mut().push((f, v));
                continue;
            }
            // Only a fiber stopped or raised into may end unstarted: the
            // fiber layer is asked only when `v` is an exception.
            if is_exception(v) {
                match (lifecycle::rules().end_unstarted)(f, v) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => break Err(e),
                }
            }
            if start_failed && (lifecycle::rules().is_unstarted)(f) {
                self.sched.held.borrow_mut().push((f, v));
                continue;
            }
            if let Some(top) = self.sched.runners.borrow_mut().last_mut() {
                top.child = f;
            }
            self.sched.entered.set(false);
            // SAFETY: inside `protect`: what the call raises (or throws) comes back as `Err`
            // instead of unwinding over Rust frames; GVL held, arguments are live objects the
            // caller holds.
            let r = protect(|| unsafe { rb_sys::rb_fiber_resume(f, 1, &v) });
            if let Some(top) = self.sched.runners.borrow_mut().last_mut() {
                top.child = 0;
            }
            if let Err(e) = r {
                if !self.sched.entered.get() {
                    if let Some(exc) = e.exception() {
                        // A fiber that could not even start (Ruby could not
                        // allocate its stack): it ends with that error.
                        match (lifecycle::rules().fail_to_start)(f, exc) {
                            Ok(true) => {
                                start_failed = true;
                                continue;
                            }
                            Ok(false) => {}
                            Err(e) => break Err(e),
                        }
                    }
                    // Could not switch (the fiber is itself resuming another
                    // fiber): try again once this loop is done.
                    self.sched.deferred.borrow_mut().push((f, v));
                    if self.sched.rq.borrow().is_empty() && self.pending() == 0 {
                        break Ok(QNIL);
                    }
                    continue;
                }
                break Err(e);
            }
        };
        self.sched.runners.borrow_mut().pop();
        self.release_held(held_base);
        let deferred: Vec<_> = self
            .sched
            .deferred
            .borrow_mut()
            .drain(deferred_base..)
            .collect();
        for (f, v) in deferred.into_iter().rev() {
            self.schedule(f, v, true);
        }
        result
    }

    /// Pops the head of the run queue. A fiber that had an exception put
    /// off (`Backend::pend`) gets it now, so it leaves the `pended` list.
    #[inline(always)]
    fn take_next(&self) -> Option<(VALUE, VALUE)> {
        let next = self.sched.rq.borrow_mut().pop();
        if let Some((f, v)) = next {
            {
                let mut pended = self.sched.pended.borrow_mut();
                if !pended.is_empty() {
                    pended.retain(|p| *p != f);
                }
            }
            if self.tracing() {
                self.emit("unblock", &[f, v], true);
            }
        }
        next
    }

    /// Puts the fibers this loop held back into the run queue, in order.
    fn release_held(&self, base: usize) {
        let held: Vec<_> = self.sched.held.borrow_mut().drain(base..).collect();
        for (f, v) in held {
            self.schedule(f, v, false);
        }
    }

    /// Takes the next runnable fiber, polling the kernel as needed. `None`:
    /// nothing runnable and nothing pending.
    fn pick_next(&self, cur: VALUE) -> Result<Option<(VALUE, VALUE)>, Error> {
        loop {
            self.drain_inbox();
            let next = self.take_next();
            if let Some((f, v)) = next {
                // Counted here, not in `switch_fiber`: fibers that end go
                // back to the runner without switching.
                let picks = self.sched.picks.get() + 1;
                self.sched.picks.set(picks);
                if self.pending() > 0 && (picks.is_multiple_of(64) || f == cur) {
                    // Anti-starvation: harvest completions even when the run
                    // queue never empties. The fiber goes back to the head
                    // first: an expired timer may replace its value with an
                    // exception.
                    self.sched.rq.borrow_mut().push(f, v, is_exception(v), true);
                    self.poll(false)?;
                    return Ok(self.take_next());
                }
                return Ok(Some((f, v)));
            }
            self.run_idle()?;
            if !self.sched.rq.borrow().is_empty() {
                continue;
            }
            if self.pending() == 0
                && !self
                    .sched
                    .inbox_flag
                    .load(std::sync::atomic::Ordering::SeqCst)
            {
                return Ok(None);
            }
            self.poll(true)?;
        }
    }

    fn run_idle(&self) -> Result<(), Error> {
        let was = self.sched.in_scheduler.replace(true);
        let r = self.run_idle_inner();
        self.sched.in_scheduler.set(was);
        r
    }

    fn run_idle_inner(&self) -> Result<(), Error> {
        let proc_ = self.sched.idle_proc.get();
        if !is_nil(proc_) {
            call(proc_, id!("call"), &[])?;
        }
        let period = self.sched.idle_gc_period.get();
        if period > 0.0 {
            let now = crate::timers::now_ns();
            if now.saturating_sub(self.sched.last_gc.get()) as f64 >= period * 1e9 {
                self.sched.last_gc.set(now);
                let gc = crate::rt::consts::gc();
                call(gc, id!("start"), &[])?;
                call(gc, id!("disable"), &[])?;
            }
        }
        Ok(())
    }

    /// One poll of the kernel: `blocking` waits (GVL released) until a
    /// completion, a timer, or a wake-up. Wakes the fibers concerned, then
    /// lets Ruby run pending interrupts (signal traps, Thread#raise), whose
    /// exceptions are returned.
    pub fn poll(&self, blocking: bool) -> Result<(), Error> {
        let was = self.sched.in_scheduler.replace(true);
        let r = self.poll_inner(blocking);
        self.sched.in_scheduler.set(was);
        r
    }

    /// True while this thread runs the scheduler's own code (a poll, the
    /// idle tasks): a signal handled then runs its handler fiber right
    /// after, so a trap proc must not switch fibers itself (see
    /// `Polyphony.__trap__`).
    pub fn in_scheduler(&self) -> bool {
        self.sched.in_scheduler.get()
    }

    fn poll_inner(&self, blocking: bool) -> Result<(), Error> {
        self.stats.poll_count.set(self.stats.poll_count.get() + 1);
        let timeout = if blocking
            && self.sched.rq.borrow().is_empty()
            && !self
                .sched
                .inbox_flag
                .load(std::sync::atomic::Ordering::SeqCst)
        {
            self.sched.timers.borrow().next_timeout()
        } else {
            Some(std::time::Duration::ZERO)
        };
        let mut events = std::mem::take(&mut *self.io.events_buf.borrow_mut());
        events.clear();
        if !(blocking
            && timeout.map(|d| d.is_zero()).unwrap_or(false)
            && self.io.active_ops.get() == 0)
        {
            let traced = blocking && self.tracing();
            if traced {
                self.emit("enter_poll", &[self.current_fiber()], false);
            }
            let r = self.io.sel.borrow_mut().wait(timeout, &mut events);
            if traced {
                self.emit("leave_poll", &[self.current_fiber()], false);
            }
            if let Err(e) = r {
                *self.io.events_buf.borrow_mut() = events;
                return Err(crate::rt::os_error(&e, "poll"));
            }
        }
        let mut wake = std::mem::take(&mut *self.sched.wake_buf.borrow_mut());
        for ev in events.drain(..) {
            match ev {
                Event::Op { key, res, more: _ } => self.complete_op(key, res, &mut wake),
                Event::Ready { fd, revents } => self.fd_ready(fd, revents, &mut wake),
            }
        }
        *self.io.events_buf.borrow_mut() = events;
        {
            // Fibers parked on an operation of this thread: alive (one
            // that ends abandons its operation first), and no Ruby code
            // runs between here and the queue, so no liveness check.
            let mut rq = self.sched.rq.borrow_mut();
            for f in wake.iter() {
                rq.push(*f, QNIL, false, false);
            }
        }
        if self.tracing() {
            for f in wake.iter() {
                self.emit("schedule", &[*f, QNIL, crate::rt::QFALSE], true);
            }
        }
        wake.clear();
        *self.sched.wake_buf.borrow_mut() = wake;
        self.fire_timers();
        self.drain_inbox();
        // SAFETY: GVL held; asks the current thread for pending interrupts, which does not raise.
        if blocking || unsafe { rb_sys::rb_thread_interrupted(rb_sys::rb_thread_current()) } != 0 {
            // SAFETY: inside `protect`: what the call raises (or throws) comes back as `Err`
            // instead of unwinding over Rust frames; GVL held, arguments are live objects the
            // caller holds.
            protect(|| unsafe {
                rb_sys::rb_thread_check_ints();
                QNIL
            })?;
        }
        Ok(())
    }

    /// Queues the fibers of expired timers. Expired timers run before the
    /// fibers already queued (in deadline order): with thousands of runnable
    /// fibers a timer would otherwise fire late by the time it takes to run
    /// them all. A timer that was due when set (`sleep 0`) is a snooze: its
    /// fiber goes to the tail.
    ///
    /// When several timers of one fiber expire in the same poll, the
    /// earliest exception wins (an outer `move_on_after` that expired first
    /// unwinds to its own scope), and an exception wins over a plain wake-up.
    /// A timer whose exception cannot be delivered now (another one is on its
    /// way to the fiber) stays armed and fires at the next poll, so a
    /// deadline is never lost (docs/io-semantics.md).
    fn fire_timers(&self) {
        let mut expired = Vec::new();
        self.sched.timers.borrow_mut().expire(&mut expired);
        if expired.is_empty() {
            return;
        }
        if expired.len() == 1 {
            // The usual case: no other timer to weigh it against.
            if let Some((id, t)) = expired.pop() {
                // SAFETY: `t.fiber` is a live object (timers are marked).
                if unsafe { rb_sys::rb_fiber_alive_p(t.fiber) } == QTRUE {
                    self.queue_expired(id, t);
                }
            }
            return;
        }
        // Pass 1, in deadline order: one winner per fiber; the exception
        // timers that lose stay armed.
        let mut winners: Vec<(crate::timers::TimerId, crate::timers::Timer, bool)> =
            Vec::with_capacity(expired.len());
        let mut by_fiber: crate::runqueue::AddrMap<usize> = Default::default();
        let mut rearm = Vec::new();
        for (id, t) in expired {
            // SAFETY: `t.fiber` is a live object (timers are marked).
            if unsafe { rb_sys::rb_fiber_alive_p(t.fiber) } != QTRUE {
                continue;
            }
            let exc = is_exception(t.value);
            match by_fiber.get(&t.fiber) {
                None => {
                    by_fiber.insert(t.fiber, winners.len());
                    winners.push((id, t, exc));
                }
                Some(&i) => {
                    if exc && !winners[i].2 {
                        // An exception beats an earlier plain wake-up.
                        winners[i] = (id, t, exc);
                    } else if exc {
                        rearm.push((id, t));
                    }
                }
            }
        }
        // Pass 2, latest first, so that the earliest ends at the head.
        for (id, t, _) in winners.into_iter().rev() {
            self.queue_expired(id, t);
        }
        let mut timers = self.sched.timers.borrow_mut();
        for (id, t) in rearm {
            timers.rearm(id, t);
        }
    }

    /// Queues the fiber of expired timer `t` (at the head; at the tail if it
    /// was due when set), or keeps the timer armed if its exception cannot
    /// be delivered now.
    fn queue_expired(&self, id: crate::timers::TimerId, t: crate::timers::Timer) {
        let exc = is_exception(t.value);
        let queued = if t.immediate {
            self.sched
                .rq
                .borrow_mut()
                .push_unless_exception(t.fiber, t.value, exc, false)
                || !exc
        } else {
            self.sched
                .rq
                .borrow_mut()
                .push_expired(t.fiber, t.value, exc)
        };
        if !queued {
            self.sched.timers.borrow_mut().rearm(id, t);
        }
    }

    /// `wait_event`: parks until scheduled; counts as pending meanwhile.
    pub fn wait_event(&self, raise: bool) -> Result<VALUE, Error> {
        self.sched
            .event_waiters
            .set(self.sched.event_waiters.get() + 1);
        let r = self.switch_fiber();
        self.sched
            .event_waiters
            .set(self.sched.event_waiters.get() - 1);
        let v = r?;
        if raise {
            crate::rt::raise_if_exception(v)
        } else {
            Ok(v)
        }
    }

    /// `snooze`: requeue the current fiber at the tail and switch.
    pub fn snooze(&self) -> Result<VALUE, Error> {
        let cur = self.current_fiber();
        self.sched.rq.borrow_mut().push(cur, QNIL, false, false);
        let v = self.switch_fiber_from(cur)?;
        crate::rt::raise_if_exception(v)
    }
}
