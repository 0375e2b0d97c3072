//! Native core of the `polyphony` gem: a per-thread fiber scheduler whose
//! blocking operations go through io_uring (preferred) or epoll (fallback).
//!
//! Floors, lowest first; a module imports only from the floors below it
//! (docs/architecture.md draws the map, `bin/module-graph` checks it):
//!
//! - `rt/`: the Ruby C API glue (values, exceptions, ids, constants,
//!   wrapped data, the hook table, GVL release);
//! - `runqueue.rs`, `timers.rs`: the queues;
//! - `selector/`: the two kernel interfaces, io_uring and epoll;
//! - `core/`: the thread's engine: its state, the switch algorithm
//!   (`core/scheduler.rs`), one file per operation (`core/op/`);
//! - `ruby_api/`: the Ruby classes, one file per class or module.

mod core;
mod rt;
mod ruby_api;
mod runqueue;
mod selector;
mod timers;

use magnus::{Error, Ruby};

#[magnus::init(name = "polyphony_ext")]
fn init(ruby: &Ruby) -> Result<(), Error> {
    ruby_api::init(ruby)
}
