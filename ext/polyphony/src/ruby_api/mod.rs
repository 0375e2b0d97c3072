//! The Ruby classes and modules the extension defines or extends, one file
//! each: argument conversion and method tables over `core/`.
//!
//! - `backend.rs`: `Polyphony::Backend` (and `Polyphony::Backend::Kept`);
//! - `compression.rs`: the deflate/inflate streams of `IO.gzip` & co.;
//! - `fiber/`: `Fiber`'s native methods and Polyphony's per-fiber state;
//! - `fiber_scheduler.rs`: `Polyphony::FiberScheduler`'s hot hooks;
//! - `http.rs`: `Polyphony::HTTP.__parse_head__` (the request-head parser);
//! - `http_connection.rs`: `Polyphony::HTTP::Connection#__serve__` (the
//!   connection loop's common case);
//! - `http_request.rs`: `Polyphony::HTTP::Request#respond` (and the
//!   `Polyphony::HTTP::Error` class);
//! - `io.rs`: `IO#__write_fast__` and private helpers;
//! - `kernel.rs`: `snooze`, `suspend`, `sleep`;
//! - `process.rs`: `Process::Status.from_status_array`;
//! - `queue.rs`: `Polyphony::Queue`'s state and hot paths;
//! - `raw_buffer.rs`: `Polyphony.__with_raw_buffer__` and its helpers;
//! - `thread.rs`: `Thread#backend`.
//!
//! The Ruby methods that native code calls back are listed in
//! `hooks.rs` (and docs/architecture.md).

pub mod backend;
pub mod compression;
pub mod fiber;
pub mod fiber_scheduler;
pub mod hooks;
pub mod http;
pub mod http_connection;
pub mod http_request;
pub mod io;
pub mod kernel;
pub mod process;
pub mod queue;
pub mod raw_buffer;
pub mod thread;

use magnus::{Error, Ruby};

pub fn init(ruby: &Ruby) -> Result<(), Error> {
    let polyphony = ruby.define_module("Polyphony")?;
    backend::init(ruby, polyphony)?;
    compression::init(ruby, polyphony)?;
    fiber::init(ruby, polyphony)?;
    fiber_scheduler::init(ruby, polyphony)?;
    http::init(ruby, polyphony)?;
    io::init(ruby)?;
    kernel::init(ruby)?;
    process::init(ruby)?;
    queue::init(ruby, polyphony)?;
    thread::init(ruby)?;
    hooks::init(polyphony)?;
    raw_buffer::init(polyphony)?;
    Ok(())
}
