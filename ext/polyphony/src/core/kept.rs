//! What an operation got after its fiber gave up, kept for the next one of
//! the same IO object ("undone", docs/io-semantics.md): the bytes a read
//! took, the connections an accept took.
//!
//! They are stored on the IO object itself, in a hidden instance variable
//! holding a [`Kept`] (so they can never reach another IO that reuses the fd
//! number), and die with it:
//! - `close` (from any thread), `close_read` and `reopen` call
//!   [`discard`] (through `Backend#close` and `IO#__discard_kept__`);
//! - when the IO is garbage-collected, so is its `Kept`, whose `Drop`
//!   closes the connections it still holds;
//! - in a forked child the parent's are discarded at first touch (`pid`);
//! - a `Kept` remembers the file it came from (device and inode) and is
//!   discarded if the IO's fd no longer refers to it (reopened by C code).
//!
//! A read on a bare fd number (an Integer, no IO object) keeps its bytes in
//! the thread's backend under that number until `Backend#close(fd)`.
//!
//! Everything here runs with the GVL held. [`LIVE`] counts the non-empty
//! `Kept` objects of the process, so that reads and accepts pay one atomic
//! load while nothing is kept anywhere.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use rb_sys::VALUE;

use crate::core::Backend;
use crate::rt::data::{self, Handle};
use crate::rt::{id, is_nil, protect, QNIL};

/// Non-empty `Kept` objects in the process.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Bytes and accepted fds kept for one IO object: a
/// `Polyphony::Backend::Kept` object (declared in `ruby_api/backend.rs`;
/// it holds no Ruby object).
pub struct Kept {
    /// The process that kept them (a forked child discards them).
    pid: i32,
    /// `(st_dev, st_ino)` of the file the IO had when they were kept.
    file: Cell<(u64, u64)>,
    bytes: RefCell<Vec<u8>>,
    fds: RefCell<VecDeque<i32>>,
    /// Counted in `LIVE`.
    counted: Cell<bool>,
}

impl Kept {
    fn recount(&self) {
        let nonempty = !self.bytes.borrow().is_empty() || !self.fds.borrow().is_empty();
        if nonempty != self.counted.get() {
            self.counted.set(nonempty);
            if nonempty {
                LIVE.fetch_add(1, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Drops the bytes and closes the fds (only in the process that
    /// accepted them: a child's copies are its own to close too, but never
    /// the parent's connections, which it does not own).
    fn clear(&self) {
        self.bytes.borrow_mut().clear();
        for fd in self.fds.borrow_mut().drain(..) {
            // SAFETY: `fd` was accepted for this object and is owned by it
            // alone (nothing else knows the number).
            unsafe { libc::close(fd) };
        }
        self.recount();
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        // A child closing its inherited copies is right as well: they are
        // the child's own descriptors.
        self.clear();
    }
}

fn file_of(fd: i32) -> (u64, u64) {
    // SAFETY: fstat writes into a zeroed stat buffer we own.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if fd < 0 || libc::fstat(fd, &mut st) != 0 {
            return (0, 0);
        }
        (st.st_dev, st.st_ino)
    }
}

fn ivar() -> rb_sys::ID {
    // No `@`: hidden from `instance_variables`, `inspect` and Marshal.
    id!("__polyphony_kept__")
}

/// The `Kept` of `io`, if it has one that is still valid for its fd.
fn get(io: VALUE, fd: i32) -> Option<Handle<Kept>> {
    // SAFETY: `io` is a live IO object (the caller holds it).
    let v = unsafe { rb_sys::rb_ivar_get(io, ivar()) };
    if is_nil(v) {
        return None;
    }
    let k = data::get::<Kept>(v)?;
    // SAFETY: getpid has no preconditions.
    if k.pid != unsafe { libc::getpid() } || k.file.get() != file_of(fd) {
        k.clear();
        drop_ivar(io);
        return None;
    }
    Some(k)
}

fn drop_ivar(io: VALUE) {
    // SAFETY: setting an instance variable of a live object; `protect`
    // catches a FrozenError.
    let _ = protect(|| unsafe { rb_sys::rb_ivar_set(io, ivar(), QNIL) });
}

/// The `Kept` of `io`, made if needed (`None` if the IO cannot take one).
fn get_or_make(io: VALUE, fd: i32) -> Option<Handle<Kept>> {
    if let Some(k) = get(io, fd) {
        return Some(k);
    }
    let kv = data::wrap(Kept {
        // SAFETY: getpid has no preconditions.
        pid: unsafe { libc::getpid() },
        file: Cell::new(file_of(fd)),
        bytes: RefCell::new(Vec::new()),
        fds: RefCell::new(VecDeque::new()),
        counted: Cell::new(false),
    });
    // SAFETY: as in `drop_ivar`.
    protect(|| unsafe { rb_sys::rb_ivar_set(io, ivar(), kv) }).ok()?;
    data::get::<Kept>(kv)
}

/// The fd of an IO object (-1 if closed).
fn fd_of(io: VALUE) -> i32 {
    // SAFETY: `io` is a T_FILE (checked by the callers' `owner_of`).
    unsafe {
        let fptr = (*(io as *const rb_sys::RFile)).fptr;
        if fptr.is_null() {
            -1
        } else {
            (*fptr).fd
        }
    }
}

/// Keeps `data`, read from `fd` after the reader gave up, for the next read
/// of `owner` (nil: of `fd` in this thread).
pub fn keep_bytes(b: &Backend, owner: VALUE, fd: i32, data: &[u8]) {
    if is_nil(owner) {
        b.io.fd_kept
            .borrow_mut()
            .entry(fd)
            .or_default()
            .extend_from_slice(data);
        return;
    }
    if let Some(k) = get_or_make(owner, fd_of(owner)) {
        k.bytes.borrow_mut().extend_from_slice(data);
        k.recount();
    }
    // An IO that cannot hold them (frozen) cannot be read either.
}

/// Keeps accepted connection `fd` for the next accept of server `owner`
/// (closed at once if it cannot be kept).
pub fn keep_fd(owner: VALUE, fd: i32) {
    if !is_nil(owner) {
        if let Some(k) = get_or_make(owner, fd_of(owner)) {
            k.fds.borrow_mut().push_back(fd);
            k.recount();
            return;
        }
    }
    // SAFETY: `fd` was just accepted and is owned by nobody else.
    unsafe { libc::close(fd) };
}

/// Hands up to `max` kept bytes of `owner` (or of bare `fd`) to `put`;
/// `None` if there are none.
#[inline]
pub fn take_bytes(
    b: &Backend,
    owner: VALUE,
    fd: i32,
    max: usize,
    put: impl FnOnce(&[u8]),
) -> Option<usize> {
    if is_nil(owner) {
        let mut map = b.io.fd_kept.borrow_mut();
        if map.is_empty() {
            return None;
        }
        let data = map.get_mut(&fd)?;
        let n = data.len().min(max);
        put(&data[..n]);
        data.drain(..n);
        if data.is_empty() {
            map.remove(&fd);
        }
        return Some(n);
    }
    if LIVE.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let k = get(owner, fd)?;
    let n = {
        let mut bytes = k.bytes.borrow_mut();
        if bytes.is_empty() {
            return None;
        }
        let n = bytes.len().min(max);
        let taken: Vec<u8> = bytes.drain(..n).collect();
        drop(bytes);
        // `put` may allocate (and so run GC): no borrow is held.
        put(&taken);
        n
    };
    k.recount();
    if !k.counted.get() {
        // Emptied: later reads of this IO skip the identity check.
        drop_ivar(owner);
    }
    Some(n)
}

/// Whether any bytes are kept anywhere in the process (one atomic load).
#[inline]
pub fn any() -> bool {
    LIVE.load(Ordering::Relaxed) != 0
}

/// Whether bytes are kept for IO object `owner` (open on `fd`).
pub fn has_bytes(owner: VALUE, fd: i32) -> bool {
    if is_nil(owner) || !any() {
        return false;
    }
    get(owner, fd).is_some_and(|k| !k.bytes.borrow().is_empty())
}

/// A kept connection of server `owner`, if any.
#[inline]
pub fn take_fd(owner: VALUE, fd: i32) -> Option<i32> {
    if is_nil(owner) || LIVE.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let k = get(owner, fd)?;
    let cfd = k.fds.borrow_mut().pop_front();
    k.recount();
    if !k.counted.get() {
        drop_ivar(owner);
    }
    cfd
}

/// Everything kept for `io` dies with its file (close, close_read, reopen).
pub fn discard(io: VALUE) {
    if is_nil(io) || LIVE.load(Ordering::Relaxed) == 0 {
        return;
    }
    // SAFETY: `io` is a live object.
    let v = unsafe { rb_sys::rb_ivar_get(io, ivar()) };
    if is_nil(v) {
        return;
    }
    if let Some(k) = data::get::<Kept>(v) {
        k.clear();
    }
    drop_ivar(io);
}

/// Bare fd `fd` is being closed: its kept bytes go.
pub fn forget_fd(b: &Backend, fd: i32) {
    let mut map = b.io.fd_kept.borrow_mut();
    if !map.is_empty() {
        map.remove(&fd);
    }
}

/// `Polyphony.__kept_count__`: how many IO objects (or fds) have something
/// kept, process-wide (for the conservation specs).
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}
