//! The `kubesweep` binary: parse arguments, validate them into options, call
//! the library, render the outcome, and map it to a documented exit code.

mod apply_cmd;
mod args;
mod audit;
mod backup_cmd;
mod docs_cmd;
mod exit;
mod fleet_cmd;
mod hook;
mod interrupt;
mod plan_cmd;
mod profiles_cmd;
mod progress;
mod restore_cmd;
mod session;
mod verify_cmd;

use clap::FromArgMatches;
use exit::{CliError, Exit};
use std::process::ExitCode;

fn main() -> ExitCode {
    let invoked = args::invoked_name();
    let args = args::Cli::from_arg_matches(&args::command(&invoked).get_matches())
        .unwrap_or_else(|e| e.exit());
    // Hook mode logs JSON lines whatever --log-format says: a Job's log is
    // read by machines.
    let hook_summary = match &args.command {
        args::Command::Apply { flags, .. } if flags.hook => {
            Some(flags.termination_message_path.clone())
        }
        _ => None,
    };
    let log_format = if hook_summary.is_some() {
        args::LogFormat::Json
    } else {
        args.log_format
    };
    init_logging(log_format, args.verbose);
    hook::set_json_lines(log_format == args::LogFormat::Json);
    if let Some(path) = hook_summary {
        hook::start_summary(path);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kubesweep: failed to start the async runtime: {e}");
            return Exit::Internal.into();
        }
    };
    match runtime.block_on(run(args)) {
        Ok(exit) => {
            hook::finish(exit as u8, None);
            exit.into()
        }
        Err(e) => {
            hook::say_error(format!("kubesweep: {e}"));
            hook::finish(e.exit as u8, Some(&e.message));
            e.exit.into()
        }
    }
}

/// Logs go to stderr; stdout carries only the command's output (plans, reports).
fn init_logging(format: args::LogFormat, verbose: u8) {
    let default = match verbose {
        0 => "kubesweep=info,kubesweep_cli=info",
        1 => "kubesweep=debug,kubesweep_cli=debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KUBESWEEP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| progress::LogWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        args::LogFormat::Text => builder.with_target(false).init(),
        args::LogFormat::Json => builder.json().init(),
    }
}

async fn run(cli: args::Cli) -> Result<Exit, CliError> {
    let log_format = if matches!(&cli.command, args::Command::Apply { flags, .. } if flags.hook) {
        args::LogFormat::Json
    } else {
        cli.log_format
    };
    tracing::debug!(command = cli.command.name(), "starting");
    match cli.command {
        args::Command::Profiles { action } => profiles_cmd::run(action),
        args::Command::Completions { shell } => docs_cmd::completions(shell),
        args::Command::Man => docs_cmd::man(),
        args::Command::Plan {
            cluster,
            profile,
            output,
            save,
            details,
            flags,
            fleet,
        } => {
            if fleet.members {
                return fleet_cmd::plan(
                    &cluster,
                    &profile,
                    &flags,
                    &output,
                    save.as_deref(),
                    details,
                    &fleet,
                )
                .await;
            }
            plan_cmd::run(
                &cluster,
                &profile,
                &flags,
                &output,
                save.as_deref(),
                details,
            )
            .await
        }
        args::Command::Apply {
            plan_file,
            cluster,
            profile,
            plan_flags,
            flags,
            fleet,
        } => {
            if fleet.members {
                return fleet_cmd::apply(
                    plan_file.as_deref(),
                    &cluster,
                    &profile,
                    &plan_flags,
                    &flags,
                    &fleet,
                    log_format,
                )
                .await;
            }
            apply_cmd::run(
                plan_file.as_deref(),
                &cluster,
                &profile,
                &plan_flags,
                &flags,
                log_format,
            )
            .await
        }
        args::Command::Verify {
            cluster,
            profile,
            output,
            flags,
            fleet,
        } => {
            if fleet.members {
                return fleet_cmd::verify(&cluster, &profile, &flags, output, &fleet).await;
            }
            verify_cmd::run(&cluster, &profile, &flags, output).await
        }
        args::Command::Backup {
            action,
            cluster,
            profile,
            plan_flags,
            output,
            encrypt_to,
        } => {
            backup_cmd::run(
                action.as_ref(),
                &cluster,
                &profile,
                &plan_flags,
                output.as_deref(),
                &encrypt_to,
            )
            .await
        }
        args::Command::Restore {
            archive,
            cluster,
            dry_run,
            overwrite,
            to_other_cluster,
            identity,
            sha256,
        } => {
            let options = restore_cmd::Options {
                dry_run,
                overwrite,
                to_other_cluster,
            };
            restore_cmd::run(
                &archive,
                &cluster,
                &options,
                identity.as_deref(),
                sha256.as_deref(),
            )
            .await
        }
    }
}
