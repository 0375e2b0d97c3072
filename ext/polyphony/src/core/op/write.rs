//! `write(io, str, *more)` and `send(io, str, flags)`: write every byte.
//!
//! The string is frozen-copied (`rb_str_new_frozen`, which shares the bytes)
//! so the caller mutating its string cannot move the memory the kernel reads.
//!
//! - io_uring, sockets (`send_flags` given): `IORING_OP_SEND` for every
//!   chunk, from the frozen copy kept in the op slot, or (strings of up to
//!   `COPY_MAX` bytes) from a copy of the bytes in a pooled buffer. The fiber
//!   waits for the completion (that wait is the call's switchpoint), and the
//!   sends of all fibers go to the kernel in the ring's next batch, with no
//!   send(2) each.
//! - io_uring, other fds: bytes the fd takes at once go out with a
//!   non-blocking `pwritev2(RWF_NOWAIT)` (no ring round trip, a snooze as
//!   switchpoint); the rest through `IORING_OP_WRITE`.
//! - epoll: non-blocking write(2)/send(2), parking on writability on EAGAIN.
//!
//! Cancellation: an exception raised into the waiting fiber (`move_on_after`,
//! `Fiber#stop`) cancels the ring operation and raises; the slot keeps the
//! copy alive until the kernel reports the cancel or the completion, so the
//! bytes already taken are sent and no memory is read after it is freed.

use crate::rt::Error;
use rb_sys::VALUE;

use super::{ensure_nonblock, retry_nonblocking, OpSlot, WRITABLE};
use crate::core::Backend;
use crate::rt::{errno_error, runtime_error, str_bytes};

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
    b.raise_pending()?;
    // Most writes are taken whole by one non-blocking call: that needs no
    // frozen copy (nothing can run before the call returns).
    // SAFETY: a live String (checked by the caller); reading its length does not allocate or raise.
    let len0 = unsafe { rb_sys::RSTRING_LEN(s) as usize };
    let mut off = 0usize;
    let uring = b.is_uring();
    // Sockets on io_uring: the ring's send costs less than a send(2) call,
    // and the fiber must switch anyway.
    let ring_send = uring && send_flags.is_some();
    if let (true, Some(flags)) = (ring_send, send_flags) {
        if len0 > 0 && len0 <= COPY_MAX {
            return send_copied(b, fd, s, flags);
        }
    }
    if !ring_send && len0 > 0 && len0 <= 1 << 30 {
        if let Some(n) = write_ready(fd, s, 0, len0, send_flags)? {
            if n == len0 {
                b.switchpoint_after_sync()?;
                return Ok(n);
            }
            off = n;
        }
    }
    // SAFETY: GVL held; allocates or updates an object from live values, with no `RefCell` borrow
    // held (a GC here may mark).
    let frozen = unsafe { rb_sys::rb_str_new_frozen(s) };
    // SAFETY: a live String (checked by the caller); reading its length does not allocate or raise.
    let len = unsafe { rb_sys::RSTRING_LEN(frozen) as usize };
    if !uring {
        ensure_nonblock(fd);
    }
    // io_uring, not a socket: bytes the fd takes at once go out with a
    // non-blocking call (no ring round trip); the rest through the ring.
    // `direct` tells if the last bytes went the direct way (the call must
    // still be a switchpoint).
    let mut direct = false;
    while off < len {
        let chunk = (len - off).min(1 << 30);
        if uring && !ring_send {
            if let Some(n) = write_ready(fd, frozen, off, chunk, send_flags)? {
                off += n;
                direct = true;
                continue;
            }
            direct = false;
        }
        let n = if uring {
            let mut slot = OpSlot::on_fd(b.current_fiber(), fd);
            slot.keep = frozen;
            // SAFETY: `frozen` is a frozen String kept alive and marked by the slot (`keep`)
            // while the kernel reads it; `off` is below its length.
            let src = |_: &OpSlot| unsafe { (rb_sys::RSTRING_PTR(frozen) as *const u8).add(off) };
            ring_write(b, fd, slot, src, chunk, send_flags)?.0
        } else {
            // SAFETY: `frozen` is alive (`rb_gc_guard!` below) and cannot change; `off + chunk`
            // is within its bytes.
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
    rb_sys::rb_gc_guard!(frozen);
    Ok(len)
}

/// Ring sends of strings up to this size copy the bytes into a pooled
/// buffer (`send_copied`) instead of making a frozen String copy: a short
/// copy costs less than an object for the GC to collect.
const COPY_MAX: usize = super::MIN_POOLED;

/// io_uring send of all of `s` (at most `COPY_MAX` bytes) through a copy in
/// a pooled buffer that the op slot owns while the send is in flight. The
/// fiber waits for each completion; a cancelled send's buffer is freed with
/// its slot once the kernel is done with it.
fn send_copied(b: &Backend, fd: i32, s: VALUE, flags: i32) -> Result<usize, Error> {
    let mut buf = b.take_buf(COPY_MAX);
    // SAFETY: `s` is a live String, copied before any Ruby call.
    buf.extend_from_slice(unsafe { str_bytes(s) });
    ring_send_buf(b, fd, buf, flags)
}

/// io_uring send of all of `buf`, which the op slot owns while a send is in
/// flight (and which goes back to the pool after).
fn ring_send_buf(b: &Backend, fd: i32, mut buf: Vec<u8>, flags: i32) -> Result<usize, Error> {
    let len = buf.len();
    let mut off = 0usize;
    while off < len {
        let mut slot = OpSlot::on_fd(b.current_fiber(), fd);
        slot.buf = buf;
        // SAFETY: `off` is below the buffer's length; the slot owns the buffer while the kernel
        // reads it.
        let src = |slot: &OpSlot| unsafe { slot.buf.as_ptr().add(off) };
        let (n, slot) = ring_write(b, fd, slot, src, len - off, Some(flags))?;
        buf = slot.buf;
        off += n;
    }
    b.give_buf(buf);
    Ok(len)
}

/// Sends all of `buf` (bytes of the caller's, not a Ruby String: a
/// buffer from `Backend::take_buf`, which goes back to the pool) to socket
/// `fd`, as `write_all` with send flags 0 does: on io_uring the buffer
/// itself goes through the ring; else non-blocking send(2)s wait for
/// writability. The HTTP server's responses (`ruby_api/http_request.rs`).
pub fn send_buf(b: &Backend, fd: i32, buf: Vec<u8>) -> Result<usize, Error> {
    b.raise_pending()?;
    if buf.is_empty() {
        b.give_buf(buf);
        return Ok(0);
    }
    if b.is_uring() {
        return ring_send_buf(b, fd, buf, 0);
    }
    // (MSG_DONTWAIT: no O_NONBLOCK needed.)
    let mut off = 0usize;
    let sent = loop {
        if off == buf.len() {
            break Ok(off);
        }
        let rest = &buf[off..];
        // SAFETY: `rest` is valid for its length; the call never blocks.
        match retry_nonblocking(b, fd, WRITABLE, || unsafe {
            send_now(fd, rest.as_ptr(), rest.len(), 0)
        }) {
            Ok(n) => off += n as usize,
            Err(e) => break Err(e),
        }
    };
    b.give_buf(buf);
    let n = sent?;
    b.switchpoint_after_sync()?;
    Ok(n)
}

/// One `IORING_OP_SEND` (`send_flags` given) or `IORING_OP_WRITE` of `chunk`
/// bytes at `src(slot)`, memory the slot keeps alive (`keep` or `buf`) while
/// the op is in flight. Returns the bytes written (0 when the fd said
/// EAGAIN: the fiber then waited until it is writable) and the freed slot.
fn ring_write(
    b: &Backend,
    fd: i32,
    slot: OpSlot,
    src: impl FnOnce(&OpSlot) -> *const u8,
    chunk: usize,
    send_flags: Option<i32>,
) -> Result<(usize, OpSlot), Error> {
    let (key, res) = b.submit_and_await(slot, |slot| {
        let ptr = src(slot);
        match send_flags {
            Some(f) => io_uring::opcode::Send::new(io_uring::types::Fd(fd), ptr, chunk as u32)
                .flags(f | libc::MSG_NOSIGNAL)
                .build(),
            None => io_uring::opcode::Write::new(io_uring::types::Fd(fd), ptr, chunk as u32)
                .offset(u64::MAX)
                .build(),
        }
    })?;
    let slot = b
        .free_op(key)
        .ok_or_else(|| runtime_error("write: operation slot lost"))?;
    if res == -libc::EAGAIN {
        b.wait_ready(fd, WRITABLE)?;
        return Ok((0, slot));
    }
    if res < 0 {
        return Err(errno_error(-res, call_name(send_flags)));
    }
    Ok((res as usize, slot))
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
    // SAFETY: `s` is a live String the caller holds, `off + chunk` within its bytes; the calls
    // never block (MSG_DONTWAIT, RWF_NOWAIT) and run no Ruby code.
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
    match crate::rt::last_errno() {
        libc::EAGAIN | libc::EOPNOTSUPP | libc::EINVAL | libc::EINTR => Ok(None),
        e => Err(errno_error(e, call_name(send_flags))),
    }
}

/// `Backend#write(io, *strings)`: every string in order; returns the total.
/// Several strings are joined and written as one, so another fiber's write
/// cannot land between them (`p 1` writes `"1"` and `"\n"`).
pub fn write(b: &Backend, fd: i32, strings: &[VALUE]) -> Result<usize, Error> {
    b.raise_pending()?;
    match strings {
        [] => Ok(0),
        [s] => write_all(b, fd, *s, None),
        _ => {
            let total: usize = strings
                .iter()
                // SAFETY: a live String (checked by the caller); reading its length does not
                // allocate or raise.
                .map(|s| unsafe { rb_sys::RSTRING_LEN(*s) as usize })
                .sum();
            // SAFETY: GVL held; `rb_str_cat` of raw bytes of live Strings into a new buffer
            // does no encoding check and cannot raise.
            let joined = unsafe {
                let j = rb_sys::rb_str_buf_new(total as _);
                for s in strings {
                    // Raw bytes: no encoding check that could raise here.
                    rb_sys::rb_str_cat(j, rb_sys::RSTRING_PTR(*s), rb_sys::RSTRING_LEN(*s));
                }
                j
            };
            let n = write_all(b, fd, joined, None);
            rb_sys::rb_gc_guard!(joined);
            n
        }
    }
}
