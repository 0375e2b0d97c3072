//! `write(io, str, *more)` and `send(io, str, flags)`: write every byte.
//!
//! The string is frozen-copied (`rb_str_new_frozen`, which shares the bytes)
//! so the caller mutating its string cannot move the memory the kernel reads.
//! io_uring: `IORING_OP_WRITE`/`SEND` with the copy kept in the op slot;
//! epoll: non-blocking write(2)/send(2), parking on writability on EAGAIN.

use magnus::Error;
use rb_sys::VALUE;

use super::{ensure_nonblock, retry_nonblocking, OpSlot, WRITABLE};
use crate::helpers::{errno_error, str_bytes};
use crate::ruby_api::backend::Backend;

/// One non-blocking send(2) of `len` bytes at `ptr` (no SIGPIPE).
///
/// # Safety
/// `ptr` must point at `len` readable bytes.
unsafe fn send_now(fd: i32, ptr: *const u8, len: usize, flags: i32) -> isize {
    libc::send(
        fd,
        ptr as *const _,
        len,
        flags | libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
    )
}

/// The syscall named in errors: send(2) when there are send flags.
fn call_name(send_flags: Option<i32>) -> &'static str {
    if send_flags.is_some() {
        "send"
    } else {
        "write"
    }
}

/// Writes all of `s` (a String) to `fd`; `send_flags` `Some` uses send(2).
pub fn write_all(b: &Backend, fd: i32, s: VALUE, send_flags: Option<i32>) -> Result<usize, Error> {
    // Most writes are taken whole by one non-blocking call: that needs no
    // frozen copy (nothing can run before the call returns).
    let len0 = unsafe { rb_sys::RSTRING_LEN(s) as usize };
    let mut off = 0usize;
    if len0 > 0 && len0 <= 1 << 30 {
        if let Some(n) = write_ready(fd, s, 0, len0, send_flags)? {
            if n == len0 {
                b.switchpoint_after_sync()?;
                return Ok(n);
            }
            off = n;
        }
    }
    let frozen = unsafe { rb_sys::rb_str_new_frozen(s) };
    let len = unsafe { rb_sys::RSTRING_LEN(frozen) as usize };
    let uring = b.is_uring();
    if !uring {
        ensure_nonblock(fd);
    }
    // io_uring: bytes the fd takes at once go out with a non-blocking call
    // (no ring round trip); the rest through the ring. `direct` tells if the
    // last bytes went the direct way (the call must still be a switchpoint).
    let mut direct = false;
    while off < len {
        let chunk = (len - off).min(1 << 30);
        if uring {
            if let Some(n) = write_ready(fd, frozen, off, chunk, send_flags)? {
                off += n;
                direct = true;
                continue;
            }
            direct = false;
        }
        let n = if uring {
            let mut slot = OpSlot::on_fd(b.current_fiber(), fd);
            slot.keep.push(frozen);
            let (key, res) = b.submit_and_await(slot, |_| unsafe {
                let ptr = (rb_sys::RSTRING_PTR(frozen) as *const u8).add(off);
                match send_flags {
                    Some(f) => {
                        io_uring::opcode::Send::new(io_uring::types::Fd(fd), ptr, chunk as u32)
                            .flags(f | libc::MSG_NOSIGNAL)
                            .build()
                    }
                    None => {
                        io_uring::opcode::Write::new(io_uring::types::Fd(fd), ptr, chunk as u32)
                            .offset(u64::MAX)
                            .build()
                    }
                }
            })?;
            b.free_op(key);
            if res == -libc::EAGAIN {
                b.wait_ready(fd, WRITABLE)?;
                continue;
            }
            if res < 0 {
                return Err(errno_error(-res, call_name(send_flags)));
            }
            res as usize
        } else {
            let n = retry_nonblocking(b, fd, WRITABLE, || unsafe {
                let bytes = str_bytes(frozen);
                let ptr = bytes.as_ptr().add(off);
                match send_flags {
                    Some(f) => send_now(fd, ptr, chunk, f),
                    None => libc::write(fd, ptr as *const _, chunk),
                }
            })?;
            n as usize
        };
        off += n;
    }
    if !uring || direct {
        b.switchpoint_after_sync()?;
    }
    std::hint::black_box(frozen);
    Ok(len)
}

/// One non-blocking write of `s[off, chunk]` (`send(MSG_DONTWAIT)`, or
/// `pwritev2(RWF_NOWAIT)`, whatever the fd's O_NONBLOCK flag): `Some(bytes)`,
/// or `None` when it would block or the fd does not support RWF_NOWAIT.
fn write_ready(
    fd: i32,
    s: VALUE,
    off: usize,
    chunk: usize,
    send_flags: Option<i32>,
) -> Result<Option<usize>, Error> {
    let n = unsafe {
        let ptr = (rb_sys::RSTRING_PTR(s) as *const u8).add(off);
        match send_flags {
            Some(f) => send_now(fd, ptr, chunk, f),
            None => {
                let iov = libc::iovec {
                    iov_base: ptr as *mut _,
                    iov_len: chunk,
                };
                libc::pwritev2(fd, &iov, 1, -1, libc::RWF_NOWAIT)
            }
        }
    };
    if n > 0 {
        return Ok(Some(n as usize));
    }
    if n == 0 {
        return Ok(None);
    }
    match crate::helpers::last_errno() {
        libc::EAGAIN | libc::EOPNOTSUPP | libc::EINVAL | libc::EINTR => Ok(None),
        e => Err(errno_error(e, call_name(send_flags))),
    }
}

/// `Backend#write(io, *strings)`: every string in order; returns the total.
/// Several strings are joined and written as one, so another fiber's write
/// cannot land between them (`p 1` writes `"1"` and `"\n"`).
pub fn write(b: &Backend, fd: i32, strings: &[VALUE]) -> Result<usize, Error> {
    match strings {
        [] => Ok(0),
        [s] => write_all(b, fd, *s, None),
        _ => {
            let total: usize = strings
                .iter()
                .map(|s| unsafe { rb_sys::RSTRING_LEN(*s) as usize })
                .sum();
            let joined = unsafe {
                let j = rb_sys::rb_str_buf_new(total as _);
                for s in strings {
                    // Raw bytes: no encoding check that could raise here.
                    rb_sys::rb_str_cat(j, rb_sys::RSTRING_PTR(*s), rb_sys::RSTRING_LEN(*s));
                }
                j
            };
            let n = write_all(b, fd, joined, None);
            std::hint::black_box(joined);
            n
        }
    }
}
