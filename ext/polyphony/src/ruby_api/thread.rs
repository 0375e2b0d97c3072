//! `Thread#backend`.

use magnus::{method, Error, Module, Ruby, Value};

use crate::core::Backend;
use crate::rt::{raw, val, QNIL};

/// `Thread#backend`: the thread's backend (created lazily for the current
/// thread; `nil` for another thread that has none yet).
fn thread_backend(thread: Value) -> Result<Value, Error> {
    Ok(match Backend::of_thread(raw(thread))? {
        Some(b) => val(b.value()),
        None => val(QNIL),
    })
}

/// `Thread#backend=(backend)`: the current thread's backend is replaced by
/// `backend` (made by this thread: `Polyphony::Backend.new`); the old one is
/// finalized. `ThreadError` for another thread, or a backend made by
/// another thread; `TypeError` for anything but a backend.
fn set_thread_backend(thread: Value, backend: Value) -> Result<Value, Error> {
    // SAFETY: GVL held.
    if raw(thread) != unsafe { rb_sys::rb_thread_current() } {
        return Err(
            crate::rt::thread_error("only the current thread's backend can be replaced").into(),
        );
    }
    Backend::replace_current(raw(backend))?;
    Ok(backend)
}

pub fn init(ruby: &Ruby) -> Result<(), Error> {
    ruby.class_thread()
        .define_method("backend", method!(thread_backend, 0))?;
    ruby.class_thread()
        .define_method("backend=", method!(set_thread_backend, 1))?;
    Ok(())
}
