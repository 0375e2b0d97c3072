//! `Polyphony::HTTP::Request`'s native `__respond__` (`respond`: the whole response
//! of most handlers, in one call: its bytes are made here and sent from
//! here). The class, and everything else of it, is Ruby
//! (lib/polyphony/http/request.rb); the instance variables read and
//! written here are its own, with the meaning its comments give. Also
//! defines `Polyphony::HTTP::Error` (raised by the response methods).

use std::sync::atomic::{AtomicU64, Ordering};

use magnus::{method, prelude::*, Error, RModule, Ruby, Value};
use rb_sys::VALUE;

use super::http::{build_response, pin, CLOSE, KEEP_ALIVE, OMIT_BODY};
use super::http_connection::{current_for, get, set, sym, truthy};
use crate::core::{op, Backend};
use crate::rt::{call, id, is_nil, protect, raw, str_bytes, val, QTRUE};

/// `Polyphony::HTTP::Request` and `Polyphony::HTTP::Error` (0 until
/// `init`; registered with the GC, which neither frees nor moves them).
static REQUEST: AtomicU64 = AtomicU64::new(0);
static ERROR: AtomicU64 = AtomicU64::new(0);
/// The frozen key ":status" (registered likewise).
static STATUS_KEY: AtomicU64 = AtomicU64::new(0);

/// The `Request` class.
pub(crate) fn request_class() -> VALUE {
    REQUEST.load(Ordering::Relaxed) as VALUE
}

/// `__respond__(body, headers)` (private; `Request#respond` calls it):
/// sends a whole response, `body.to_s` with `headers` (a Hash; `':status'
/// => n` sets the status, 200 by default), in one write;
/// `Polyphony::HTTP::Error` if a response was already sent. The Connection
/// line follows the request and the server (`Connection: close` when the
/// client or a stopping server ends the connection, `keep-alive` for an
/// HTTP/1.0 client that asked for it); a HEAD request gets the head only.
/// Returns the request.
fn respond(rb_self: Value, body: Value, headers: Value) -> Result<Value, Error> {
    let req = raw(rb_self);
    let h = raw(headers);
    // SAFETY: GVL held; a type check of a live value.
    if unsafe { !rb_sys::RB_TYPE_P(h, rb_sys::ruby_value_type::RUBY_T_HASH) } {
        return Err(crate::rt::type_error(format!(
            "no implicit conversion of {} into Hash",
            crate::rt::inspect_class(h)
        ))
        .into());
    }
    let headers = Some(h);
    if truthy(get(req, id!("@sent"))) {
        let class = ERROR.load(Ordering::Relaxed) as VALUE;
        // SAFETY: GVL held; `class` is an exception class (set by `init`).
        let exc = unsafe { rb_sys::rb_exc_new(class, c"response already sent".as_ptr(), 21) };
        return Err(crate::rt::exception_error(exc).into());
    }
    let status = match headers {
        Some(h) => {
            let key = STATUS_KEY.load(Ordering::Relaxed) as VALUE;
            // SAFETY: under `protect` (a default proc may run and raise); GVL held.
            protect(|| unsafe { rb_sys::rb_hash_aref(h, key) })?
        }
        None => crate::rt::QNIL,
    };
    let status: u16 = if truthy(status) {
        magnus::TryConvert::try_convert(val(status))?
    } else {
        200
    };
    let body = raw(body);
    let body = if crate::rt::is_string(body) {
        body
    } else if is_nil(body) {
        crate::rt::binary_str(&[])
    } else {
        // SAFETY: under `protect`: what `to_s` raises comes back as `Err`.
        let s = protect(|| unsafe { rb_sys::rb_obj_as_string(body) })?;
        crate::rt::expect_string(s)?
    };
    set(req, id!("@sent"), sym(id!("done")))?;
    // The request the native loop is serving: what it knows, without
    // reading variables (`Current`).
    let cur = current_for(req);
    let conn = cur.map_or_else(|| get(req, id!("@connection")), |c| c.conn);
    let (head, http10, native) =
        cur.map_or_else(|| head_and_http10(req), |c| (c.head, c.http10, true));
    let server = cur.map_or_else(|| get(conn, id!("@server")), |c| c.server);
    let mut flags = connection_flags(req, server, http10)?;
    if head {
        flags |= OMIT_BODY;
    }
    let b = Backend::current()?;
    let mut out = b.take_buf(0);
    if let Err(e) = build_response(&mut out, status, headers, Some(body), flags) {
        b.give_buf(out);
        return Err(e);
    }
    // A request the native loop made comes from a plain connection.
    let socket = cur.map(|c| c.socket);
    send(
        &b,
        conn,
        socket,
        native || truthy(get(conn, id!("@plain"))),
        out,
    )?;
    Ok(rb_self)
}

/// `__line__` (private; `method`, `protocol`, `path` and `query_string`
/// of a request the native loop made): sets `@method`, `@protocol`,
/// `@path` and `@query_string` from `@head`.
fn line(rb_self: Value) -> Result<Value, Error> {
    let req = raw(rb_self);
    let v = super::http::reparse(get(req, id!("@head")), super::http::head_values)?;
    let v = v.unwrap_or(super::http::HeadValues {
        method: crate::rt::binary_str(b""),
        path: crate::rt::binary_str(b""),
        query: crate::rt::QNIL,
        version: crate::rt::binary_str(b""),
    });
    set(req, id!("@method"), v.method)?;
    set(req, id!("@protocol"), v.version)?;
    set(req, id!("@path"), v.path)?;
    set(req, id!("@query_string"), v.query)?;
    Ok(val(crate::rt::QNIL))
}

/// `__connection_flags__` (private; `send_headers`): `connection_flags`.
fn connection_flags_of(rb_self: Value) -> Result<u32, Error> {
    let req = raw(rb_self);
    let (_, http10, _) = head_and_http10(req);
    connection_flags(
        req,
        get(get(req, id!("@connection")), id!("@server")),
        http10,
    )
}

/// Whether the request's method is HEAD, whether its version is HTTP/1.0,
/// and whether the native loop made it (it has `@head`): from `@method`
/// and `@protocol`, or from the head's bytes when they are not made yet.
fn head_and_http10(req: VALUE) -> (bool, bool, bool) {
    let head = get(req, id!("@head"));
    let native = crate::rt::is_string(head);
    let method = get(req, id!("@method"));
    if !is_nil(method) {
        let version = get(req, id!("@protocol"));
        return (
            bytes_of(method) == b"HEAD",
            bytes_of(version) == b"HTTP/1.0",
            native,
        );
    }
    let head = bytes_of(head);
    let line = head.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    (
        head.starts_with(b"HEAD "),
        line.ends_with(b" HTTP/1.0"),
        native,
    )
}

/// The Connection line the response needs (a `build_response` flag):
/// CLOSE (and `@close` set) when the client or a stopping `server` ends the
/// connection, KEEP_ALIVE for an HTTP/1.0 client that keeps it.
fn connection_flags(req: VALUE, server: VALUE, http10: bool) -> Result<u32, Error> {
    let close = truthy(get(req, id!("@close")));
    if close || truthy(get(server, id!("@stopping"))) {
        set(req, id!("@close"), QTRUE)?;
        return Ok(CLOSE);
    }
    if http10 {
        return Ok(KEEP_ALIVE);
    }
    Ok(0)
}

/// The bytes of `v` if it is a String (empty otherwise).
fn bytes_of<'a>(v: VALUE) -> &'a [u8] {
    if crate::rt::is_string(v) {
        // SAFETY: a live String; the slice is compared before any Ruby call.
        unsafe { str_bytes(v) }
    } else {
        &[]
    }
}

/// Writes the response (a pooled buffer, given back) on `conn`: straight
/// to a plain socket (`op::write::send_buf`; `socket`: its `@socket` if
/// known), else through `Connection#write` (TLS).
fn send(
    b: &Backend,
    conn: VALUE,
    socket: Option<VALUE>,
    plain: bool,
    out: Vec<u8>,
) -> Result<(), Error> {
    if plain {
        let socket = socket.unwrap_or_else(|| get(conn, id!("@socket")));
        let fd = match crate::rt::io_fd(socket, crate::rt::Dir::Write) {
            Ok(fd) => fd,
            Err(e) => {
                b.give_buf(out);
                return Err(e.into());
            }
        };
        op::write::send_buf(b, fd, out)?;
    } else {
        let s = crate::rt::binary_str(&out);
        b.give_buf(out);
        call(conn, id!("write"), &[s])?;
    }
    Ok(())
}

pub fn init(ruby: &Ruby, http: RModule) -> Result<(), Error> {
    let request = http.define_class("Request", ruby.class_object())?;
    REQUEST.store(pin(raw(request.as_value())) as u64, Ordering::Relaxed);
    let error = http.define_class("Error", ruby.exception_standard_error().as_r_class())?;
    ERROR.store(pin(raw(error.as_value())) as u64, Ordering::Relaxed);
    // SAFETY: GVL held; the pointer and length describe the literal.
    let key = unsafe { rb_sys::rb_interned_str(c":status".as_ptr(), 7) };
    STATUS_KEY.store(pin(key) as u64, Ordering::Relaxed);
    request.define_private_method("__respond__", method!(respond, 2))?;
    request.define_private_method("__line__", method!(line, 0))?;
    request.define_private_method("__connection_flags__", method!(connection_flags_of, 0))?;
    Ok(())
}
