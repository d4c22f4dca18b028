//! `hitl-gate serve`: runs the approval server (see `src/server/`). It starts the log
//! (`server::logging`), registers SIGHUP (which loads the policy again, `server::reload`)
//! before anything else can receive it, and stops on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::error::CliError;
use crate::policy;
use crate::server::{self, Config};

#[derive(clap::Args)]
pub struct Args {
    /// Where the database, the signing key and the admin socket live
    /// [default: [serve] data_dir, else $XDG_DATA_HOME/hitl-gate].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: [serve] listen, else 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<String>,
    /// PEM certificate chain for HTTPS [default: [serve] tls_cert].
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS [default: [serve] tls_key].
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (only behind a TLS-terminating proxy).
    #[arg(long)]
    insecure_http: bool,
    /// The log on stderr: text or json, one event per line [default: [serve] log_format, else
    /// text]. HITL_GATE_LOG filters it (default: warn,hitl_gate=info).
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
}

pub fn run(args: Args) -> Result<i32, CliError> {
    let fail = |m: String| CliError::new(1, m);
    let (policy, source) = policy::load::load_for_cli()
        .map_err(|e| CliError::new(crate::exit::POLICY_ERROR, e.to_string()))?;
    let serve = policy.serve().clone();
    let format = match args.log_format.as_deref() {
        Some("json") => policy::schema::LogFormat::Json,
        Some(_) => policy::schema::LogFormat::Text,
        None => serve.log_format,
    };
    server::logging::init(format).map_err(fail)?;
    let listen = args
        .listen
        .or(serve.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    // An IP address and port, or a host name and port (`localhost:8080`), resolved here.
    let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(listen.as_str())
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            fail(format!(
                "--listen {listen:?} is not an address like 127.0.0.1:8080 or localhost:8080"
            ))
        })?;
    // The flags, else the policy's pair (validated: both or neither).
    let pair = match (args.tls_cert, args.tls_key) {
        (Some(c), Some(k)) => Some((c, k)),
        _ => serve.tls_cert.clone().zip(serve.tls_key.clone()),
    };
    let tls = match &pair {
        Some((c, k)) => Some(server::tls::load(c, k).map_err(fail)?),
        None => None,
    };
    if !addr.ip().is_loopback() && tls.is_none() && !args.insecure_http {
        return Err(fail(format!(
            "refusing to listen on {addr} without TLS: approvals and agent tokens would cross the \
             network in clear text. Give --tls-cert and --tls-key (or [serve] tls_cert and \
             tls_key), or --insecure-http if a TLS-terminating proxy sits in front"
        )));
    }
    // Found as the approver commands find it; only a --data-dir of serve's own must be repeated
    // to them.
    let (data_dir, found) = match args.data_dir {
        Some(d) => (d, super::locate::Found::Flag),
        None => match serve.data_dir.clone() {
            Some(d) => (d, super::locate::Found::Policy),
            None => (
                super::locate::default_data_dir()?,
                super::locate::Found::Default,
            ),
        },
    };
    let decide_flags = match found {
        super::locate::Found::Flag => format!(" --data-dir {}", data_dir.display()),
        _ => String::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start the runtime: {e}")))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let agents = serve.agents.len();
    runtime.block_on(async move {
        // Registered first: from here on SIGHUP reloads instead of killing the server.
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| fail(format!("cannot handle SIGHUP: {e}")))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| fail(format!("cannot listen on {addr}: {e}")))?;
        let local = listener.local_addr().map_err(|e| fail(e.to_string()))?;
        let config = Config {
            data_dir: data_dir.clone(),
            policy,
            tls,
            clock: server::Clock::from_env(),
            reload: Some(server::Reload {
                loader: std::sync::Arc::new(|| {
                    policy::load::load_for_cli()
                        .map(|(p, source)| (p, source.to_string()))
                        .map_err(|e| e.to_string())
                }),
                hangup: Some(hangup),
            }),
        };
        server::launch_with_listener(config, listener, shutdown_signal(), |s| {
            println!("hitl-gate serve: listening on {scheme}://{local}");
            println!("  public key (ed25519): {}", s.public_key);
            println!("  data dir:             {}", data_dir.display());
            println!("  admin socket:         {}", s.socket.display());
            println!("  policy:               {source}");
            println!(
                "  agents:               {agents} configured ([[serve.agent]]; make a token with \
                 `hitl-gate keys agent-token NAME`)"
            );
            println!(
                "  shims: in the agent's policy, [approval] url = \"{scheme}://{local}\", \
                 public_key = \"{}\", token_file = \"/path/to/agent.token\" (docs/policy.md)",
                s.public_key
            );
            match &s.web_ui {
                Some(ui) => println!("  web UI:               {ui}"),
                None => println!(
                    "  web UI:               off (configure [serve.oidc] and [serve] public_url)"
                ),
            }
            println!(
                "  decide:               hitl-gate list | show ID | approve ID | reject ID -m \
                 REASON{decide_flags}"
            );
            println!(
                "  reload the policy:    hitl-gate reload{decide_flags}, or kill -HUP {}",
                std::process::id()
            );
            let _ = std::io::Write::flush(&mut std::io::stdout());
        })
        .await
        .map_err(fail)
    })?;
    Ok(0)
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
