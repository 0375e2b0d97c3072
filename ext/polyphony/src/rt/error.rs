//! [`Error`]: a Ruby exception, or a non-local exit (`throw`, `break`, a
//! thread kill) caught by `protect`, on its way to the caller. Every
//! fallible native function returns it; the bindings hand it to Ruby, which
//! raises it (or resumes the exit). It is opaque to `core/`: the exception
//! object ([`Error::exception`]) and the jump tag ([`Error::jump_tag`]) are
//! all that can be read from it.

use magnus::error::ErrorType;
use rb_sys::VALUE;

use super::raw;

pub struct Error(magnus::Error);

impl Error {
    /// The exception object; `None` for a non-local exit.
    #[inline]
    pub fn exception(&self) -> Option<VALUE> {
        self.0.value().map(raw)
    }

    /// The tag of a non-local exit (`throw`, `break`, a thread kill) caught
    /// by `protect`; `None` for an exception.
    pub fn jump_tag(&self) -> Option<i32> {
        match self.0.error_type() {
            ErrorType::Jump(tag) => Some(*tag as i32),
            _ => None,
        }
    }
}

impl From<magnus::Error> for Error {
    #[inline]
    fn from(e: magnus::Error) -> Error {
        Error(e)
    }
}

impl From<Error> for magnus::Error {
    #[inline]
    fn from(e: Error) -> magnus::Error {
        e.0
    }
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
