//! `kubesweep-fixtures`: seeds a platform footprint with decoys on a real cluster, snapshots the
//! objects a cleanup must keep, and summarises what of the footprint is found. All logic lives in
//! the library; this file parses arguments and prints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kubesweep_fixtures::{Profile, Scale, SeedOptions};

#[derive(Parser)]
#[command(name = "kubesweep-fixtures", version, about)]
struct Cli {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long, global = true)]
    context: Option<String>,
    /// Footprint profile: kubesphere-v4 or kubesphere-v3.
    #[arg(long, global = true, default_value = "kubesphere-v4")]
    profile: Profile,
    /// small, medium, large, WxPxO, or workspaces=W,projects=P,objects=O.
    #[arg(long, global = true, default_value = "small")]
    scale: Scale,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the footprint and its decoys (idempotent).
    Seed {
        /// Requests in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Dump the objects a cleanup must keep as canonical JSON.
    Snapshot {
        /// Output file (default: standard output).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Compare the cluster with a snapshot file; exit 1 when anything changed.
    Diff {
        /// A file written by `snapshot`.
        before: PathBuf,
        /// Judge the changes as a cleanup's: exit 0 when kept objects lost only
        /// KubeSphere keys and foreign objects are byte-identical; list the rest.
        #[arg(long)]
        cleanup: bool,
    },
    /// Count the footprint's objects found in the cluster.
    Summary,
    /// Delete everything `seed` created (decoys and user data too) and restore the system
    /// namespaces: a reset for tests and demos.
    Teardown,
    /// Print the footprint (what `seed` creates) as JSON, without a cluster.
    Footprint,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let opts = SeedOptions {
        profile: cli.profile,
        scale: cli.scale,
        ..SeedOptions::default()
    };
    let footprint = kubesweep_fixtures::footprint(&opts);
    if let Command::Footprint = cli.command {
        println!("{}", serde_json::to_string_pretty(&footprint)?);
        return Ok(ExitCode::SUCCESS);
    }
    let client = kubesweep_fixtures::client_from_kubeconfig(
        cli.kubeconfig.as_deref(),
        cli.context.as_deref(),
    )
    .await?;
    match cli.command {
        Command::Seed { concurrency } => {
            let seeded = kubesweep_fixtures::seed(
                &client,
                &SeedOptions {
                    concurrency,
                    ..opts
                },
            )
            .await?;
            for (step, took) in &seeded.steps {
                eprintln!("{:>8.2}s  {step}", took.as_secs_f64());
            }
            println!(
                "seeded {} objects of profile {} at scale {} ({} requests) in {:.2}s",
                seeded.footprint.objects.len(),
                seeded.footprint.profile,
                seeded.footprint.scale,
                seeded.requests,
                seeded.elapsed.as_secs_f64()
            );
        }
        Command::Snapshot { output } => {
            let json = kubesweep_fixtures::snapshot(&client, &footprint)
                .await?
                .to_json()?;
            match output {
                Some(path) => std::fs::write(&path, json + "\n")
                    .with_context(|| format!("write {}", path.display()))?,
                None => println!("{json}"),
            }
        }
        Command::Diff { before, cleanup } => {
            let text = std::fs::read_to_string(&before)
                .with_context(|| format!("read {}", before.display()))?;
            let before: kubesweep_fixtures::Snapshot =
                serde_json::from_str(&text).context("parse the snapshot")?;
            let now = kubesweep_fixtures::snapshot(&client, &footprint).await?;
            if cleanup {
                let violations = kubesweep_fixtures::verdict::violations(&footprint, &before, &now);
                for v in &violations {
                    println!("{v}");
                }
                println!(
                    "{} change(s), {} not allowed for a cleanup",
                    before.changes(&now).len(),
                    violations.len()
                );
                return Ok(if violations.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
            let changes = before.diff(&now);
            for c in &changes {
                println!("{c}");
            }
            if !changes.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Summary => println!(
            "{}",
            kubesweep_fixtures::summary(&client, &footprint).await?
        ),
        Command::Teardown => {
            kubesweep_fixtures::teardown(&client, &footprint, &opts).await?;
            println!(
                "removed {} objects of profile {}",
                footprint.objects.len(),
                footprint.profile
            );
        }
        Command::Footprint => unreachable!("handled before connecting"),
    }
    Ok(ExitCode::SUCCESS)
}
