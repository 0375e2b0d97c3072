//! `send(io, str, flags)`: sends every byte (io_uring `IORING_OP_SEND`, epoll
//! `send(MSG_DONTWAIT)` + writability). `MSG_NOSIGNAL` is always added, so a
//! closed peer raises `Errno::EPIPE` in the calling fiber instead of killing
//! the process.

pub use super::write::write_all as send_all;
