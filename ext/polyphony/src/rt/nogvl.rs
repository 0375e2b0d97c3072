//! Running a blocking system call with the GVL released.
//!
//! The closure runs without the GVL (it must not touch Ruby objects). A panic
//! in it is caught there (it may not unwind into Ruby's C frames) and
//! reported as [`NoGvl::Panicked`], which the callers turn into an error. The unblocking
//! function is called by Ruby from another thread (Thread#raise, Thread#kill,
//! signals) and must make the blocking call return promptly; here it writes
//! to the backend's wake-up eventfd.

use std::ffi::c_void;

/// How a call without the GVL went.
pub enum NoGvl<R> {
    /// The closure ran and returned this.
    Ran(R),
    /// Ruby had an interrupt pending before the call started, so the
    /// closure did not run (see [`NOT_RUN_WAIT_MS`]).
    NotRun,
    /// The closure panicked (a bug of ours): the caller reports an error.
    Panicked,
}

struct Call<F, R> {
    f: Option<F>,
    result: NoGvl<R>,
}

/// Runs the closure of the `Call` that `data` points to.
///
/// # Safety
/// `data` must point to a live `Call<F, R>` that nothing else uses during
/// the call (`without_gvl` passes its own local).
unsafe extern "C" fn trampoline<F: FnOnce() -> R, R>(data: *mut c_void) -> *mut c_void {
    // SAFETY: see the function's contract.
    let call = unsafe { &mut *(data as *mut Call<F, R>) };
    if let Some(f) = call.f.take() {
        call.result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(r) => NoGvl::Ran(r),
            Err(_) => NoGvl::Panicked,
        };
    }
    std::ptr::null_mut()
}

/// The unblocking function: wakes the wait by writing to the eventfd whose
/// number `data` carries.
///
/// # Safety
/// None beyond `write(2)`'s: `data` is an fd number, never dereferenced
/// (a stale one only gives EBADF). It is async-signal-safe.
unsafe extern "C" fn wake_eventfd(data: *mut c_void) {
    let fd = data as usize as i32;
    let one: u64 = 1;
    // SAFETY: `one` is 8 readable bytes.
    unsafe { libc::write(fd, &one as *const u64 as *const c_void, 8) };
}

/// Calls `f` without the GVL; `wake_fd` is written to when Ruby wants the
/// call interrupted. Pending interrupts are not raised here: the caller checks
/// them (under `rb_protect`) once its own state is consistent.
///
/// The unblocking function only writes to an eventfd, so it is declared
/// async-signal-safe: otherwise Ruby 3.1 starts a helper thread for every
/// blocking call of a single-threaded program, and that thread inherits the
/// caller's `Thread.handle_interrupt` mask — under `:never` (as in
/// `Kernel#p`) it can never be killed, and joining it hangs the process.
pub fn without_gvl<F: FnOnce() -> R, R>(wake_fd: i32, f: F) -> NoGvl<R> {
    let mut call = Call {
        f: Some(f),
        result: NoGvl::NotRun,
    };
    // SAFETY: `call` outlives the call; `trampoline` runs `f` without the GVL (it touches no
    // Ruby object) and catches a panic; the unblocking function only writes to the eventfd.
    unsafe {
        rb_sys::rb_nogvl(
            Some(trampoline::<F, R>),
            &mut call as *mut Call<F, R> as *mut c_void,
            Some(wake_eventfd),
            wake_fd as usize as *mut c_void,
            (rb_sys::RB_NOGVL_INTR_FAIL | rb_sys::RB_NOGVL_UBF_ASYNC_SAFE) as i32,
        );
    }
    call.result
}

/// How long a selector may wait *with* the GVL held when `without_gvl`
/// could not run because an interrupt is pending that Ruby will not deliver
/// yet (masked by `Thread.handle_interrupt`). Waiting briefly instead of not
/// at all keeps such a caller from spinning at full CPU.
pub const NOT_RUN_WAIT_MS: i32 = 5;
