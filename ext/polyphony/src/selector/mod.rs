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

#[cfg(test)]
mod tests {
    //! The selectors on real kernel objects (a pipe, an eventfd), waiting
    //! with a zero timeout only: a blocking wait releases the GVL, which
    //! needs a Ruby VM these tests do not start.

    use super::*;

    fn pipe() -> (i32, i32) {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two fds.
        assert_eq!(
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) },
            0
        );
        (fds[0], fds[1])
    }

    fn write(fd: i32, bytes: &[u8]) {
        // SAFETY: `bytes` is valid for its length.
        let n = unsafe { libc::write(fd, bytes.as_ptr() as *const _, bytes.len()) };
        assert_eq!(n, bytes.len() as isize);
    }

    fn close(fds: &[i32]) {
        for fd in fds {
            // SAFETY: the test's own fds.
            unsafe { libc::close(*fd) };
        }
    }

    /// Polls `sel` without blocking until `found` accepts an event (at most
    /// about 2 s).
    fn poll_until(sel: &mut Selector, mut found: impl FnMut(&Event) -> bool) -> bool {
        for _ in 0..2000 {
            let mut out = Vec::new();
            sel.wait(Some(Duration::ZERO), &mut out).unwrap();
            if out.iter().any(&mut found) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    /// io_uring, or `None` (and a note) where the kernel refuses it.
    fn uring() -> Option<uring::Uring> {
        match uring::Uring::new() {
            Ok(u) => Some(u),
            Err(e) => {
                eprintln!("io_uring unavailable here ({e}): its selector tests are skipped");
                None
            }
        }
    }

    /// Submits a read of `fd` into `buf` with user data `key`; `buf` must
    /// outlive the operation (the tests poll until it completes).
    fn push_read(u: &mut uring::Uring, fd: i32, buf: &mut [u8], key: u64) {
        let entry = io_uring::opcode::Read::new(
            io_uring::types::Fd(fd),
            buf.as_mut_ptr(),
            buf.len() as u32,
        )
        .offset(u64::MAX)
        .build()
        .user_data(key);
        u.push(entry);
    }

    #[test]
    fn an_eventfd_wake_is_drained() {
        let fd = new_eventfd().unwrap();
        wake(fd);
        drain_eventfd(fd);
        let mut buf = 0u64;
        // SAFETY: `buf` is 8 writable bytes.
        let n = unsafe { libc::read(fd, &mut buf as *mut u64 as *mut _, 8) };
        assert_eq!(n, -1, "drained: nothing left to read");
        close(&[fd]);
    }

    #[test]
    fn epoll_reports_a_readable_pipe_once_per_arming() {
        let mut sel = Selector::Epoll(epoll::Epoll::new().unwrap());
        let (r, w) = pipe();
        if let Selector::Epoll(e) = &mut sel {
            e.arm(r, libc::EPOLLIN as u32).unwrap();
        }
        let mut out = Vec::new();
        sel.wait(Some(Duration::ZERO), &mut out).unwrap();
        assert!(out.is_empty(), "nothing written yet");
        write(w, b"x");
        assert!(poll_until(
            &mut sel,
            |e| matches!(e, Event::Ready { fd, revents }
            if *fd == r && revents & libc::EPOLLIN as u32 != 0)
        ));
        // One-shot: not reported again until armed again.
        out.clear();
        sel.wait(Some(Duration::ZERO), &mut out).unwrap();
        assert!(out.is_empty());
        close(&[r, w]);
    }

    #[test]
    fn a_wake_up_is_not_reported_as_an_event() {
        for mut sel in [
            Some(Selector::Epoll(epoll::Epoll::new().unwrap())),
            uring().map(Selector::Uring),
        ]
        .into_iter()
        .flatten()
        {
            wake(sel.wake_fd());
            let mut out = Vec::new();
            for _ in 0..10 {
                sel.wait(Some(Duration::ZERO), &mut out).unwrap();
            }
            assert!(
                out.is_empty(),
                "{}: the wake-up is drained silently",
                sel.kind()
            );
        }
    }

    #[test]
    fn io_uring_completes_a_read_into_memory_it_was_given() {
        let Some(mut u) = uring() else { return };
        let (r, w) = pipe();
        let mut buf = vec![0u8; 16];
        push_read(&mut u, r, &mut buf, 7);
        write(w, b"hello");
        let mut sel = Selector::Uring(u);
        let mut res = None;
        assert!(poll_until(&mut sel, |e| match e {
            Event::Op { key: 7, res: n, .. } => {
                res = Some(*n);
                true
            }
            _ => false,
        }));
        assert_eq!(res, Some(5));
        assert_eq!(&buf[..5], b"hello");
        close(&[r, w]);
    }

    #[test]
    fn io_uring_cancel_ends_an_operation_with_ecanceled() {
        let Some(mut u) = uring() else { return };
        let (r, w) = pipe();
        let mut buf = vec![0u8; 16];
        push_read(&mut u, r, &mut buf, 8);
        let mut sel = Selector::Uring(u);
        let mut out = Vec::new();
        sel.wait(Some(Duration::ZERO), &mut out).unwrap();
        assert!(out.is_empty(), "an empty pipe: the read waits");
        if let Selector::Uring(u) = &mut sel {
            u.cancel(8);
        }
        let mut res = None;
        assert!(poll_until(&mut sel, |e| match e {
            Event::Op {
                key: 8,
                res: n,
                more: false,
            } => {
                res = Some(*n);
                true
            }
            _ => false,
        }));
        assert_eq!(res, Some(-libc::ECANCELED));
        // The bytes written afterwards stay in the pipe for the next reader.
        write(w, b"later");
        let mut rest = [0u8; 8];
        // SAFETY: `rest` is 8 writable bytes.
        let n = unsafe { libc::read(r, rest.as_mut_ptr() as *mut _, 8) };
        assert_eq!(&rest[..n as usize], b"later");
        close(&[r, w]);
    }
}
