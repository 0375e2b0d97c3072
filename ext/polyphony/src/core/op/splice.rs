//! `splice(src, dest, maxlen)`, `tee(src, dest, maxlen)` and
//! `double_splice(src, dest)`: zero-copy moves through pipes.
//!
//! io_uring: `IORING_OP_SPLICE` / `IORING_OP_TEE`; epoll: splice(2)/tee(2)
//! with `SPLICE_F_NONBLOCK`, parking on the source's readability and then the
//! destination's writability while they say EAGAIN. `maxlen < 0` repeats with
//! `|maxlen|` until EOF and returns the total.

use crate::rt::Error;

use super::{ensure_nonblock, OpSlot, READABLE, WRITABLE};
use crate::core::Backend;
use crate::rt::{errno_error, last_errno};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Splice,
    Tee,
}

fn once(b: &Backend, src: i32, dest: i32, len: usize, kind: Kind) -> Result<usize, Error> {
    let len = len.min(1 << 30) as u32;
    if b.is_uring() {
        loop {
            let (key, res) =
                b.submit_and_await(OpSlot::on_fd(b.current_fiber(), src), |_| match kind {
                    Kind::Splice => io_uring::opcode::Splice::new(
                        io_uring::types::Fd(src),
                        -1,
                        io_uring::types::Fd(dest),
                        -1,
                        len,
                    )
                    .flags(libc::SPLICE_F_MOVE)
                    .build(),
                    Kind::Tee => io_uring::opcode::Tee::new(
                        io_uring::types::Fd(src),
                        io_uring::types::Fd(dest),
                        len,
                    )
                    .build(),
                })?;
            b.free_op(key);
            if res == -libc::EAGAIN {
                b.wait_ready(src, READABLE)?;
                b.wait_ready(dest, WRITABLE)?;
                continue;
            }
            if res < 0 {
                return Err(errno_error(
                    -res,
                    if kind == Kind::Tee { "tee" } else { "splice" },
                ));
            }
            return Ok(res as usize);
        }
    }
    ensure_nonblock(src);
    ensure_nonblock(dest);
    let mut wait_dest = false;
    loop {
        // SAFETY: splice/tee between two fds with null offsets (the fds' own positions); errors
        // are checked below.
        let n = unsafe {
            match kind {
                Kind::Splice => libc::splice(
                    src,
                    std::ptr::null_mut(),
                    dest,
                    std::ptr::null_mut(),
                    len as usize,
                    libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
                ),
                Kind::Tee => libc::tee(src, dest, len as usize, libc::SPLICE_F_NONBLOCK),
            }
        };
        if n >= 0 {
            b.switchpoint_after_sync()?;
            return Ok(n as usize);
        }
        match last_errno() {
            libc::EAGAIN => {
                if wait_dest {
                    b.wait_ready(dest, WRITABLE)?;
                } else {
                    b.wait_ready(src, READABLE)?;
                }
                wait_dest = !wait_dest;
            }
            libc::EINTR => {}
            e => {
                return Err(errno_error(
                    e,
                    if kind == Kind::Tee { "tee" } else { "splice" },
                ))
            }
        }
    }
}

pub fn splice(b: &Backend, src: i32, dest: i32, maxlen: i64, kind: Kind) -> Result<usize, Error> {
    b.raise_pending()?;
    if maxlen >= 0 {
        return once(b, src, dest, maxlen as usize, kind);
    }
    let chunk = maxlen.unsigned_abs() as usize;
    let mut total = 0;
    loop {
        let n = once(b, src, dest, chunk, kind)?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
    }
}

/// Moves everything from `src` to `dest` through an internal pipe; returns
/// the total. The pipe is closed on every exit.
pub fn double_splice(b: &Backend, src: i32, dest: i32) -> Result<usize, Error> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(errno_error(last_errno(), "pipe"));
    }
    struct Close([i32; 2]);
    impl Drop for Close {
        fn drop(&mut self) {
            // SAFETY: the pipe's two fds belong to this guard alone.
            unsafe {
                libc::close(self.0[0]);
                libc::close(self.0[1]);
            }
        }
    }
    let guard = Close(fds);
    // A bigger pipe moves more per operation (16 times fewer for a large
    // file); the default 64 KiB stays if the system limit refuses.
    // SAFETY: fcntl on the pipe this function owns; a failure is ignored.
    let size = unsafe {
        libc::fcntl(guard.0[1], libc::F_SETPIPE_SZ, 1 << 20);
        libc::fcntl(guard.0[1], libc::F_GETPIPE_SZ)
    };
    let chunk = if size > 0 { size as usize } else { 1 << 16 };
    let mut total = 0;
    loop {
        let n = once(b, src, guard.0[1], chunk, Kind::Splice)?;
        if n == 0 {
            return Ok(total);
        }
        let mut left = n;
        while left > 0 {
            let m = once(b, guard.0[0], dest, left, Kind::Splice)?;
            if m == 0 {
                return Err(errno_error(libc::EPIPE, "splice"));
            }
            left -= m;
        }
        total += n;
    }
}
