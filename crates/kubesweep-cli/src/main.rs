//! The `kubesweep` binary: parse arguments, validate them into options, call
//! the library, render the outcome, and map it to a documented exit code.

mod args;
mod exit;
mod plan_cmd;
mod profiles_cmd;
mod session;

use clap::Parser;
use exit::{CliError, Exit};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kubesweep: failed to start the async runtime: {e}");
            return Exit::Internal.into();
        }
    };
    match runtime.block_on(run(args)) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("kubesweep: {e}");
            e.exit.into()
        }
    }
}

async fn run(cli: args::Cli) -> Result<Exit, CliError> {
    match cli.command {
        args::Command::Profiles { action } => profiles_cmd::run(action),
        args::Command::Plan { cluster, profile, output, save, details, flags } => {
            plan_cmd::run(&cluster, &profile, &flags, &output, save.as_deref(), details).await
        }
        other => Err(CliError::new(
            Exit::NotImplemented,
            format!("`{}` is not implemented yet", other.name()),
        )),
    }
}
