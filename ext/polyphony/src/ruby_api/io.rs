//! The native methods `polyphony` adds to `IO`: the fast path of the
//! patched `IO#write` (`extensions/io.rb`), and private helpers.

use crate::rt::hooks::{call_hook, Hook};
use magnus::{method, Error, Module, Ruby, Value};
use rb_sys::VALUE;

use crate::core::{kept, op, Backend};
use crate::rt::{
    binary_str, consts, errno_error, kind_of, last_errno, raw, val, QFALSE, QNIL, QTRUE,
};

/// `IO#__discard_kept__` (private): what interrupted operations kept for
/// this IO dies with its file (`close_read`, `reopen`; see `crate::core::kept`).
fn io_discard_kept(io: Value) -> Value {
    kept::discard(raw(io));
    io
}

/// `IO#__take_kept__(maxlen)` (private): up to `maxlen` of the bytes an
/// interrupted read kept for this IO (docs/io-semantics.md), nil if there
/// are none. The reads that do not go through the backend
/// (`read_nonblock`, `recv_nonblock`; `extensions/io.rb`, `socket.rb`) serve
/// them first, so bytes read later never overtake them.
fn io_take_kept(rb_self: Value, maxlen: usize) -> Result<Value, Error> {
    if !kept::any() {
        return Ok(val(QNIL));
    }
    let (fd, owner) = crate::rt::readable_fd_owner(raw(rb_self))?;
    let b = Backend::current()?;
    let mut out = QNIL;
    kept::take_bytes(&b, owner, fd, maxlen.max(1), |bytes| {
        out = binary_str(bytes)
    });
    Ok(val(out))
}

/// `IO#__kept?` (private): whether an interrupted read kept bytes for this
/// IO (it is then readable: `wait_readable`, `IO.select`).
fn io_kept_p(rb_self: Value) -> bool {
    if !kept::any() {
        return false;
    }
    match crate::rt::readable_fd_owner(raw(rb_self)) {
        Ok((fd, owner)) => kept::has_bytes(owner, fd),
        Err(_) => false,
    }
}

/// `IO#__keep_bytes__(str)` (private, for specs): keeps `str` for this IO
/// as an interrupted read would have (which the kernel does not do on
/// demand).
fn io_keep_bytes(rb_self: Value, s: magnus::RString) -> Result<Value, Error> {
    let (fd, owner) = crate::rt::readable_fd_owner(raw(rb_self))?;
    let b = Backend::current()?;
    // SAFETY: `s` is a live String; its bytes are copied before any Ruby call.
    let bytes = unsafe { s.as_slice() }.to_vec();
    kept::keep_bytes(&b, owner, fd, &bytes);
    Ok(rb_self)
}

/// `IO#__read_file_now__(length)` (private; the scheduler's `io_read` hook in
/// `core/fiber_scheduler.rb`): for a regular file, one read of at most
/// `length` bytes done at once, with no switch; the String, nil at EOF.
/// `false` if the IO is not a regular file (the hook then waits through the
/// backend). A file is never "not ready", and Ruby's `require` reads through
/// the hook in a non-blocking fiber: a switch there would let another fiber
/// of the thread reach a constant whose autoload is half done, which Ruby
/// 3.1 reports as a NameError.
fn io_read_file_now(rb_self: Value, length: usize) -> Result<Value, Error> {
    let (fd, owner) = crate::rt::readable_fd_owner(raw(rb_self))?;
    // SAFETY: `st` is a plain struct fstat fills; `fd` is the IO's open descriptor.
    let regular = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG
    };
    if !regular {
        return Ok(val(QFALSE));
    }
    let b = Backend::current()?;
    let mut kept_out = QNIL;
    if kept::take_bytes(&b, owner, fd, length.max(1), |bytes| {
        kept_out = binary_str(bytes)
    })
    .is_some()
    {
        return Ok(val(kept_out));
    }
    let len = length.clamp(1, op::read::MAX_READ_CHUNK);
    // The backend's pooled read buffer, as its own reads use.
    let mut buf = b.take_buf(len);
    let r = loop {
        // SAFETY: `buf` has a capacity of at least `len` bytes, which is what the read may
        // write; a regular file's read does not block for long (no GVL release needed).
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut _, len) };
        if n >= 0 {
            // SAFETY: the read wrote `n` (at most `len`) bytes at the start of `buf`.
            let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr(), n as usize) };
            break Ok(val(if n == 0 { QNIL } else { binary_str(bytes) }));
        }
        let e = last_errno();
        if e != libc::EINTR {
            break Err(errno_error(e, "read").into());
        }
    };
    b.give_buf(buf);
    r
}

/// `IO#__write_io__` (private): the IO that writes go to, which differs from
/// the receiver for duplex IOs (`IO.popen(cmd, 'r+')`).
fn io_write_io(io: Value) -> Value {
    // SAFETY: GVL held; `io` is the receiver, an IO; the call reads its write IO and does not
    // raise.
    val(unsafe { rb_sys::rb_io_get_write_io(raw(io)) })
}

/// `IO#write(*objects)` (installed by `extensions/io.rb`): the common case,
/// one String to an IO without transcoding (no external encoding, or a
/// binary one, as for sockets), goes straight to the backend; everything
/// else, and the errors that need Ruby's wording, through the Ruby
/// `IO#__write__`. Returns the bytes written (all of them: a fiber-aware
/// write waits until the fd took everything).
fn io_write_fast(rb_self: Value, args: &[Value]) -> Result<Value, Error> {
    let io = raw(rb_self);
    let route = write_route(io);
    if let (WriteRoute::Direct(fd), [s]) = (route, args) {
        let s = raw(*s);
        // SAFETY: GVL held; reads the type or state of a live object the caller holds, never
        // raises.
        if unsafe { rb_sys::RB_TYPE_P(s, rb_sys::ruby_value_type::RUBY_T_STRING) } {
            let bs = consts::basic_socket();
            let socket = bs != rb_sys::special_consts::Qfalse as VALUE
                // SAFETY: GVL held; reads the type or state of a live object the caller holds,
                // never raises.
                && unsafe { rb_sys::rb_obj_is_kind_of(io, bs) } == QTRUE;
            let b = Backend::current()?;
            // send(2) on sockets: a shorter kernel path than write(2).
            let r = if socket {
                op::write::write_all(&b, fd, s, Some(0))
            } else {
                op::write::write(&b, fd, &[s])
            };
            match r {
                // SAFETY: GVL held; allocates or updates an object from live values, with no
                // `RefCell` borrow held (a GC here may mark).
                Ok(n) => return Ok(val(unsafe { rb_sys::rb_uint2inum(n as _) })),
                // Not writable: nothing was written; Ruby words it.
                Err(e) if is_ebadf(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let hook = match route {
        WriteRoute::Stdlib => Hook::StdlibWrite,
        _ => Hook::Write,
    };
    let argv: Vec<VALUE> = std::iter::once(io)
        .chain(args.iter().map(|a| raw(*a)))
        .collect();
    call_hook(hook, &argv).map(val).map_err(Into::into)
}

/// How `IO#write` writes to an IO.
#[derive(Clone, Copy)]
enum WriteRoute {
    /// A String's bytes go unchanged to this fd: the (write end of the) IO
    /// is open and writable, and neither transcodes (no external encoding,
    /// or a binary one) nor converts newlines.
    Direct(i32),
    /// Ruby's own `IO#write` (`orig_write`): the IO converts newlines
    /// (`newline: :crlf`, text mode) or holds bytes in Ruby's write buffer,
    /// which only that method handles.
    Stdlib,
    /// `IO#__write__`: transcoding, and the errors of closed or read-only
    /// IOs, worded as Ruby does.
    Ruby,
}

/// Picks the `WriteRoute` of `io` from the `rb_io_t` fields that
/// `IO#external_encoding` reads, without a method call.
fn write_route(io: VALUE) -> WriteRoute {
    // SAFETY: GVL held; `fptr` is read only for a T_FILE, and checked for null; the encoding fields
    // are plain reads.
    unsafe {
        if rb_sys::SPECIAL_CONST_P(io)
            || !rb_sys::RB_TYPE_P(io, rb_sys::ruby_value_type::RUBY_T_FILE)
        {
            return WriteRoute::Ruby;
        }
        let wio = rb_sys::rb_io_get_write_io(io);
        let fptr = (*(wio as *const rb_sys::RFile)).fptr;
        if fptr.is_null() {
            return WriteRoute::Ruby;
        }
        let f = &*fptr;
        if f.fd < 0 || f.mode as u32 & rb_sys::FMODE_WRITABLE == 0 {
            return WriteRoute::Ruby;
        }
        let decorators = rb_sys::ruby_econv_flag_type::RUBY_ECONV_DECORATOR_MASK as i32
            | rb_sys::ruby_econv_flag_type::RUBY_ECONV_STATEFUL_DECORATOR_MASK as i32;
        if f.encs.ecflags & decorators != 0
            || f.mode as u32 & rb_sys::FMODE_TEXTMODE != 0
            || f.wbuf.len != 0
        {
            return WriteRoute::Stdlib;
        }
        let binary = rb_sys::rb_ascii8bit_encoding() as *const rb_sys::OnigEncodingTypeST;
        let enc = f.encs.enc;
        if !f.encs.enc2.is_null() || !(enc.is_null() || enc == binary) {
            return WriteRoute::Ruby;
        }
        WriteRoute::Direct(f.fd)
    }
}

fn is_ebadf(e: &crate::rt::Error) -> bool {
    e.exception()
        .is_some_and(|exc| kind_of(exc, consts::ebadf()))
}

pub fn init(ruby: &Ruby) -> Result<(), Error> {
    let io = ruby.class_io();
    io.define_private_method("__discard_kept__", method!(io_discard_kept, 0))?;
    io.define_private_method("__take_kept__", method!(io_take_kept, 1))?;
    io.define_private_method("__kept?", method!(io_kept_p, 0))?;
    io.define_private_method("__keep_bytes__", method!(io_keep_bytes, 1))?;
    io.define_private_method("__write_io__", method!(io_write_io, 0))?;
    io.define_private_method("__read_file_now__", method!(io_read_file_now, 1))?;
    io.define_method("__write_fast__", method!(io_write_fast, -1))?;
    Ok(())
}
