//! The TCP connection loop: a cap on open connections, a deadline for each request head (which
//! also closes idle keep-alive connections), and a deadline for each whole request.
//!
//! `axum::serve` has neither, so a few hundred idle connections could take every file
//! descriptor and lock approvers out. Here a connection over the cap is closed at once, a
//! connection that sends no complete request head within `[serve] header_read_timeout` (also
//! between two requests on a keep-alive connection) is closed, and a request that takes longer
//! than the longest long-poll plus a margin is answered 503. The admin Unix socket has its own
//! loop (`axum::serve`), untouched by any of this, so approvers reach the server whatever
//! happens on TCP.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::Layer as _;

/// Limits of the TCP listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// Serves `router` on `listener` (with TLS when `tls` is set) until `stop` turns true, then lets
/// open connections finish their current request (long-polls are answered at once, see
/// `routes::wait_step`). The TLS handshake runs in the connection's own task, after it has a
/// slot, within `header_read_timeout`: a peer that opens a connection and sends nothing holds
/// one slot for that long, never the accept loop.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    app: Arc<super::app::App>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok((io, addr)) = accepted else {
            // Out of file descriptors, say: try again shortly.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Over the cap: closed at once, so the file descriptor is free again.
            app.metrics.connections_refused.fetch_add(1, Relaxed);
            drop(io);
            continue;
        };
        // The peer's address reaches handlers as `ConnectInfo` (a web decision records it).
        let service = TowerToHyperService::new(
            axum::Extension(axum::extract::ConnectInfo(addr)).layer(router.clone()),
        );
        let stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_one(io, service, limits, stop).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(io);
                    if let Ok(Ok(io)) =
                        tokio::time::timeout(limits.header_read_timeout, handshake).await
                    {
                        serve_one(io, service, limits, stop).await;
                    }
                }
            }
            drop(permit);
        });
    }
    // Wait (a little) for the connections still open to finish.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(10), permits.acquire_many(all)).await;
}

/// One connection: HTTP/1.1 with the header deadline, shut down gracefully on `stop`.
async fn serve_one<I, S>(io: I, service: S, limits: Limits, mut stop: watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stopping => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The largest number of TCP connections this process can hold: the configured cap, but never
/// so many that the admin socket, the database and the log run out of file descriptors. The
/// soft `RLIMIT_NOFILE` is raised to the hard one first.
pub fn connection_cap(configured: usize) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let mut soft: u64 = 1024;
    if let Ok((s, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        soft = s;
        if s < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
            soft = hard;
        }
    }
    let headroom = usize::try_from(soft.saturating_sub(128)).unwrap_or(usize::MAX);
    configured.min(headroom).max(1)
}
