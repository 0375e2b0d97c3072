//! Native core of the `polyphony` gem: a per-thread fiber scheduler whose
//! blocking operations go through io_uring (preferred) or epoll (fallback).
//!
//! Floors, lowest first; a module imports only from the floors below it
//! (docs/architecture.md draws the map, `bin/module-graph` checks it):
//!
//! - `rt/`: the Ruby C API glue (values, exceptions, ids, constants,
//!   wrapped data, the hook table, GVL release);
//! - `runqueue.rs`, `timers.rs`: the queues;
//! - `http/`: HTTP/1.x request heads (plain Rust over bytes);
//! - `selector/`: the two kernel interfaces, io_uring and epoll;
//! - `core/`: the thread's engine: its state, the switch algorithm
//!   (`core/scheduler.rs`), one file per operation (`core/op/`);
//! - `ruby_api/`: the Ruby classes, one file per class or module.

mod core;
mod http;
mod rt;
mod ruby_api;
mod runqueue;
mod selector;
mod timers;

use magnus::{Error, Ruby};

#[magnus::init(name = "polyphony_ext")]
fn init(ruby: &Ruby) -> Result<(), Error> {
    // A library built against another Ruby's headers (a stale build left in
    // lib/ when switching interpreters) would misread the VM's objects and
    // crash it: refuse to load before touching any.
    // SAFETY: `ruby_api_version` is a constant array libruby exports and never writes.
    let running = unsafe { rb_sys::ruby_api_version };
    let built = [
        rb_sys::RUBY_API_VERSION_MAJOR,
        rb_sys::RUBY_API_VERSION_MINOR,
    ];
    if running[0] as u32 != built[0] || running[1] as u32 != built[1] {
        return Err(Error::new(
            ruby.exception_load_error(),
            format!(
                "polyphony_ext was built for Ruby {}.{}, this is Ruby {}.{}: rebuild it (rake compile)",
                built[0], built[1], running[0], running[1]
            ),
        ));
    }
    ruby_api::init(ruby)
}
