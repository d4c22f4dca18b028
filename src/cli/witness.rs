//! `hitl-gate witness serve|key|journal`: run a transparency-log witness for the audit log
//! (`crate::witness`), print its cosigner key for `[[serve.witness]]`, or print its journal of
//! cosigned checkpoints and refusals. docs/audit.md says how to run one elsewhere.

use std::path::PathBuf;
use std::sync::Arc;

use super::error::CliError;
use crate::witness::Witness;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Serve add-checkpoint (c2sp.org/tlog-witness) for the logs named with --log.
    Serve(ServeArgs),
    /// Print the witness's cosigner key (creates the key and names the witness if new).
    Key(KeyArgs),
    /// Print the journal: every checkpoint cosigned and every refusal, as JSON lines.
    Journal(KeyArgs),
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7380")]
    listen: String,
    /// A log to witness: its verifier key (`hitl-gate audit log-key`); repeat for several.
    #[arg(long = "log", required = true)]
    logs: Vec<String>,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(clap::Args)]
pub struct KeyArgs {
    /// The witness's own data dir: its key and its state, never the server's.
    #[arg(long)]
    data_dir: PathBuf,
    /// The witness's name, e.g. `witness.example.com/w1` (needed the first time only).
    #[arg(long)]
    name: Option<String>,
}

fn fail(m: impl Into<String>) -> CliError {
    CliError::new(1, m)
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| fail(e.to_string()))
}

pub fn run(cmd: Command) -> Result<i32, CliError> {
    let rt = runtime()?;
    rt.block_on(async {
        match cmd {
            Command::Serve(a) => serve(a).await,
            Command::Key(k) => {
                let w = Witness::open(&k.data_dir, k.name.as_deref(), &[])
                    .await
                    .map_err(fail)?;
                println!("{}", w.vkey);
                Ok(0)
            }
            Command::Journal(k) => {
                let w = Witness::open(&k.data_dir, k.name.as_deref(), &[])
                    .await
                    .map_err(fail)?;
                for e in w.journal().await.map_err(fail)? {
                    println!("{}", serde_json::to_string(&e).expect("events serialise"));
                }
                Ok(0)
            }
        }
    })
}

async fn serve(a: ServeArgs) -> Result<i32, CliError> {
    let w = Witness::open(&a.key.data_dir, a.key.name.as_deref(), &a.logs)
        .await
        .map_err(fail)?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .map_err(|e| fail(format!("cannot listen on {}: {e}", a.listen)))?;
    let addr = listener.local_addr().map_err(|e| fail(e.to_string()))?;
    println!("hitl-gate witness: listening on http://{addr}");
    println!("cosigner key: {}", w.vkey);
    let stop = async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    crate::witness::serve(Arc::new(w), listener, stop)
        .await
        .map_err(fail)?;
    Ok(0)
}
