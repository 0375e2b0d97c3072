//! `Polyphony::Backend`, the Ruby face of the thread's engine
//! (`core::Backend`): argument conversion and the method table. Every
//! method but `kind`, `schedule`, `break` and `wakeup` must be called from
//! the backend's own thread (`Backend::own`: `ThreadError` otherwise, and
//! `IOError` once finalized).
//!
//! Every blocking method parks only the calling fiber; other fibers of the
//! thread run meanwhile. Every blocking method is interruptible: an
//! exception scheduled on the fiber (`Fiber#raise`, `stop`, a timeout)
//! cancels the kernel operation and is raised from the call, unless the
//! operation already completed (docs/io-semantics.md). Plain (non-exception)
//! wake-ups do not interrupt I/O operations; they do end `sleep` and
//! `wait_event`, which return the value (docs/scheduling.md).

use magnus::{
    block::Proc, method, prelude::*, typed_data::Obj, Error, RHash, RModule, Ruby, Symbol,
    TryConvert, Value,
};

use super::raw_buffer;
use crate::core::{op, Backend, Kept};
use crate::rt::data::typed_data;
use crate::rt::{
    arg_error, check_arity, duration, expect_string, id, io_fd, io_fd_owner, is_nil, opt_len,
    protect, raw, val, Dir, QNIL, QTRUE,
};

typed_data!(Backend, "Polyphony::Backend", mark);
typed_data!(Kept, "Polyphony::Backend::Kept");

/// `Backend.new`: a backend for the current thread (`Thread#backend` makes
/// the thread's own; one made here is used only through its methods).
fn new() -> Result<Value, Error> {
    Backend::new_object().map(val).map_err(Into::into)
}

/// `kind` → `:io_uring` or `:epoll`, from any thread.
fn kind(ruby: &Ruby, b: &Backend) -> Symbol {
    ruby.to_symbol(b.kind())
}

/// `finalize`: see `Backend::finalize`. Returns the backend.
fn finalize(rb_self: Obj<Backend>) -> Result<Obj<Backend>, Error> {
    rb_self.finalize()?;
    Ok(rb_self)
}

/// `post_fork`: see `Backend::post_fork`. Returns the backend.
fn post_fork(rb_self: Obj<Backend>) -> Result<Obj<Backend>, Error> {
    rb_self.post_fork()?;
    Ok(rb_self)
}

/// `stats` → a Hash of the counters since the last call.
fn stats(ruby: &Ruby, b: &Backend) -> Result<RHash, Error> {
    b.own()?;
    let h = ruby.hash_new();
    for (k, v) in b.take_stats() {
        h.aset(ruby.to_symbol(k), v)?;
    }
    Ok(h)
}

/// `trace_proc=(proc)`: the proc that receives scheduler events
/// (`core/trace.rs`); nil switches tracing off. TypeError for anything
/// that does not respond to `call`.
fn set_trace_proc(b: &Backend, p: Value) -> Result<Value, Error> {
    b.own()?;
    // SAFETY: GVL held; `p` is a live object; `rb_respond_to` does not raise.
    if !p.is_nil() && unsafe { rb_sys::rb_respond_to(raw(p), id!("call")) } == 0 {
        return Err(crate::rt::type_error(format!(
            "trace proc must respond to call, got {}",
            crate::rt::inspect_class(raw(p))
        ))
        .into());
    }
    b.set_trace_proc(raw(p));
    Ok(p)
}

/// `trace(event, *args)`: hands a custom event to the trace proc (nothing
/// if none is set). Returns nil.
fn trace(b: &Backend, args: &[Value]) -> Result<Value, Error> {
    b.own()?;
    check_arity(args, 1, usize::MAX)?;
    if b.tracing() {
        let event = raw(args[0]);
        let name: String = match magnus::Symbol::from_value(args[0]) {
            Some(s) => s.name()?.into_owned(),
            None => crate::rt::str_lossy(crate::rt::expect_string(event)?),
        };
        let rest: Vec<rb_sys::VALUE> = args[1..].iter().map(|v| raw(*v)).collect();
        b.emit(&name, &rest, false);
    }
    Ok(val(QNIL))
}

/// `__in_scheduler__?`: true while the thread runs the scheduler's own code
/// (what a trap proc asks before switching fibers itself).
fn in_scheduler(b: &Backend) -> Result<bool, Error> {
    b.own()?;
    Ok(b.in_scheduler())
}

/// `break`/`wakeup`: wakes a blocked poll, from any thread. `true`.
fn wake(b: &Backend) -> bool {
    b.wake();
    true
}

/// `idle_proc=`: nil, or anything that responds to `call` (TypeError
/// otherwise: it is called later, from whatever operation idles).
fn set_idle_proc(b: &Backend, p: Value) -> Result<Value, Error> {
    b.own()?;
    // SAFETY: `p` is a live object.
    if !p.is_nil() && unsafe { rb_sys::rb_respond_to(raw(p), id!("call")) } == 0 {
        return Err(crate::rt::type_error(format!(
            "idle proc must respond to call, got {}",
            crate::rt::inspect_class(raw(p))
        ))
        .into());
    }
    b.set_idle_proc(raw(p));
    Ok(p)
}

fn set_idle_gc_period(b: &Backend, p: Value) -> Result<Value, Error> {
    b.own()?;
    let f: f64 = if p.is_nil() {
        0.0
    } else {
        TryConvert::try_convert(p)?
    };
    b.set_idle_gc_period(f);
    Ok(p)
}

fn poll(b: &Backend, blocking: Value) -> Result<(), Error> {
    b.own()?;
    b.poll(blocking.to_bool()).map_err(Into::into)
}

/// `schedule(fiber, value = nil, priority = false)`: the run-queue rules of docs/scheduling.md.
fn schedule(b: &Backend, args: &[Value]) -> Result<Value, Error> {
    check_arity(args, 1, 3)?;
    let fiber = raw(args[0]);
    // SAFETY: GVL held; reads the type or state of a live object the caller holds, never raises.
    if unsafe { rb_sys::rb_obj_is_fiber(fiber) } != QTRUE {
        return Err(crate::rt::type_error("not a fiber").into());
    }
    let value = args.get(1).map(|v| raw(*v)).unwrap_or(QNIL);
    let prio = args.get(2).map(|v| v.to_bool()).unwrap_or(false);
    b.schedule(fiber, value, prio);
    Ok(args[0])
}

/// `unschedule(fiber)` removes the fiber from the run queue;
/// `unschedule(fiber, value)` only if it is queued with exactly that
/// value (used to withdraw a timeout's exception that was not delivered).
fn unschedule(b: &Backend, args: &[Value]) -> Result<bool, Error> {
    b.own()?;
    check_arity(args, 1, 2)?;
    Ok(b.unschedule(raw(args[0]), args.get(1).map(|v| raw(*v))))
}

fn runnable(b: &Backend, fiber: Value) -> Result<bool, Error> {
    b.own()?;
    Ok(b.is_queued(raw(fiber)))
}

fn switch_fiber(b: &Backend) -> Result<Value, Error> {
    b.own()?;
    b.switch_fiber().map(val).map_err(Into::into)
}

fn snooze(b: &Backend) -> Result<Value, Error> {
    b.own()?;
    b.snooze().map(val).map_err(Into::into)
}

fn wait_event(b: &Backend, args: &[Value]) -> Result<Value, Error> {
    b.own()?;
    let raise = args.first().map(|v| v.to_bool()).unwrap_or(false);
    b.wait_event(raise).map(val).map_err(Into::into)
}

fn sleep(b: &Backend, d: Value) -> Result<Value, Error> {
    b.own()?;
    let d = duration(raw(d))?;
    op::sleep::sleep(b, d).map(val).map_err(Into::into)
}

fn timer_loop(b: &Backend, interval: Value) -> Result<Value, Error> {
    b.own()?;
    let d = duration(raw(interval))?;
    op::sleep::timer_loop(b, d).map(val).map_err(Into::into)
}

fn timeout(b: &Backend, args: &[Value]) -> Result<Value, Error> {
    b.own()?;
    check_arity(args, 2, 3)?;
    let d = duration(raw(args[0]))?;
    let mv = args.get(2).map(|v| raw(*v)).unwrap_or(QNIL);
    op::timeout::timeout(b, d, raw(args[1]), mv)
        .map(val)
        .map_err(Into::into)
}

fn wait_io(b: &Backend, io: Value, write: Value) -> Result<Value, Error> {
    b.own()?;
    let fd = io_fd(
        raw(io),
        if write.to_bool() {
            Dir::Write
        } else {
            Dir::Read
        },
    )?;
    op::poll::wait_io(b, fd, write.to_bool())?;
    Ok(val(QTRUE))
}

/// `read(io, buffer, length, to_eof, pos)`.
fn read(b: &Backend, args: &[Value]) -> Result<Value, Error> {
    b.own()?;
    read_common(b, args, false)
}

/// `__read_within__(io, buffer, length, pos, seconds)` (private; the HTTP
/// server's wait between requests, which its native loop,
/// `ruby_api/http_connection.rs`, runs directly; the specs race it):
/// `read(io, buffer, length, false, pos)` bounded by `seconds`, false when
/// they pass first (what the read got meanwhile is kept for the IO's next
/// read: docs/io-semantics.md).
fn read_within(b: &Backend, args: &[Value]) -> Result<Value, Error> {
    b.own()?;
    check_arity(args, 5, 5)?;
    let d = duration(raw(args[4]))?;
    let read_args = [args[0], args[1], args[2], val(crate::rt::QFALSE), args[3]];
    match op::timeout::within(b, d, || {
        read_common(b, &read_args, false).map_err(Into::into)
    })? {
        Some(v) => Ok(v),
        None => Ok(val(crate::rt::QFALSE)),
    }
}

/// `recv(io, buffer, length, pos)`.
fn recv(b: &Backend, args: &[Value]) -> Result<Value, Error> {
    b.own()?;
    check_arity(args, 3, 4)?;
    let pos = args.get(3).copied().unwrap_or_else(|| val(QNIL));
    read_common(
        b,
        &[args[0], args[1], args[2], val(crate::rt::QFALSE), pos],
        true,
    )
}

fn read_common(b: &Backend, args: &[Value], recv: bool) -> Result<Value, Error> {
    b.own()?;
    check_arity(args, 3, 5)?;
    let (fd, owner) = crate::rt::readable_fd_owner(raw(args[0]))?;
    let mut buf = raw(args[1]);
    if raw_buffer::is_handle(buf) {
        return read_raw(b, (fd, owner), args, recv);
    }
    if is_nil(buf) {
        buf = op::read::new_binary_string();
    } else {
        expect_string(buf)?;
        // SAFETY: inside `protect`: what the call raises (or throws) comes back as `Err` instead of
        // unwinding over Rust frames; GVL held, arguments are live objects the caller holds.
        protect(|| unsafe {
            rb_sys::rb_str_modify(buf);
            QNIL
        })?;
    }
    let len = opt_len(raw(args[2]), "length")?;
    let to_eof = args.get(3).map(|v| v.to_bool()).unwrap_or(false);
    let pos: i64 = match args.get(4) {
        Some(v) if !v.is_nil() => TryConvert::try_convert(*v)?,
        _ => -1,
    };
    op::read::read(b, (fd, owner), buf, len, to_eof, pos, recv)
        .map(val)
        .map_err(Into::into)
}

/// `read`/`recv` into a raw buffer (`ruby_api/raw_buffer.rs`): the byte
/// count, or nil at EOF.
fn read_raw(
    b: &Backend,
    (fd, owner): (i32, rb_sys::VALUE),
    args: &[Value],
    recv: bool,
) -> Result<Value, Error> {
    let handle = raw(args[1]);
    let pos: i64 = match args.get(4) {
        Some(v) if !v.is_nil() => TryConvert::try_convert(*v)?,
        _ => -1,
    };
    let room = raw_buffer::room(handle, pos)?;
    let want = opt_len(raw(args[2]), "length")?.unwrap_or(room).min(room);
    if want == 0 {
        return Ok(val(crate::rt::uint(0)));
    }
    let to_eof = args.get(3).map(|v| v.to_bool()).unwrap_or(false);
    let tmp = op::read::new_binary_string();
    let got = op::read::read(b, (fd, owner), tmp, Some(want), to_eof, -1, recv)?;
    if is_nil(got) {
        return Ok(val(QNIL));
    }
    Ok(val(crate::rt::uint(raw_buffer::put(handle, pos, got)?)))
}

/// `write(io, str, *more)` → total bytes written.
fn write(b: &Backend, args: &[Value]) -> Result<usize, Error> {
    b.own()?;
    check_arity(args, 2, usize::MAX)?;
    let fd = io_fd(raw(args[0]), Dir::Write)?;
    let mut strs = Vec::with_capacity(args.len() - 1);
    for a in &args[1..] {
        let v = raw(*a);
        // A raw buffer handle (`ruby_api/raw_buffer.rs`): its data.
        if raw_buffer::is_handle(v) {
            strs.push(raw_buffer::contents(v)?);
            continue;
        }
        // As stock `IO#write`: `to_s`, and `Object#to_s` if that does
        // not give a String (`rb_obj_as_string`).
        // SAFETY: `v` is a live object; `protect` catches what `to_s`
        // raises.
        strs.push(protect(|| unsafe { rb_sys::rb_obj_as_string(v) })?);
    }
    op::write::write(b, fd, &strs).map_err(Into::into)
}

/// `send(io, str, flags)` → bytes sent (all of them).
fn send(b: &Backend, args: &[Value]) -> Result<usize, Error> {
    b.own()?;
    check_arity(args, 2, 3)?;
    let fd = io_fd(raw(args[0]), Dir::Write)?;
    let s = if raw_buffer::is_handle(raw(args[1])) {
        raw_buffer::contents(raw(args[1]))?
    } else {
        expect_string(raw(args[1]))?
    };
    let flags: i32 = match args.get(2) {
        Some(v) if !v.is_nil() => TryConvert::try_convert(*v)?,
        _ => 0,
    };
    op::send::send_all(b, fd, s, Some(flags)).map_err(Into::into)
}

fn chunk_loop(b: &Backend, args: &[Value], recv: bool) -> Result<Value, Error> {
    b.own()?;
    check_arity(args, 1, 2)?;
    let (fd, owner) = crate::rt::readable_fd_owner(raw(args[0]))?;
    let maxlen = match args.get(1) {
        Some(v) if !v.is_nil() => opt_len(raw(*v), "maxlen")?.unwrap_or(8192).max(1),
        _ => 8192,
    };
    let flags = if recv { Some(0) } else { None };
    loop {
        let Some(s) = op::read::read_chunk(b, owner, fd, maxlen, flags)? else {
            return Ok(args[0]);
        };
        // SAFETY: inside `protect`: what the call raises (or throws) comes back as `Err` instead of
        // unwinding over Rust frames; GVL held, arguments are live objects the caller holds.
        protect(|| unsafe { rb_sys::rb_yield(s) })?;
    }
}

fn read_loop(b: &Backend, args: &[Value]) -> Result<Value, Error> {
    b.own()?;
    chunk_loop(b, args, false)
}

fn recv_loop(b: &Backend, args: &[Value]) -> Result<Value, Error> {
    b.own()?;
    chunk_loop(b, args, true)
}

/// `feed_loop(io, receiver, method) { }`: `receiver.__send__(method, chunk, &block)` per chunk.
fn feed_loop(
    ruby: &Ruby,
    b: &Backend,
    io: Value,
    receiver: Value,
    meth: Value,
) -> Result<Value, Error> {
    b.own()?;
    let (fd, owner) = crate::rt::readable_fd_owner(raw(io))?;
    // SAFETY: inside `protect`: a `meth` that is not a Symbol or String
    // raises TypeError as an `Err`.
    let mid = protect(|| unsafe { rb_sys::rb_to_id(raw(meth)) })? as rb_sys::ID;
    let block: Option<Proc> = ruby.block_proc().ok();
    let block_raw = block.map(|p| raw(p.as_value())).unwrap_or(QNIL);
    loop {
        let Some(s) = op::read::read_chunk(b, owner, fd, 8192, None)? else {
            return Ok(io);
        };
        // SAFETY: inside `protect`: what the call raises (or throws) comes back as `Err` instead of
        // unwinding over Rust frames; GVL held, arguments are live objects the caller holds.
        protect(|| unsafe { rb_sys::rb_funcall_with_block(raw(receiver), mid, 1, &s, block_raw) })?;
        rb_sys::rb_gc_guard!(block_raw);
    }
}

fn accept(b: &Backend, server: Value, klass: Value) -> Result<Value, Error> {
    b.own()?;
    let (fd, owner) = io_fd_owner(raw(server), Dir::Read)?;
    op::accept::accept(b, owner, fd, raw(klass))
        .map(val)
        .map_err(Into::into)
}

fn accept_loop(b: &Backend, server: Value, klass: Value) -> Result<Value, Error> {
    b.own()?;
    let (fd, owner) = io_fd_owner(raw(server), Dir::Read)?;
    loop {
        let sock = op::accept::accept(b, owner, fd, raw(klass))?;
        // SAFETY: inside `protect`: what the call raises (or throws) comes back as `Err` instead of
        // unwinding over Rust frames; GVL held, arguments are live objects the caller holds.
        protect(|| unsafe { rb_sys::rb_yield(sock) })?;
    }
}

fn connect(b: &Backend, sock: Value, host: Value, port: Value) -> Result<Value, Error> {
    b.own()?;
    let fd = io_fd(raw(sock), Dir::Write)?;
    let host: String = TryConvert::try_convert(host)?;
    let port: i64 = TryConvert::try_convert(port)?;
    if !(0..=65535).contains(&port) {
        return Err(arg_error(format!("invalid port {port}")).into());
    }
    op::connect::connect(b, fd, &host, port as u16)?;
    Ok(sock)
}

/// `connect_addr(sock, sockaddr)`: connects to a packed sockaddr String
/// (`Addrinfo#to_sockaddr`, `Socket.sockaddr_in`) without blocking the
/// thread.
fn connect_addr(b: &Backend, sock: Value, addr: Value) -> Result<Value, Error> {
    b.own()?;
    let fd = io_fd(raw(sock), Dir::Write)?;
    let s = expect_string(raw(addr))?;
    // SAFETY: `s` is a live String; the bytes are copied into `ss` before any Ruby call.
    let bytes = unsafe { crate::rt::str_bytes(s) };
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    if bytes.len() < 2 || bytes.len() > std::mem::size_of::<libc::sockaddr_storage>() {
        return Err(arg_error(format!("invalid socket address ({} bytes)", bytes.len())).into());
    }
    // SAFETY: `bytes.len()` was checked to fit in `ss` just above.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), &mut ss as *mut _ as *mut u8, bytes.len())
    };
    op::connect::connect_sockaddr(b, fd, (ss, bytes.len() as _), "connect(2)")?;
    Ok(sock)
}

/// `close(io)`: closes `io` (an IO or an Integer fd). Other fibers of
/// this thread waiting on its fd get `IOError`. Returns `nil` if `io` is
/// already closed.
fn close(b: &Backend, io: Value) -> Result<Value, Error> {
    b.own()?;
    let r = raw(io);
    if rb_sys::FIXNUM_P(r) {
        let fd = io_fd(r, Dir::Read)?;
        b.fd_closing(fd);
        // SAFETY: closes an fd this code owns and no one else holds.
        if unsafe { libc::close(fd) } < 0 {
            return Err(crate::rt::errno_error(crate::rt::last_errno(), "close").into());
        }
        return Ok(io);
    }
    // SAFETY: GVL held; reads the type or state of a live object the caller holds, never raises.
    if unsafe { rb_sys::RB_TYPE_P(r, rb_sys::ruby_value_type::RUBY_T_FILE) } {
        if crate::rt::call(r, id!("closed?"), &[])? == crate::rt::QTRUE {
            return Ok(val(QNIL));
        }
        let (fd, owner) = io_fd_owner(r, Dir::Read)?;
        b.fd_closing(fd);
        crate::core::kept::discard(owner);
        // SAFETY: inside `protect`: what the call raises (or throws) comes back as `Err` instead of
        // unwinding over Rust frames; GVL held, arguments are live objects the caller holds.
        protect(|| unsafe { rb_sys::rb_io_close(r) })?;
        return Ok(io);
    }
    // SAFETY: `r` is a live object.
    if rb_sys::SPECIAL_CONST_P(r) || unsafe { rb_sys::rb_respond_to(r, id!("close")) } == 0 {
        return Err(crate::rt::type_error(format!(
            "expected an IO or a file descriptor, got {}",
            crate::rt::inspect_class(r)
        ))
        .into());
    }
    crate::rt::call(r, id!("close"), &[])?;
    Ok(io)
}

fn splice(b: &Backend, src: Value, dest: Value, maxlen: Value) -> Result<usize, Error> {
    b.own()?;
    let s = io_fd(raw(src), Dir::Read)?;
    let d = io_fd(raw(dest), Dir::Write)?;
    let m: i64 = TryConvert::try_convert(maxlen)?;
    op::splice::splice(b, s, d, m, op::splice::Kind::Splice).map_err(Into::into)
}

fn tee(b: &Backend, src: Value, dest: Value, maxlen: Value) -> Result<usize, Error> {
    b.own()?;
    let s = io_fd(raw(src), Dir::Read)?;
    let d = io_fd(raw(dest), Dir::Write)?;
    let m: i64 = TryConvert::try_convert(maxlen)?;
    op::splice::splice(b, s, d, m, op::splice::Kind::Tee).map_err(Into::into)
}

fn double_splice(b: &Backend, src: Value, dest: Value) -> Result<usize, Error> {
    b.own()?;
    let s = io_fd(raw(src), Dir::Read)?;
    let d = io_fd(raw(dest), Dir::Write)?;
    op::splice::double_splice(b, s, d).map_err(Into::into)
}

fn waitpid(b: &Backend, pid: Value) -> Result<(i32, i32), Error> {
    b.own()?;
    let pid: i32 = TryConvert::try_convert(pid)?;
    op::waitpid::waitpid(b, pid).map_err(Into::into)
}

/// `wait_child(pid) → true | false`: parks the calling fiber until child
/// `pid` has exited, leaving it unreaped (false if it is not a child).
fn wait_child(b: &Backend, pid: Value) -> Result<bool, Error> {
    b.own()?;
    let pid: i32 = TryConvert::try_convert(pid)?;
    op::waitpid::wait_child(b, pid).map_err(Into::into)
}

fn pending_count(b: &Backend) -> Result<usize, Error> {
    b.own()?;
    Ok(b.pending())
}

fn runqueue_length(b: &Backend) -> Result<usize, Error> {
    b.own()?;
    Ok(b.runqueue_len())
}

pub fn init(ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    let class = polyphony.define_class("Backend", ruby.class_object())?;
    class.define_singleton_method("new", magnus::function!(new, 0))?;
    class.define_method("kind", method!(kind, 0))?;
    class.define_method("finalize", method!(finalize, 0))?;
    class.define_method("post_fork", method!(post_fork, 0))?;
    class.define_method("stats", method!(stats, 0))?;
    class.define_method("break", method!(wake, 0))?;
    class.define_method("wakeup", method!(wake, 0))?;
    class.define_method("idle_proc=", method!(set_idle_proc, 1))?;
    class.define_method("idle_gc_period=", method!(set_idle_gc_period, 1))?;
    class.define_method("trace_proc=", method!(set_trace_proc, 1))?;
    class.define_method("trace", method!(trace, -1))?;
    class.define_method("__in_scheduler__?", method!(in_scheduler, 0))?;
    class.define_method("poll", method!(poll, 1))?;
    class.define_method("schedule", method!(schedule, -1))?;
    class.define_method("unschedule", method!(unschedule, -1))?;
    class.define_method("runnable?", method!(runnable, 1))?;
    class.define_method("switch_fiber", method!(switch_fiber, 0))?;
    class.define_method("snooze", method!(snooze, 0))?;
    class.define_method("wait_event", method!(wait_event, -1))?;
    class.define_method("sleep", method!(sleep, 1))?;
    class.define_method("timer_loop", method!(timer_loop, 1))?;
    class.define_method("timeout", method!(timeout, -1))?;
    class.define_method("wait_io", method!(wait_io, 2))?;
    class.define_method("read", method!(read, -1))?;
    class.define_private_method("__read_within__", method!(read_within, -1))?;
    class.define_method("recv", method!(recv, -1))?;
    class.define_method("write", method!(write, -1))?;
    class.define_method("send", method!(send, -1))?;
    class.define_method("read_loop", method!(read_loop, -1))?;
    class.define_method("recv_loop", method!(recv_loop, -1))?;
    class.define_method("feed_loop", method!(feed_loop, 3))?;
    class.define_method("recv_feed_loop", method!(feed_loop, 3))?;
    class.define_method("accept", method!(accept, 2))?;
    class.define_method("accept_loop", method!(accept_loop, 2))?;
    class.define_method("connect", method!(connect, 3))?;
    class.define_method("connect_addr", method!(connect_addr, 2))?;
    class.define_method("close", method!(close, 1))?;
    class.define_method("splice", method!(splice, 3))?;
    class.define_method("tee", method!(tee, 3))?;
    class.define_method("double_splice", method!(double_splice, 2))?;
    class.define_method("waitpid", method!(waitpid, 1))?;
    class.define_method("wait_child", method!(wait_child, 1))?;
    class.define_method("pending_count", method!(pending_count, 0))?;
    class.define_method("runqueue_length", method!(runqueue_length, 0))?;

    // What interrupted operations give back (see `core/kept.rs`): no
    // instances are made from Ruby.
    let kept = class.define_class("Kept", ruby.class_object())?;
    kept.undef_default_alloc_func();
    polyphony.define_module_function(
        "__kept_count__",
        magnus::function!(crate::core::kept::live, 0),
    )?;
    Ok(())
}
