//! `Polyphony::Compression::Deflater` and `Inflater`: streaming deflate and
//! inflate (raw, for gzip members, or zlib format) on flate2's zlib-rs
//! backend, and `Polyphony::Compression.crc32`. `lib/polyphony/core/
//! compression.rb` moves the chunks between IOs, Strings and callables;
//! the bytes are compressed here. zlib-rs was chosen by measurement: about
//! twice Ruby's Zlib (the system's C zlib) in both directions on this
//! machine (bench/README.md).

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use magnus::{function, method, prelude::*, Error, RModule, Ruby, TryConvert, Value};

use crate::rt::data::typed_data;
use crate::rt::{self, expect_string, raw, val};

/// A deflate stream (TypedData `Polyphony::Compression::Deflater`).
pub struct Deflater(RefCell<Compress>);
/// An inflate stream (TypedData `Polyphony::Compression::Inflater`).
pub struct Inflater(RefCell<Decompress>, std::cell::Cell<bool>);

// SAFETY: used only by the thread holding the GVL (no Ruby object inside).
unsafe impl Send for Deflater {}
// SAFETY: as for `Deflater`.
unsafe impl Send for Inflater {}

typed_data!(Deflater, "Polyphony::Compression::Deflater");
typed_data!(Inflater, "Polyphony::Compression::Inflater");

/// The bytes of String `s`, copied (no Ruby call may move them meanwhile).
fn bytes_of(s: Value) -> Result<Vec<u8>, Error> {
    let s = expect_string(raw(s))?;
    // SAFETY: `s` is a live String; its bytes are copied at once.
    Ok(unsafe { rt::str_bytes(s) }.to_vec())
}

fn zlib_error(e: impl std::fmt::Display) -> Error {
    rt::runtime_error(format!("zlib error: {e}")).into()
}

/// Grows `out` when little room is left (compress_vec/decompress_vec only
/// write into spare capacity).
fn make_room(out: &mut Vec<u8>) {
    if out.capacity() - out.len() < 4096 {
        out.reserve(out.capacity().max(16384));
    }
}

impl Deflater {
    /// `Deflater.new(raw)`: a raw deflate stream (`true`: a gzip member's
    /// body) or a zlib-format one, at the default level.
    fn new(raw_stream: Value) -> Deflater {
        Deflater(RefCell::new(Compress::new(
            Compression::default(),
            !raw_stream.to_bool(),
        )))
    }

    fn run(&self, input: &[u8], flush: FlushCompress) -> Result<Vec<u8>, Error> {
        let mut z = self.0.borrow_mut();
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let mut used = 0usize;
        loop {
            make_room(&mut out);
            let before = z.total_in();
            let room = out.capacity() - out.len();
            let status = z
                .compress_vec(&input[used..], &mut out, flush)
                .map_err(zlib_error)?;
            used += (z.total_in() - before) as usize;
            let filled = out.capacity() - out.len() == 0 || out.capacity() - out.len() < room / 2;
            match (status, flush) {
                (Status::StreamEnd, _) => break,
                (_, FlushCompress::Finish) => continue,
                _ if used < input.len() || filled => continue,
                _ => break,
            }
        }
        Ok(out)
    }

    /// `deflate(str)` → the compressed bytes produced so far.
    fn deflate(&self, s: Value) -> Result<Value, Error> {
        let input = bytes_of(s)?;
        Ok(val(rt::binary_str(&self.run(&input, FlushCompress::None)?)))
    }

    /// `finish` → the rest of the compressed stream.
    fn finish(&self) -> Result<Value, Error> {
        Ok(val(rt::binary_str(&self.run(&[], FlushCompress::Finish)?)))
    }
}

impl Inflater {
    /// `Inflater.new(raw)`: raw deflate (`true`) or zlib format.
    fn new(raw_stream: Value) -> Inflater {
        Inflater(
            RefCell::new(Decompress::new(!raw_stream.to_bool())),
            std::cell::Cell::new(false),
        )
    }

    /// `inflate(str)` → the bytes decompressed from it; input past the
    /// stream's end is left unread (see `total_in`).
    fn inflate(&self, s: Value) -> Result<Value, Error> {
        let input = bytes_of(s)?;
        let mut z = self.0.borrow_mut();
        let mut out = Vec::with_capacity(input.len() * 3 + 64);
        let mut used = 0usize;
        while !self.1.get() {
            make_room(&mut out);
            let (before_in, before_out) = (z.total_in(), z.total_out());
            let status = z
                .decompress_vec(&input[used..], &mut out, FlushDecompress::None)
                .map_err(zlib_error)?;
            used += (z.total_in() - before_in) as usize;
            if status == Status::StreamEnd {
                self.1.set(true);
            }
            let progressed = z.total_in() != before_in || z.total_out() != before_out;
            if used >= input.len() && out.capacity() > out.len() || !progressed {
                break;
            }
        }
        drop(z);
        Ok(val(rt::binary_str(&out)))
    }

    fn finished(&self) -> bool {
        self.1.get()
    }

    fn total_in(&self) -> u64 {
        self.0.borrow().total_in()
    }
}

/// `Compression.crc32(str, crc = 0)` → the CRC-32 of `str` continuing
/// `crc` (as `Zlib.crc32`).
fn crc32(args: &[Value]) -> Result<u64, Error> {
    rt::check_arity(args, 1, 2)?;
    let bytes = bytes_of(args[0])?;
    let start: u64 = match args.get(1) {
        Some(v) if !v.is_nil() => TryConvert::try_convert(*v)?,
        _ => 0,
    };
    Ok(zlib_rs::crc32::crc32(start as u32, &bytes) as u64)
}

pub fn init(ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    let m = polyphony.define_module("Compression")?;
    let d = m.define_class("Deflater", ruby.class_object())?;
    d.define_singleton_method("new", function!(Deflater::new, 1))?;
    d.define_method("deflate", method!(Deflater::deflate, 1))?;
    d.define_method("finish", method!(Deflater::finish, 0))?;
    let i = m.define_class("Inflater", ruby.class_object())?;
    i.define_singleton_method("new", function!(Inflater::new, 1))?;
    i.define_method("inflate", method!(Inflater::inflate, 1))?;
    i.define_method("finished?", method!(Inflater::finished, 0))?;
    i.define_method("total_in", method!(Inflater::total_in, 0))?;
    m.define_module_function("crc32", function!(crc32, -1))?;
    Ok(())
}
