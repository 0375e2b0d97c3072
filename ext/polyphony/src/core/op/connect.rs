//! `connect(sock, host, port)`: resolves `host:port` (blocking getaddrinfo,
//! first result), then connects without blocking the thread.
//! io_uring: `IORING_OP_CONNECT` with the address owned by the op slot;
//! epoll: non-blocking connect(2), EINPROGRESS → wait writable → SO_ERROR.

use std::net::ToSocketAddrs;

use crate::rt::Error;

use super::{ensure_nonblock, OpSlot, Undo, WRITABLE};
use crate::core::Backend;
use crate::rt::{errno_error, runtime_error};

fn to_sockaddr(addr: std::net::SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        std::net::SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as _,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sockaddr_storage` is larger than and aligned for every sockaddr type, so
            // it can hold a `sockaddr_in`.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as _,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for a `sockaddr_in6`.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// Undoes a connect whose fiber gave up (`Undo::Connect`): a connection
/// that was made, or is still being made in the kernel, is dissolved
/// (`connect(2)` to `AF_UNSPEC`), so the peer never sees a connection its
/// client gave up on, and the socket can be connected again or closed.
pub fn dissolve(fd: i32) {
    // SAFETY: a zeroed sockaddr with family AF_UNSPEC, of the size the call
    // is told; `fd` is the socket the caller's IO object still owns.
    unsafe {
        let mut sa: libc::sockaddr = std::mem::zeroed();
        sa.sa_family = libc::AF_UNSPEC as _;
        libc::connect(fd, &sa, std::mem::size_of::<libc::sockaddr>() as _);
    }
}

pub fn connect(b: &Backend, fd: i32, host: &str, port: u16) -> Result<(), Error> {
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| runtime_error(format!("getaddrinfo: {e}")))?
        .next()
        .ok_or_else(|| runtime_error(format!("getaddrinfo: no address for {host}")))?;
    let sa = to_sockaddr(addr);
    connect_sockaddr(b, fd, sa, &format!("connect(2) for {host}:{port}"))
}

/// Connects `fd` to the socket address `sa` (`what` names it in errors).
pub fn connect_sockaddr(
    b: &Backend,
    fd: i32,
    sa: (libc::sockaddr_storage, libc::socklen_t),
    what: &str,
) -> Result<(), Error> {
    b.raise_pending()?;
    if b.is_uring() {
        let mut slot = OpSlot::on_fd(b.current_fiber(), fd);
        slot.undo = Undo::Connect;
        slot.addr = Some(Box::new(sa));
        let (key, res) = b.submit_and_await(slot, |s| {
            let a = s.addr.as_ref().unwrap();
            io_uring::opcode::Connect::new(
                io_uring::types::Fd(fd),
                &a.0 as *const _ as *const libc::sockaddr,
                a.1,
            )
            .build()
        })?;
        b.free_op(key);
        if res < 0 {
            return Err(errno_error(-res, what));
        }
        return Ok(());
    }
    ensure_nonblock(fd);
    // SAFETY: `sa.0` holds an address of length `sa.1` (at most its size), which the kernel
    // only reads.
    let r = unsafe { libc::connect(fd, &sa.0 as *const _ as *const libc::sockaddr, sa.1) };
    if r == 0 {
        return Ok(());
    }
    let err = crate::rt::last_errno();
    if err != libc::EINPROGRESS && err != libc::EAGAIN {
        return Err(errno_error(err, what));
    }
    if let Err(e) = b.wait_ready(fd, WRITABLE) {
        // Given up while the handshake goes on in the kernel: undone.
        dissolve(fd);
        return Err(e);
    }
    let mut so_err: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `so_err` and `len` are valid for writes of the size `len` says.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut so_err as *mut i32 as *mut _,
            &mut len,
        )
    };
    if so_err != 0 {
        return Err(errno_error(so_err, what));
    }
    Ok(())
}
