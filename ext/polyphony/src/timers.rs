//! Timers shared by both selectors: an ordered map of deadlines. The blocking
//! poll waits at most until the earliest deadline; expired timers schedule
//! their fiber. Cancelling a timer removes it (O(log n)), so a cancelled timer
//! can never fire into a later, unrelated wait.

use std::collections::BTreeMap;
use std::time::Duration;

use rb_sys::VALUE;

pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid for writes.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub type TimerId = (u64, u64);

pub struct Timer {
    pub fiber: VALUE,
    pub value: VALUE,
    /// Due when it was set (`sleep 0`, a zero timeout): its fiber goes to
    /// the tail of the run queue like a snooze, so the others run first.
    pub immediate: bool,
}

#[derive(Default)]
pub struct Timers {
    map: BTreeMap<TimerId, Timer>,
    seq: u64,
}

impl Timers {
    pub fn add_at(&mut self, deadline: u64, fiber: VALUE, value: VALUE) -> TimerId {
        self.seq += 1;
        let id = (deadline, self.seq);
        let immediate = deadline <= now_ns();
        self.map.insert(
            id,
            Timer {
                fiber,
                value,
                immediate,
            },
        );
        id
    }

    pub fn add(&mut self, after: Duration, fiber: VALUE, value: VALUE) -> TimerId {
        let ns = after.as_nanos().min(u64::MAX as u128 / 2) as u64;
        self.add_at(now_ns().saturating_add(ns), fiber, value)
    }

    pub fn cancel(&mut self, id: TimerId) -> bool {
        self.map.remove(&id).is_some()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Time until the earliest deadline (zero if already due).
    pub fn next_timeout(&self) -> Option<Duration> {
        self.map
            .keys()
            .next()
            .map(|(d, _)| Duration::from_nanos(d.saturating_sub(now_ns())))
    }

    /// Removes and returns the timers due now, in deadline order.
    pub fn expire(&mut self, out: &mut Vec<(TimerId, Timer)>) {
        if self.map.is_empty() {
            return;
        }
        let now = now_ns();
        while let Some(entry) = self.map.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let id = *entry.key();
            out.push((id, entry.remove()));
        }
    }

    /// Puts back an expired timer that could not be delivered: it keeps its
    /// id (its owner can still cancel it) and fires again at the next poll.
    pub fn rearm(&mut self, id: TimerId, timer: Timer) {
        self.map.insert(id, timer);
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    pub fn for_each_value(&self, mut f: impl FnMut(VALUE)) {
        for t in self.map.values() {
            f(t.fiber);
            f(t.value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fibers(out: &[(TimerId, Timer)]) -> Vec<VALUE> {
        out.iter().map(|(_, t)| t.fiber).collect()
    }

    #[test]
    fn expires_due_timers_in_deadline_order_and_keeps_the_rest() {
        let mut t = Timers::default();
        let now = now_ns();
        t.add_at(now - 10, 3, 0);
        t.add_at(now - 30, 1, 0);
        t.add_at(now - 20, 2, 0);
        t.add(Duration::from_secs(3600), 4, 0);
        let mut out = Vec::new();
        t.expire(&mut out);
        assert_eq!(fibers(&out), vec![1, 2, 3]);
        assert_eq!(t.len(), 1);
        let left = t.next_timeout().unwrap();
        assert!(left > Duration::from_secs(3500) && left <= Duration::from_secs(3600));
    }

    #[test]
    fn equal_deadlines_fire_in_the_order_they_were_set() {
        let mut t = Timers::default();
        let d = now_ns() - 1;
        for f in [5, 6, 7] {
            t.add_at(d, f, 0);
        }
        let mut out = Vec::new();
        t.expire(&mut out);
        assert_eq!(fibers(&out), vec![5, 6, 7]);
    }

    #[test]
    fn a_cancelled_timer_never_fires_and_cancel_says_if_it_was_armed() {
        let mut t = Timers::default();
        let id = t.add_at(now_ns() - 1, 1, 0);
        assert!(t.cancel(id));
        assert!(!t.cancel(id));
        let mut out = Vec::new();
        t.expire(&mut out);
        assert!(out.is_empty());
        assert_eq!(t.next_timeout(), None);
    }

    #[test]
    fn a_rearmed_timer_keeps_its_id_and_fires_again() {
        let mut t = Timers::default();
        t.add_at(now_ns() - 1, 1, 9);
        let mut out = Vec::new();
        t.expire(&mut out);
        let (id, timer) = out.pop().unwrap();
        assert!(timer.immediate);
        t.rearm(id, timer);
        assert_eq!(t.next_timeout(), Some(Duration::ZERO));
        let mut values = Vec::new();
        t.for_each_value(|v| values.push(v));
        assert_eq!(values, vec![1, 9]);
        assert!(t.cancel(id));
    }

    #[test]
    fn a_far_deadline_does_not_overflow() {
        let mut t = Timers::default();
        t.add(Duration::MAX, 1, 0);
        // Capped at about 146 years from now, never wrapped around.
        assert!(t.next_timeout().unwrap() > Duration::from_secs(100 * 365 * 86400));
        let mut out = Vec::new();
        t.expire(&mut out);
        assert!(out.is_empty());
    }
}
