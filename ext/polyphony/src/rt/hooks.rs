//! The Ruby methods native code calls back, as one table: the protocol
//! between the two layers. Their Ruby side is `Polyphony::Hooks`
//! (`lib/polyphony/core/hooks.rb`), whose comments are the contracts; it
//! calls `Polyphony.__resolve_hooks__` when it loads, which checks every
//! hook here exists with its arity and caches its id ([`resolve`]).
//!
//! Not hooks, but duck-typed protocols of objects native code is given:
//! `__read_io__`/`__write_io__` (an object standing for an IO, such as
//! `Polyphony::Pipe`; see `rt::io_fd_owner`) and `Interjection#invoke`,
//! `MoveOn#value` (the exceptions `core/` and the fiber layer treat
//! specially).

use std::sync::atomic::{AtomicU64, Ordering};

use rb_sys::VALUE;

use super::{call, intern, runtime_error, Error};

/// A hook: its index in [`HOOKS`].
#[derive(Clone, Copy)]
pub enum Hook {
    FinalizeChildren,
    FiberBodyError,
    TimeoutException,
    Write,
    StdlibWrite,
    IoWaitTimeout,
    BlockTimeout,
}

/// Name and arity (`-1`: takes a splat after its fixed arguments) of each
/// hook, in the order of [`Hook`].
const HOOKS: [(&str, i32); 7] = [
    ("finalize_children", 3),
    ("fiber_body_error", 1),
    ("timeout_exception", 1),
    ("write", -2),
    ("stdlib_write", -2),
    ("io_wait_timeout", 4),
    ("block_timeout", 3),
];

/// `Polyphony::Hooks` (0 until resolved; a constant, never collected).
static MODULE: AtomicU64 = AtomicU64::new(0);
static IDS: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];

/// Checks that `module` defines every hook with its arity, and remembers
/// them. ArgumentError naming the first that is missing or wrong.
pub fn resolve(module: VALUE) -> Result<(), Error> {
    for (i, (name, arity)) in HOOKS.iter().enumerate() {
        let id = intern(name);
        // SAFETY: GVL held; `module` is a live Module (checked by the
        // binding). `rb_respond_to` does not raise.
        if unsafe { rb_sys::rb_respond_to(module, id) } == 0 {
            return Err(super::arg_error(format!("hook {name} is not defined")));
        }
        // SAFETY: as above; `rb_obj_method_arity` of a method that exists.
        let got = unsafe { rb_sys::rb_obj_method_arity(module, id) };
        if got != *arity {
            return Err(super::arg_error(format!(
                "hook {name} takes {got} arguments, expected {arity}"
            )));
        }
        IDS[i].store(id as u64, Ordering::Relaxed);
    }
    MODULE.store(module, Ordering::Release);
    Ok(())
}

/// Calls `hook` with `args`; what it raises comes back as `Err`.
pub fn call_hook(hook: Hook, args: &[VALUE]) -> Result<VALUE, Error> {
    let module = MODULE.load(Ordering::Acquire);
    if module == 0 {
        return Err(runtime_error("polyphony's Ruby layer is not loaded"));
    }
    let id = IDS[hook as usize].load(Ordering::Relaxed) as rb_sys::ID;
    call(module, id, args)
}
