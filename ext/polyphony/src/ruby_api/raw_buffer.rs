//! Raw buffers: `Polyphony.__with_raw_buffer__(size) { |handle| }` lends a
//! block `size` bytes of native memory, named by an Integer handle that
//! `Backend#read`/`recv`/`write`/`send` accept where a String buffer goes;
//! `__raw_buffer_get__`, `__raw_buffer_set__` and `__raw_buffer_size__`
//! read and fill it. A handle is a number from a counter, looked up in a
//! table: an Integer that is not (or no longer) a lent buffer's handle
//! raises TypeError (it is not a buffer), it is never dereferenced.

use std::collections::HashMap;
use std::sync::Mutex;

use magnus::{prelude::*, Error, RModule, TryConvert, Value};
use rb_sys::VALUE;

use crate::rt::{self, expect_string, protect, raw, val};

/// One lent buffer: `len` of its `data.len()` bytes hold data.
struct RawBuffer {
    data: Vec<u8>,
    len: usize,
}

/// The lent buffers of the process, by handle, and the next handle.
static BUFFERS: Mutex<(u64, Option<HashMap<u64, RawBuffer>>)> = Mutex::new((0, None));

/// Buffers larger than this are refused (ArgumentError), as reads are.
const MAX_SIZE: usize = 1 << 30;

fn with_table<R>(f: impl FnOnce(&mut HashMap<u64, RawBuffer>, &mut u64) -> R) -> R {
    let mut guard = BUFFERS.lock().unwrap_or_else(|e| e.into_inner());
    let (next, table) = &mut *guard;
    f(table.get_or_insert_with(HashMap::new), next)
}

fn handle_of(v: VALUE) -> Result<u64, rt::Error> {
    if !rb_sys::FIXNUM_P(v) {
        return Err(rt::type_error("a raw buffer handle is an Integer"));
    }
    let h: i64 = TryConvert::try_convert(val(v))?;
    u64::try_from(h).map_err(|_| rt::type_error(format!("{h} is not a raw buffer handle")))
}

/// Runs `f` on the buffer `handle` names (ArgumentError if none).
fn with_buffer<R>(handle: VALUE, f: impl FnOnce(&mut RawBuffer) -> R) -> Result<R, rt::Error> {
    let h = handle_of(handle)?;
    with_table(|t, _| t.get_mut(&h).map(f))
        .ok_or_else(|| rt::type_error(format!("{h} is not a raw buffer handle")))
}

/// True if `v` is a raw buffer handle (an Integer where a buffer goes).
#[inline]
pub fn is_handle(v: VALUE) -> bool {
    rb_sys::FIXNUM_P(v)
}

/// A new binary String with the buffer's data.
pub fn contents(handle: VALUE) -> Result<VALUE, rt::Error> {
    let bytes = with_buffer(handle, |b| b.data[..b.len].to_vec())?;
    Ok(rt::binary_str(&bytes))
}

/// Room in the buffer from `pos` (negative: its end, as for String
/// buffers).
pub fn room(handle: VALUE, pos: i64) -> Result<usize, rt::Error> {
    with_buffer(handle, |b| b.data.len() - start(b, pos))
}

fn start(b: &RawBuffer, pos: i64) -> usize {
    if pos < 0 {
        b.len
    } else {
        (pos as usize).min(b.len)
    }
}

/// Puts the bytes of String `s` in the buffer at `pos` (negative: its
/// end); its data then ends after them. The caller read at most `room`.
pub fn put(handle: VALUE, pos: i64, s: VALUE) -> Result<usize, rt::Error> {
    // SAFETY: `s` is a live String made by the read just now; the bytes are
    // copied under the lock, before any Ruby call.
    let bytes = unsafe { rt::str_bytes(s) };
    with_buffer(handle, |b| {
        let at = start(b, pos);
        let n = bytes.len().min(b.data.len() - at);
        b.data[at..at + n].copy_from_slice(&bytes[..n]);
        b.len = at + n;
        n
    })
}

/// `Polyphony.__with_raw_buffer__(size) { |handle| }` → the block's value.
/// The buffer is freed when the block ends, however it ends.
fn with_raw_buffer(size: Value) -> Result<Value, Error> {
    let size = rt::opt_len(raw(size), "size")?
        .ok_or_else(|| rt::type_error("raw buffer size must be an Integer"))?;
    if size > MAX_SIZE {
        return Err(rt::arg_error(format!("raw buffer size {size} is too large")).into());
    }
    let h = with_table(|t, next| {
        *next += 1;
        t.insert(
            *next,
            RawBuffer {
                data: vec![0; size],
                len: 0,
            },
        );
        *next
    });
    // SAFETY: inside `protect`: the block's exception (or break/throw)
    // comes back as `Err`, after which the buffer is freed.
    let r = protect(|| unsafe { rb_sys::rb_yield(rb_sys::rb_uint2inum(h as _)) });
    with_table(|t, _| t.remove(&h));
    Ok(val(r?))
}

/// `Polyphony.__raw_buffer_get__(handle, len = nil)` → a String of the
/// buffer's data (at most `len` bytes).
fn raw_buffer_get(args: &[Value]) -> Result<Value, Error> {
    rt::check_arity(args, 1, 2)?;
    let want = match args.get(1) {
        Some(v) if !v.is_nil() => rt::opt_len(raw(*v), "length")?,
        _ => None,
    };
    let bytes = with_buffer(raw(args[0]), |b| {
        let n = want.map(|w| w.min(b.len)).unwrap_or(b.len);
        b.data[..n].to_vec()
    })?;
    Ok(val(rt::binary_str(&bytes)))
}

/// `Polyphony.__raw_buffer_set__(handle, str)`: the buffer's data becomes
/// `str`'s bytes (RuntimeError if they do not fit). Returns the handle.
fn raw_buffer_set(handle: Value, s: Value) -> Result<Value, Error> {
    let s = expect_string(raw(s))?;
    // SAFETY: `s` is a live String; its bytes are copied under the lock,
    // before any Ruby call.
    let bytes = unsafe { rt::str_bytes(s) };
    let fits = with_buffer(raw(handle), |b| {
        if bytes.len() > b.data.len() {
            return false;
        }
        b.data[..bytes.len()].copy_from_slice(bytes);
        b.len = bytes.len();
        true
    })?;
    if !fits {
        return Err(rt::runtime_error("string too long for raw buffer").into());
    }
    Ok(handle)
}

/// `Polyphony.__raw_buffer_size__(handle)` → its size in bytes.
fn raw_buffer_size(handle: Value) -> Result<usize, Error> {
    Ok(with_buffer(raw(handle), |b| b.data.len())?)
}

pub fn init(polyphony: RModule) -> Result<(), Error> {
    polyphony
        .define_module_function("__with_raw_buffer__", magnus::function!(with_raw_buffer, 1))?;
    polyphony
        .define_module_function("__raw_buffer_get__", magnus::function!(raw_buffer_get, -1))?;
    polyphony.define_module_function("__raw_buffer_set__", magnus::function!(raw_buffer_set, 2))?;
    polyphony
        .define_module_function("__raw_buffer_size__", magnus::function!(raw_buffer_size, 1))?;
    Ok(())
}
