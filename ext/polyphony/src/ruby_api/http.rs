//! `Polyphony::HTTP`'s native helper: the request-head parser
//! (`crate::http`) as one Ruby call. The server around it is Ruby
//! (lib/polyphony/http/).

use magnus::{function, prelude::*, r_hash::ForEach, Error, RHash, RModule, RString, Ruby, Value};
use rb_sys::VALUE;

use crate::http::{parse, reason, Body, Parsed};
use crate::rt::{is_nil, protect, raw, uint, val, QNIL};

/// A frozen, deduplicated string (method names, versions, header names:
/// the same few over and over).
fn interned(s: &[u8]) -> VALUE {
    // SAFETY: GVL held; the pointer and length describe `s`, which Ruby copies.
    unsafe { rb_sys::rb_interned_str(s.as_ptr() as *const _, s.len() as _) }
}

fn binary(s: &[u8]) -> VALUE {
    crate::rt::binary_str(s)
}

/// `Polyphony::HTTP.__parse_head__(buffer, max_line, max_headers)` →
/// `[method, path, query or nil, version, headers, head_bytes, body]` when
/// the buffer starts with a complete head (`body`: its length, 0 for none,
/// -1 for chunked); nil when more bytes are needed; an Integer status (400,
/// 414, 431, 501, 505) when the head must be refused.
/// Header names are lower-case; repeated headers are joined with ", ".
fn parse_head(buf: RString, max_line: usize, max_headers: usize) -> Result<Value, Error> {
    // A copy: building the result allocates, and a short string's bytes
    // live inside its object, which a compacting GC may move.
    // SAFETY: GVL held; the slice is copied before any Ruby call.
    let bytes = unsafe { buf.as_slice() }.to_vec();
    let head = match parse(&bytes, max_line, max_headers) {
        Parsed::Partial => return Ok(val(QNIL)),
        Parsed::Reject(status) => return Ok(val(uint(status as usize))),
        Parsed::Complete(h) => h,
    };
    // SAFETY: GVL held; every VALUE below is a new object kept on this
    // stack (scanned by the GC) until it is stored in `headers` or `out`.
    unsafe {
        let headers = rb_sys::rb_hash_new();
        let mut name = Vec::with_capacity(32);
        for (n, v) in &head.headers {
            name.clear();
            name.extend(n.bytes().map(|b| b.to_ascii_lowercase()));
            let key = interned(&name);
            let prev = rb_sys::rb_hash_lookup2(headers, key, QNIL);
            if prev == QNIL {
                rb_sys::rb_hash_aset(headers, key, binary(v));
            } else {
                rb_sys::rb_str_cat(prev, b", ".as_ptr() as *const _, 2);
                rb_sys::rb_str_cat(prev, v.as_ptr() as *const _, v.len() as _);
            }
        }
        let version: &[u8] = if head.minor == 0 {
            b"HTTP/1.0"
        } else {
            b"HTTP/1.1"
        };
        let items = [
            interned(head.method.as_bytes()),
            binary(head.path.as_bytes()),
            head.query.map(|q| binary(q.as_bytes())).unwrap_or(QNIL),
            interned(version),
            headers,
            uint(head.len),
            match head.body {
                Body::None => uint(0),
                Body::Length(n) => rb_sys::rb_ull2inum(n),
                Body::Chunked => rb_sys::rb_int2inum(-1),
            },
        ];
        Ok(val(rb_sys::rb_ary_new_from_values(
            items.len() as _,
            items.as_ptr(),
        )))
    }
}

/// `Polyphony::HTTP.__accepted__(socket)` → the peer's IP address (a
/// String, nil if not an IP socket), after turning Nagle's algorithm off
/// on TCP sockets. Native so that an accepted connection's fiber never runs
/// `getnameinfo` (Addrinfo#ip_address): it touches about 9 KB of stack,
/// which stay resident for as long as the connection lives.
fn accepted(io: Value) -> Result<Value, Error> {
    let fd = crate::rt::io_fd(raw(io), crate::rt::Dir::Read)?;
    let mut storage: libc::sockaddr_storage = unsafe_zeroed();
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` and `len` are valid for writing, `len` gives its size.
    let r =
        unsafe { libc::getpeername(fd, &mut storage as *mut _ as *mut libc::sockaddr, &mut len) };
    if r != 0 {
        return Ok(val(QNIL));
    }
    let ip: std::net::IpAddr = match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a `sockaddr_in` (family AF_INET).
            let a = unsafe { *(&storage as *const _ as *const libc::sockaddr_in) };
            std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)).into()
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a `sockaddr_in6` (family AF_INET6).
            let a = unsafe { *(&storage as *const _ as *const libc::sockaddr_in6) };
            std::net::Ipv6Addr::from(a.sin6_addr.s6_addr).into()
        }
        _ => return Ok(val(QNIL)),
    };
    let one: libc::c_int = 1;
    // SAFETY: `one` is a valid c_int for the option's length; a failure
    // (not a TCP socket) is harmless and ignored.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    let text = ip.to_string();
    // SAFETY: GVL held; the pointer and length describe `text`, which Ruby copies.
    let s = unsafe { rb_sys::rb_utf8_str_new(text.as_ptr() as *const _, text.len() as _) };
    Ok(val(s))
}

fn unsafe_zeroed() -> libc::sockaddr_storage {
    // SAFETY: `sockaddr_storage` is plain old data, valid when zeroed.
    unsafe { std::mem::zeroed() }
}

/// `Polyphony::HTTP.reason(status)` → the reason phrase ("Not Found"),
/// "Unknown" for a code the server does not list.
fn status_reason(status: u16) -> &'static str {
    reason(status)
}

/// `flags` of `__response__`.
const CLOSE: u32 = 1;
const KEEP_ALIVE: u32 = 2;
const CHUNKED: u32 = 4;
const OMIT_BODY: u32 = 8;

/// The bytes of `v` as a header value (`to_s` for non-Strings).
fn header_text(v: Value) -> Result<VALUE, Error> {
    let v = raw(v);
    if crate::rt::is_string(v) {
        return Ok(v);
    }
    // SAFETY: inside `protect`: what `to_s` raises comes back as `Err`; GVL held.
    protect(|| unsafe { rb_sys::rb_obj_as_string(v) }).map_err(Into::into)
}

fn push_str(out: &mut Vec<u8>, s: VALUE) {
    // SAFETY: GVL held; `s` is a live String, copied at once.
    out.extend_from_slice(unsafe { crate::rt::str_bytes(s) });
}

/// `Polyphony::HTTP.__response__(status, headers, body, flags)` → the
/// response bytes: the status line, `headers` (a Hash; Array values give a
/// line each; Symbol keys and `:pseudo` keys are skipped), a Content-Length
/// from `body` (a String) unless the headers have one, the status has no
/// body or `flags` says CHUNKED, the Connection and Transfer-Encoding lines
/// `flags` asks for, then `body` unless OMIT_BODY. `body` nil: head only.
fn response(status: u16, headers: RHash, body: Value, flags: u32) -> Result<RString, Error> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_length = false;
    headers.foreach(|k: Value, v: Value| {
        let k = raw(k);
        if !crate::rt::is_string(k) {
            return Ok(ForEach::Continue);
        }
        // SAFETY: GVL held; `k` is a live String, copied at once.
        let name = unsafe { crate::rt::str_bytes(k) }.to_vec();
        if name.first() == Some(&b':') || is_nil(raw(v)) {
            return Ok(ForEach::Continue);
        }
        has_length |= name.eq_ignore_ascii_case(b"content-length");
        let mut line = |value: Value| -> Result<(), Error> {
            let text = header_text(value)?;
            out.extend_from_slice(&name);
            out.extend_from_slice(b": ");
            push_str(&mut out, text);
            out.extend_from_slice(b"\r\n");
            Ok(())
        };
        match magnus::RArray::from_value(v) {
            Some(a) => {
                for e in a.into_iter() {
                    line(e)?;
                }
            }
            None => line(v)?,
        }
        Ok(ForEach::Continue)
    })?;
    let bodiless = status < 200 || status == 204 || status == 304;
    let body = raw(body);
    let body = if is_nil(body) {
        None
    } else {
        Some(crate::rt::expect_string(body)?)
    };
    if let Some(b) = body {
        if !has_length && !bodiless && flags & CHUNKED == 0 {
            // SAFETY: GVL held; `b` is a live String (checked above).
            let len = unsafe { crate::rt::str_bytes(b) }.len();
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(len.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    if flags & CHUNKED != 0 {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if flags & CLOSE != 0 {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if flags & KEEP_ALIVE != 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if let Some(b) = body {
        if flags & OMIT_BODY == 0 && !bodiless {
            push_str(&mut out, b);
        }
    }
    RString::from_value(val(crate::rt::binary_str(&out)))
        .ok_or_else(|| crate::rt::type_error("not a String").into())
}

/// `Polyphony::HTTP.__idle_open__` → the fd of a new parking set
/// (`crate::http::idle`; the server wraps it in an IO that owns it).
fn idle_open() -> Result<i32, Error> {
    crate::http::idle::open().map_err(|e| crate::rt::os_error(&e, "epoll_create1").into())
}

/// `__idle_add__(set_fd, fd)`: parks `fd` until it is readable.
fn idle_add(ep: i32, fd: i32) -> Result<(), Error> {
    crate::http::idle::add(ep, fd).map_err(|e| crate::rt::os_error(&e, "epoll_ctl").into())
}

/// `__idle_delete__(set_fd, fd)`: unparks `fd` (before it is closed).
fn idle_delete(ep: i32, fd: i32) {
    crate::http::idle::delete(ep, fd)
}

/// `__idle_ready__(set_fd, max)` → the parked fds readable now (an Array
/// of Integers, each unparked).
fn idle_ready(ep: i32, max: usize) -> Result<Vec<i32>, Error> {
    crate::http::idle::ready(ep, max).map_err(|e| crate::rt::os_error(&e, "epoll_wait").into())
}

pub fn init(_ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    let http = polyphony.define_module("HTTP")?;
    http.define_singleton_method("__parse_head__", function!(parse_head, 3))?;
    http.define_singleton_method("__response__", function!(response, 4))?;
    http.define_singleton_method("__accepted__", function!(accepted, 1))?;
    http.define_singleton_method("reason", function!(status_reason, 1))?;
    http.define_singleton_method("__idle_open__", function!(idle_open, 0))?;
    http.define_singleton_method("__idle_add__", function!(idle_add, 2))?;
    http.define_singleton_method("__idle_delete__", function!(idle_delete, 2))?;
    http.define_singleton_method("__idle_ready__", function!(idle_ready, 2))?;
    Ok(())
}
