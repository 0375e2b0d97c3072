//! `wait_io(io, write)`: parks until the fd is readable (or writable).
//! io_uring: one-shot `IORING_OP_POLL_ADD`; epoll: one-shot registration.
//! Both are cancelled if the fiber is interrupted.

use crate::rt::Error;

use super::{READABLE, WRITABLE};
use crate::core::Backend;

pub fn wait_io(b: &Backend, fd: i32, write: bool) -> Result<i32, Error> {
    b.wait_ready(fd, if write { WRITABLE } else { READABLE })
}
