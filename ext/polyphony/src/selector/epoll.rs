//! epoll selector, for kernels or sandboxes without io_uring. Readiness is
//! registered one-shot per fd with the union of the waiters' interests and
//! re-armed while waiters remain.

use std::time::Duration;

use super::{drain_eventfd, new_eventfd, Event};
use crate::rt::nogvl::{without_gvl, NoGvl, NOT_RUN_WAIT_MS};
use crate::runqueue::AddrMap;

const WAKE_DATA: u64 = u64::MAX;

pub struct Epoll {
    pub epfd: i32,
    pub wake_fd: i32,
    /// fd → whether it is currently registered in the epoll set.
    registered: AddrMap<bool>,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new() -> std::io::Result<Epoll> {
        // SAFETY: no pointers; the result is checked.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let wake_fd = new_eventfd()?;
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: WAKE_DATA,
        };
        // SAFETY: `ev` is a valid event for the call to read.
        if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, wake_fd, &mut ev) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Epoll {
            epfd,
            wake_fd,
            registered: AddrMap::default(),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
        })
    }

    /// Arms `fd` (one-shot) for `events` (EPOLLIN/EPOLLOUT bits).
    pub fn arm(&mut self, fd: i32, events: u32) -> std::io::Result<()> {
        let mut ev = libc::epoll_event {
            events: events | libc::EPOLLONESHOT as u32,
            u64: fd as u64,
        };
        let known = self
            .registered
            .get(&(fd as rb_sys::VALUE))
            .copied()
            .unwrap_or(false);
        let first = if known {
            libc::EPOLL_CTL_MOD
        } else {
            libc::EPOLL_CTL_ADD
        };
        // SAFETY: `ev` is a valid event for the call to read.
        let mut r = unsafe { libc::epoll_ctl(self.epfd, first, fd, &mut ev) };
        if r < 0 {
            let err = std::io::Error::last_os_error().raw_os_error();
            // The fd was closed and reused, or registered behind our back.
            let retry = match (first, err) {
                (libc::EPOLL_CTL_MOD, Some(libc::ENOENT)) => Some(libc::EPOLL_CTL_ADD),
                (libc::EPOLL_CTL_ADD, Some(libc::EEXIST)) => Some(libc::EPOLL_CTL_MOD),
                _ => None,
            };
            if let Some(op) = retry {
                // SAFETY: as above.
                r = unsafe { libc::epoll_ctl(self.epfd, op, fd, &mut ev) };
            }
        }
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        self.registered.insert(fd as rb_sys::VALUE, true);
        Ok(())
    }

    pub fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Event>) -> std::io::Result<()> {
        let ms: i32 = match timeout {
            None => -1,
            Some(d) if d.is_zero() => 0,
            // Round up so a timer is never reported early.
            Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32,
        };
        let epfd = self.epfd;
        let evs = self.events.as_mut_ptr();
        let cap = self.events.len() as i32;
        let n = if ms == 0 {
            // SAFETY: `evs` has room for `cap` events.
            unsafe { libc::epoll_wait(epfd, evs, cap, 0) }
        } else {
            let evs = evs as usize;
            // SAFETY: `evs` (room for `cap` events) is owned by `self`, borrowed for the whole
            // wait; no Ruby object is touched without the GVL.
            match without_gvl(self.wake_fd, move || unsafe {
                wait_precise(epfd, evs as *mut libc::epoll_event, cap, timeout, ms)
            }) {
                NoGvl::Ran(n) => n,
                NoGvl::Panicked => return Err(std::io::Error::other("epoll wait panicked")),
                // An interrupt Ruby will not deliver yet is pending: wait
                // briefly with the GVL held instead (see NOT_RUN_WAIT_MS).
                NoGvl::NotRun => {
                    let short = if ms < 0 {
                        NOT_RUN_WAIT_MS
                    } else {
                        ms.min(NOT_RUN_WAIT_MS)
                    };
                    // SAFETY: as above, with the GVL held.
                    unsafe { libc::epoll_wait(epfd, evs as *mut libc::epoll_event, cap, short) }
                }
            }
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(());
            }
            return Err(e);
        }
        for i in 0..n as usize {
            let ev = self.events[i];
            let data = ev.u64;
            if data == WAKE_DATA {
                drain_eventfd(self.wake_fd);
                continue;
            }
            out.push(Event::Ready {
                fd: data as i32,
                revents: ev.events,
            });
        }
        Ok(())
    }
}

/// False once `epoll_pwait2` turned out to be missing (Linux < 5.11) or
/// filtered (seccomp): then timeouts are whole milliseconds.
static PWAIT2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// `epoll_wait` with a nanosecond timeout (`epoll_pwait2`), so a timer fires
/// on time instead of up to a millisecond late; `ms` (rounded up) is the
/// fallback.
///
/// # Safety
/// `evs` must be valid for writes of `cap` events.
unsafe fn wait_precise(
    epfd: i32,
    evs: *mut libc::epoll_event,
    cap: i32,
    timeout: Option<Duration>,
    ms: i32,
) -> i32 {
    use std::sync::atomic::Ordering::Relaxed;
    if PWAIT2.load(Relaxed) {
        let ts = timeout.map(|d| libc::timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        });
        let tsp = ts
            .as_ref()
            .map(|t| t as *const libc::timespec)
            .unwrap_or(std::ptr::null());
        let r = libc::syscall(
            libc::SYS_epoll_pwait2,
            epfd,
            evs,
            cap,
            tsp,
            std::ptr::null::<libc::sigset_t>(),
            0usize,
        ) as i32;
        let errno = crate::rt::last_errno();
        if r >= 0 || (errno != libc::ENOSYS && errno != libc::EPERM) {
            return r;
        }
        PWAIT2.store(false, Relaxed);
    }
    libc::epoll_wait(epfd, evs, cap, ms)
}

impl Epoll {
    /// See `Selector::disown`.
    pub fn disown(&mut self) {
        if self.epfd >= 0 {
            // SAFETY: both fds are owned by this selector and closed once
            // (marked -1 afterwards).
            unsafe {
                libc::close(self.wake_fd);
                libc::close(self.epfd);
            }
            self.epfd = -1;
            self.wake_fd = -1;
        }
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        self.disown();
    }
}
