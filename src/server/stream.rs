//! A connected socket (TCP or unix) with the few operations the connection code needs: reads and
//! writes that try the syscall first and only wait for readiness when it would block, every wait
//! bounded by a timeout, vectored writes, and sendfile(2).
//!
//! The socket joins the reactor (epoll) only at its first wait. A short connection whose request
//! is already there when it is accepted, and whose response fits the socket buffer, is served
//! and closed without ever being registered: that saves the epoll add and delete, two syscalls of
//! the seven such a connection costs (nginx's `uwsgi_pass`, a client that closes after each
//! request).

use std::fs::File;
use std::future::Future;
use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;
use std::time::Duration;

use async_io::{Async, Timer};

enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// The socket's descriptor as the reactor sees it. It does not own the descriptor: `Stream` does,
/// and drops its registration first.
struct Registered(RawFd);

impl AsFd for Registered {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor belongs to the `Sock` beside the registration in `Stream`, which
        // is declared after it and so closed only after the registration is dropped.
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }
}

pub struct Stream {
    /// Set at the first wait for readiness. Declared before `sock`: dropped (deregistered) first.
    reg: OnceLock<io::Result<Async<Registered>>>,
    sock: Sock,
}

pub fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

/// `fut`, or a TimedOut error after `d`.
pub async fn timeout<T>(
    d: Duration,
    what: &str,
    fut: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    futures_lite::future::or(fut, async {
        Timer::after(d).await;
        Err(timed_out(what))
    })
    .await
}

impl Stream {
    /// A non-blocking connected TCP socket.
    pub fn tcp(s: TcpStream) -> Stream {
        Stream {
            reg: OnceLock::new(),
            sock: Sock::Tcp(s),
        }
    }

    /// A non-blocking connected unix socket.
    pub fn unix(s: UnixStream) -> Stream {
        Stream {
            reg: OnceLock::new(),
            sock: Sock::Unix(s),
        }
    }

    pub fn fd(&self) -> RawFd {
        match &self.sock {
            Sock::Tcp(s) => s.as_raw_fd(),
            Sock::Unix(s) => s.as_raw_fd(),
        }
    }

    /// The reactor's handle on the socket, registering it on first use. A failed registration
    /// (the kernel's watch limit) is kept: every later wait of this connection fails the same way.
    fn reactor(&self) -> io::Result<&Async<Registered>> {
        match self
            .reg
            .get_or_init(|| Async::new_nonblocking(Registered(self.fd())))
        {
            Ok(r) => Ok(r),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }

    /// One non-blocking read attempt.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.sock {
            Sock::Tcp(s) => (&*s).read(buf),
            Sock::Unix(s) => (&*s).read(buf),
        }
    }

    /// One non-blocking read of at most `max` bytes into the spare capacity of `buf` (no zeroing
    /// of the buffer first).
    pub fn try_read_spare(&self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let spare = buf.spare_capacity_mut();
        let len = spare.len().min(max);
        // SAFETY: reading into uninitialized capacity of a live Vec; only the `n` bytes the
        // kernel wrote are exposed by `set_len`.
        let n = unsafe { libc::read(self.fd(), spare.as_mut_ptr().cast(), len) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        unsafe { buf.set_len(buf.len() + n as usize) };
        Ok(n as usize)
    }

    /// One non-blocking write attempt.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match &self.sock {
            Sock::Tcp(s) => (&*s).write(buf),
            Sock::Unix(s) => (&*s).write(buf),
        }
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &self.sock {
            Sock::Tcp(s) => (&*s).write_vectored(bufs),
            Sock::Unix(s) => (&*s).write_vectored(bufs),
        }
    }

    pub async fn readable(&self) -> io::Result<()> {
        self.reactor()?.readable().await
    }

    pub async fn writable(&self) -> io::Result<()> {
        self.reactor()?.writable().await
    }

    /// Read some bytes, waiting at most `d` for them. Ok(0) is EOF.
    pub async fn read(&self, buf: &mut [u8], d: Duration, what: &str) -> io::Result<usize> {
        loop {
            match self.try_read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    timeout(d, what, self.readable()).await?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }

    /// Append at most `max` bytes to `buf`, waiting at most `d` for them. Ok(0) is EOF.
    pub async fn read_buf(
        &self,
        buf: &mut Vec<u8>,
        max: usize,
        d: Duration,
        what: &str,
    ) -> io::Result<usize> {
        if buf.capacity() - buf.len() < max {
            buf.reserve(max);
        }
        loop {
            match self.try_read_spare(buf, max) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    timeout(d, what, self.readable()).await?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }

    /// Blocking `read_buf` for `wsgi.input` (called without the GIL, from the app's thread).
    pub fn read_buf_blocking(
        &self,
        buf: &mut Vec<u8>,
        max: usize,
        d: Duration,
    ) -> io::Result<usize> {
        if buf.capacity() - buf.len() < max {
            buf.reserve(max);
        }
        match self.try_read_spare(buf, max) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                async_io::block_on(self.read_buf(buf, max, d, "reading the request body"))
            }
            r => r,
        }
    }

    /// Write all of `buf`; each wait for the socket to drain is bounded by `d`.
    pub async fn write_all(&self, mut buf: &[u8], d: Duration) -> io::Result<()> {
        while !buf.is_empty() {
            match self.try_write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    timeout(d, "writing the response", self.writable()).await?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Write two buffers as one vectored write where possible (head + body, no copy).
    pub async fn write_all2(&self, a: &[u8], b: &[u8], d: Duration) -> io::Result<()> {
        let mut off = 0usize;
        let total = a.len() + b.len();
        while off < total {
            let r = if off < a.len() {
                self.try_write_vectored(&[IoSlice::new(&a[off..]), IoSlice::new(b)])
            } else {
                self.try_write(&b[off - a.len()..])
            };
            match r {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    timeout(d, "writing the response", self.writable()).await?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Blocking write (the 100-continue interim response, sent from the app's thread).
    pub fn write_all_blocking(&self, buf: &[u8], d: Duration) -> io::Result<()> {
        async_io::block_on(self.write_all(buf, d))
    }

    /// sendfile(2) `len` bytes of `file` from `offset`. Returns the bytes sent (less only on EOF).
    pub async fn sendfile(
        &self,
        file: &File,
        offset: u64,
        len: u64,
        d: Duration,
    ) -> io::Result<u64> {
        let mut off = offset as libc::off_t;
        let mut left = len;
        while left > 0 {
            let chunk = left.min(1 << 30) as usize;
            // SAFETY: both descriptors are open for the duration of the call; `off` is a valid
            // pointer to a local.
            let n = unsafe { libc::sendfile(self.fd(), file.as_raw_fd(), &mut off, chunk) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => {
                        timeout(d, "writing the response", self.writable()).await?;
                        continue;
                    }
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                }
            }
            if n == 0 {
                break; // the file is shorter than announced
            }
            left -= n as u64;
        }
        Ok(len - left)
    }

    pub fn shutdown_write(&self) {
        let _ = match &self.sock {
            Sock::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Sock::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
}
