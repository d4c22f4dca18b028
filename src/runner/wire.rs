//! What the shim and the runner (and the runner's children and the writer) say to each other
//! over their Unix sockets.
//!
//! - The shim sends one line of JSON, the [`Request`] (argv and the variables as bytes, in
//!   hex), with its fds 0, 1 and 2 attached (SCM_RIGHTS) to the first byte. A runner's child
//!   hands an approved run to the writer the same way: one [`Job`], with fds 0, 1 and 2 and the
//!   run's sealed inputs in the run template's order.
//! - Then, while the command runs, `signal N` lines: the signals the shim received.
//! - The runner ends with one line: `exit N`, `signal N` (the tool died of it; the shim raises
//!   it too), or `refused N MESSAGE` (nothing ran; the shim prints the message and exits N).

use std::io::{IoSlice, IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};

/// The largest request line.
pub const MAX_REQUEST: usize = 1 << 20;

/// One command for the runner.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub version: u32,
    /// `terraform`, `tofu`, `kubectl` or `helm`.
    pub tool: String,
    /// Each argument's bytes, hex.
    pub argv: Vec<String>,
    /// The working directory's bytes, hex.
    pub cwd: String,
    /// The variables the policy lets through: name and value bytes, hex.
    pub env: Vec<(String, String)>,
}

/// The most descriptors one message carries (stdio and a writer job's sealed inputs).
pub const MAX_FDS: usize = 64;

/// An approved run, from a runner's child to the writer. The writer believes none of it until
/// the signature over `request` holds (`runner/verify.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub version: u32,
    pub tool: String,
    pub request_id: String,
    /// The request as the shim submitted it (and the server stored and signed its hash).
    pub request: crate::api::CreateRequest,
    pub decision: crate::api::SignedDecision,
}

/// Sends `req` with the caller's fds 0, 1 and 2.
pub fn send(stream: &UnixStream, req: &Request) -> std::io::Result<()> {
    send_line(stream, req, &[0, 1, 2])
}

/// Sends `value` as one JSON line with `fds` attached (SCM_RIGHTS) to its first byte.
pub fn send_line<T: Serialize>(
    stream: &UnixStream,
    value: &T,
    fds: &[RawFd],
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let cmsg = [ControlMessage::ScmRights(fds)];
    let mut sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(&line)],
        &cmsg,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(std::io::Error::from)?;
    while sent < line.len() {
        sent += send_bytes(stream, &line[sent..])?;
    }
    Ok(())
}

/// Writes to the socket without ever raising SIGPIPE (a runner that already hung up is an
/// error to report, not a reason for the shim to die of a signal the tool never got).
pub fn send_bytes(stream: &UnixStream, bytes: &[u8]) -> std::io::Result<usize> {
    nix::sys::socket::send(stream.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL)
        .map_err(std::io::Error::from)
}

/// Receives a request and the three fds that came with it, and whatever the shim sent after
/// the request line in the same read (its first `signal N` lines, if a signal came at once).
pub fn receive(stream: &UnixStream) -> Result<(Request, [OwnedFd; 3], Vec<u8>), String> {
    let (req, fds, rest): (Request, _, _) = receive_line(stream)?;
    let fds: [OwnedFd; 3] = fds
        .try_into()
        .map_err(|v: Vec<OwnedFd>| format!("expected 3 descriptors, got {}", v.len()))?;
    if req.version != 1 {
        return Err(format!("request version {} is not 1", req.version));
    }
    Ok((req, fds, rest))
}

/// Receives one JSON line and the descriptors attached to it (at most [`MAX_FDS`]), and
/// whatever came after the line in the same reads.
#[allow(unsafe_code)]
pub fn receive_line<T: serde::de::DeserializeOwned>(
    stream: &UnixStream,
) -> Result<(T, Vec<OwnedFd>, Vec<u8>), String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (n, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("receiving the request: {e}"))?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(|e| e.to_string())? {
            if let ControlMessageOwned::ScmRights(r) = c {
                // SAFETY: the kernel just gave these descriptors to this process; nothing else
                // owns them.
                fds.extend(r.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        (msg.bytes, fds)
    };
    let mut line = buf[..n].to_vec();
    let mut rest = stream;
    while !line.contains(&b'\n') {
        if line.len() > MAX_REQUEST {
            return Err("the request is too large".into());
        }
        let mut more = [0u8; 8192];
        let k = rest.read(&mut more).map_err(|e| e.to_string())?;
        if k == 0 {
            return Err("the connection ended inside the request".into());
        }
        line.extend_from_slice(&more[..k]);
    }
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    let rest = line.get(end + 1..).unwrap_or_default().to_vec();
    let value = serde_json::from_slice(&line[..end]).map_err(|e| e.to_string())?;
    Ok((value, fds, rest))
}

/// Bytes as hex, and back.
pub fn bytes_of(hex: &str) -> Result<Vec<u8>, String> {
    crate::hex::decode(hex).ok_or_else(|| format!("{hex:?} is not hex"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_sent_right_after_the_request_is_not_lost() {
        let (a, b) = UnixStream::pair().unwrap();
        let req = Request {
            version: 1,
            tool: "kubectl".into(),
            argv: vec![crate::hex::encode(b"get")],
            cwd: crate::hex::encode(b"/"),
            env: vec![],
        };
        send(&a, &req).unwrap();
        send_bytes(&a, b"signal 2\n").unwrap();
        drop(a);
        let (got, _fds, early) = receive(&b).unwrap();
        assert_eq!(got, req);
        let mut rest = early;
        (&b).read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"signal 2\n");
    }
}
