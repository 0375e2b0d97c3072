//! `read(io, buffer, length, to_eof, pos)` and `read_loop` / `feed_loop`,
//! and `recv` / `recv_loop`, which are the same operation with recv(2)
//! semantics (io_uring `IORING_OP_RECV`; epoll `recv(MSG_DONTWAIT)`).
//!
//! io_uring: an `IORING_OP_READ` into a buffer owned by the op slot (the
//! kernel may still write into it after the fiber was interrupted, until the
//! cancellation completes), copied into the Ruby string on completion. If
//! the fiber gave up but the kernel read anyway, the bytes are kept for the
//! next read of the same IO object (`Undo::Read`, `crate::core::kept`).
//! epoll: a non-blocking `read(2)` straight into the string, parking on
//! readiness while it says EAGAIN. A read that got bytes delivers them even
//! if an exception arrives at the switchpoint after it
//! (`Backend::switchpoint_after_sync`).

use crate::rt::Error;
use rb_sys::VALUE;

use super::{ensure_nonblock, OpSlot, Undo, READABLE, SMALL_READ};
use crate::core::Backend;
use crate::rt::{errno_error, QNIL};

/// The syscall named in errors: recv(2) when there are recv flags.
fn call_name(recv_flags: Option<i32>) -> &'static str {
    if recv_flags.is_some() {
        "recv"
    } else {
        "read"
    }
}

/// `IORING_RECVSEND_POLL_FIRST` (not re-exported by the io-uring crate):
/// the kernel arms its poll before trying the receive. Ring receives are
/// issued when the last read of the fd found no more data than it asked for
/// (see `Backend::read_full_fd`), so the first try would usually fail: for
/// request/response traffic this saves a failed receive per message (about
/// 3% of an echo server's CPU), and costs one poll check when data is there.
const RECVSEND_POLL_FIRST: u16 = 1;

/// Largest single read the backend issues.
pub const MAX_READ_CHUNK: usize = 1 << 20;

/// Where a read puts the bytes it got.
pub enum ReadDest {
    /// Into an existing String, from byte offset `pos` (what followed `pos`
    /// is cut).
    At(VALUE, usize),
    /// Into a new binary String of exactly the bytes read, made once they
    /// are there (the chunks of read loops); stays `nil` at EOF.
    Chunk(VALUE),
}

impl ReadDest {
    /// A fresh `Chunk` destination.
    pub fn chunk() -> Self {
        ReadDest::Chunk(QNIL)
    }

    /// The new String of a `Chunk` (`nil` if nothing was read).
    pub fn string(&self) -> VALUE {
        match self {
            ReadDest::At(s, _) => *s,
            ReadDest::Chunk(s) => *s,
        }
    }

    /// Makes an `At` String writable (see `rt::str_modify`): called before
    /// every write into it that follows a switch, since another fiber may
    /// have frozen, locked or shared it while this one waited.
    fn modify(&self) -> Result<(), Error> {
        match self {
            ReadDest::At(s, _) => crate::rt::str_modify(*s),
            ReadDest::Chunk(_) => Ok(()),
        }
    }

    /// Stores `bytes` (read elsewhere) as the result.
    fn put(&mut self, bytes: &[u8]) {
        // SAFETY: `s` is a live String made modifiable (`modify`) since the last switch;
        // `bytes` outlives the calls.
        unsafe {
            match self {
                ReadDest::At(s, pos) => {
                    // The string may have been shortened (cleared by another
                    // fiber) while the read was in flight: never expose what
                    // lies past its end.
                    let len = rb_sys::RSTRING_LEN(*s) as usize;
                    if *pos > len {
                        *pos = len;
                    }
                    // Not `rb_str_resize`: cutting a String short frees or
                    // shrinks its buffer, and the `rb_str_cat` after mallocs
                    // it again (a connection's buffer, read into and cleared
                    // per request, made Ruby's malloc accounting start a GC
                    // every few thousand requests, many of them major).
                    rb_sys::rb_str_set_len(*s, *pos as _);
                    rb_sys::rb_str_cat(*s, bytes.as_ptr() as *const _, bytes.len() as _);
                }
                ReadDest::Chunk(s) if !bytes.is_empty() => {
                    // rb_str_new makes a binary (ASCII-8BIT) String.
                    *s = rb_sys::rb_str_new(bytes.as_ptr() as *const _, bytes.len() as _);
                }
                ReadDest::Chunk(_) => {}
            }
        }
    }

    /// After a failed or empty read: an `At` string keeps only its first
    /// `pos` bytes (of the `orig_len` it had).
    fn cut(&self, orig_len: usize) {
        if let ReadDest::At(s, pos) = self {
            // A String that can no longer be written (frozen meanwhile) keeps what it has.
            if self.modify().is_ok() {
                // SAFETY: shortens a live String, just made modifiable, to at most its length.
                unsafe { rb_sys::rb_str_set_len(*s, orig_len.min(*pos) as _) };
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            // SAFETY: a live String (checked by the caller); reading its length does not allocate
            // or raise.
            ReadDest::At(s, _) => unsafe { rb_sys::RSTRING_LEN(*s) as usize },
            ReadDest::Chunk(_) => 0,
        }
    }
}

/// Reads once from `fd` (owned by IO object `owner`, or nil for a bare fd)
/// into `dest`, at most `max` bytes. `recv_flags` `Some(f)` uses recv(2)
/// instead of read(2). Returns the byte count (0 at EOF).
pub fn read_once(
    b: &Backend,
    owner: VALUE,
    fd: i32,
    dest: &mut ReadDest,
    max: usize,
    recv_flags: Option<i32>,
) -> Result<usize, Error> {
    let max = max.clamp(1, MAX_READ_CHUNK);
    b.raise_pending()?;
    dest.modify()?;
    if let Some(n) = crate::core::kept::take_bytes(b, owner, fd, max, |bytes| dest.put(bytes)) {
        return Ok(n);
    }
    if b.is_uring() {
        // Only right after a read that filled its buffer: when reads are
        // usually waiting for data (a socket of request/response traffic),
        // the extra EAGAIN syscall costs more than the ring saves.
        if b.io.read_full_fd.get() == fd {
            if let Some(r) = read_ready(b, fd, dest, max, recv_flags) {
                if !matches!(r, Ok(n) if n == max) {
                    b.io.read_full_fd.set(-1);
                }
                return r;
            }
        }
        loop {
            let mut slot = OpSlot::on_fd(b.current_fiber(), fd);
            slot.undo = Undo::Read { owner };
            slot.buf = b.take_buf(max);
            let poll_first = recv_flags.is_some() && b.io.recv_poll_first.get();
            let prio = if poll_first { RECVSEND_POLL_FIRST } else { 0 };
            let (key, res) = b.submit_and_await(slot, |s| {
                let ptr = s.buf.as_mut_ptr();
                match recv_flags {
                    Some(flags) => {
                        io_uring::opcode::Recv::new(io_uring::types::Fd(fd), ptr, max as u32)
                            .flags(flags)
                            .ioprio(prio)
                            .build()
                    }
                    None => io_uring::opcode::Read::new(io_uring::types::Fd(fd), ptr, max as u32)
                        .offset(u64::MAX)
                        .build(),
                }
            })?;
            let slot = b.free_op(key);
            let n = if res >= 0 { res as usize } else { 0 };
            if let Some(slot) = slot {
                if n > 0 {
                    // SAFETY: the kernel wrote `n` bytes (the completion's result) into the
                    // slot's buffer, which holds at least `max >= n`.
                    let bytes = unsafe { std::slice::from_raw_parts(slot.buf.as_ptr(), n) };
                    // Frozen (or locked) by another fiber while the read was in flight: the
                    // bytes stay with the IO object for its next read, the caller gets the error.
                    if let Err(e) = dest.modify() {
                        crate::core::kept::keep_bytes(b, owner, fd, bytes);
                        b.give_buf(slot.buf);
                        return Err(e);
                    }
                    dest.put(bytes);
                }
                b.give_buf(slot.buf);
            }
            if res == -libc::EAGAIN {
                b.wait_ready(fd, READABLE)?;
                continue;
            }
            if res == -libc::EINVAL && poll_first {
                // A kernel without IORING_RECVSEND_POLL_FIRST (before 5.19).
                b.io.recv_poll_first.set(false);
                continue;
            }
            if res < 0 {
                return Err(errno_error(-res, call_name(recv_flags)));
            }
            if n == max {
                b.io.read_full_fd.set(fd);
            }
            return Ok(n);
        }
    }
    let mut waited = !ensure_nonblock(fd);
    if waited {
        b.wait_ready(fd, READABLE)?;
    }
    let orig_len = dest.len();
    let r = loop {
        // Other fibers ran during a wait: the String is checked again before
        // anything is read into it (`with_read_target` fetches its pointer
        // on every attempt). Without a wait, `read_once`'s check holds.
        if waited {
            if let Err(e) = dest.modify() {
                break Err(e);
            }
        }
        // SAFETY: `with_read_target` gives a pointer valid for `max` bytes; the fd is only read.
        let n = with_read_target(b, dest, max, |ptr| unsafe {
            match recv_flags {
                Some(flags) => libc::recv(fd, ptr as *mut _, max, flags | libc::MSG_DONTWAIT),
                None => libc::read(fd, ptr as *mut _, max),
            }
        });
        if n >= 0 {
            break Ok(n);
        }
        match crate::rt::last_errno() {
            libc::EAGAIN => {
                if let Err(e) = b.wait_ready(fd, READABLE) {
                    break Err(e);
                }
                waited = true;
            }
            libc::EINTR => {}
            e => break Err(errno_error(e, call_name(recv_flags))),
        }
    };
    match r {
        Ok(n) => {
            if n == 0 {
                dest.cut(orig_len);
            }
            b.switchpoint_after_sync()?;
            Ok(n as usize)
        }
        Err(e) => {
            dest.cut(orig_len);
            Err(e)
        }
    }
}

/// One chunk of a read loop: a new binary String of what one read got, at
/// most `max` bytes; `None` at EOF.
pub fn read_chunk(
    b: &Backend,
    owner: VALUE,
    fd: i32,
    max: usize,
    recv_flags: Option<i32>,
) -> Result<Option<VALUE>, Error> {
    let mut dest = ReadDest::chunk();
    let n = read_once(b, owner, fd, &mut dest, max, recv_flags)?;
    Ok((n > 0).then(|| dest.string()))
}

/// io_uring fast path (after a read that filled its buffer): data that is
/// already there is read straight into the
/// string with a non-blocking call (`recv(MSG_DONTWAIT)`, or
/// `preadv2(RWF_NOWAIT)`, which works whatever the fd's O_NONBLOCK flag),
/// saving the ring round trip and the copy out of the op's own buffer; the
/// call is still a switchpoint. `None` when it would block (or the fd does
/// not support RWF_NOWAIT): the read then goes through the ring.
fn read_ready(
    b: &Backend,
    fd: i32,
    dest: &mut ReadDest,
    max: usize,
    recv_flags: Option<i32>,
) -> Option<Result<usize, Error>> {
    // No switch since `read_once` made `dest` modifiable.
    let orig_len = dest.len();
    // SAFETY: `ptr` is valid for `max` bytes (see `with_read_target`); RWF_NOWAIT and
    // MSG_DONTWAIT never block.
    let n = with_read_target(b, dest, max, |ptr| unsafe {
        match recv_flags {
            Some(flags) => libc::recv(fd, ptr as *mut _, max, flags | libc::MSG_DONTWAIT),
            None => {
                let iov = libc::iovec {
                    iov_base: ptr as *mut _,
                    iov_len: max,
                };
                libc::preadv2(fd, &iov, 1, -1, libc::RWF_NOWAIT)
            }
        }
    });
    if n > 0 {
        return Some(b.switchpoint_after_sync().map(|_| n as usize));
    }
    let errno = crate::rt::last_errno();
    dest.cut(orig_len);
    if n == 0 {
        // EOF (or an empty regular file read): let the ring path confirm it,
        // so that EOF handling stays in one place.
        return None;
    }
    match errno {
        libc::EAGAIN | libc::EOPNOTSUPP | libc::EINVAL | libc::EINTR => None,
        e => Some(Err(errno_error(e, call_name(recv_flags)))),
    }
}

/// Runs the read syscall `read` (given where to put at most `max` bytes, it
/// returns the count or -1) so that `dest` gets the bytes read. Small reads
/// into a string without room (and every chunk) go through a pooled buffer,
/// so the string holds exactly what arrived (no 8 KiB string for a 64-byte
/// message); the others read in place.
fn with_read_target(
    b: &Backend,
    dest: &mut ReadDest,
    max: usize,
    read: impl FnOnce(*mut u8) -> isize,
) -> isize {
    // A string that can already hold the bytes (a buffer the caller reuses)
    // is read into in place; growing one to `max` for a short read is what
    // the pooled buffer avoids.
    if let ReadDest::At(s, pos) = dest {
        // Shortened by another fiber since the caller computed `pos`.
        // SAFETY: `s` is a live String.
        *pos = (*pos).min(unsafe { rb_sys::RSTRING_LEN(*s) } as usize);
    }
    let in_place = match dest {
        ReadDest::At(s, pos) => {
            // SAFETY: a live String (checked by the caller); reading its length does not allocate
            // or raise.
            max > SMALL_READ || unsafe { rb_sys::rb_str_capacity(*s) } as usize >= *pos + max
        }
        ReadDest::Chunk(_) => false,
    };
    match dest {
        // SAFETY: `s` is a live String made modifiable by the caller (`ReadDest::modify`), of at
        // least `pos` bytes; once expanded its buffer holds `pos + max` bytes, which is what
        // `read` may write; its length is then set to what was read. `read` runs no Ruby code,
        // so the pointer stays valid. (Expanded, never resized: a resize may shrink the buffer,
        // to be grown again by the next read.)
        ReadDest::At(s, pos) if in_place => unsafe {
            let len = rb_sys::RSTRING_LEN(*s) as usize;
            if (rb_sys::rb_str_capacity(*s) as usize) < *pos + max {
                rb_sys::rb_str_modify_expand(*s, (*pos + max).saturating_sub(len) as _);
            }
            let ptr = (rb_sys::RSTRING_PTR(*s) as *mut u8).add(*pos);
            let n = read(ptr);
            rb_sys::rb_str_set_len(*s, (*pos + n.max(0) as usize) as _);
            n
        },
        _ => {
            let mut buf = b.take_buf(max);
            let n = read(buf.as_mut_ptr());
            // Nothing read (or an error): an `At` string is still cut at `pos`.
            // SAFETY: `read` wrote `n` (at most `max`, the buffer's capacity) bytes into `buf`.
            dest.put(unsafe { std::slice::from_raw_parts(buf.as_ptr(), n.max(0) as usize) });
            b.give_buf(buf);
            n
        }
    }
}

/// `Backend#read` of `fd` (owned by IO object `owner`): see the Ruby-facing documentation in `ruby_api/backend.rs`.
pub fn read(
    b: &Backend,
    (fd, owner): (i32, VALUE),
    buffer: VALUE,
    length: Option<usize>,
    to_eof: bool,
    pos: i64,
    recv: bool,
) -> Result<VALUE, Error> {
    let flags = if recv { Some(0) } else { None };
    // SAFETY: a live String (checked by the caller); reading its length does not allocate or raise.
    let cur_len = unsafe { rb_sys::RSTRING_LEN(buffer) as usize };
    let mut pos = if pos < 0 || pos as usize > cur_len {
        cur_len
    } else {
        pos as usize
    };
    if pos < cur_len {
        // SAFETY: `buffer` is a live modifiable String and `pos` is below its length.
        unsafe { rb_sys::rb_str_set_len(buffer, pos as _) };
    }
    if length == Some(0) {
        return Ok(buffer);
    }
    let mut total = 0usize;
    loop {
        let want = match length {
            Some(l) => (l - total).min(MAX_READ_CHUNK),
            None => 65536,
        };
        let n = read_once(b, owner, fd, &mut ReadDest::At(buffer, pos), want, flags)?;
        if n == 0 {
            break;
        }
        total += n;
        pos += n;
        if !to_eof || length.map(|l| total >= l).unwrap_or(false) {
            break;
        }
    }
    if total == 0 && length != Some(0) {
        return Ok(QNIL);
    }
    Ok(buffer)
}

/// An empty binary (ASCII-8BIT) String.
pub fn new_binary_string() -> VALUE {
    crate::rt::binary_str(&[])
}
