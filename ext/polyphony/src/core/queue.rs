//! The state of a `Polyphony::Queue`: its items, the fibers waiting to
//! shift and the fibers waiting to push into a full capped queue.
//!
//! # Rules
//! - **One step, one call.** Every method is a whole step of the queue's
//!   protocol and runs under the GVL without calling Ruby code, so no other
//!   thread sees a half-done step: this is what a Ruby-level lock gave the
//!   former pure-Ruby queue. The waiting itself (park, timeout, retry) stays
//!   in Ruby (lib/polyphony/core/queue.rb) and calls these steps.
//! - **Wake-ups are returned.** A step that makes fibers runnable returns
//!   them; the binding (`ruby_api/queue.rs`) schedules them once the state
//!   is no longer borrowed (scheduling may run a trace hook).
//! - **Values stay reachable.** An item leaves `items` only when the caller
//!   holds it (a returned `VALUE` on the stack, or a Ruby array already
//!   made), and `mark` reaches every item and waiter.

use std::cell::RefCell;
use std::collections::VecDeque;

use rb_sys::VALUE;

/// Fibers a step made runnable (usually none or one).
pub type Wake = Vec<VALUE>;

#[derive(Default)]
struct State {
    items: VecDeque<VALUE>,
    shifters: VecDeque<VALUE>,
    pushers: VecDeque<VALUE>,
    cap: Option<usize>,
    closed: bool,
}

impl State {
    fn has_room(&self) -> bool {
        self.cap.is_none_or(|c| self.items.len() < c)
    }

    /// As many blocked pushers as there is room for.
    fn wake_pushers(&mut self, wake: &mut Wake) {
        let room = match self.cap {
            Some(c) => c.saturating_sub(self.items.len()),
            None => self.pushers.len(),
        };
        let n = room.min(self.pushers.len());
        wake.extend(self.pushers.drain(..n));
    }

    fn add(&mut self, v: VALUE, front: bool) -> Option<VALUE> {
        if front {
            self.items.push_front(v);
        } else {
            self.items.push_back(v);
        }
        self.shifters.pop_front()
    }

    fn take(&mut self) -> Option<(VALUE, Option<VALUE>)> {
        let v = self.items.pop_front()?;
        let pusher = if self.cap.is_some() {
            self.pushers.pop_front()
        } else {
            None
        };
        Some((v, pusher))
    }
}

/// What `insert` did.
pub enum Insert {
    /// The item is in; wake this shifter, if any.
    Done(Option<VALUE>),
    /// The queue is full: the pusher is registered (and `Wake` holds it when
    /// there is room after all, a capped push being a switchpoint).
    Wait(Option<VALUE>),
    Closed,
}

/// A fiber-aware FIFO (see the module rules).
#[derive(Default)]
pub struct Queue {
    st: RefCell<State>,
}

impl Queue {
    /// Calls `m` with every item and waiting fiber.
    pub fn mark(&self, m: &mut dyn FnMut(VALUE)) {
        // SAFETY: GC runs only at an allocation or a safepoint of this
        // thread, and no step allocates Ruby objects while it borrows the
        // state, so the cell is never borrowed mutably here; `mark` only
        // reads it and must not panic.
        let s = unsafe { &*self.st.as_ptr() };
        s.items
            .iter()
            .chain(&s.shifters)
            .chain(&s.pushers)
            .for_each(|v| m(*v));
    }

    /// Appends (or prepends) unless capped: `Ok(Some(shifter))` to wake,
    /// `Err(true)` when closed, `Err(false)` when capped (the caller takes
    /// the capped path, `insert`).
    #[inline]
    pub fn push_uncapped(&self, v: VALUE, front: bool) -> Result<Option<VALUE>, bool> {
        let mut s = self.st.borrow_mut();
        if s.closed {
            return Err(true);
        }
        if s.cap.is_some() {
            return Err(false);
        }
        Ok(s.add(v, front))
    }

    /// Whether `take_uncontended` would find an item.
    #[inline]
    pub fn can_take_uncontended(&self) -> bool {
        let s = self.st.borrow();
        s.cap.is_none() && s.shifters.is_empty() && !s.items.is_empty()
    }

    /// The head item for a shifter that may take it without waiting: the
    /// queue is uncapped and no other fiber waits for an item (the caller
    /// checks that no other fiber is runnable either).
    #[inline]
    pub fn take_uncontended(&self) -> Option<VALUE> {
        let mut s = self.st.borrow_mut();
        if s.cap.is_some() || !s.shifters.is_empty() {
            return None;
        }
        s.items.pop_front()
    }

    /// A push into a possibly capped queue by `fiber`: in at once when there
    /// is room, else `fiber` registers as a pusher.
    pub fn insert(&self, v: VALUE, front: bool, fiber: VALUE) -> Insert {
        let mut s = self.st.borrow_mut();
        if s.closed {
            return Insert::Closed;
        }
        if s.cap.is_none() {
            return Insert::Done(s.add(v, front));
        }
        s.pushers.push_back(fiber);
        let again = s.has_room().then_some(fiber);
        Insert::Wait(again)
    }

    /// After a pusher's wait: unregisters it, and adds the item if there is
    /// room now. `None`: still full.
    pub fn insert_after_wait(&self, v: VALUE, front: bool, fiber: VALUE) -> Option<Insert> {
        let mut s = self.st.borrow_mut();
        s.pushers.retain(|f| *f != fiber);
        if !s.has_room() {
            return None;
        }
        if s.closed {
            return Some(Insert::Closed);
        }
        Some(Insert::Done(s.add(v, front)))
    }

    /// The head and the pusher it makes room for, or `None` when empty.
    pub fn take(&self) -> Option<(VALUE, Option<VALUE>)> {
        self.st.borrow_mut().take()
    }

    /// Registers `fiber` as a shifter; returns it when an item is ready
    /// (a blocking shift is a switchpoint: it runs again after the other
    /// runnable fibers).
    pub fn add_shifter(&self, fiber: VALUE) -> Option<VALUE> {
        let mut s = self.st.borrow_mut();
        s.shifters.push_back(fiber);
        (!s.items.is_empty()).then_some(fiber)
    }

    /// Unregisters a waiter; false if it was not registered (it was woken).
    pub fn remove_waiter(&self, fiber: VALUE, pusher: bool) -> bool {
        let mut s = self.st.borrow_mut();
        let list = if pusher {
            &mut s.pushers
        } else {
            &mut s.shifters
        };
        match list.iter().position(|f| *f == fiber) {
            Some(i) => {
                list.remove(i);
                true
            }
            None => false,
        }
    }

    /// A woken shifter that leaves by an exception hands its wake-up on.
    pub fn pass_wake_on(&self) -> Option<VALUE> {
        let mut s = self.st.borrow_mut();
        if s.items.is_empty() {
            None
        } else {
            s.shifters.pop_front()
        }
    }

    /// Wakes as many pushers as there is room for.
    pub fn wake_pushers(&self) -> Wake {
        let mut wake = Wake::new();
        self.st.borrow_mut().wake_pushers(&mut wake);
        wake
    }

    /// A copy of the items, head first (they stay in the queue).
    pub fn items(&self) -> Vec<VALUE> {
        self.st.borrow().items.iter().copied().collect()
    }

    /// Removes the first `n` items (after the caller made them reachable,
    /// see `items`) and wakes the pushers there is room for.
    pub fn drop_front(&self, n: usize) -> Wake {
        let mut s = self.st.borrow_mut();
        let n = n.min(s.items.len());
        s.items.drain(..n);
        let mut wake = Wake::new();
        s.wake_pushers(&mut wake);
        wake
    }

    /// Removes the first item that is `v` itself.
    pub fn delete_identical(&self, v: VALUE) -> Wake {
        let mut s = self.st.borrow_mut();
        if let Some(i) = s.items.iter().position(|x| *x == v) {
            s.items.remove(i);
        }
        let mut wake = Wake::new();
        s.wake_pushers(&mut wake);
        wake
    }

    /// Appends `vs` (initial items).
    pub fn extend(&self, vs: &[VALUE]) {
        self.st.borrow_mut().items.extend(vs.iter().copied());
    }

    /// Sets the capacity (`None`: unbounded) and wakes the pushers there is
    /// room for.
    pub fn set_cap(&self, cap: Option<usize>) -> Wake {
        let mut s = self.st.borrow_mut();
        s.cap = cap;
        let mut wake = Wake::new();
        s.wake_pushers(&mut wake);
        wake
    }

    pub fn cap(&self) -> Option<usize> {
        self.st.borrow().cap
    }

    pub fn len(&self) -> usize {
        self.st.borrow().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.st.borrow().items.is_empty()
    }

    pub fn num_waiting(&self) -> usize {
        self.st.borrow().shifters.len()
    }

    pub fn is_closed(&self) -> bool {
        self.st.borrow().closed
    }

    /// Every waiting shifter, unregistered.
    pub fn take_shifters(&self) -> Wake {
        self.st.borrow_mut().shifters.drain(..).collect()
    }

    /// Closes the queue (idempotent); returns every waiter, unregistered.
    pub fn close(&self) -> Wake {
        let mut s = self.st.borrow_mut();
        s.closed = true;
        let mut wake: Wake = s.shifters.drain(..).collect();
        wake.extend(s.pushers.drain(..));
        wake
    }
}
