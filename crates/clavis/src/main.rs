//! The `clavis` binary: command-line parsing and wiring, nothing else. Each subcommand builds
//! the pieces from the library crates and runs them.

mod admin;
mod audit;
mod bench;
mod client;
mod key;
mod operator;
mod root;
mod serve;

use clap::{Parser, Subcommand};

/// Clavis: a self-hosted key management service that speaks the AWS KMS API.
#[derive(Debug, Parser)]
#[command(name = "clavis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (initialising the data directory on first start).
    Serve(serve::ServeArgs),
    /// Verify or export the audit log of a data directory.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Administration: users and access keys.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Key commands beyond the AWS API (re-wrap on unwrap).
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// The root of trust: initialise and unseal a Shamir-sealed server, seal it, status.
    #[command(subcommand)]
    Operator(operator::OperatorCommand),
    /// Load-test an AWS-KMS-compatible endpoint.
    Bench(bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Bench(args) => bench::run(args),
        Command::Key(cmd) => key::run(cmd),
        Command::Admin(cmd) => admin::run(cmd),
        Command::Operator(cmd) => operator::run(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The error and its causes on one line, never a backtrace (even with RUST_BACKTRACE
            // set): these messages are for operators.
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
