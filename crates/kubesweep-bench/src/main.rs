//! `kubesweep-bench`: seeds the same footprint before each variant, lets
//! the cluster settle, times the removal and checks it with `kubesweep
//! verify`. The baseline (first) executes kubesweep's own plan one kubectl
//! per action, sequentially; then kubesweep's apply one request at a time;
//! then kubesweep's apply as shipped. Prints ratios against the baseline.
//! Needs a disposable cluster: it deletes the footprint it seeds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use kubesweep::plan::Plan;
use kubesweep_bench::kubectl_baseline::{self, Step};
use kubesweep_bench::report::{BenchReport, Measurement};
use kubesweep_fixtures::{Profile, Scale, SeedOptions};

#[derive(Parser)]
#[command(name = "kubesweep-bench", about)]
struct Cli {
    /// Kubeconfig of a disposable cluster (default: $KUBESWEEP_TEST_KUBECONFIG).
    #[arg(long, env = "KUBESWEEP_TEST_KUBECONFIG")]
    kubeconfig: PathBuf,
    /// small, medium, large, WxPxO, or workspaces=W,projects=P,objects=O.
    #[arg(long, default_value = "medium")]
    scale: Scale,
    /// The kubesweep binary (default: next to this one).
    #[arg(long)]
    kubesweep: Option<PathBuf>,
    /// The kubectl binary of the baseline.
    #[arg(long, default_value = "kubectl")]
    kubectl: PathBuf,
    /// Seconds to let the cluster settle after seeding (the garbage
    /// collector learns new CRDs on its discovery resync, every 30 s; a
    /// long-lived cluster has long done that).
    #[arg(long, default_value_t = 35)]
    settle: u64,
    /// Skip the kubectl baseline (then the first kubesweep variant is the baseline).
    #[arg(long)]
    no_kubectl: bool,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let kubesweep = match &cli.kubesweep {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .with_file_name("kubesweep")
            .canonicalize()
            .context("no kubesweep binary next to kubesweep-bench: build it or pass --kubesweep")?,
    };
    let client = kubesweep_fixtures::client_from_kubeconfig(Some(&cli.kubeconfig), None).await?;
    let opts = SeedOptions {
        profile: Profile::KubesphereV4,
        scale: cli.scale,
        ..SeedOptions::default()
    };
    let footprint = kubesweep_fixtures::footprint(&opts);
    let work = tempfile::tempdir()?;
    let ks = Kubesweep {
        binary: kubesweep,
        kubeconfig: cli.kubeconfig.clone(),
        dir: work.path().to_path_buf(),
    };

    let mut report = BenchReport {
        scale: cli.scale.to_string(),
        seeded_objects: footprint.objects.len(),
        plan_actions: 0,
        plan_seconds: 0.0,
        measurements: Vec::new(),
    };
    let prepare = || async {
        kubesweep_fixtures::teardown(&client, &footprint, &opts).await?;
        let seeded = kubesweep_fixtures::seed(&client, &opts).await?;
        eprintln!(
            "seeded {} objects in {:.1}s; settling {}s",
            seeded.footprint.objects.len(),
            seeded.elapsed.as_secs_f64(),
            cli.settle
        );
        tokio::time::sleep(Duration::from_secs(cli.settle)).await;
        anyhow::Ok(())
    };

    if !cli.no_kubectl {
        prepare().await?;
        let started = Instant::now();
        let plan = ks.plan()?;
        report.plan_seconds = started.elapsed().as_secs_f64();
        report.plan_actions = plan.total_actions();
        let processes = run_with_kubectl(&cli.kubectl, &cli.kubeconfig, &plan)?;
        let seconds = started.elapsed().as_secs_f64();
        report.measurements.push(Measurement {
            variant: "baseline: kubectl per action, sequential".into(),
            seconds,
            detail: format!("{processes} kubectl processes (plan included)"),
            verified: ks.verify()?,
        });
        eprintln!("{}", report.table());
    }
    for (variant, extra) in [
        (
            "kubesweep apply --max-in-flight 1",
            vec!["--max-in-flight", "1"],
        ),
        ("kubesweep apply (default: 32 in flight)", vec![]),
    ] {
        prepare().await?;
        let started = Instant::now();
        ks.apply(&extra)?;
        let seconds = started.elapsed().as_secs_f64();
        report.measurements.push(Measurement {
            variant: variant.into(),
            seconds,
            detail: "discovery, plan, backup, execute, verify".into(),
            verified: ks.verify()?,
        });
        eprintln!("{}", report.table());
    }
    kubesweep_fixtures::teardown(&client, &footprint, &opts).await?;
    println!("{}", report.table());
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
    }
    Ok(())
}

/// The kubesweep binary against the bench cluster.
struct Kubesweep {
    binary: PathBuf,
    kubeconfig: PathBuf,
    dir: PathBuf,
}

impl Kubesweep {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .current_dir(&self.dir);
        command
    }

    fn plan(&self) -> anyhow::Result<Plan> {
        let out = self.command(&["plan", "-o", "json"]).output()?;
        if !out.status.success() {
            bail!("kubesweep plan: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    fn apply(&self, extra: &[&str]) -> anyhow::Result<()> {
        let backups = self.dir.join("backups");
        let backups = backups.to_string_lossy();
        let mut args = vec!["apply", "--yes", "--backup-dir", &backups];
        args.extend_from_slice(extra);
        let status = self.command(&args).stdout(Stdio::null()).status()?;
        if !status.success() {
            bail!("kubesweep {args:?} exited with {status}");
        }
        Ok(())
    }

    fn verify(&self) -> anyhow::Result<bool> {
        let out = self.command(&["verify"]).output()?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => {
                eprintln!("{}", String::from_utf8_lossy(&out.stdout));
                Ok(false)
            }
            _ => bail!("kubesweep verify: {}", String::from_utf8_lossy(&out.stderr)),
        }
    }
}

/// Executes `plan` one kubectl process per step, in plan order; returns how
/// many processes ran. A failing kubectl stops the baseline: its time would
/// mean nothing.
fn run_with_kubectl(kubectl: &Path, kubeconfig: &Path, plan: &Plan) -> anyhow::Result<usize> {
    let run = |args: &[String]| -> anyhow::Result<Vec<u8>> {
        let out = Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .output()
            .with_context(|| format!("run {}", kubectl.display()))?;
        if !out.status.success() {
            bail!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out.stdout)
    };
    let mut processes = 0;
    for (_, action) in plan.actions() {
        for step in kubectl_baseline::steps(action).unwrap_or_default() {
            match step {
                Step::Run(args) => {
                    run(&args)?;
                    processes += 1;
                }
                Step::GetThenPatch { get, mut patch } => {
                    let object = run(&get)?;
                    processes += 1;
                    if object.is_empty() {
                        continue;
                    }
                    let object: serde_json::Value = serde_json::from_slice(&object)?;
                    if let Some(body) = kubectl_baseline::metadata_patch(&action.operation, &object)
                    {
                        patch.extend(["-p".to_owned(), body.to_string()]);
                        run(&patch)?;
                        processes += 1;
                    }
                }
            }
        }
    }
    Ok(processes)
}
