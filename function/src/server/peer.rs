//! Is the client still there? actix-web keeps a handler running after its client hangs up, so
//! the engine asks the socket itself, just before compute: a job nobody will read is dropped.

use std::os::fd::{AsRawFd, RawFd};

use actix_web::dev::Extensions;
use actix_web::HttpRequest;

/// The connection's socket, recorded when it is accepted.
#[derive(Clone, Copy)]
struct PeerSocket(RawFd);

/// `HttpServer::on_connect` hook.
pub fn record(connection: &dyn std::any::Any, data: &mut Extensions) {
    if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        data.insert(PeerSocket(tcp.as_raw_fd()));
    }
}

/// A check the engine runs before computing `req`'s job. The descriptor stays open (and ours)
/// while the request is in flight, since actix closes a connection only after its handler.
pub fn still_connected(req: &HttpRequest) -> Box<dyn Fn() -> bool + Send> {
    match req.conn_data::<PeerSocket>().copied() {
        Some(PeerSocket(fd)) => Box::new(move || peer_open(fd)),
        None => Box::new(|| true),
    }
}

/// False once the peer has closed its side (a zero-byte peek) or reset the connection.
fn peer_open(fd: RawFd) -> bool {
    let mut byte = [0u8; 1];
    // SAFETY: `fd` is a socket owned by the server for the lifetime of the request; a peek with
    // MSG_DONTWAIT neither blocks nor consumes data.
    let n = unsafe { libc::recv(fd, byte.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    if n >= 0 {
        return n > 0;
    }
    let err = std::io::Error::last_os_error().raw_os_error();
    matches!(err, Some(libc::EAGAIN) | Some(libc::EINTR))
}
