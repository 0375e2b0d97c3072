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

pub fn init(ruby: &Ruby) -> Result<(), Error> {
    ruby.class_thread()
        .define_method("backend", method!(thread_backend, 0))?;
    Ok(())
}
