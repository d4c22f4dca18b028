//! The `hitl-gate` command line (clap). Each subcommand lives in its own file. Errors are
//! returned up to [`run`], which prints them once.

mod about;
#[cfg(feature = "server")]
mod admin;
#[cfg(feature = "server")]
mod audit;
#[cfg(feature = "server")]
mod audit_db;
mod doctor;
mod doctor_lockdown;
mod error;
mod explain;
#[cfg(feature = "server")]
mod init;
#[cfg(feature = "server")]
mod keys;
mod locate;
#[cfg(feature = "server")]
mod print;
mod runner;
#[cfg(feature = "server")]
mod serve;
#[cfg(feature = "server")]
mod uds_http;
#[cfg(feature = "server")]
mod witness;

use clap::{CommandFactory, Parser, Subcommand};

use crate::shim::kube_diff;
pub use error::CliError;

#[derive(Parser)]
#[command(
    name = "hitl-gate",
    version = about::VERSION,
    about = "Human-in-the-loop approval gate for terraform, tofu, kubectl and helm",
    long_about = "Human-in-the-loop approval gate for terraform, tofu, kubectl and helm.\n\n\
        Installed under a tool's name (symlinks, as in shims/), this binary is a shim that \
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
    /// Lockdown mode's runner: runs the real tools for the agents' users (as this user).
    Runner(runner::Args),
    /// Print a shell completion script to stdout (bash, zsh, fish).
    #[command(display_order = 1000)]
    Completions(about::CompletionsArgs),
    /// Print the man page (roff), or write every page into a directory with --dir.
    #[command(display_order = 1001)]
    Man(about::ManArgs),
    /// Set up a working local gate: a policy, an agent token, the server's key, the shims.
    #[cfg(feature = "server")]
    Init(init::Args),
    /// Run the approval server.
    #[cfg(feature = "server")]
    Serve(serve::Args),
    /// List requests (default: pending), over the server's admin socket.
    #[cfg(feature = "server")]
    List(admin::ListArgs),
    /// Show one request, with its diff.
    #[cfg(feature = "server")]
    Show(admin::ShowArgs),
    /// Approve a request, as the local user.
    #[cfg(feature = "server")]
    Approve(admin::ApproveArgs),
    /// Reject a request, as the local user; a reason is required.
    #[cfg(feature = "server")]
    Reject(admin::RejectArgs),
    /// Make the running server load its policy file again (as SIGHUP does).
    #[cfg(feature = "server")]
    Reload(admin::ReloadArgs),
    /// Verify or export the audit log.
    #[cfg(feature = "server")]
    #[command(subcommand)]
    Audit(audit::Command),
    /// The server's signing key and agent tokens.
    #[cfg(feature = "server")]
    #[command(subcommand)]
    Keys(keys::Command),
    /// A witness that cosigns the audit log's checkpoints (run it on another host).
    #[cfg(feature = "server")]
    #[command(subcommand)]
    Witness(witness::Command),
}

/// Runs the CLI and returns the process exit code.
pub fn run() -> i32 {
    // kubectl runs its external diff program as `PROGRAM LIVE MERGED ARGS…`: the gate's
    // collector is recognised by its trailing word, before clap sees the arguments.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let result = if let [_, live, merged, word] = args.as_slice() {
        if word == kube_diff::WORD {
            report(kube_diff::run(live.as_ref(), merged.as_ref()).map_err(|e| CliError::new(2, e)))
        } else {
            return run_clap();
        }
    } else {
        return run_clap();
    };
    result
}

fn run_clap() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Explain(a) => explain::run(a),
        Command::Doctor(a) => doctor::run(a),
        Command::Runner(a) => runner::run(a),
        Command::Completions(a) => about::completions(a, Cli::command()),
        Command::Man(a) => about::man(a, Cli::command()),
        #[cfg(feature = "server")]
        Command::Init(a) => init::run(a),
        #[cfg(feature = "server")]
        Command::Serve(a) => serve::run(a),
        #[cfg(feature = "server")]
        Command::List(a) => admin::list(a),
        #[cfg(feature = "server")]
        Command::Show(a) => admin::show(a),
        #[cfg(feature = "server")]
        Command::Approve(a) => admin::approve(a),
        #[cfg(feature = "server")]
        Command::Reject(a) => admin::reject(a),
        #[cfg(feature = "server")]
        Command::Reload(a) => admin::reload(a),
        #[cfg(feature = "server")]
        Command::Audit(c) => audit::run(c),
        #[cfg(feature = "server")]
        Command::Keys(c) => keys::run(c),
        #[cfg(feature = "server")]
        Command::Witness(c) => witness::run(c),
    };
    report(result)
}

/// The exit code of a command, its error printed once.
fn report(result: Result<i32, CliError>) -> i32 {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hitl-gate: {}", e.message);
            e.code
        }
    }
}
