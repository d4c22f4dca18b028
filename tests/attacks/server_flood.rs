//! The server stays reachable under idle connections: connections over `[serve]
//! max_connections` are closed at once, a connection that sends no complete request head
//! within `header_read_timeout` is closed, and the admin socket answers approvers throughout.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::support::server::{policy_with, TestServer, TOKEN_A};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_neither_lock_out_approvers_nor_stay_open() {
    let srv = TestServer::start(&policy_with(
        "[serve]\nmax_connections = 20\nheader_read_timeout = \"1s\"\n",
    ))
    .await;
    let addr = srv.url.strip_prefix("http://").unwrap().to_string();
    let mut idle: Vec<std::net::TcpStream> = (0..200)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    // A slow client: half a request head, then nothing.
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /api/v1/public-key HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    idle.push(slow);

    let t = Instant::now();
    let (s, v) = srv
        .approver()
        .request("GET", "/api/v1/requests?state=all", None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the admin socket took {:?}",
        t.elapsed()
    );

    // Every one of them is closed by the server: at once over the cap, after the head deadline
    // otherwise (all within one 6 s window).
    let start = Instant::now();
    let deadline = start + Duration::from_secs(6);
    let open = tokio::task::spawn_blocking(move || {
        idle.iter_mut()
            .map(|c| closed_by_server(c, deadline))
            .filter(|closed| !closed)
            .count()
    })
    .await
    .unwrap();
    assert_eq!(
        open,
        0,
        "connections still open after {:?}",
        start.elapsed()
    );

    // And agents get through again.
    let id = srv.agent(TOKEN_A).create(&["delete", "pod", "x"]).await;
    assert_eq!(id.len(), 32);
    srv.stop().await;
}

/// Reads until the server closes the connection (EOF or reset) or `deadline` passes.
fn closed_by_server(c: &mut std::net::TcpStream, deadline: Instant) -> bool {
    let mut b = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        c.set_read_timeout(Some(left.max(Duration::from_millis(10))))
            .unwrap();
        match c.read(&mut b) {
            Ok(0) => return true,
            // A response (408) sent as it closes.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}
