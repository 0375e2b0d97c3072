//! `waitpid(pid)`: waits for a child to exit without blocking the thread and
//! reaps it; returns `[pid, raw_status]`.
//!
//! Both selectors: `pidfd_open(2)` then a readability wait on the pidfd (an
//! io_uring poll or an epoll registration), then `waitpid(WNOHANG)`. Kernels
//! without pidfd fall back to polling `waitpid(WNOHANG)` on a short timer.
//! `pidfd_open` failure raises (`Errno::ESRCH`); an `ECHILD` from the final
//! reap (someone else reaped it) returns `[pid, 0]`.

use std::time::Duration;

use magnus::Error;

use super::READABLE;
use crate::helpers::{errno_error, last_errno};
use crate::ruby_api::backend::Backend;

fn reap(pid: i32) -> Result<Option<(i32, i32)>, Error> {
    let mut status = 0;
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

pub fn waitpid(b: &Backend, pid: i32) -> Result<(i32, i32), Error> {
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if pidfd < 0 {
        let e = last_errno();
        if e != libc::ENOSYS {
            return Err(errno_error(e, "pidfd_open"));
        }
        loop {
            if let Some(r) = reap(pid)? {
                return Ok(r);
            }
            super::sleep::sleep(b, Duration::from_millis(5))?;
        }
    }
    struct Close(i32);
    impl Drop for Close {
        fn drop(&mut self) {
            unsafe { libc::close(self.0) };
        }
    }
    let _g = Close(pidfd);
    loop {
        if let Some(r) = reap(pid)? {
            return Ok(r);
        }
        b.wait_ready(pidfd, READABLE)?;
    }
}
