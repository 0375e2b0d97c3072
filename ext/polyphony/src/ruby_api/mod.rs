//! Ruby-visible classes and module functions, one file per class.

pub mod backend;
pub mod fiber;
pub mod fiber_await;
pub mod fiber_scheduler;

use crate::helpers::id;
use std::cell::Cell;

use magnus::{prelude::*, Error, RModule, Ruby};
use rb_sys::VALUE;

use crate::helpers::raw;

thread_local! {
    static POLYPHONY: Cell<VALUE> = const { Cell::new(0) };
}

/// The `Polyphony` module (a constant: never collected).
pub fn polyphony_module() -> VALUE {
    let v = POLYPHONY.with(|c| c.get());
    if v != 0 {
        return v;
    }
    let m = unsafe { rb_sys::rb_const_get(rb_sys::rb_cObject, id!("Polyphony")) };
    POLYPHONY.with(|c| c.set(m));
    m
}

/// `Polyphony::TimeoutException` (defined by the Ruby layer).
pub fn timeout_exception_class() -> VALUE {
    unsafe { rb_sys::rb_const_get(polyphony_module(), id!("TimeoutException")) }
}

pub fn init(ruby: &Ruby) -> Result<(), Error> {
    let polyphony: RModule = ruby.define_module("Polyphony")?;
    let _ = raw(polyphony.as_value());
    backend::init(ruby, polyphony)?;
    fiber::init(ruby, polyphony)?;
    fiber_scheduler::init(ruby, polyphony)?;
    Ok(())
}
