//! `Polyphony::HTTP::Connection#__serve__(handler)` (private): the common
//! case of a plain (non-TLS) connection's loop, native. The rest of the
//! class, and every case this does not take, is Ruby
//! (lib/polyphony/http/connection.rb), which calls it from
//! `serve_requests`.
//!
//! It serves, one after the other, the requests whose head is complete and
//! that have no body: reads the socket into the connection's buffer (its
//! wait between requests bounded by `park_after`), parses the head
//! (`crate::http::parse`), makes the `Request` itself, calls the handler,
//! then finishes the response and decides whether to go on, as the Ruby
//! loop does. It returns a Symbol telling `serve_requests` what is next:
//!
//! - `:end`: the connection is done (EOF between requests, its head or
//!   keep-alive timeout passed with nothing read, no keep-alive, the server
//!   stopping, a hijack, a handler error answered with 500);
//! - `:idle`: `park_after` passed with nothing read (the connection may
//!   park; `@idle_deadline` is when its wait ends);
//! - `:slow`: the buffer holds what only Ruby handles: part of a head, a
//!   head to refuse, or a request with a body. Ruby serves that one request
//!   and calls this again.
//!
//! The instance variables it reads and writes are the Ruby class's own, with
//! the same meaning (the comments of connection.rb and request.rb are the
//! contract); it runs in the connection's fiber only, and reads each of them
//! afresh after anything that may run Ruby code.

use std::cell::Cell;

use magnus::{method, prelude::*, Error, RModule, Ruby, Value};
use rb_sys::{ID, VALUE};

use crate::core::{op, Backend};
use crate::http::Head;
use crate::http::{parse, Body, Parsed};
use crate::rt::{call, id, is_nil, protect, raw, str_bytes, val, QFALSE, QNIL, QTRUE};

/// Head reads ask for this much (as `Connection::HEAD_READ_SIZE`).
const HEAD_READ_SIZE: usize = 4096;

thread_local! {
    /// The bytes of the buffer being parsed: a copy, since making the
    /// request's objects may run the GC, which may move a short String's
    /// bytes. Taken while in use, so a nested use just makes its own.
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// The request whose handler this thread's native loop called last, while
    /// that handler runs (see `Current`).
    static CURRENT: Cell<Option<Current>> = const { Cell::new(None) };
}

/// What `Request#__respond__` would otherwise read from instance variables
/// (its `@connection`'s `@server` and `@socket`, the method and version of
/// `@head`), for the request the native loop just made. Set right before
/// the handler is called and cleared when it returns; a handler that
/// switches fibers lets other connections' loops set their own, so a
/// response checks that the entry is its request's (`current_for`) and
/// otherwise reads the variables. The values are not marked: they are used
/// only while `req`, the receiver, is alive and holds them (`@connection`,
/// whose `@server` and `@socket` a plain connection never replaces).
#[derive(Clone, Copy)]
pub(crate) struct Current {
    pub req: VALUE,
    pub conn: VALUE,
    pub server: VALUE,
    pub socket: VALUE,
    /// The method is HEAD.
    pub head: bool,
    /// The version is HTTP/1.0.
    pub http10: bool,
}

/// `CURRENT` if it is `req`'s. The entry of a handler whose fiber never
/// went on (so never cleared it) could name a freed request whose address
/// a new one got: `@connection` is compared too, so a response always goes
/// to its own connection's socket.
pub(crate) fn current_for(req: VALUE) -> Option<Current> {
    CURRENT
        .with(Cell::get)
        .filter(|c| c.req == req && get(req, id!("@connection")) == c.conn)
}

/// The Symbol of `id`.
pub(crate) fn sym(id: ID) -> VALUE {
    // SAFETY: GVL held; the Symbol of an interned id (never collected).
    unsafe { rb_sys::rb_id2sym(id) }
}

pub(crate) fn truthy(v: VALUE) -> bool {
    v != QNIL && v != QFALSE
}

/// `obj.@name` (nil if unset).
pub(crate) fn get(obj: VALUE, name: ID) -> VALUE {
    // SAFETY: GVL held; `obj` is a live object; reading an instance
    // variable neither allocates nor raises.
    unsafe { rb_sys::rb_ivar_get(obj, name) }
}

/// `obj.@name = v`; FrozenError (as `Err`) if `obj` is frozen.
pub(crate) fn set(obj: VALUE, name: ID, v: VALUE) -> Result<(), crate::rt::Error> {
    // SAFETY: GVL held; `obj` is a live heap object (a Connection or a
    // Request); reading its flags neither allocates nor raises.
    let flags = unsafe { (*(obj as *const rb_sys::RBasic)).flags };
    if flags & rb_sys::ruby_fl_type::RUBY_FL_FREEZE as VALUE != 0 {
        // SAFETY: under `protect`: the FrozenError comes back as `Err`.
        protect(|| unsafe { rb_sys::rb_ivar_set(obj, name, v) })?;
        return Ok(());
    }
    // SAFETY: not frozen, so setting the variable cannot raise.
    unsafe { rb_sys::rb_ivar_set(obj, name, v) };
    Ok(())
}

/// A Fixnum option as a size; None for anything else (Ruby's path then
/// uses it, and raises what it must).
fn size(v: VALUE) -> Option<usize> {
    if !rb_sys::FIXNUM_P(v) {
        return None;
    }
    // SAFETY: a Fixnum; the conversion neither allocates nor raises.
    let n = unsafe { rb_sys::rb_num2long(v) };
    usize::try_from(n).ok()
}

/// `opts[key]` without calling anything (nil if absent).
fn opt(opts: VALUE, key: ID) -> VALUE {
    // SAFETY: GVL held; `opts` is a Hash (checked by the caller);
    // `rb_hash_lookup2` calls neither `hash` nor a default proc on a
    // Symbol key.
    unsafe { rb_sys::rb_hash_lookup2(opts, sym(key), QNIL) }
}

/// A timeout option in seconds (None: nil, no timeout).
fn seconds(v: VALUE) -> Result<Option<f64>, Error> {
    if is_nil(v) {
        return Ok(None);
    }
    Ok(Some(crate::rt::duration(v)?.as_secs_f64()))
}

fn now() -> f64 {
    crate::timers::now_ns() as f64 / 1e9
}

/// What `__serve__` reads once: the connection's settings, which do not
/// change while it runs (`@park_after` changes only in Ruby, between calls).
struct Settings {
    socket: VALUE,
    server: VALUE,
    max_line: usize,
    max_headers: usize,
    max_head: usize,
    head_timeout: Option<f64>,
    keep_alive_timeout: Option<f64>,
    park_after: Option<std::time::Duration>,
}

impl Settings {
    /// None if an option is not what the loop can use (Ruby's path then
    /// uses it, and raises what it must).
    fn of(conn: VALUE) -> Result<Option<Settings>, Error> {
        let opts = get(conn, id!("@opts"));
        // SAFETY: GVL held; a type check of a live value.
        if unsafe { !rb_sys::RB_TYPE_P(opts, rb_sys::ruby_value_type::RUBY_T_HASH) } {
            return Ok(None);
        }
        let limits = (
            size(opt(opts, id!("max_line"))),
            size(opt(opts, id!("max_headers"))),
            size(opt(opts, id!("max_head"))),
        );
        let (Some(max_line), Some(max_headers), Some(max_head)) = limits else {
            return Ok(None);
        };
        let park_after = get(conn, id!("@park_after"));
        Ok(Some(Settings {
            socket: get(conn, id!("@socket")),
            server: get(conn, id!("@server")),
            max_line,
            max_headers,
            max_head,
            head_timeout: seconds(opt(opts, id!("head_timeout")))?,
            keep_alive_timeout: seconds(opt(opts, id!("keep_alive_timeout")))?,
            park_after: if truthy(park_after) {
                Some(crate::rt::duration(park_after)?)
            } else {
                None
            },
        }))
    }
}

/// What the loop does next with the buffered bytes.
enum Next {
    /// A request without a body was made (its head consumed): the request,
    /// whether its method is HEAD, whether its version is HTTP/1.0.
    Request(VALUE, bool, bool),
    /// The buffer (`@buf`, given) is empty: wait for bytes.
    Read(VALUE),
    /// Ruby takes it from here.
    Slow,
}

/// `Connection#__serve__(handler)`: see the module documentation.
fn serve(rb_self: Value, handler: Value) -> Result<Value, Error> {
    let conn = raw(rb_self);
    let handler = raw(handler);
    let Some(settings) = Settings::of(conn)? else {
        return Ok(val(sym(id!("slow"))));
    };
    let b = Backend::current()?;
    let mut first = truthy(get(conn, id!("@first")));
    loop {
        let cur = match next_request(conn, &settings)? {
            Next::Slow => return Ok(val(sym(id!("slow")))),
            Next::Request(req, head, http10) => Current {
                req,
                conn,
                server: settings.server,
                socket: settings.socket,
                head,
                http10,
            },
            Next::Read(buf) => match wait_for_head(&b, buf, conn, &settings, first)? {
                Some(step) => return Ok(val(step)),
                None => continue,
            },
        };
        if first {
            first = false;
            set(conn, id!("@first"), QFALSE)?;
        }
        if !serve_one(conn, &settings, handler, cur)? {
            return Ok(val(sym(id!("end"))));
        }
    }
}

/// Parses the head at the start of `@buf` and makes its request (and
/// drops the head from the buffer) if it is complete and has no body.
fn next_request(conn: VALUE, settings: &Settings) -> Result<Next, Error> {
    let buf = get(conn, id!("@buf"));
    if !crate::rt::is_string(buf) {
        return Ok(Next::Slow);
    }
    // SAFETY: a live String; reading its length neither allocates nor raises.
    if unsafe { rb_sys::RSTRING_LEN(buf) } == 0 {
        return Ok(Next::Read(buf));
    }
    let mut bytes = SCRATCH.with(Cell::take);
    bytes.clear();
    // SAFETY: a live String; its bytes are copied before any Ruby call.
    bytes.extend_from_slice(unsafe { str_bytes(buf) });
    let next = match parse(&bytes, settings.max_line, settings.max_headers) {
        Parsed::Complete(head) if head.body == Body::None && head.len <= settings.max_head => {
            let req = new_request(conn, &head, &bytes[..head.len]);
            crate::rt::str_modify(buf)?;
            consume(buf, head.len);
            Next::Request(req, head.method == "HEAD", head.minor == 0)
        }
        _ => Next::Slow,
    };
    SCRATCH.with(|c| c.set(bytes));
    Ok(next)
}

/// A `Request` for a head without a body (`raw_head`: its bytes), with the
/// variables request.rb lists for it: unset ones are nil; the request
/// line's parts and the headers are made from `@head` when asked.
fn new_request(conn: VALUE, head: &Head, raw_head: &[u8]) -> VALUE {
    let raw_head = crate::rt::binary_str(raw_head);
    let class = super::http_request::request_class();
    // SAFETY: GVL held; `class` is `Request` (a plain Ruby class, set by
    // `init`); a new object is not frozen, so setting its variables
    // cannot raise, and the values are live (on this stack).
    unsafe {
        let req = rb_sys::rb_obj_alloc(class);
        rb_sys::rb_ivar_set(req, id!("@connection"), conn);
        rb_sys::rb_ivar_set(req, id!("@head"), raw_head);
        if !head.keep_alive() {
            rb_sys::rb_ivar_set(req, id!("@close"), QTRUE);
        }
        req
    }
}

/// Drops the first `n` bytes of `buf` (a modifiable String), in place.
fn consume(buf: VALUE, n: usize) {
    // SAFETY: `buf` is a live String made modifiable by the caller, with
    // no Ruby call since; `n` is at most its length (a parsed head's).
    unsafe {
        let len = rb_sys::RSTRING_LEN(buf) as usize;
        let n = n.min(len);
        if n < len {
            let p = rb_sys::RSTRING_PTR(buf) as *mut u8;
            std::ptr::copy(p.add(n), p, len - n);
        }
        rb_sys::rb_str_set_len(buf, (len - n) as _);
    }
}

/// Waits for the next request's first bytes, for the head timeout (first
/// request) or the keep-alive timeout (after), bounded by `park_after`.
/// None once bytes are in; else what `__serve__` returns: `:end` at EOF or
/// when the timeout passed (the connection closes quietly, as the
/// watchdog's `expire` does for a connection idle in Ruby), `:idle` when
/// `park_after` passed first (`@idle_deadline`: when the timeout ends).
fn wait_for_head(
    b: &Backend,
    buf: VALUE,
    conn: VALUE,
    settings: &Settings,
    first: bool,
) -> Result<Option<VALUE>, Error> {
    let wait = if first {
        settings.head_timeout
    } else {
        settings.keep_alive_timeout
    };
    let parks = match (settings.park_after, wait) {
        (Some(p), Some(w)) => p.as_secs_f64() < w,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let bound = if parks {
        settings.park_after
    } else {
        wait.map(std::time::Duration::from_secs_f64)
    };
    // (`read_once` makes `buf` modifiable.)
    let (fd, owner) = crate::rt::readable_fd_owner(settings.socket)?;
    let read = || op::read::read(b, (fd, owner), buf, Some(HEAD_READ_SIZE), false, 0, false);
    let got = match bound {
        Some(d) => op::timeout::within(b, d, read)?,
        None => Some(read()?),
    };
    match got {
        None if parks => {
            // The wait began `park_after` ago.
            let start = now() - bound.map_or(0.0, |d| d.as_secs_f64());
            // SAFETY: GVL held; a Float (a flonum, or a new object).
            let deadline = wait.map_or(QNIL, |w| unsafe { rb_sys::rb_float_new(start + w) });
            set(conn, id!("@idle_deadline"), deadline)?;
            Ok(Some(sym(id!("idle"))))
        }
        None => Ok(Some(sym(id!("end")))),
        Some(v) if is_nil(v) => Ok(Some(sym(id!("end")))),
        Some(_) => Ok(None),
    }
}

/// Serves `req` as `Connection#serve` does; whether the connection goes
/// on to the next request.
fn serve_one(
    conn: VALUE,
    settings: &Settings,
    handler: VALUE,
    cur: Current,
) -> Result<bool, Error> {
    let req = cur.req;
    // Not idle while it has a request (`Connection#idle?`).
    set(conn, id!("@req"), req)?;
    CURRENT.with(|c| c.set(Some(cur)));
    // SAFETY: under `protect`: what the handler raises (or throws) comes back as `Err`; GVL
    // held, `handler` (a Proc: `Server.new`'s block) and `req` are live.
    let called = protect(|| unsafe {
        if rb_sys::rb_obj_is_proc(handler) == QTRUE {
            rb_sys::rb_proc_call_with_block(handler, 1, &req, QNIL)
        } else {
            rb_sys::rb_funcallv(handler, id!("call"), 1, &req)
        }
    });
    CURRENT.with(|c| c.set(None));
    let keep = match called {
        Ok(_) => finish(conn, req)?,
        Err(e) => {
            // A StandardError of the handler's (not the peer going away):
            // logged and answered with 500 by `handler_failed?`.
            let Some(exc) = e.exception() else {
                return Err(e.into());
            };
            if !truthy(call(conn, id!("handler_failed?"), &[req, exc])?) {
                return Err(e.into());
            }
            false
        }
    };
    set(conn, id!("@req"), QNIL)?;
    Ok(keep && !truthy(get(settings.server, id!("@stopping"))))
}

/// After the handler: the response finished (`Request#finish` unless it
/// was sent whole), and whether the connection may serve another request.
fn finish(conn: VALUE, req: VALUE) -> Result<bool, crate::rt::Error> {
    if truthy(get(conn, id!("@hijacked"))) {
        return Ok(false);
    }
    if get(req, id!("@sent")) != sym(id!("done")) {
        call(req, id!("finish"), &[])?;
    }
    Ok(!truthy(get(req, id!("@close"))))
}

pub fn init(ruby: &Ruby, http: RModule) -> Result<(), Error> {
    let connection = http.define_class("Connection", ruby.class_object())?;
    connection.define_private_method("__serve__", method!(serve, 1))?;
    Ok(())
}
