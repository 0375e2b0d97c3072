//! The Ruby C API glue, the floor every other module stands on: raw value
//! access, exceptions as Rust errors ([`Error`], [`protect`]), interned ids
//! and cached constants, GVL release, fd and argument extraction, and
//! wrapped Rust values ([`data`]). `core/` reaches Ruby only through here
//! and `rb_sys`; it never names magnus. Everything here runs with the GVL
//! held unless it says otherwise.

pub mod consts;
pub mod data;
mod error;
pub mod hooks;
pub mod nogvl;

use magnus::rb_sys::{AsRawValue, FromRawValue};
use magnus::{Ruby, Value};
use rb_sys::VALUE;

pub use error::Error;

pub const QNIL: VALUE = rb_sys::special_consts::Qnil as VALUE;
pub const QTRUE: VALUE = rb_sys::special_consts::Qtrue as VALUE;
pub const QFALSE: VALUE = rb_sys::special_consts::Qfalse as VALUE;

#[inline]
pub fn raw(v: Value) -> VALUE {
    v.as_raw()
}

#[inline]
pub fn val(v: VALUE) -> Value {
    // SAFETY: every VALUE this crate handles is a live Ruby object or an
    // immediate (the crate's one invariant about VALUEs).
    unsafe { Value::from_raw(v) }
}

#[inline]
pub fn is_nil(v: VALUE) -> bool {
    v == QNIL
}

#[inline]
pub fn ruby() -> Ruby {
    // SAFETY: called only from Ruby threads with the GVL held (never from a
    // no-GVL closure or a thread Ruby does not know).
    unsafe { Ruby::get_unchecked() }
}

/// Runs `f` under `rb_protect`: a Ruby exception (or throw/break) raised inside
/// comes back as `Err` instead of unwinding over Rust frames.
#[inline]
pub fn protect<F: FnOnce() -> VALUE>(f: F) -> Result<VALUE, Error> {
    magnus::rb_sys::protect(f).map_err(Error::from)
}

/// True if `v` is an instance of `Exception` (immediates never are).
#[inline]
pub fn is_exception(v: VALUE) -> bool {
    if rb_sys::SPECIAL_CONST_P(v) {
        return false;
    }
    // SAFETY: GVL held; type checks of a live heap object, which never raise.
    unsafe {
        if rb_sys::RB_TYPE_P(v, rb_sys::ruby_value_type::RUBY_T_OBJECT) {
            rb_sys::rb_obj_is_kind_of(v, rb_sys::rb_eException) == QTRUE
        } else {
            false
        }
    }
}

/// Turns a resume value into `Err` when it is an exception. A
/// `Polyphony::Interjection` is not raised: its block runs here, in the
/// receiving fiber, and the switchpoint returns the interjection (errors
/// raised by the block propagate).
#[inline]
pub fn raise_if_exception(v: VALUE) -> Result<VALUE, Error> {
    if !is_exception(v) {
        return Ok(v);
    }
    if consts::is_interjection(v) {
        call(v, id!("invoke"), &[])?;
        return Ok(v);
    }
    Err(exception_error(v))
}

/// An `Error` raising `exc`; a TypeError if `exc` is not an exception
/// (never a panic).
pub fn exception_error(exc: VALUE) -> Error {
    match magnus::Exception::from_value(val(exc)) {
        Some(e) => Error::from(magnus::Error::from(e)),
        None => type_error("exception class/object expected"),
    }
}

/// `SystemCallError` for an errno value (gives the right `Errno::*` class).
pub fn errno_error(errno: i32, ctx: &str) -> Error {
    let msg = std::ffi::CString::new(ctx).unwrap_or_default();
    // SAFETY: GVL held; `msg` is a NUL-terminated string alive for the call.
    let exc = unsafe { rb_sys::rb_syserr_new(errno, msg.as_ptr()) };
    exception_error(exc)
}

/// `SystemCallError` for a failed system call reported as an `io::Error`
/// (EIO if it carries no errno).
pub fn os_error(e: &std::io::Error, ctx: &str) -> Error {
    errno_error(e.raw_os_error().unwrap_or(libc::EIO), ctx)
}

/// A `RuntimeError` describing a Rust panic (a bug of ours), for code that
/// caught one at a boundary with C and must report it to Ruby instead of
/// unwinding into it. Consumes the panic's payload.
pub fn panic_error(payload: Box<dyn std::any::Any + Send>) -> VALUE {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into());
    drop(payload);
    let msg = format!("polyphony: internal error (Rust panic: {what})");
    // SAFETY: GVL held; the pointer and length describe `msg`, which Ruby
    // copies.
    unsafe {
        rb_sys::rb_exc_new(
            rb_sys::rb_eRuntimeError,
            msg.as_ptr() as *const _,
            msg.len() as _,
        )
    }
}

/// A new binary (ASCII-8BIT: `rb_str_new`'s encoding) String of `bytes`.
#[inline]
pub fn binary_str(bytes: &[u8]) -> VALUE {
    // SAFETY: GVL held; the pointer and length describe `bytes`, which Ruby
    // copies.
    unsafe { rb_sys::rb_str_new(bytes.as_ptr() as *const _, bytes.len() as _) }
}

/// Makes String `s` modifiable in place (its own, unshared buffer), as
/// `rb_str_modify` does, but returns what that would raise (FrozenError for a
/// frozen String, RuntimeError for one locked by `rb_str_locktmp`) instead of
/// unwinding over Rust frames. Needed wherever a String the caller passed is
/// written after a switch: another fiber may have frozen, locked or shared
/// (`dup`) it meanwhile.
#[inline]
pub fn str_modify(s: VALUE) -> Result<(), Error> {
    // Frozen, or locked by `rb_str_locktmp` (Ruby's STR_TMPLOCK is FL_USER7).
    const BLOCKING: VALUE = rb_sys::ruby_fl_type::RUBY_FL_FREEZE as VALUE
        | rb_sys::ruby_fl_type::RUBY_FL_USER7 as VALUE;
    // SAFETY: `s` is a live heap String (callers check the type); reading its flags word
    // neither allocates nor raises.
    let flags: VALUE = unsafe { (*(s as *const rb_sys::RBasic)).flags };
    if flags & BLOCKING != 0 {
        // SAFETY: under `protect`, so what `rb_str_modify` raises comes back as `Err`.
        protect(|| unsafe {
            rb_sys::rb_str_modify(s);
            QNIL
        })?;
        return Ok(());
    }
    // SAFETY: neither frozen nor locked, so `rb_str_modify` only unshares the buffer (which
    // allocates, and like every allocation may fail only with Ruby's out-of-memory error).
    unsafe { rb_sys::rb_str_modify(s) };
    Ok(())
}

/// A Ruby Integer for `n`.
#[inline]
pub fn uint(n: usize) -> VALUE {
    // SAFETY: GVL held; allocates at most a Bignum.
    unsafe { rb_sys::rb_uint2inum(n as _) }
}

/// True if `v` is an Array.
#[inline]
pub fn is_array(v: VALUE) -> bool {
    // SAFETY: `RB_TYPE_P` only reads the object's header (or none, for an
    // immediate).
    unsafe { rb_sys::RB_TYPE_P(v, rb_sys::ruby_value_type::RUBY_T_ARRAY) }
}

/// True if `v` is a kind of `class`.
#[inline]
pub fn kind_of(v: VALUE, class: VALUE) -> bool {
    // SAFETY: GVL held; both are live objects (`class` a constant).
    unsafe { rb_sys::rb_obj_is_kind_of(v, class) == QTRUE }
}

pub fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub fn arg_error(msg: impl Into<String>) -> Error {
    magnus::Error::new(ruby().exception_arg_error(), msg.into()).into()
}

pub fn type_error(msg: impl Into<String>) -> Error {
    magnus::Error::new(ruby().exception_type_error(), msg.into()).into()
}

pub fn io_error(msg: impl Into<String>) -> Error {
    magnus::Error::new(ruby().exception_io_error(), msg.into()).into()
}

pub fn thread_error(msg: impl Into<String>) -> Error {
    magnus::Error::new(ruby().exception_thread_error(), msg.into()).into()
}

pub fn runtime_error(msg: impl Into<String>) -> Error {
    magnus::Error::new(ruby().exception_runtime_error(), msg.into()).into()
}

/// An error of the top-level exception class `name` (e.g. "FiberError").
pub fn error_of(name: &str, msg: impl Into<String>) -> Error {
    // SAFETY: GVL held; called only with names of core exception classes, which are always
    // defined.
    let c = unsafe { rb_sys::rb_const_get(rb_sys::rb_cObject, intern(name)) };
    match magnus::ExceptionClass::from_value(val(c)) {
        Some(class) => magnus::Error::new(class, msg.into()).into(),
        None => runtime_error(msg),
    }
}

/// Interned id for a name computed at run time (a symbol-table lookup that
/// hashes the name: use `id!` for literals).
#[inline]
pub fn intern(name: &str) -> rb_sys::ID {
    // SAFETY: GVL held; the pointer and length describe `name`, which Ruby copies.
    unsafe { rb_sys::rb_intern2(name.as_ptr() as *const _, name.len() as _) }
}

/// The interned id of a literal name, looked up once per call site: ids of
/// interned names are never freed, so the cached value stays valid.
macro_rules! id {
    ($name:literal) => {{
        static CACHE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        $crate::rt::cached_id(&CACHE, $name)
    }};
}
pub(crate) use id;

/// `id!`'s slow path: interns `name` and remembers it in `cache`.
#[inline]
pub fn cached_id(cache: &std::sync::atomic::AtomicU64, name: &str) -> rb_sys::ID {
    let v = cache.load(std::sync::atomic::Ordering::Relaxed);
    if v != 0 {
        return v as rb_sys::ID;
    }
    let id = intern(name);
    cache.store(id as u64, std::sync::atomic::Ordering::Relaxed);
    id
}

/// Calls `recv.<id>(*args)` with protection.
pub fn call(recv: VALUE, id: rb_sys::ID, args: &[VALUE]) -> Result<VALUE, Error> {
    // SAFETY: inside `protect`: what the call raises (or throws) comes back as `Err` instead of
    // unwinding over Rust frames; GVL held, arguments are live objects the caller holds.
    protect(|| unsafe { rb_sys::rb_funcallv(recv, id, args.len() as _, args.as_ptr()) })
}

/// Which end of an IO-like object an operation uses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Read,
    Write,
}

/// Resolves the `io` argument of a backend operation to a file descriptor:
/// an `IO` (closed → `IOError`), an Integer fd, an object whose `@io` holds an
/// IO, or a `Polyphony::Pipe` (read or write end).
pub fn io_fd(io: VALUE, dir: Dir) -> Result<i32, Error> {
    io_fd_owner(io, dir).map(|(fd, _)| fd)
}

/// `io_fd_owner` for a read: IOError "not opened for reading" (as stock
/// Ruby) for an IO that cannot be read (after `close_read`, the write end
/// of a pipe).
pub fn readable_fd_owner(io: VALUE) -> Result<(i32, VALUE), Error> {
    let (fd, owner) = io_fd_owner(io, Dir::Read)?;
    if !is_nil(owner) {
        // SAFETY: `owner` is an open T_FILE (io_fd_owner checked it).
        let mode = unsafe { (*(*(owner as *const rb_sys::RFile)).fptr).mode };
        if mode as u32 & rb_sys::FMODE_READABLE == 0 {
            return Err(io_error("not opened for reading"));
        }
    }
    Ok((fd, owner))
}

/// `io_fd`, and the IO object that owns the fd (nil for a bare fd number):
/// what an interrupted operation gives back is kept on it (`crate::core::kept`).
pub fn io_fd_owner(io: VALUE, dir: Dir) -> Result<(i32, VALUE), Error> {
    // SAFETY: GVL held; `io` is a live object; every call that can raise (`rb_io_descriptor`,
    // method calls) runs under `protect`, and `fptr` is read only for a T_FILE.
    unsafe {
        if rb_sys::FIXNUM_P(io) {
            let fd = rb_sys::rb_num2long(io);
            if fd < 0 || fd > i32::MAX as _ {
                return Err(arg_error(format!("invalid file descriptor {fd}")));
            }
            return Ok((fd as i32, QNIL));
        }
        if rb_sys::SPECIAL_CONST_P(io) {
            return Err(type_error(format!(
                "expected an IO or a file descriptor, got {}",
                inspect_class(io)
            )));
        }
        if rb_sys::RB_TYPE_P(io, rb_sys::ruby_value_type::RUBY_T_FILE) {
            // A duplex IO (`IO.popen(cmd, 'r+')`) writes through its tied
            // write IO, which has its own fd.
            let io = match dir {
                Dir::Write => rb_sys::rb_io_get_write_io(io),
                Dir::Read => io,
            };
            // Open: its fd, with no call. Closed or uninitialized: Ruby
            // raises its own IOError.
            let fptr = (*(io as *const rb_sys::RFile)).fptr;
            if !fptr.is_null() && (*fptr).fd >= 0 {
                return Ok(((*fptr).fd, io));
            }
            return protect(|| rb_sys::rb_io_descriptor(io) as VALUE).map(|fd| (fd as i32, io));
        }
        let m = match dir {
            Dir::Read => id!("__read_io__"),
            Dir::Write => id!("__write_io__"),
        };
        if rb_sys::rb_respond_to(io, m) != 0 {
            let inner = call(io, m, &[])?;
            if inner != io {
                return io_fd_owner(inner, dir);
            }
        }
        let inner = rb_sys::rb_ivar_get(io, id!("@io"));
        if !is_nil(inner) && inner != io {
            return io_fd_owner(inner, dir);
        }
        Err(type_error(format!(
            "expected an IO or a file descriptor, got {}",
            inspect_class(io)
        )))
    }
}

pub fn inspect_class(v: VALUE) -> String {
    // SAFETY: GVL held; `rb_obj_class` and `rb_class2name` of a live object do not raise, and the
    // name is copied at once.
    unsafe {
        let cls = rb_sys::rb_obj_class(v);
        let name = rb_sys::rb_class2name(cls);
        if name.is_null() {
            "object".into()
        } else {
            std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned()
        }
    }
}

/// Converts a Ruby length argument (`nil` → `None`); negative → ArgumentError.
pub fn opt_len(v: VALUE, what: &str) -> Result<Option<usize>, Error> {
    if is_nil(v) {
        return Ok(None);
    }
    let n: i64 = magnus::TryConvert::try_convert(val(v))?;
    if n < 0 {
        return Err(arg_error(format!("negative {what} {n}")));
    }
    Ok(Some(n as usize))
}

/// Seconds (Numeric) → Duration. Negative → zero; non-numeric → TypeError.
pub fn duration(v: VALUE) -> Result<std::time::Duration, Error> {
    // SAFETY: GVL held; type checks of a live object; the conversion runs only on a Numeric.
    unsafe {
        if !(rb_sys::FIXNUM_P(v)
            || rb_sys::RB_FLOAT_TYPE_P(v)
            || (!rb_sys::SPECIAL_CONST_P(v)
                && rb_sys::rb_obj_is_kind_of(v, rb_sys::rb_cNumeric) == QTRUE))
        {
            return Err(type_error(format!(
                "no implicit conversion to float from {}",
                inspect_class(v).to_lowercase()
            )));
        }
    }
    let f: f64 = magnus::TryConvert::try_convert(val(v))?;
    if f.is_nan() {
        return Err(arg_error("duration is NaN"));
    }
    if f <= 0.0 {
        return Ok(std::time::Duration::ZERO);
    }
    Ok(std::time::Duration::from_secs_f64(f.min(1e9)))
}

/// Ruby string bytes (no copy).
///
/// # Safety
/// `s` must be a live String, and the slice must not outlive any Ruby call
/// (which may move, resize or free the bytes) nor the String.
pub unsafe fn str_bytes<'a>(s: VALUE) -> &'a [u8] {
    // SAFETY: `s` is a live String (the caller's contract).
    let (ptr, len) = unsafe {
        (
            rb_sys::RSTRING_PTR(s) as *const u8,
            rb_sys::RSTRING_LEN(s) as usize,
        )
    };
    if len == 0 {
        &[]
    } else {
        // SAFETY: a String's pointer is valid for its length.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// Whether `v` is a String.
pub fn is_string(v: VALUE) -> bool {
    // SAFETY: GVL held; type check of a live value.
    unsafe {
        !rb_sys::SPECIAL_CONST_P(v) && rb_sys::RB_TYPE_P(v, rb_sys::ruby_value_type::RUBY_T_STRING)
    }
}

pub fn expect_string(v: VALUE) -> Result<VALUE, Error> {
    if is_string(v) {
        Ok(v)
    } else {
        Err(type_error(format!(
            "no implicit conversion of {} into String",
            inspect_class(v)
        )))
    }
}

/// A Ruby String's bytes as a Rust string (invalid UTF-8 replaced).
pub fn str_lossy(s: VALUE) -> String {
    // SAFETY: `s` is a live String; its bytes are copied before any Ruby call.
    unsafe {
        let ptr = rb_sys::RSTRING_PTR(s) as *const u8;
        let len = rb_sys::RSTRING_LEN(s) as usize;
        String::from_utf8_lossy(std::slice::from_raw_parts(ptr, len)).into_owned()
    }
}

/// ArgumentError unless `min <= args.len() <= max`, worded as Ruby does.
pub fn check_arity(args: &[Value], min: usize, max: usize) -> Result<(), Error> {
    if args.len() < min || args.len() > max {
        let expected = if min == max {
            min.to_string()
        } else if max == usize::MAX {
            format!("{min}+")
        } else {
            format!("{min}..{max}")
        };
        return Err(arg_error(format!(
            "wrong number of arguments (given {}, expected {expected})",
            args.len()
        )));
    }
    Ok(())
}
