//! The `hitl-gate` command line (clap). Each subcommand lives in its own file. Errors are
//! returned up to [`run`], which prints them once.

mod doctor;
mod explain;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hitl-gate",
    version,
    about = "Human-in-the-loop approval gate for terraform, tofu, kubectl and helm",
    long_about = "Human-in-the-loop approval gate for terraform, tofu, kubectl and helm.\n\n\
        Installed under a tool's name (see shims/ and install.sh), this binary is a shim that \
        passes harmless commands to the real tool and holds the rest for a human. Under its \
        own name it offers the commands below."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show how a command would be classified, without running anything.
    Explain(explain::Args),
    /// Check the installation: PATH order, real binaries, policy file.
    Doctor(doctor::Args),
}

/// Runs the CLI and returns the process exit code.
pub fn run() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Explain(a) => explain::run(a),
        Command::Doctor(a) => doctor::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hitl-gate: {}", e.message);
            e.code
        }
    }
}

/// An error that ends a CLI command: printed once by [`run`].
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> CliError {
        CliError {
            code: i32::from(code),
            message: message.into(),
        }
    }
}
