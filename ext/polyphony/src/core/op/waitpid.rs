//! `waitpid(pid)`: waits for a child to exit without blocking the thread and
//! reaps it; returns `[pid, raw_status]`.
//!
//! Both selectors: `pidfd_open(2)` then a readability wait on the pidfd (an
//! io_uring poll or an epoll registration), then `waitpid(WNOHANG)`. Kernels
//! without pidfd fall back to polling `waitpid(WNOHANG)` on a short timer.
//! `pidfd_open` failure raises (`Errno::ESRCH`); a pid that is not a child
//! of this process raises `Errno::ECHILD`; an `ECHILD` from the final reap
//! (someone else reaped it while we waited) returns `[pid, 0]`.
//!
//! `wait_child(pid)`: the same wait, but the child is left unreaped, so that
//! Ruby's own `Process.waitpid` then reaps it at once and sets `$?` in the
//! calling thread (the fiber-aware `Process.wait*`, `system`, backticks).
//! Returns false if `pid` is not a child of this process (`ECHILD`).
//!
//! Cancellation: both are interruptible at the readiness wait (the pidfd
//! poll is cancelled like any `wait_io`); the pidfd is closed on every exit.

use std::time::Duration;

use crate::rt::Error;

use super::READABLE;
use crate::core::Backend;
use crate::rt::{errno_error, last_errno};

fn reap(pid: i32) -> Result<Option<(i32, i32)>, Error> {
    let mut status = 0;
    // SAFETY: `status` is valid for writes; WNOHANG never blocks.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    if r > 0 {
        return Ok(Some((r, status)));
    }
    if r == 0 {
        return Ok(None);
    }
    match last_errno() {
        libc::ECHILD => Ok(Some((pid, 0))),
        libc::EINTR => Ok(None),
        e => Err(errno_error(e, "waitpid")),
    }
}

/// `Some(true)` if the child has exited (not reaped), `Some(false)` if `pid`
/// is not our child, `None` while it runs.
fn exited(pid: i32) -> Result<Option<bool>, Error> {
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: `info` is valid for writes; WNOHANG never blocks.
    let r = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
    if r == 0 {
        // SAFETY: waitid filled `info` for a child-state change (or left it zeroed), so its pid
        // field is set.
        return Ok(if unsafe { info.si_pid() } != 0 {
            Some(true)
        } else {
            None
        });
    }
    match last_errno() {
        libc::ECHILD => Ok(Some(false)),
        libc::EINTR => Ok(None),
        e => Err(errno_error(e, "waitid")),
    }
}

/// Waits until `check` gives an answer: on the child's pidfd, or by polling
/// where the kernel has no pidfd.
fn wait_for<T>(
    b: &Backend,
    pid: i32,
    check: impl Fn(i32) -> Result<Option<T>, Error>,
) -> Result<T, Error> {
    // SAFETY: pidfd_open takes a pid and flags and returns an fd or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if pidfd < 0 {
        let e = last_errno();
        if e != libc::ENOSYS {
            return Err(errno_error(e, "pidfd_open"));
        }
        loop {
            if let Some(r) = check(pid)? {
                return Ok(r);
            }
            super::sleep::sleep(b, Duration::from_millis(5))?;
        }
    }
    struct Close(i32);
    impl Drop for Close {
        fn drop(&mut self) {
            // SAFETY: closes an fd this code owns and no one else holds.
            unsafe { libc::close(self.0) };
        }
    }
    let _g = Close(pidfd);
    loop {
        if let Some(r) = check(pid)? {
            return Ok(r);
        }
        b.wait_ready(pidfd, READABLE)?;
    }
}

pub fn waitpid(b: &Backend, pid: i32) -> Result<(i32, i32), Error> {
    if pid > 0 && exited(pid)? == Some(false) {
        return Err(errno_error(libc::ECHILD, "waitpid"));
    }
    wait_for(b, pid, reap)
}

pub fn wait_child(b: &Backend, pid: i32) -> Result<bool, Error> {
    if pid <= 0 {
        return Err(crate::rt::arg_error(format!(
            "wait_child needs a child pid, not {pid}"
        )));
    }
    match exited(pid)? {
        Some(r) => Ok(r),
        None => wait_for(b, pid, exited),
    }
}
