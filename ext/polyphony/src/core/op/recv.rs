//! `recv(io, buffer, length, pos)` and `recv_loop`: one recv(2) each, `nil`
//! on orderly shutdown. Implemented by the read op with `recv` semantics
//! (io_uring `IORING_OP_RECV`; epoll `recv(MSG_DONTWAIT)` + readiness).

#[allow(unused_imports)]
pub use super::read::read_once;
