//! The Ruby constants the native code uses, each looked up once per process
//! and cached in a static. A constant's value is never collected while it
//! stays assigned, and none of these are reassigned.

use std::sync::atomic::{AtomicU64, Ordering};

use rb_sys::VALUE;

use super::{intern, QFALSE};

/// Resolves `path` (`"A::B"`) from `Object`, remembering it in `slot`.
#[inline(always)]
fn lookup(slot: &AtomicU64, path: &str) -> VALUE {
    let v = slot.load(Ordering::Relaxed);
    if v != 0 {
        return v;
    }
    lookup_slow(slot, path)
}

#[cold]
fn lookup_slow(slot: &AtomicU64, path: &str) -> VALUE {
    // SAFETY: called with the GVL held; `rb_cObject` is initialised before
    // any extension loads. A missing constant raises NameError, which only
    // happens if the Ruby layer was not loaded (a bug of ours, not input).
    let c = path
        .split("::")
        .fold(unsafe { rb_sys::rb_cObject }, |m, name| unsafe {
            rb_sys::rb_const_get(m, intern(name))
        });
    slot.store(c, Ordering::Relaxed);
    c
}

macro_rules! constants {
    ($($(#[$doc:meta])* $name:ident = $path:literal;)*) => {$(
        $(#[$doc])*
        #[inline]
        pub fn $name() -> VALUE {
            static SLOT: AtomicU64 = AtomicU64::new(0);
            lookup(&SLOT, $path)
        }
    )*};
}

constants! {
    /// `Fiber`.
    fiber = "Fiber";
    /// `Polyphony::Restart`: a fiber's block runs again.
    restart = "Polyphony::Restart";
    /// `Polyphony::MoveOn`: ends a fiber or a block quietly, with a value.
    move_on = "Polyphony::MoveOn";
    /// `Polyphony::Terminate`: ends a fiber quietly.
    terminate = "Polyphony::Terminate";
    /// `Polyphony::Interjection`: a block run by the receiving fiber.
    interjection = "Polyphony::Interjection";
    /// `Polyphony::Queue`: fibers' mailboxes.
    queue = "Polyphony::Queue";
    /// `Polyphony::TimeoutException`: marks a timeout given as a value.
    timeout_exception = "Polyphony::TimeoutException";
    /// `GC`.
    gc = "GC";
    /// `Errno::EBADF`.
    ebadf = "Errno::EBADF";
}

/// `BasicSocket`, or `false` while the socket library is not loaded (then
/// not cached: it may be required later).
#[inline]
pub fn basic_socket() -> VALUE {
    static SLOT: AtomicU64 = AtomicU64::new(0);
    if SLOT.load(Ordering::Relaxed) == 0 {
        // SAFETY: GVL held; `rb_const_defined` does not raise.
        if unsafe { rb_sys::rb_const_defined(rb_sys::rb_cObject, intern("BasicSocket")) } == 0 {
            return QFALSE;
        }
    }
    lookup(&SLOT, "BasicSocket")
}

/// True if `v` is a `Polyphony::Interjection`.
#[inline]
pub fn is_interjection(v: VALUE) -> bool {
    super::kind_of(v, interjection())
}
