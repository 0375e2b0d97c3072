//! Native core of the `polyphony` gem: a per-thread fiber scheduler whose
//! blocking operations go through io_uring (preferred) or epoll (fallback).
//!
//! Layout: `ruby_api/` holds one file per Ruby class (`Polyphony::Backend` is
//! `ruby_api/backend.rs`); `scheduler.rs` is the switch algorithm;
//! `runqueue.rs` and `timers.rs` the queues; `selector/` the two kernel
//! interfaces; `op/` one file per operation, each with its io_uring
//! submission and its readiness-based fallback; `helpers/` the FFI glue.

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
