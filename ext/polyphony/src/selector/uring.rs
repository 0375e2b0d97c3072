//! io_uring selector: one ring per thread, submissions batched until the next
//! wait. The ring is not set up single-issuer, so a wake-up written from any
//! thread is never lost: a multishot poll on an eventfd is always queued.
//! It is set up with `IORING_SETUP_COOP_TASKRUN` where the kernel has it:
//! a completion does not interrupt the thread running Ruby code; its task
//! work runs when the thread next enters the kernel, which it does to wait
//! for (or poll) completions anyway. About 2% of an echo server's CPU.

use std::time::Duration;

use io_uring::{opcode, squeue, types, IoUring};

use super::{drain_eventfd, new_eventfd, Event};
use crate::rt::nogvl::{without_gvl, NoGvl, NOT_RUN_WAIT_MS};

/// User data of the eventfd poll.
pub const WAKE_TAG: u64 = u64::MAX;
/// User data of cancel requests and of the fallback wait timeout.
pub const IGNORE_TAG: u64 = u64::MAX - 1;

pub struct Uring {
    /// Dropped by our `Drop` unless disowned.
    ring: std::mem::ManuallyDrop<IoUring>,
    pub wake_fd: i32,
    wake_armed: bool,
    ext_arg: bool,
    timeout_ts: types::Timespec,
}

impl Uring {
    pub fn new() -> std::io::Result<Uring> {
        let mut entries = 1024;
        let ring = loop {
            // Completions are reaped by the thread that submitted them, when
            // it enters the kernel: the kernel need not interrupt it to run
            // their task work (COOP_TASKRUN, Linux 5.19+; EINVAL before).
            let r = IoUring::builder()
                .setup_coop_taskrun()
                .build(entries)
                .or_else(|e| match e.raw_os_error() {
                    Some(libc::EINVAL) => IoUring::new(entries),
                    _ => Err(e),
                });
            match r {
                Ok(r) => break r,
                Err(e) if e.raw_os_error() == Some(libc::ENOMEM) && entries > 64 => entries /= 2,
                Err(e) => return Err(e),
            }
        };
        let ext_arg = ring.params().is_feature_ext_arg();
        let wake_fd = new_eventfd()?;
        let mut u = Uring {
            ring: std::mem::ManuallyDrop::new(ring),
            wake_fd,
            wake_armed: false,
            ext_arg,
            timeout_ts: types::Timespec::new(),
        };
        u.arm_wake();
        Ok(u)
    }

    /// See `Selector::disown`: closes the ring fd and the eventfd. The
    /// ring's memory stays mapped (unmapping is `IoUring`'s own `Drop`,
    /// which would close the fd number a second time).
    pub fn disown(&mut self) {
        if self.wake_fd >= 0 {
            let ring_fd = std::os::fd::AsRawFd::as_raw_fd(&*self.ring);
            // SAFETY: both fds are owned by this selector and closed once
            // (`wake_fd` marked -1, the ring never dropped afterwards).
            unsafe {
                libc::close(ring_fd);
                libc::close(self.wake_fd);
            }
            self.wake_fd = -1;
        }
    }

    fn arm_wake(&mut self) {
        let e = opcode::PollAdd::new(types::Fd(self.wake_fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(WAKE_TAG);
        self.push(e);
        self.wake_armed = true;
    }

    /// Queues a submission (flushing the submission queue if it is full).
    pub fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every entry's buffers and addresses are owned by its op slot (`core/op`)
            // until its completion arrives, as io_uring requires.
            let pushed = unsafe { self.ring.submission().push(&entry).is_ok() };
            if pushed {
                return;
            }
            // Queue full: hand what we have to the kernel and retry.
            let _ = self.ring.submit();
        }
    }

    /// Asks the kernel to cancel the operation with user data `key`. Its
    /// completion (usually `-ECANCELED`) still arrives and must be reaped.
    pub fn cancel(&mut self, key: usize) {
        let e = opcode::AsyncCancel::new(key as u64)
            .build()
            .user_data(IGNORE_TAG);
        self.push(e);
        // Submit at once: an operation waiting for readiness is then
        // cancelled before this thread does anything else, so a read that
        // was given up cannot consume data written afterwards.
        let _ = self.ring.submit();
    }

    pub fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Event>) -> std::io::Result<()> {
        let nonblocking = matches!(timeout, Some(d) if d.is_zero());
        if nonblocking || !self.ring.completion().is_empty() {
            self.ring.submit()?;
        } else {
            let ring: *mut IoUring = &mut *self.ring;
            let ext_arg = self.ext_arg;
            if let (Some(d), false) = (timeout, ext_arg) {
                // Older kernels: a timeout operation bounds the wait.
                self.timeout_ts = types::Timespec::new()
                    .sec(d.as_secs())
                    .nsec(d.subsec_nanos());
                let e = opcode::Timeout::new(&self.timeout_ts)
                    .build()
                    .user_data(IGNORE_TAG);
                self.push(e);
            }
            let ts = timeout.map(|d| {
                types::Timespec::new()
                    .sec(d.as_secs())
                    .nsec(d.subsec_nanos())
            });
            // SAFETY: `ring` points to `self.ring`, borrowed mutably for the whole wait;
            // nothing else touches it meanwhile, and no Ruby object is touched without the GVL.
            let r = without_gvl(self.wake_fd, move || unsafe {
                let ring = &mut *ring;
                match (ts.as_ref(), ext_arg) {
                    (Some(ts), true) => {
                        let args = types::SubmitArgs::new().timespec(ts);
                        ring.submitter().submit_with_args(1, &args)
                    }
                    _ => ring.submitter().submit_and_wait(1),
                }
            });
            let r = match r {
                NoGvl::Ran(r) => Some(r),
                NoGvl::Panicked => return Err(std::io::Error::other("io_uring wait panicked")),
                NoGvl::NotRun => None,
            };
            let r = r.or_else(|| {
                // An interrupt Ruby will not deliver yet is pending: wait
                // briefly with the GVL held instead (see NOT_RUN_WAIT_MS).
                // SAFETY: as above, after the GVL-free wait returned.
                let ring = unsafe { &mut *ring };
                let short = std::time::Duration::from_millis(NOT_RUN_WAIT_MS as u64);
                let d = timeout.map(|t| t.min(short)).unwrap_or(short);
                let ts = types::Timespec::new()
                    .sec(d.as_secs())
                    .nsec(d.subsec_nanos());
                Some(if ext_arg {
                    ring.submitter()
                        .submit_with_args(1, &types::SubmitArgs::new().timespec(&ts))
                } else {
                    let r = ring.submit();
                    std::thread::sleep(d);
                    r
                })
            });
            match r {
                None => {}
                Some(Ok(_)) => {}
                Some(Err(e)) => match e.raw_os_error() {
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EAGAIN)
                    | Some(libc::EBUSY) => {}
                    _ => return Err(e),
                },
            }
        }
        let mut rearm = false;
        for cqe in self.ring.completion() {
            let ud = cqe.user_data();
            if ud == WAKE_TAG {
                drain_eventfd(self.wake_fd);
                if !io_uring::cqueue::more(cqe.flags()) {
                    rearm = true;
                }
                continue;
            }
            if ud == IGNORE_TAG {
                continue;
            }
            out.push(Event::Op {
                key: ud as usize,
                res: cqe.result(),
                more: io_uring::cqueue::more(cqe.flags()),
            });
        }
        if rearm {
            self.wake_armed = false;
            self.arm_wake();
        }
        Ok(())
    }

    /// Blocks (GVL held; used only while finalizing) until `n` more
    /// completions arrived or nothing is left; reports them.
    pub fn drain_blocking(&mut self, out: &mut Vec<Event>) {
        let _ = self.ring.submitter().submit_and_wait(1);
        let _ = self.wait(Some(Duration::ZERO), out);
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        if self.wake_fd >= 0 {
            // SAFETY: not disowned: the ring and the eventfd are ours, and
            // this is the only drop of the ring.
            unsafe {
                std::mem::ManuallyDrop::drop(&mut self.ring);
                libc::close(self.wake_fd);
            }
        }
    }
}
