//! The two kernel interfaces behind one small interface.
//!
//! A selector knows nothing about fibers or Ruby objects: it submits
//! operations (io_uring) or watches readiness (epoll), and `wait` reports
//! [`Event`]s. Waiting with a non-zero timeout releases the GVL; the wake-up
//! eventfd (`wake_fd`) interrupts it from any thread.

pub mod epoll;
pub mod uring;

use std::time::Duration;

/// What a wait reports.
pub enum Event {
    /// An io_uring operation with user data `key` completed with `res`
    /// (`more`: a multishot operation will report again).
    Op { key: usize, res: i32, more: bool },
    /// (epoll) `fd` became ready with `revents`.
    Ready { fd: i32, revents: u32 },
}

// One selector per thread: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Selector {
    Uring(uring::Uring),
    Epoll(epoll::Epoll),
}

/// Which selector `Backend.new` should build.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Choice {
    Auto,
    IoUring,
    Epoll,
}

impl Choice {
    /// From `POLYPHONY_BACKEND` (`io_uring` / `epoll`) or `POLYPHONY_LIBEV`
    /// (any value forces the fallback).
    pub fn from_env() -> Result<Choice, String> {
        match std::env::var("POLYPHONY_BACKEND") {
            Ok(s) if s == "io_uring" || s == "uring" => return Ok(Choice::IoUring),
            Ok(s) if s == "epoll" || s == "libev" => return Ok(Choice::Epoll),
            Ok(s) if s.is_empty() || s == "auto" => {}
            Ok(s) => {
                return Err(format!(
                    "POLYPHONY_BACKEND={s:?} is not a backend (use io_uring, epoll or auto)"
                ))
            }
            Err(_) => {}
        }
        if std::env::var_os("POLYPHONY_LIBEV").is_some() {
            return Ok(Choice::Epoll);
        }
        Ok(Choice::Auto)
    }
}

impl Selector {
    pub fn new(choice: Choice) -> Result<Selector, String> {
        match choice {
            Choice::Epoll => epoll::Epoll::new()
                .map(Selector::Epoll)
                .map_err(|e| format!("cannot create an epoll instance: {e}")),
            Choice::IoUring => uring::Uring::new().map(Selector::Uring).map_err(|e| {
                format!("io_uring is not available on this system ({e}); unset POLYPHONY_BACKEND or use POLYPHONY_BACKEND=epoll")
            }),
            Choice::Auto => match uring::Uring::new() {
                Ok(u) => Ok(Selector::Uring(u)),
                Err(_) => Selector::new(Choice::Epoll),
            },
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Selector::Uring(_) => "io_uring",
            Selector::Epoll(_) => "epoll",
        }
    }

    /// Closes this selector's fds now (a forked child's copy of another
    /// thread's selector); it must not be used afterwards, and its `Drop`
    /// closes nothing more.
    /// Whether `disown` was called: such a selector does nothing more.
    pub fn disowned(&self) -> bool {
        match self {
            Selector::Uring(u) => u.wake_fd < 0,
            Selector::Epoll(e) => e.epfd < 0,
        }
    }

    pub fn disown(&mut self) {
        match self {
            Selector::Uring(u) => u.disown(),
            Selector::Epoll(e) => e.disown(),
        }
    }

    pub fn wake_fd(&self) -> i32 {
        match self {
            Selector::Uring(u) => u.wake_fd,
            Selector::Epoll(e) => e.wake_fd,
        }
    }

    /// Waits for events: `timeout` `Some(ZERO)` polls without blocking,
    /// `None` waits until something happens (or the wake fd is written).
    pub fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Event>) -> std::io::Result<()> {
        match self {
            Selector::Uring(u) => u.wait(timeout, out),
            Selector::Epoll(e) => e.wait(timeout, out),
        }
    }
}

pub fn new_eventfd() -> std::io::Result<i32> {
    // SAFETY: no pointers; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(fd)
    }
}

pub fn drain_eventfd(fd: i32) {
    let mut buf = 0u64;
    // SAFETY: `buf` is 8 bytes, valid for writes; a non-blocking read.
    unsafe { libc::read(fd, &mut buf as *mut u64 as *mut libc::c_void, 8) };
}

pub fn wake(fd: i32) {
    let one = 1u64;
    // SAFETY: `one` is 8 readable bytes; a closed fd (-1) only gives EBADF.
    unsafe { libc::write(fd, &one as *const u64 as *const libc::c_void, 8) };
}
