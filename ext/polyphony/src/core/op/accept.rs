//! `accept(server, socket_class)`: one connection, wrapped with
//! `socket_class.for_fd(fd)` (a real socket object, binary mode).
//! io_uring: `IORING_OP_ACCEPT`; epoll: `accept4(SOCK_NONBLOCK)` + readiness.
//! The new fd is close-on-exec; if wrapping it fails it is closed, never leaked.
//! A connection the kernel accepted after the fiber gave up is kept for the
//! next accept of the same server object (`Undo::Accept`, `crate::core::kept`).

use crate::rt::id;
use crate::rt::Error;
use rb_sys::VALUE;

use super::{ensure_nonblock, retry_nonblocking, OpSlot, Undo, READABLE};
use crate::core::Backend;
use crate::rt::{call, errno_error};

pub fn accept_fd(b: &Backend, owner: VALUE, fd: i32) -> Result<i32, Error> {
    b.raise_pending()?;
    if let Some(cfd) = crate::core::kept::take_fd(owner, fd) {
        b.switchpoint_after_sync()?;
        return Ok(cfd);
    }
    if b.is_uring() {
        loop {
            let mut slot = OpSlot::on_fd(b.current_fiber(), fd);
            slot.undo = Undo::Accept { owner };
            let (key, res) = b.submit_and_await(slot, |_| {
                io_uring::opcode::Accept::new(
                    io_uring::types::Fd(fd),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
                .flags(libc::SOCK_CLOEXEC)
                .build()
            })?;
            b.free_op(key);
            if res == -libc::EAGAIN {
                b.wait_ready(fd, READABLE)?;
                continue;
            }
            if res < 0 {
                return Err(errno_error(-res, "accept"));
            }
            return Ok(res);
        }
    }
    ensure_nonblock(fd);
    // SAFETY: accept4 with null address pointers (none wanted) on the server's fd; the result
    // is checked by `retry_nonblocking`.
    let n = retry_nonblocking(b, fd, READABLE, || unsafe {
        libc::accept4(
            fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        ) as isize
    })?;
    // Accepted: delivered, whatever arrives at the switchpoint.
    b.switchpoint_after_sync()?;
    Ok(n as i32)
}

/// Wraps an accepted fd in `klass`; closes it if that fails.
pub fn wrap(klass: VALUE, fd: i32) -> Result<VALUE, Error> {
    // SAFETY: GVL held; allocates or updates an object from live values, with no `RefCell` borrow
    // held (a GC here may mark).
    let fdv = unsafe { rb_sys::rb_int2inum(fd as isize) };
    match call(klass, id!("for_fd"), &[fdv]) {
        Ok(sock) => {
            let _ = call(sock, id!("binmode"), &[]);
            let _ = call(sock, id!("sync="), &[crate::rt::QTRUE]);
            Ok(sock)
        }
        Err(e) => {
            // SAFETY: closes an fd this code owns and no one else holds.
            unsafe { libc::close(fd) };
            Err(e)
        }
    }
}

pub fn accept(b: &Backend, owner: VALUE, fd: i32, klass: VALUE) -> Result<VALUE, Error> {
    let cfd = accept_fd(b, owner, fd)?;
    wrap(klass, cfd)
}
