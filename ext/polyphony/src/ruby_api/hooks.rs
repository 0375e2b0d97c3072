//! `Polyphony.__resolve_hooks__(module)`: called once by
//! `lib/polyphony/core/hooks.rb` to hand the hook table (`rt/hooks.rs`)
//! its Ruby side.

use magnus::{Error, RModule, Value};

use crate::rt::{hooks, raw, QTRUE};

/// Checks and remembers the hooks of `module` (ArgumentError if one is
/// missing or takes other arguments; TypeError if `module` is not a
/// Module).
fn resolve_hooks(module: Value) -> Result<Value, Error> {
    let m = raw(module);
    // SAFETY: GVL held; `rb_obj_is_kind_of` does not raise.
    if unsafe { rb_sys::rb_obj_is_kind_of(m, rb_sys::rb_cModule) } != QTRUE {
        return Err(crate::rt::type_error("hooks must be a Module").into());
    }
    hooks::resolve(m)?;
    Ok(module)
}

pub fn init(polyphony: RModule) -> Result<(), Error> {
    polyphony.define_module_function("__resolve_hooks__", magnus::function!(resolve_hooks, 1))?;
    Ok(())
}
