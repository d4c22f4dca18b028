//! The API-server URL parser (`policy::server_url::parse`) against the real pinned kubectl
//! 1.35.2, differentially: for each odd server URL of a corpus, plain TCP listeners on
//! 127.0.0.1, 127.0.0.2, [::1] (ephemeral ports) and on ports 443 and 80 of a loopback address
//! of the case's own record which of them kubectl connects to (`kubectl get --raw /version` with
//! a kubeconfig naming that server). The invariant: whenever the parser accepts a URL, kubectl
//! connected to exactly the host and port the parser read, and to nothing else. Where the parser
//! refuses, kubectl may do anything: a refusal only makes the gate's target inexact.
//!
//! Findings recorded here (the first one asserted, so a kubectl upgrade that changes it fails):
//! - `https://127.0.0.1:6443@127.0.0.2:PORT` connects to 127.0.0.2:PORT: userinfo, split at the
//!   LAST `@` of the authority (`a@b@127.0.0.2` too). `\` is no delimiter in Go (client-go
//!   refuses `\@`), while `#@host2` and `?@host2` connect to the FIRST host (Go cuts the fragment
//!   and the query before it looks for `@`).
//! - Go's pure resolver (kubectl is static): `localhost.` goes to DNS, skipping /etc/hosts, and
//!   `127.0.0.1.` is no address; `LOCALHOST` is found in /etc/hosts. `127.1`, `2130706433`,
//!   `0x7f.0.0.1`, `0177.0.0.1` are looked up as names (glibc would read them as 127.0.0.1).
//! - These reach a listener under another spelling: `0.0.0.0` (127.0.0.1), `[::]` and
//!   `[::1%25lo]` (::1), `[::ffff:127.0.0.1]` (127.0.0.1), full-width `１２７.０.０.１` (IDNA maps
//!   it to 127.0.0.1), unbracketed `https://::1:PORT` ([::1]:PORT: the port is after the last
//!   colon), a port with a leading zero (decimal), an empty port `host:` (the default port).
//! - A server with no scheme (`127.0.0.1:PORT`, `localhost:PORT`) gets `http://` here (no TLS
//!   settings); a path with `//`, `..` or `%2e` still reaches the host.
//!
//! Connections to addresses nobody listens on are invisible here: "nowhere" means "none of the
//! case's listeners". kubectl runs through `support::run_within`, which kills it at its deadline
//! in the same frame that spawned it; the listeners' accept thread stops in [`Listeners`]'s Drop.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hitl_gate::policy::server_url::{self, ServerUrl};

use crate::support::{run_within, stderr, tools, Sandbox};

/// The corpus. `{a}`, `{b}`, `{c}`: the ports of the case's listeners on 127.0.0.1, 127.0.0.2
/// and [::1]; `{d}`: a loopback address of the case's own, listened on at ports 443 and 80.
const CORPUS: &[&str] = &[
    "https://127.0.0.1:{a}",
    "http://127.0.0.1:{a}",
    "HTTPS://127.0.0.1:{a}",
    "hTtP://127.0.0.2:{b}",
    // Userinfo and other ways to hide a second host.
    "https://127.0.0.1:6443@127.0.0.2:{b}",
    "https://127.0.0.1:{a}@127.0.0.2:{b}",
    "https://user@127.0.0.2:{b}",
    "https://@127.0.0.2:{b}",
    "https://a@b@127.0.0.2:{b}",
    "https://127.0.0.1:{a}\\@127.0.0.2:{b}",
    "https://127.0.0.1%40127.0.0.2:{b}",
    "https://127.0.0.1:{a}#@127.0.0.2:{b}",
    "https://127.0.0.1:{a}?@127.0.0.2:{b}",
    "https://127.0.0.1:{a}/@127.0.0.2:{b}",
    "https://127.0.0.2:{b}#fragment",
    "https://127.0.0.2:{b}?q=1",
    "https://127.0.0.2:{b}/prefix?q=1",
    "https://127.0.0.2:{b}?",
    // Names, case and trailing dots.
    "https://localhost:{a}",
    "https://LOCALHOST:{a}",
    "https://localhost.:{a}",
    "https://127.0.0.1.:{a}",
    // IPv6.
    "https://[::1]:{c}",
    "https://[0:0:0:0:0:0:0:1]:{c}",
    "http://[::1]:{c}/",
    "https://[::ffff:127.0.0.1]:{a}",
    "https://[::1%25lo]:{c}",
    "https://[127.0.0.1]:{a}",
    "https://[::1:{c}",
    "https://::1:{c}",
    "https://[::]:{c}",
    // Default, empty and odd ports.
    "https://{d}",
    "http://{d}",
    "https://{d}:",
    "http://{d}:/",
    "HTTP://{d}:443",
    "https://127.0.0.1:0{a}",
    "https://127.0.0.1:+{a}",
    "https://127.0.0.1:{a}:{b}",
    "https://127.0.0.1::{a}",
    "https://127.0.0.1:99999",
    // Paths.
    "https://127.0.0.1:{a}/",
    "https://127.0.0.1:{a}//",
    "https://127.0.0.1:{a}///x",
    "https://127.0.0.2:{b}/k8s/clusters/c-1",
    "https://127.0.0.2:{b}/a/../b",
    "https://127.0.0.2:{b}/%2e%2e/",
    // IPv4 that is not a canonical dotted quad.
    "https://127.1:{a}",
    "https://2130706433:{a}",
    "https://0x7f000001:{a}",
    "https://0x7f.0.0.1:{a}",
    "https://0177.0.0.1:{a}",
    "https://127.000.000.001:{a}",
    "https://0.0.0.0:{a}",
    "https://127%2e0.0.1:{a}",
    "https://%31%32%37.0.0.1:{a}",
    "https://１２７.０.０.１:{a}",
    // Spaces and tabs.
    " https://127.0.0.1:{a}",
    "https://127.0.0.1:{a} ",
    "https://127.0.0.1 :{a}",
    "https://127.0.0.1:{a}\t",
    "https://127.0.0.1\t:{a}",
    // No scheme, odd schemes, odd slashes.
    "127.0.0.1:{a}",
    "localhost:{a}",
    "//127.0.0.1:{a}",
    "https:127.0.0.1:{a}",
    "https:/127.0.0.1:{a}",
    "https:///127.0.0.1:{a}",
    "https:\\\\127.0.0.1:{a}",
    "ftp://127.0.0.1:{a}",
];

/// The attack the parser exists for: kubectl must be seen to follow the userinfo.
const ATTACK: &str = "https://127.0.0.1:6443@127.0.0.2:{b}";

/// One case's listeners and the thread that accepts (and at once closes) their connections.
struct Listeners {
    /// (name in the table, address): A, B, C, D443, D80.
    addrs: Vec<(&'static str, SocketAddr)>,
    hits: Arc<Mutex<BTreeSet<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listeners {
    fn start(case: usize) -> Listeners {
        let bind = |addr: SocketAddr| {
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"))
        };
        let mut socks = vec![
            ("A", bind("127.0.0.1:0".parse().unwrap())),
            ("B", bind("127.0.0.2:0".parse().unwrap())),
            ("C", bind("[::1]:0".parse().unwrap())),
        ];
        socks.extend(default_port_listeners(case));
        let addrs: Vec<_> = socks
            .iter()
            .map(|(n, l)| (*n, l.local_addr().unwrap()))
            .collect();
        let hits = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for (_, l) in &socks {
                l.set_nonblocking(true).unwrap();
            }
            loop {
                // Read the flag first, so one full pass runs after it is set: a connection
                // kubectl made before it exited is in an accept queue by then.
                let stopping = s.load(Ordering::SeqCst);
                for (_, l) in &socks {
                    while let Ok((conn, _)) = l.accept() {
                        h.lock().unwrap().insert(l.local_addr().unwrap());
                        drop(conn);
                    }
                }
                if stopping {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Listeners {
            addrs,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn addr(&self, name: &str) -> SocketAddr {
        self.addrs.iter().find(|(n, _)| *n == name).unwrap().1
    }

    /// Stops accepting and returns every listener kubectl connected to, named.
    fn finish(mut self) -> Vec<(&'static str, SocketAddr)> {
        self.shutdown();
        let hits = self.hits.lock().unwrap().clone();
        self.addrs
            .iter()
            .filter(|(_, a)| hits.contains(a))
            .copied()
            .collect()
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("accept thread");
        }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Listeners on ports 443 and 80 of 127.X.Y.Z, an address no other case (nor, by the pid in X,
/// most likely another run of this test) uses. Port 443 needs root, as tests here run.
fn default_port_listeners(case: usize) -> Vec<(&'static str, TcpListener)> {
    let pid = std::process::id() as usize;
    for attempt in 0..64 {
        let x = 100 + (pid + attempt) % 150;
        let ip = Ipv4Addr::new(127, x as u8, (case / 250) as u8, (1 + case % 250) as u8);
        let bind = |port: u16| TcpListener::bind(SocketAddr::new(IpAddr::V4(ip), port));
        match (bind(443), bind(80)) {
            (Ok(l443), Ok(l80)) => return vec![("D443", l443), ("D80", l80)],
            (Err(e), _) | (_, Err(e)) if e.kind() == ErrorKind::AddrInUse => continue,
            (Err(e), _) | (_, Err(e)) => {
                panic!("cannot listen on {ip} port 443 or 80 ({e}): this test runs as root")
            }
        }
    }
    panic!("no free loopback address for the default-port listeners");
}

/// One corpus entry, run.
struct Row {
    url: String,
    gate: Result<ServerUrl, String>,
    /// The table names of the listeners kubectl connected to, with their addresses.
    reached: Vec<(&'static str, SocketAddr)>,
    /// Where the gate's reading resolves to (for names, through the system resolver).
    expected: BTreeSet<SocketAddr>,
    /// kubectl's last stderr line.
    said: String,
}

impl Row {
    fn holds(&self) -> bool {
        match &self.gate {
            Err(_) => true,
            Ok(_) => self.reached.len() == 1 && self.expected.contains(&self.reached[0].1),
        }
    }
}

fn run_case(sb: &Sandbox, case: usize, template: &str) -> Row {
    let listeners = Listeners::start(case);
    let ip = |n: &str| listeners.addr(n).ip().to_string();
    let url = template
        .replace("{a}", &listeners.addr("A").port().to_string())
        .replace("{b}", &listeners.addr("B").port().to_string())
        .replace("{c}", &listeners.addr("C").port().to_string())
        .replace("{d}", &ip("D443"));
    let dir = sb.path().join(format!("case-{case}"));
    std::fs::create_dir_all(&dir).unwrap();
    write_kubeconfig(&dir, &url);
    let mut cmd = sb.direct("kubectl");
    cmd.env("HOME", &dir)
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env("KUBERC", "off")
        .args(["get", "--raw", "/version", "--request-timeout=5s"]);
    let out = run_within(&mut cmd, Duration::from_secs(60));
    let said = stderr(&out).lines().last().unwrap_or("").to_string();
    let reached = listeners.finish();
    let gate = server_url::parse(&url);
    let expected = match &gate {
        Ok(u) => (u.host.as_str(), u.port)
            .to_socket_addrs()
            .map(|a| a.collect())
            .unwrap_or_default(),
        Err(_) => BTreeSet::new(),
    };
    Row {
        url,
        gate,
        reached,
        expected,
        said,
    }
}

/// A kubeconfig (JSON is YAML) naming `url`, skipping TLS verification for https.
fn write_kubeconfig(dir: &Path, url: &str) {
    let mut cluster = serde_json::json!({ "server": url });
    if url.trim_start().to_ascii_lowercase().starts_with("https") {
        cluster["insecure-skip-tls-verify"] = true.into();
    }
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "c", "cluster": cluster }],
        "users": [{ "name": "u", "user": { "token": "t" } }],
        "contexts": [{ "name": "x", "context": { "cluster": "c", "user": "u" } }],
        "current-context": "x",
    });
    std::fs::write(dir.join("kubeconfig"), config.to_string()).unwrap();
}

fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<3} {:<52} {:<44} kubectl connected to\n",
        "", "url", "gate"
    );
    for r in rows {
        let gate = match &r.gate {
            Ok(u) => format!("{} ({})", u.authority(), u),
            Err(e) => format!("Err: {}", e.chars().take(38).collect::<String>()),
        };
        let kubectl = match r.reached.is_empty() {
            true => format!("nowhere ({})", r.said.chars().take(70).collect::<String>()),
            false => r
                .reached
                .iter()
                .map(|(n, a)| format!("{n} {a}"))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let mark = if r.holds() { "" } else { "!!" };
        s += &format!(
            "{mark:<3} {:<52} {gate:<44} {kubectl}\n",
            format!("{:?}", r.url)
        );
    }
    s
}

#[test]
fn parser_reads_server_urls_as_kubectl_connects() {
    let kubectl = tools::kubectl();
    let sb = Sandbox::new();
    sb.add_real("kubectl", &kubectl);
    let rows: Vec<Mutex<Option<Row>>> = CORPUS.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(template) = CORPUS.get(i) else { break };
                *rows[i].lock().unwrap() = Some(run_case(&sb, i, template));
            });
        }
    });
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|r| r.into_inner().unwrap().unwrap())
        .collect();
    let table = table(&rows);
    println!("{table}");
    let broken: Vec<_> = rows.iter().filter(|r| !r.holds()).map(|r| &r.url).collect();
    assert!(
        broken.is_empty(),
        "the parser accepted URLs where kubectl connected elsewhere (or nowhere): {broken:?}\n{table}"
    );
    let attack = &rows[CORPUS.iter().position(|t| *t == ATTACK).unwrap()];
    assert!(
        attack.reached.iter().map(|(n, _)| *n).eq(["B"]) && attack.gate.is_err(),
        "kubectl no longer follows the userinfo of {:?}, or the parser accepts it:\n{table}",
        attack.url
    );
}
