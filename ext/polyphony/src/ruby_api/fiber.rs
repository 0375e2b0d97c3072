//! Native helpers for `Fiber`: creating Polyphony fibers.
//!
//! A Polyphony fiber's body is native: it calls `Fiber#__run__(value)` (the
//! Ruby layer's lifecycle: run the block, finalize children, inform monitors)
//! under `rb_protect`, so no exception can escape into the runner that
//! resumed it. If one does (a bug in the Ruby layer), it is handed to
//! `Polyphony.__fiber_body_error__`.

use magnus::{function, Error, RModule, Ruby, Value};
use rb_sys::VALUE;

use crate::helpers::{call, intern, protect, raw, val, QNIL};
use crate::ruby_api::backend::Backend;

unsafe extern "C" fn fiber_body(
    arg: VALUE,
    _callback: VALUE,
    _argc: std::os::raw::c_int,
    _argv: *const VALUE,
    _blockarg: VALUE,
) -> VALUE {
    let r = std::panic::catch_unwind(|| {
        if let Ok(b) = Backend::current() {
            b.entered.set(true);
        }
        let fiber = rb_sys::rb_fiber_current();
        let id = intern("__run__");
        let res = protect(|| rb_sys::rb_funcallv(fiber, id, 1, &arg));
        match res {
            Ok(v) => v,
            Err(e) => {
                if let Some(exc) = e.value() {
                    let _ = call(
                        crate::ruby_api::polyphony_module(),
                        "__fiber_body_error__",
                        &[raw(exc)],
                    );
                }
                QNIL
            }
        }
    });
    r.unwrap_or(QNIL)
}

/// `Polyphony.__new_fiber__` → a new, unstarted fiber whose body runs `__run__`.
fn new_fiber() -> Result<Value, Error> {
    let f = crate::helpers::protect(|| unsafe { rb_sys::rb_fiber_new(Some(fiber_body), QNIL) })?;
    Ok(val(f))
}

pub fn init(_ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    polyphony.define_module_function("__new_fiber__", function!(new_fiber, 0))?;
    Ok(())
}
