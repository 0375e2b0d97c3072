//! `Polyphony::HTTP`'s native helper: the request-head parser
//! (`crate::http`) as one Ruby call. The server around it is Ruby
//! (lib/polyphony/http/).

use magnus::{function, prelude::*, Error, RModule, RString, Ruby, Value};
use rb_sys::VALUE;

use crate::http::{parse, Parsed};
use crate::rt::{uint, val, QNIL};

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
/// `[method, path, query or nil, version, headers, head_bytes]` when the
/// buffer starts with a complete head; nil when more bytes are needed; an
/// Integer status (400, 414, 431, 505) when the head must be refused.
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
        ];
        Ok(val(rb_sys::rb_ary_new_from_values(
            items.len() as _,
            items.as_ptr(),
        )))
    }
}

pub fn init(_ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    let http = polyphony.define_module("HTTP")?;
    http.define_singleton_method("__parse_head__", function!(parse_head, 3))?;
    Ok(())
}
