//! The server's parked connections: keep-alive connections idle long enough
//! give up their fiber (lib/polyphony/http/server.rb, "Parking") and wait
//! here, in one epoll set, for their next request. Plain functions over
//! file descriptors, no Ruby: the epoll fd itself is owned by a Ruby `IO`
//! (closed with it), which the server's parker fiber waits on through the
//! backend like any readable fd.
//!
//! Every registration is one-shot and removed when reported, so a
//! connection is woken once per parking, and a parked fd that is closed
//! (expired, server stopped) is deleted first: a later connection reusing
//! the number never inherits its registration.

use std::io;

/// A new epoll set (close-on-exec).
pub fn open() -> io::Result<i32> {
    // SAFETY: epoll_create1 has no memory arguments.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Parks `fd` in set `ep` until it is readable or hung up.
pub fn add(ep: i32, fd: i32) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32,
        u64: fd as u64,
    };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call.
    if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unparks `fd` (nothing if it is not in the set).
pub fn delete(ep: i32, fd: i32) {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: as in `add`; ENOENT/EBADF (not parked, already closed) are
    // what "nothing to delete" looks like and are ignored.
    unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, fd, &mut ev) };
}

/// Up to `max` parked fds that are ready now, each removed from the set
/// (never blocks).
pub fn ready(ep: i32, max: usize) -> io::Result<Vec<i32>> {
    let max = max.clamp(1, 1024);
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; max];
    // SAFETY: `evs` has room for `max` events; a zero timeout never blocks.
    let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), max as i32, 0) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::EINTR) {
            Ok(Vec::new())
        } else {
            Err(e)
        };
    }
    let fds: Vec<i32> = evs[..n as usize].iter().map(|e| e.u64 as i32).collect();
    for &fd in &fds {
        delete(ep, fd);
    }
    Ok(fds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_a_parked_fd_once_when_readable() {
        let ep = open().unwrap();
        let mut p = [0i32; 2];
        // SAFETY: `p` has room for the two fds.
        assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
        add(ep, p[0]).unwrap();
        assert!(ready(ep, 8).unwrap().is_empty());
        // SAFETY: one byte from a static buffer into the pipe we own.
        assert_eq!(
            unsafe { libc::write(p[1], b"x".as_ptr() as *const _, 1) },
            1
        );
        assert_eq!(ready(ep, 8).unwrap(), vec![p[0]]);
        assert!(ready(ep, 8).unwrap().is_empty());
        // Parked again after being reported: allowed (it was removed).
        add(ep, p[0]).unwrap();
        assert_eq!(ready(ep, 8).unwrap(), vec![p[0]]);
        delete(ep, p[0]);
        // SAFETY: closing the fds this test opened.
        unsafe {
            libc::close(p[0]);
            libc::close(p[1]);
            libc::close(ep);
        }
    }
}
