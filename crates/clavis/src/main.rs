//! The `clavis` binary: command-line parsing and wiring, nothing else. Each subcommand builds
//! the pieces from the library crates and runs them.

mod admin;
mod audit;
mod backup;
mod bench;
mod client;
mod config;
mod envelope;
mod k8s;
mod key;
mod operator;
mod root;
mod rotation;
mod serve;
mod tls;

use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's malloc: the server allocates and frees small buffers on every
/// request, and glibc's allocator took about 13 % of its CPU (BENCHMARKS.md, issue #19).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Clavis: a self-hosted key management service that speaks the AWS KMS API.
#[derive(Debug, Parser)]
#[command(name = "clavis", version, about)]
struct Cli {
    /// Log lines as plain `text` (colours only on a terminal) or one `json` object per line
    /// for log shippers.
    #[arg(long, global = true, env = "CLAVIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (initialising the data directory on first start).
    Serve(Box<serve::ServeArgs>),
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
    /// Encrypt a file under a fresh data key from KMS, in the AWS Encryption SDK message format.
    Encrypt(Box<envelope::EncryptArgs>),
    /// Decrypt a file written by `clavis encrypt` or the AWS Encryption SDK.
    Decrypt(Box<envelope::DecryptArgs>),
    /// The Kubernetes KMS v2 plugin: kube-apiserver encrypts Secrets under a Clavis key through
    /// it (gRPC on a Unix socket).
    K8sKmsPlugin(k8s::PluginArgs),
    /// Configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a `clavis serve --config` file without starting anything: unknown keys and
    /// invalid values are errors that name the key.
    Check {
        /// The TOML file.
        file: std::path::PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    // `clavis serve --config FILE`: the file's settings become flags the command line and the
    // environment did not set.
    let argv = match config::expand(<Cli as clap::CommandFactory>::command(), std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(e) => {
            eprintln!("Error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse_from(argv);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        // ANSI colour codes only when a person reads stderr on a terminal: in a file, a pipe
        // or a journal they are noise that log tools cannot parse.
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => builder.json().init(),
    }
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Bench(args) => bench::run(args),
        Command::Encrypt(args) => envelope::encrypt(*args),
        Command::Decrypt(args) => envelope::decrypt(*args),
        Command::K8sKmsPlugin(args) => k8s::run(args),
        Command::Key(cmd) => key::run(cmd),
        Command::Admin(cmd) => admin::run(cmd),
        Command::Operator(cmd) => operator::run(cmd),
        Command::Config(ConfigCommand::Check { file }) => config::check(<Cli as clap::CommandFactory>::command(), &file),
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
