//! A plain TCP relay for the attack tests: it listens on an address of the test's choice and
//! copies bytes both ways to a target, the way an agent's own relay (or an HTTP proxy that
//! forwards elsewhere) would. It counts the connections it carried, and stops on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub struct Relay {
    pub addr: SocketAddr,
    carried: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Listens on `listen` (`127.0.0.2:0`, say) and relays every connection to `target`.
    pub fn start(listen: &str, target: SocketAddr) -> Relay {
        let listener = TcpListener::bind(listen).unwrap_or_else(|e| panic!("bind {listen}: {e}"));
        let addr = listener.local_addr().unwrap();
        let carried = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (carried.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(upstream) = TcpStream::connect(target) else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                pipe(upstream, client);
            }
        });
        Relay {
            addr,
            carried,
            stop,
            thread: Some(thread),
        }
    }

    /// How many connections it carried.
    pub fn carried(&self) -> usize {
        self.carried.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` on a thread of its own until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The `host:port` of an `http://host:port` URL.
pub fn socket_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .parse()
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}
