//! Scheduler events for a trace proc (`Backend#trace_proc=`), a debugging
//! aid: `[:spin, fiber, caller]`, `[:schedule, fiber, value, priority,
//! caller]`, `[:block, fiber, caller]`, `[:unblock, fiber, value, caller]`,
//! `[:terminate, fiber, result]`, `[:enter_poll, fiber]`,
//! `[:leave_poll, fiber]`, and custom ones from `Backend#trace`. `caller`
//! is the Ruby backtrace where the event happened.
//!
//! Off (no proc), an event costs one load and compare at its call site.
//! Events raised while the proc runs are not reported (no re-entry). If the
//! proc raises, tracing is switched off with a warning on stderr: a
//! debugging aid never changes what the traced program does.

use rb_sys::VALUE;

use crate::core::Backend;
use crate::rt::{intern, is_nil, protect, QNIL};

impl Backend {
    /// True when a trace proc is set (the check every event site makes).
    #[inline(always)]
    pub fn tracing(&self) -> bool {
        !is_nil(self.sched.trace_proc.get())
    }

    /// Sets the trace proc (nil: tracing off).
    pub fn set_trace_proc(&self, proc_: VALUE) {
        self.sched.trace_proc.set(proc_);
    }

    /// Calls the trace proc with `[event, *args]`, and the Ruby backtrace
    /// here when `with_caller`.
    #[cold]
    pub fn emit(&self, event: &str, args: &[VALUE], with_caller: bool) {
        let proc_ = self.sched.trace_proc.get();
        if is_nil(proc_) || self.sched.in_trace.replace(true) {
            return;
        }
        let r = protect(|| {
            // SAFETY: GVL held; builds a new Array of live values (no borrow
            // held) and calls the proc under `protect`.
            unsafe {
                let ary = rb_sys::rb_ary_new_capa(args.len() as std::os::raw::c_long + 2);
                rb_sys::rb_ary_push(ary, rb_sys::rb_id2sym(intern(event)));
                for a in args {
                    rb_sys::rb_ary_push(ary, *a);
                }
                if with_caller {
                    rb_sys::rb_ary_push(ary, rb_sys::rb_make_backtrace());
                }
                // The elements as arguments: `proc { |event, *args| }` and a
                // lambda of the event's arity alike.
                rb_sys::rb_apply(proc_, intern("call"), ary);
                QNIL
            }
        });
        self.sched.in_trace.set(false);
        if let Err(e) = r {
            self.sched.trace_proc.set(QNIL);
            let what = e
                .exception()
                .and_then(|x| crate::rt::call(x, intern("inspect"), &[]).ok())
                .and_then(|s| crate::rt::expect_string(s).ok())
                .map(crate::rt::str_lossy)
                .unwrap_or_else(|| "a non-local exit".into());
            let msg = format!("polyphony: the trace proc raised {what}; tracing is off");
            // SAFETY: GVL held; a new String from `msg` (copied).
            let s = unsafe { rb_sys::rb_utf8_str_new(msg.as_ptr() as *const _, msg.len() as _) };
            // SAFETY: GVL held; `rb_mKernel` is always defined.
            let _ = crate::rt::call(unsafe { rb_sys::rb_mKernel }, intern("warn"), &[s]);
        }
    }
}
