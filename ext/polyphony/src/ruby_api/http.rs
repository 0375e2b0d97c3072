//! `Polyphony::HTTP`'s native helper: the request-head parser
//! (`crate::http`) as one Ruby call. The server around it is Ruby
//! (lib/polyphony/http/).

use magnus::{function, prelude::*, r_hash::ForEach, Error, RHash, RModule, RString, Ruby, Value};
use rb_sys::VALUE;

use crate::http::{parse, reason, Body, Head, Parsed};
use crate::rt::{is_nil, protect, raw, uint, val, QFALSE, QNIL, QTRUE};

/// A frozen, deduplicated string (method names, versions, header names:
/// the same few over and over). The most common are kept at hand
/// (`COMMON`): looking one up in Ruby's table of such strings hashes it.
fn interned(s: &[u8]) -> VALUE {
    if let Some(i) = COMMON.iter().position(|c| *c == s) {
        let v = COMMON_VALUES[i].load(std::sync::atomic::Ordering::Relaxed);
        if v != 0 {
            return v as VALUE;
        }
    }
    // SAFETY: GVL held; the pointer and length describe `s`, which Ruby copies.
    unsafe { rb_sys::rb_interned_str(s.as_ptr() as *const _, s.len() as _) }
}

/// The strings `interned` has at hand, in its order of lookups.
const COMMON: [&[u8]; 24] = [
    b"GET",
    b"HTTP/1.1",
    b"host",
    b"connection",
    b"user-agent",
    b"accept",
    b"accept-encoding",
    b"accept-language",
    b"content-type",
    b"content-length",
    b"cookie",
    b"referer",
    b"origin",
    b"cache-control",
    b"upgrade",
    b"authorization",
    b"transfer-encoding",
    b"expect",
    b"HTTP/1.0",
    b"POST",
    b"HEAD",
    b"PUT",
    b"DELETE",
    b"PATCH",
];

/// Their frozen Strings (0 until `init`; pinned for the process's life).
static COMMON_VALUES: [std::sync::atomic::AtomicU64; 24] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 24];

fn binary(s: &[u8]) -> VALUE {
    crate::rt::binary_str(s)
}

/// A request line as Ruby objects.
pub(crate) struct HeadValues {
    /// Frozen and interned ("GET").
    pub method: VALUE,
    pub path: VALUE,
    /// nil when the target has no `?`.
    pub query: VALUE,
    /// Frozen and interned: "HTTP/1.0" or "HTTP/1.1".
    pub version: VALUE,
}

/// The Ruby objects of `head`'s request line. The caller keeps the result
/// on its stack (scanned by the GC) until it stores the values somewhere
/// marked.
pub(crate) fn head_values(head: &Head) -> HeadValues {
    let version: &[u8] = if head.minor == 0 {
        b"HTTP/1.0"
    } else {
        b"HTTP/1.1"
    };
    HeadValues {
        method: interned(head.method.as_bytes()),
        path: binary(head.path.as_bytes()),
        query: head.query.map(|q| binary(q.as_bytes())).unwrap_or(QNIL),
        version: interned(version),
    }
}

/// `head`'s headers, a Hash: lower-case names (interned) to values,
/// repeated headers joined with ", ".
fn headers_hash(head: &Head) -> VALUE {
    // SAFETY: GVL held; every VALUE below is a new object kept on this
    // stack (scanned by the GC) until it is stored in `headers`.
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
        headers
    }
}

/// Parses `head`, the bytes of a head parsed before (`@head` of a request
/// the native loop made), whatever the limits: `f` of it, or None if it is
/// not a complete head.
pub(crate) fn reparse<T>(head: VALUE, f: impl FnOnce(&Head) -> T) -> Result<Option<T>, Error> {
    let s = crate::rt::expect_string(head)?;
    // SAFETY: GVL held; the slice is copied before any Ruby call.
    let bytes = unsafe { crate::rt::str_bytes(s) }.to_vec();
    let lines = bytes.iter().filter(|b| **b == b'\n').count();
    Ok(match parse(&bytes, bytes.len(), lines.max(1)) {
        Parsed::Complete(h) => Some(f(&h)),
        _ => None,
    })
}

/// `Polyphony::HTTP.__parse_headers__(head)` → the headers Hash of a head
/// (see `reparse`) as `__parse_head__` gives them; an empty Hash for
/// anything else.
fn parse_headers(head: Value) -> Result<Value, Error> {
    let headers = reparse(raw(head), headers_hash)?;
    // SAFETY: GVL held.
    Ok(val(
        headers.unwrap_or_else(|| unsafe { rb_sys::rb_hash_new() })
    ))
}

/// `Polyphony::HTTP.__parse_head__(buffer, max_line, max_headers)` →
/// `[method, path, query or nil, version, headers, head_bytes, body,
/// keep_alive]` when the buffer starts with a complete head (`body`: its
/// length, 0 for none, -1 for chunked; `keep_alive`: whether the client
/// asks to keep the connection, `Head::keep_alive`); nil when more bytes
/// are needed; an Integer status (400, 414, 431, 501, 505) when the head
/// must be refused. Header names are lower-case; repeated headers are
/// joined with ", ".
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
    let v = head_values(&head);
    let headers = headers_hash(&head);
    // SAFETY: GVL held; the values are new objects kept on this stack
    // until they are stored in the Array.
    unsafe {
        let items = [
            v.method,
            v.path,
            v.query,
            v.version,
            headers,
            uint(head.len),
            match head.body {
                Body::None => uint(0),
                Body::Length(n) => rb_sys::rb_ull2inum(n),
                Body::Chunked => rb_sys::rb_int2inum(-1),
            },
            if head.keep_alive() { QTRUE } else { QFALSE },
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

/// `flags` of `__response__` (`Request::CLOSE` & co.).
pub(crate) const CLOSE: u32 = 1;
pub(crate) const KEEP_ALIVE: u32 = 2;
pub(crate) const CHUNKED: u32 = 4;
pub(crate) const OMIT_BODY: u32 = 8;

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
    let body = raw(body);
    let body = if is_nil(body) {
        None
    } else {
        Some(crate::rt::expect_string(body)?)
    };
    let mut out = Vec::with_capacity(256);
    build_response(&mut out, status, Some(raw(headers.as_value())), body, flags)?;
    RString::from_value(val(crate::rt::binary_str(&out)))
        .ok_or_else(|| crate::rt::type_error("not a String").into())
}

/// The bytes of `__response__` appended to `out`; `headers` a Hash (or
/// none), `body` a String (or none: head only).
pub(crate) fn build_response(
    out: &mut Vec<u8>,
    status: u16,
    headers: Option<VALUE>,
    body: Option<VALUE>,
    flags: u32,
) -> Result<(), Error> {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, status as usize);
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_length = false;
    if let Some(h) = headers.and_then(|h| RHash::from_value(val(h))) {
        let start = out.len();
        match plain_header_lines(out, raw(h.as_value())) {
            Some(length) => has_length = length,
            None => {
                out.truncate(start);
                has_length = header_lines(out, h)?;
            }
        }
    }
    let bodiless = status < 200 || status == 204 || status == 304;
    if let Some(b) = body {
        if !has_length && !bodiless && flags & CHUNKED == 0 {
            // SAFETY: GVL held; `b` is a live String (the caller's contract).
            let len = unsafe { crate::rt::str_bytes(b) }.len();
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, len);
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
            push_str(out, b);
        }
    }
    Ok(())
}

/// What `plain_header_lines` keeps while it walks a Hash.
struct Lines<'a> {
    out: &'a mut Vec<u8>,
    has_length: bool,
    /// A value that needs Ruby (`to_s`) was met: walk stopped.
    slow: bool,
}

/// `header_lines` without calling Ruby: Some(whether a Content-Length was
/// among them), or None (and `out` partly written) when a value is not a
/// String, nil or an Array of Strings.
fn plain_header_lines(out: &mut Vec<u8>, h: VALUE) -> Option<bool> {
    /// `rb_hash_foreach`'s callback: a line per header.
    ///
    /// # Safety
    /// `arg` must point to a live `Lines` that nothing else uses during
    /// the walk; `k` and `v` must be live objects.
    unsafe extern "C" fn each(k: VALUE, v: VALUE, arg: VALUE) -> std::ffi::c_int {
        // SAFETY: `arg` is the `Lines` of `plain_header_lines`, alive for the walk; the keys
        // and values are live objects of the Hash; nothing here calls Ruby, allocates a Ruby
        // object or raises.
        unsafe {
            let lines = &mut *(arg as *mut Lines);
            if !crate::rt::is_string(k) || is_nil(v) {
                return 0; // ST_CONTINUE
            }
            let name = crate::rt::str_bytes(k);
            if name.first() == Some(&b':') {
                return 0;
            }
            let one = |lines: &mut Lines, value: VALUE| push_header(lines.out, name, value);
            if crate::rt::is_string(v) {
                one(lines, v);
            } else if crate::rt::is_array(v) {
                let n = rb_sys::RARRAY_LEN(v);
                if (0..n).any(|i| !crate::rt::is_string(rb_sys::rb_ary_entry(v, i))) {
                    lines.slow = true;
                    return 1; // ST_STOP
                }
                for i in 0..n {
                    one(lines, rb_sys::rb_ary_entry(v, i));
                }
            } else {
                lines.slow = true;
                return 1;
            }
            lines.has_length |= name.eq_ignore_ascii_case(b"content-length");
            0
        }
    }
    let mut lines = Lines {
        out,
        has_length: false,
        slow: false,
    };
    // SAFETY: GVL held; `h` is a live Hash; `each` neither calls Ruby nor raises, and
    // `lines` outlives the walk.
    unsafe { rb_sys::rb_hash_foreach(h, Some(each), &mut lines as *mut Lines as VALUE) };
    (!lines.slow).then_some(lines.has_length)
}

/// The header lines of `h` (Array values give a line each; `to_s` of
/// other values; keys that are not Strings, `:pseudo` keys and nil values
/// skipped): whether a Content-Length was among them.
fn header_lines(out: &mut Vec<u8>, h: RHash) -> Result<bool, Error> {
    let mut has_length = false;
    let mut name = Vec::new();
    h.foreach(|k: Value, v: Value| {
        let k = raw(k);
        if !crate::rt::is_string(k) {
            return Ok(ForEach::Continue);
        }
        name.clear();
        // SAFETY: GVL held; `k` is a live String, copied at once.
        name.extend_from_slice(unsafe { crate::rt::str_bytes(k) });
        if name.first() == Some(&b':') || is_nil(raw(v)) {
            return Ok(ForEach::Continue);
        }
        has_length |= name.eq_ignore_ascii_case(b"content-length");
        let mut line = |value: Value| -> Result<(), Error> {
            push_header(out, &name, header_text(value)?);
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
    Ok(has_length)
}

/// A header line: `name`, then String `value`.
fn push_header(out: &mut Vec<u8>, name: &[u8], value: VALUE) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    push_str(out, value);
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Keeps `v` alive and where it is for the process's life.
pub(crate) fn pin(v: VALUE) -> VALUE {
    // SAFETY: GVL held; `v` is a live object.
    unsafe { rb_sys::rb_gc_register_mark_object(v) };
    v
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

pub fn init(ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    let http = polyphony.define_module("HTTP")?;
    for (name, slot) in COMMON.iter().zip(&COMMON_VALUES) {
        // SAFETY: GVL held; the pointer and length describe `name`, which
        // Ruby copies.
        let v = unsafe { rb_sys::rb_interned_str(name.as_ptr() as *const _, name.len() as _) };
        slot.store(pin(v) as u64, std::sync::atomic::Ordering::Relaxed);
    }
    super::http_request::init(ruby, http)?;
    super::http_connection::init(ruby, http)?;
    http.define_singleton_method("__parse_head__", function!(parse_head, 3))?;
    http.define_singleton_method("__parse_headers__", function!(parse_headers, 1))?;
    http.define_singleton_method("__response__", function!(response, 4))?;
    http.define_singleton_method("__accepted__", function!(accepted, 1))?;
    http.define_singleton_method("reason", function!(status_reason, 1))?;
    http.define_singleton_method("__idle_open__", function!(idle_open, 0))?;
    http.define_singleton_method("__idle_add__", function!(idle_add, 2))?;
    http.define_singleton_method("__idle_delete__", function!(idle_delete, 2))?;
    http.define_singleton_method("__idle_ready__", function!(idle_ready, 2))?;
    Ok(())
}
