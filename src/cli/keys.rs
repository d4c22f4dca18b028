//! `hitl-gate keys show` (the server's public key) and `hitl-gate keys agent-token NAME` (a new
//! agent token and the policy lines that admit it; only the token's SHA-256 goes in the policy).

use std::path::PathBuf;

use super::error::CliError;
use crate::server;
use crate::signing::Keys;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the server's Ed25519 public key (hex); creates the key if the server never ran.
    Show {
        /// The server's data dir, where its signing key is [default: the policy's [serve]
        /// data_dir, else $XDG_DATA_HOME/hitl-gate].
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Make a new agent token: the token for the agent, the lines for [serve] in the policy.
    AgentToken {
        /// The agent's name, as approvers and the audit log see it.
        name: String,
        /// The human this agent acts for.
        #[arg(long)]
        on_behalf_of: Option<String>,
    },
}

pub fn run(cmd: Command) -> Result<i32, CliError> {
    match cmd {
        Command::Show { data_dir } => {
            let (dir, _) = super::locate::data_dir(data_dir)?;
            server::prepare_data_dir(&dir).map_err(|e| CliError::new(1, e))?;
            let keys = Keys::load_or_create(&dir).map_err(|e| CliError::new(1, e))?;
            println!("{}", keys.public_hex());
        }
        Command::AgentToken { name, on_behalf_of } => {
            let mut b = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
                .map_err(|_| CliError::new(1, "no system randomness"))?;
            let token = format!("hgt_{}", crate::hex::encode(&b));
            println!("token (give it to the agent, keep it out of argv): {token}");
            println!("policy lines:\n[[serve.agent]]\nname = {name:?}");
            println!(
                "token_sha256 = \"{}\"",
                crate::hex::sha256(token.as_bytes())
            );
            if let Some(h) = on_behalf_of {
                println!("on_behalf_of = {h:?}");
            }
        }
    }
    Ok(0)
}
