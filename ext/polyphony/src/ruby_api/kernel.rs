//! The fiber-aware `Kernel` methods defined natively: `snooze`, `suspend`
//! and `sleep` (the rest of `Kernel`'s patches are Ruby, in
//! `extensions/kernel.rb` and `extensions/object.rb`).

use magnus::{Error, Module, Ruby, Value};

use crate::core::{op, Backend};
use crate::rt::{duration, is_nil, raw, val};

/// `snooze`: lets every other runnable fiber run once, then goes on.
fn current_snooze() -> Result<Value, Error> {
    Backend::current()?.snooze().map(val).map_err(Into::into)
}

/// `sleep(duration = nil)`: parks the current fiber for `duration` seconds
/// (a timer; woken early by any schedule, whose value it returns), or until
/// scheduled when no duration is given. Exceptions scheduled meanwhile are
/// raised; the timer is cancelled either way.
fn current_sleep(args: &[Value]) -> Result<Value, Error> {
    crate::rt::check_arity(args, 0, 1)?;
    let b = Backend::current()?;
    match args.first().map(|v| raw(*v)).filter(|v| !is_nil(*v)) {
        None => b.wait_event(true).map(val).map_err(Into::into),
        Some(d) => op::sleep::sleep(&b, duration(d)?)
            .map(val)
            .map_err(Into::into),
    }
}

/// `suspend`: parks the current fiber until something schedules it; an
/// exception scheduled into it is raised.
fn current_suspend() -> Result<Value, Error> {
    let v = Backend::current()?.switch_fiber()?;
    crate::rt::raise_if_exception(v)
        .map(val)
        .map_err(Into::into)
}

pub fn init(ruby: &Ruby) -> Result<(), Error> {
    let kernel = ruby.module_kernel();
    kernel.define_private_method("snooze", magnus::function!(current_snooze, 0))?;
    kernel.define_private_method("suspend", magnus::function!(current_suspend, 0))?;
    ruby.class_object()
        .define_method("sleep", magnus::function!(current_sleep, -1))?;
    Ok(())
}
