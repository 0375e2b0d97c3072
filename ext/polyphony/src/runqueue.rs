//! The per-thread run queue: a FIFO of `(fiber, resume value)` entries.
//!
//! Rules (docs/scheduling.md, "The run queue"): a fiber is queued at most once; re-scheduling a queued
//! fiber with an exception moves it to the tail with the exception; with a
//! plain value it is dropped if the queued entry carries an exception, else
//! the fiber moves to the tail with the new value; a priority schedule moves
//! it to the head whatever it carried. Fibers woken by an expired timer go to
//! the head as well (see `push_expired`), so that timer precision does not
//! degrade with the length of the queue. Removal is O(1): the queue keeps a
//! fiber → entry map and leaves stale slots behind, skipped when popped.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use rb_sys::VALUE;

/// Multiplicative hasher for object addresses (no DoS concern: keys are ours).
#[derive(Default)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ *b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_usize(&mut self, i: usize) {
        self.0 = (i as u64 >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (i >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub type AddrMap<V> = HashMap<VALUE, V, BuildHasherDefault<AddrHasher>>;

struct Live {
    seq: u64,
    value: VALUE,
    is_exception: bool,
}

#[derive(Default)]
pub struct RunQueue {
    slots: VecDeque<(VALUE, u64)>,
    live: AddrMap<Live>,
    seq: u64,
    high_water: usize,
    /// Parked fibers (`Fiber#__park__`, for debugging) and the wake-up each
    /// got meanwhile: kept off the queue until unparked. Empty in normal
    /// runs, so a push pays one length check for it.
    parked: AddrMap<Option<Live>>,
}

impl RunQueue {
    /// Queues `fiber` with `value` following the rules above.
    #[inline]
    pub fn push(&mut self, fiber: VALUE, value: VALUE, is_exception: bool, priority: bool) {
        if !self.parked.is_empty() && self.park_value(fiber, value, is_exception, priority) {
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        let live = Live {
            seq,
            value,
            is_exception,
        };
        // One probe of the map, whether the fiber is queued or not.
        match self.live.entry(fiber) {
            Entry::Occupied(mut e) => {
                if !priority && e.get().is_exception && !is_exception {
                    return;
                }
                e.insert(live);
            }
            Entry::Vacant(e) => {
                e.insert(live);
            }
        }
        if priority {
            self.slots.push_front((fiber, seq));
        } else {
            self.slots.push_back((fiber, seq));
        }
        if self.live.len() > self.high_water {
            self.high_water = self.live.len();
        }
        // Compact if stale slots dominate (many re-schedules without pops).
        if self.slots.len() > 64 && self.slots.len() > 4 * self.live.len() {
            let live = &self.live;
            self.slots
                .retain(|(f, s)| live.get(f).map(|l| l.seq == *s).unwrap_or(false));
        }
    }

    /// Queues a fiber whose timer expired, at the head (callers push a batch
    /// of expired timers latest-deadline first, so they run in deadline
    /// order). A fiber already queued keeps its place and value, unless the
    /// timer carries an exception and the queued value does not: exceptions
    /// always win (docs/scheduling.md). Returns false if the timer's
    /// exception could not be queued because another one is (the caller
    /// keeps that timer armed).
    pub fn push_expired(&mut self, fiber: VALUE, value: VALUE, is_exception: bool) -> bool {
        if let Some(Some(l)) = self.parked.get_mut(&fiber) {
            if is_exception && !l.is_exception {
                l.value = value;
                l.is_exception = true;
            }
            return !(is_exception && l.value != value);
        }
        if let Some(l) = self.live.get_mut(&fiber) {
            if is_exception && !l.is_exception {
                l.value = value;
                l.is_exception = true;
            }
            return !(is_exception && l.value != value);
        }
        self.push(fiber, value, is_exception, true);
        true
    }

    pub fn pop(&mut self) -> Option<(VALUE, VALUE)> {
        while let Some((fiber, seq)) = self.slots.pop_front() {
            if let Entry::Occupied(e) = self.live.entry(fiber) {
                if e.get().seq == seq {
                    return Some((fiber, e.remove().value));
                }
            }
        }
        None
    }

    /// The fiber at the head (after skipping stale slots).
    pub fn peek(&mut self) -> Option<VALUE> {
        while let Some(&(fiber, seq)) = self.slots.front() {
            if self.live.get(&fiber).map(|l| l.seq == seq).unwrap_or(false) {
                return Some(fiber);
            }
            self.slots.pop_front();
        }
        None
    }

    pub fn remove(&mut self, fiber: VALUE) -> bool {
        if let Some(slot) = self.parked.get_mut(&fiber) {
            return slot.take().is_some();
        }
        self.live.remove(&fiber).is_some()
    }

    pub fn contains(&self, fiber: VALUE) -> bool {
        self.live.contains_key(&fiber)
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.slots.capacity()
    }

    /// High-water mark since the last call (reset on read).
    pub fn take_high_water(&mut self) -> usize {
        let h = self.high_water;
        self.high_water = self.live.len();
        h
    }

    pub fn clear(&mut self) {
        self.slots.clear();
        self.live.clear();
        self.parked.clear();
    }

    pub fn for_each_value(&self, mut f: impl FnMut(VALUE)) {
        for (k, l) in self.live.iter() {
            f(*k);
            f(l.value);
        }
        for (k, l) in self.parked.iter() {
            f(*k);
            if let Some(l) = l {
                f(l.value);
            }
        }
    }

    /// Parks `fiber`: it leaves the queue (keeping its value) and its
    /// wake-ups are held, by the same rules, until `unpark`.
    pub fn park(&mut self, fiber: VALUE) {
        if !self.parked.contains_key(&fiber) {
            let held = self.live.remove(&fiber);
            self.parked.insert(fiber, held);
        }
    }

    /// Unparks `fiber`; the wake-up it got while parked is queued (at the
    /// tail). False if it was not parked.
    pub fn unpark(&mut self, fiber: VALUE) -> bool {
        match self.parked.remove(&fiber) {
            None => false,
            Some(held) => {
                if let Some(l) = held {
                    self.push(fiber, l.value, l.is_exception, false);
                }
                true
            }
        }
    }

    pub fn is_parked(&self, fiber: VALUE) -> bool {
        self.parked.contains_key(&fiber)
    }

    /// Holds a wake-up of a parked fiber (the queue's rules, without a
    /// place: priority only lets a plain value replace an exception). False
    /// if `fiber` is not parked.
    #[cold]
    fn park_value(
        &mut self,
        fiber: VALUE,
        value: VALUE,
        is_exception: bool,
        priority: bool,
    ) -> bool {
        let Some(held) = self.parked.get_mut(&fiber) else {
            return false;
        };
        if let Some(l) = held {
            if !priority && l.is_exception && !is_exception {
                return true;
            }
        }
        *held = Some(Live {
            seq: 0,
            value,
            is_exception,
        });
        true
    }
}

impl RunQueue {
    /// `push`, unless `fiber` is queued with an exception already: that
    /// one is kept (a stop is not replaced by a later close's `IOError`).
    /// Returns whether `value` was queued.
    pub fn push_unless_exception(
        &mut self,
        fiber: VALUE,
        value: VALUE,
        is_exception: bool,
        priority: bool,
    ) -> bool {
        if self
            .live
            .get(&fiber)
            .map(|l| l.is_exception)
            .unwrap_or(false)
        {
            return false;
        }
        self.push(fiber, value, is_exception, priority);
        true
    }

    /// Removes and returns `fiber`'s queued value if it is an exception.
    pub fn take_exception(&mut self, fiber: VALUE) -> Option<VALUE> {
        if let Some(held) = self.parked.get_mut(&fiber) {
            return match held {
                Some(l) if l.is_exception => held.take().map(|l| l.value),
                _ => None,
            };
        }
        match self.live.entry(fiber) {
            Entry::Occupied(e) if e.get().is_exception => Some(e.remove().value),
            _ => None,
        }
    }

    /// Removes `fiber`'s entry only if it carries exactly `value`.
    pub fn remove_if_value(&mut self, fiber: VALUE, value: VALUE) -> bool {
        if let Some(held) = self.parked.get_mut(&fiber) {
            if held.as_ref().is_some_and(|l| l.value == value) {
                *held = None;
                return true;
            }
            return false;
        }
        if self
            .live
            .get(&fiber)
            .map(|l| l.value == value)
            .unwrap_or(false)
        {
            self.live.remove(&fiber);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fibers and values are opaque words here: the queue never looks into
    // them. Even numbers stand for fibers, odd ones for values.
    const A: VALUE = 2;
    const B: VALUE = 4;
    const C: VALUE = 6;

    fn drain(rq: &mut RunQueue) -> Vec<(VALUE, VALUE)> {
        std::iter::from_fn(|| rq.pop()).collect()
    }

    #[test]
    fn fifo_and_a_fiber_at_most_once() {
        let mut rq = RunQueue::default();
        rq.push(A, 1, false, false);
        rq.push(B, 3, false, false);
        rq.push(A, 5, false, false);
        assert_eq!(rq.len(), 2);
        assert_eq!(drain(&mut rq), vec![(B, 3), (A, 5)]);
        assert!(rq.is_empty());
    }

    #[test]
    fn an_exception_wins_over_a_plain_value() {
        let mut rq = RunQueue::default();
        rq.push(A, 7, true, false);
        rq.push(A, 1, false, false);
        assert_eq!(drain(&mut rq), vec![(A, 7)]);
        rq.push(A, 1, false, false);
        rq.push(B, 3, false, false);
        rq.push(A, 9, true, false);
        assert_eq!(drain(&mut rq), vec![(B, 3), (A, 9)]);
    }

    #[test]
    fn priority_goes_to_the_head_whatever_was_queued() {
        let mut rq = RunQueue::default();
        rq.push(A, 1, false, false);
        rq.push(B, 7, true, false);
        rq.push(B, 3, false, true);
        rq.push(C, 5, false, true);
        assert_eq!(drain(&mut rq), vec![(C, 5), (B, 3), (A, 1)]);
    }

    #[test]
    fn an_expired_timer_goes_to_the_head_unless_its_fiber_is_queued() {
        // Each goes to the head: the caller (`fire_timers`) pushes the
        // latest deadline first, so the earliest ends up in front.
        let mut rq = RunQueue::default();
        rq.push(A, 1, false, false);
        assert!(rq.push_expired(C, 5, false));
        assert!(rq.push_expired(B, 3, false));
        assert_eq!(drain(&mut rq), vec![(B, 3), (C, 5), (A, 1)]);
        // A queued fiber keeps its place; a timer's exception replaces a
        // plain value...
        rq.push(A, 1, false, false);
        rq.push(B, 3, false, false);
        assert!(rq.push_expired(A, 7, true));
        assert_eq!(drain(&mut rq), vec![(A, 7), (B, 3)]);
        // ...but not another exception: the timer must stay armed.
        rq.push(A, 7, true, false);
        assert!(!rq.push_expired(A, 9, true));
        assert!(rq.push_expired(A, 1, false));
        assert_eq!(drain(&mut rq), vec![(A, 7)]);
    }

    #[test]
    fn remove_and_remove_if_value() {
        let mut rq = RunQueue::default();
        rq.push(A, 1, false, false);
        rq.push(B, 3, false, false);
        assert!(!rq.remove_if_value(A, 5));
        assert!(rq.remove_if_value(A, 1));
        assert!(!rq.contains(A));
        assert!(rq.remove(B));
        assert!(!rq.remove(B));
        assert_eq!(rq.peek(), None);
        assert!(rq.pop().is_none());
    }

    #[test]
    fn exceptions_are_taken_and_not_replaced() {
        let mut rq = RunQueue::default();
        rq.push_unless_exception(A, 1, false, false);
        rq.push_unless_exception(A, 7, true, false);
        rq.push_unless_exception(A, 9, true, false);
        assert_eq!(rq.take_exception(A), Some(7));
        assert_eq!(rq.take_exception(A), None);
        assert!(rq.is_empty());
    }

    #[test]
    fn marks_every_queued_fiber_and_value_and_tracks_the_high_water_mark() {
        let mut rq = RunQueue::default();
        for (i, f) in [A, B, C].into_iter().enumerate() {
            rq.push(f, 2 * i as VALUE + 1, false, false);
        }
        rq.pop();
        let mut seen = Vec::new();
        rq.for_each_value(|v| seen.push(v));
        seen.sort();
        assert_eq!(seen, vec![3, 4, 5, 6]);
        assert_eq!(rq.take_high_water(), 3);
        rq.clear();
        assert!(rq.is_empty());
    }

    #[test]
    fn a_parked_fiber_is_held_off_the_queue_until_unparked() {
        let mut rq = RunQueue::default();
        rq.push(A, 1, false, false);
        rq.push(B, 3, false, false);
        rq.park(A);
        assert!(rq.is_parked(A) && !rq.contains(A));
        assert_eq!(rq.len(), 1);
        rq.push(A, 7, true, false);
        rq.push(A, 5, false, false);
        let mut seen = Vec::new();
        rq.for_each_value(|v| seen.push(v));
        assert!(
            seen.contains(&A) && seen.contains(&7),
            "held values are marked"
        );
        assert_eq!(drain(&mut rq), vec![(B, 3)]);
        assert!(rq.unpark(A));
        assert!(!rq.unpark(A));
        assert_eq!(drain(&mut rq), vec![(A, 7)]);
        rq.park(C);
        assert!(rq.unpark(C));
        assert!(rq.is_empty(), "nothing held, nothing queued");
    }
}
