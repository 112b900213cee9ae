//! systemd socket activation: take over the listening socket a parent
//! passed as fd 3 (`LISTEN_PID`/`LISTEN_FDS`), the way libnbd's
//! `nbdinfo -- [ server ... ]` and `h.connect_systemd_socket_activation`
//! start a server.

use std::os::fd::{FromRawFd, OwnedFd};

use crate::server::{Listener, ServerError};

/// First inherited descriptor (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// The listener passed by socket activation, or `None` when this process
/// was not socket-activated (`LISTEN_PID` missing or naming another
/// process). Must be called inside a tokio runtime, at most once; it clears
/// the `LISTEN_*` variables so children do not inherit them.
pub fn listener_from_systemd_env() -> Result<Option<Listener>, ServerError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| ServerError::Config(format!("LISTEN_PID {pid:?} is not a number")))?;
    if pid != std::process::id() {
        return Ok(None);
    }
    let n: u32 = fds
        .trim()
        .parse()
        .map_err(|_| ServerError::Config(format!("LISTEN_FDS {fds:?} is not a number")))?;
    if n == 0 {
        return Err(ServerError::Config("LISTEN_FDS is 0".into()));
    }
    if n > 1 {
        tracing::warn!(
            fds = n,
            "socket activation passed several sockets; serving fd 3 only"
        );
    }
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let fd = take_fd3()?;
    into_listener(fd).map(Some)
}

#[allow(unsafe_code)]
fn take_fd3() -> Result<OwnedFd, ServerError> {
    // Check fd 3 is open before taking ownership of it.
    let meta = std::fs::metadata("/proc/self/fd/3");
    if meta.is_err() {
        return Err(ServerError::Config(
            "LISTEN_FDS is set but fd 3 is not open".into(),
        ));
    }
    // SAFETY: LISTEN_PID names this process, so by the socket-activation
    // protocol fd 3 was opened for us and nothing else in this process owns
    // it; the LISTEN_* variables are cleared above so it is taken only once.
    Ok(unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) })
}

fn into_listener(fd: OwnedFd) -> Result<Listener, ServerError> {
    let unix = std::os::unix::net::UnixListener::from(fd);
    if unix.local_addr().is_ok() {
        unix.set_nonblocking(true)?;
        return Ok(Listener::Unix(tokio::net::UnixListener::from_std(unix)?));
    }
    // Not a unix socket: std refuses its address family, so try TCP.
    let fd: OwnedFd = unix.into();
    let tcp = std::net::TcpListener::from(fd);
    tcp.local_addr().map_err(|e| {
        ServerError::Config(format!(
            "fd 3 is neither a unix nor a TCP listening socket: {e}"
        ))
    })?;
    tcp.set_nonblocking(true)?;
    Ok(Listener::Tcp(tokio::net::TcpListener::from_std(tcp)?))
}
