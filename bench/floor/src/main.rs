//! The benchmark floor: what a single-threaded smol/async-io responder costs with no Python and
//! no HTTP parsing at all. Whatever a real server spends above this is its own overhead; what is
//! below it is the kernel's and the load generator's.
//!
//! `floor http HOST:PORT`  answers every "\r\n\r\n"-terminated request with a fixed 200, batching
//!                         all the responses owed for one read into one write (pipelining); it
//!                         closes after a response when the request carried `Connection: close`
//!                         (a byte search, so the new-connection-per-request scenario has a floor).
//! `floor uwsgi PATH`      unix socket, uwsgi protocol as nginx speaks it: reads the 4-byte header
//!                         and the vars it announces (bodies are not expected), answers, closes.
//!
//! Request bodies are not supported: the floor is only run in the scenarios that send none.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::rc::Rc;

use async_executor::LocalExecutor;
use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

const HTTP_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
const HTTP_CLOSE_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
Content-Length: 13\r\nConnection: close\r\n\r\nHello, World!";
// nginx takes the same status line and headers back over uwsgi; the connection end frames it.
const UWSGI_RESPONSE: &[u8] = HTTP_RESPONSE;
const READ_SIZE: usize = 16 * 1024;
// A head longer than this without its blank line is dropped with the connection: the floor
// never needs more, and it must not grow without bound if misused.
const MAX_PENDING: usize = 64 * 1024;

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn serve_http(mut stream: Async<TcpStream>) -> io::Result<()> {
    let mut buf = vec![0u8; READ_SIZE];
    let mut filled = 0usize;
    let mut out = Vec::with_capacity(HTTP_RESPONSE.len() * 16);
    loop {
        if filled == buf.len() {
            if buf.len() >= MAX_PENDING {
                return Ok(());
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        let mut start = 0usize;
        let mut close = false;
        out.clear();
        while let Some(pos) = find(&buf[start..filled], b"\r\n\r\n") {
            let head = &buf[start..start + pos + 2];
            if find(head, b"\r\nConnection: close\r\n").is_some() {
                out.extend_from_slice(HTTP_CLOSE_RESPONSE);
                close = true;
                break;
            }
            out.extend_from_slice(HTTP_RESPONSE);
            start += pos + 4;
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }
        if close {
            return Ok(());
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
    }
}

async fn serve_uwsgi(mut stream: Async<UnixStream>) -> io::Result<()> {
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await?;
    let vars_len = u16::from_le_bytes([head[1], head[2]]) as usize;
    let mut vars = vec![0u8; vars_len];
    stream.read_exact(&mut vars).await?;
    stream.write_all(UWSGI_RESPONSE).await?;
    Ok(())
}

fn usage() -> ! {
    eprintln!("usage: velocior-bench-floor http HOST:PORT | uwsgi PATH");
    std::process::exit(2)
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        usage();
    }
    let ex = Rc::new(LocalExecutor::new());
    match args[1].as_str() {
        "http" => {
            let addr: SocketAddr = args[2].parse().unwrap_or_else(|_| usage());
            let listener = Async::<TcpListener>::bind(addr)?;
            eprintln!("floor: http on {addr}");
            let ex2 = ex.clone();
            async_io::block_on(ex.run(async move {
                loop {
                    let (stream, _) = listener.accept().await?;
                    stream.get_ref().set_nodelay(true)?;
                    ex2.spawn(async move {
                        let _ = serve_http(stream).await;
                    })
                    .detach();
                }
            }))
        }
        "uwsgi" => {
            let path = &args[2];
            let _ = std::fs::remove_file(path);
            let listener = Async::<UnixListener>::bind(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
            eprintln!("floor: uwsgi on unix:{path}");
            let ex2 = ex.clone();
            async_io::block_on(ex.run(async move {
                loop {
                    let (stream, _) = listener.accept().await?;
                    ex2.spawn(async move {
                        let _ = serve_uwsgi(stream).await;
                    })
                    .detach();
                }
            }))
        }
        _ => usage(),
    }
}
