//! The engine of a thread: what runs next, what is in flight in the kernel,
//! and what the kernel did for a fiber that gave up. It knows Ruby only
//! through `crate::rt` (values, exceptions, wrapped data) and `rb_sys`;
//! the Ruby classes that expose it are in `ruby_api/`. docs/architecture.md
//! draws the whole map.
//!
//! - [`backend`]: [`Backend`], its state and its lifetime.
//! - [`scheduler`]: the switch algorithm, the run loop, polling and timers.
//! - [`op`]: one file per operation, io_uring submission and readiness
//!   fallback side by side.
//! - [`kept`]: what an operation given up on still got (docs/io-semantics.md).
//! - [`lifecycle`]: how the scheduler starts and ends fibers, a table filled
//!   by `ruby_api/fiber/` at init.
//! - [`queue`]: the state of a `Polyphony::Queue`, one atomic step per call.
//! - [`trace`]: scheduler events for a trace proc (debugging).
//!
//! # Rules
//! - **One thread.** A backend's `Sched`, `Io` and `Stats` are touched
//!   only by its owning thread, with the GVL held (`Backend::own` checks
//!   the thread on every Ruby method). Another thread may only post mail
//!   to the inbox (a `Mutex`, with `inbox_flag`), write to the wake-up fd
//!   (`Io::wake_fd`, an atomic) and read `kind`. A close posts `IOError` to
//!   other backends' waiters the same way (`notify_close_elsewhere`).
//! - **No borrow across a switch.** No `RefCell` borrow is held across a
//!   fiber switch, a GVL release or a call into Ruby that may allocate
//!   (GC runs `mark`, which reads every cell).
//! - **Marked.** Every Ruby object a backend holds is reached by
//!   [`Backend::mark`]: queued fibers and values, timers, in-flight
//!   operations' fibers, the objects their kernel buffers belong to and
//!   their undo owners, the runners' frames and the inbox. `pended` is the
//!   one unmarked list (compared, never dereferenced).
//! - **Kernel-owned memory.** A buffer or address the kernel may still
//!   write is owned by its `OpSlot` in `Io::ops` until the completion
//!   arrives: an operation given up on is cancelled and the ring driven
//!   until it reports (`Backend::settle`). Nothing the kernel writes lives
//!   on a fiber's stack.

pub mod backend;
pub mod kept;
pub mod lifecycle;
pub mod op;
pub mod queue;
pub mod scheduler;
pub mod trace;

pub use backend::Backend;
pub use kept::Kept;
