//! `Process::Status.from_status_array([pid, raw_status])`: a
//! `Process::Status` for a wait's raw result (`Backend#waitpid` returns
//! such pairs). Ruby has no public constructor for it; the one way is
//! `$?`, so the status is made there and the caller's `$?` put back.

use magnus::{Error, Module, Object, RArray, Ruby, TryConvert, Value};

use crate::rt::{self, is_nil, val};

fn from_status_array(_klass: Value, pair: Value) -> Result<Value, Error> {
    let pair = RArray::from_value(pair)
        .filter(|a| a.len() == 2)
        .ok_or_else(|| rt::type_error("expected [pid, raw_status]"))?;
    let pid: i32 = TryConvert::try_convert(pair.entry::<Value>(0)?)?;
    let status: i32 = TryConvert::try_convert(pair.entry::<Value>(1)?)?;
    // SAFETY: GVL held; `$?` is the current thread's; the calls do not
    // raise.
    unsafe {
        let old = rb_sys::rb_last_status_get();
        rb_sys::rb_last_status_set(status, pid);
        let made = rb_sys::rb_last_status_get();
        if !is_nil(old) {
            let old_pid: i32 =
                TryConvert::try_convert(val(rt::call(old, rt::intern("pid"), &[])?))?;
            let old_raw: i32 =
                TryConvert::try_convert(val(rt::call(old, rt::intern("to_i"), &[])?))?;
            rb_sys::rb_last_status_set(old_raw, old_pid);
        }
        Ok(val(made))
    }
}

pub fn init(ruby: &Ruby) -> Result<(), Error> {
    let status = ruby
        .class_object()
        .const_get::<_, magnus::RModule>("Process")?
        .const_get::<_, magnus::RClass>("Status")?;
    status.define_singleton_method("from_status_array", magnus::method!(from_status_array, 1))?;
    Ok(())
}
