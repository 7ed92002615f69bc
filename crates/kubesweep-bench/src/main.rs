//! `kubesweep-bench`: contenders timed on the same freshly seeded footprint,
//! each several times. `run` seeds, settles, runs every contender as a
//! child process under GNU time (peak RSS), counts its requests in the API
//! server's audit log, checks the cluster with `kubesweep verify`, and
//! writes the results as JSON. `floor` is the floor client (a child of
//! `run`, so its memory and requests are its own). `report` renders one or
//! more result files as markdown and an SVG plot. Needs a disposable
//! cluster: it deletes the footprint it seeds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use kubesweep::plan::{PhaseId, Plan};
use kubesweep_bench::audit::AuditLog;
use kubesweep_bench::report::{BenchReport, Contender, Kind, Machine, Sample, ScaleRun};
use kubesweep_bench::{floor, hook, measure, plot};
use kubesweep_fixtures::{Profile, Scale, SeedOptions};

#[derive(Parser)]
#[command(name = "kubesweep-bench", about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Time every contender at one scale.
    Run(Box<RunArgs>),
    /// The floor client (run by `run` as a child process).
    Floor {
        /// Kubeconfig of the cluster.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// The plan, as `kubesweep plan -o json` printed it.
        #[arg(long)]
        plan: PathBuf,
        /// Requests in flight.
        #[arg(long)]
        concurrency: usize,
        /// Seconds to wait for CRDs and namespaces to go.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Render result files (of `run --json`) as docs: results.json, results.md, the SVG plot.
    Report {
        /// Directory to write into (e.g. docs/bench).
        #[arg(long)]
        out_dir: PathBuf,
        /// Result files, smallest scale first.
        files: Vec<PathBuf>,
    },
}

#[derive(Parser)]
struct RunArgs {
    /// Kubeconfig of a disposable cluster (default: $KUBESWEEP_TEST_KUBECONFIG).
    #[arg(long, env = "KUBESWEEP_TEST_KUBECONFIG")]
    kubeconfig: PathBuf,
    /// small, medium, large, WxPxO, or workspaces=W,projects=P,objects=O.
    #[arg(long, default_value = "medium")]
    scale: Scale,
    /// Runs of each contender, each on a freshly seeded footprint.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Contenders, in order: apply, no-backup, hook, floor, plan (plan runs
    /// on the footprint seeded for `apply`, before it; it changes nothing).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "apply,no-backup,plan,floor,hook"
    )]
    contenders: Vec<String>,
    /// Concurrency levels of the floor (each is a contender; the best is the floor).
    #[arg(long, value_delimiter = ',', default_value = "8,32,128")]
    floor_concurrency: Vec<usize>,
    /// Time at most this many custom resources of the hook method and
    /// extrapolate per object (the hook runs past 30 minutes at ~10k objects).
    #[arg(long)]
    hook_sample: Option<usize>,
    /// The kubesweep binary (default: next to this one).
    #[arg(long)]
    kubesweep: Option<PathBuf>,
    /// kubectl of the pinned Kubernetes version (testenv/build-kubectl), for the hook method.
    #[arg(long, default_value = "kubectl")]
    kubectl: PathBuf,
    /// The version the kubectl must report.
    #[arg(long, default_value = "v1.37.2")]
    kubectl_version: String,
    /// The API server's audit log (written with the policy `audit-policy`
    /// prints); without it, request counts are left out.
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// The user whose requests count (every contender runs as it).
    #[arg(long, default_value = "kubesweep-admin")]
    audit_user: String,
    /// Seconds to let the cluster settle after seeding (the garbage
    /// collector learns new CRDs on its discovery resync, every 30 s; a
    /// long-lived cluster has long done that).
    #[arg(long, default_value_t = 35)]
    settle: u64,
    /// Pass `--allow-large` to apply (plans over 2,000 actions).
    #[arg(long)]
    allow_large: bool,
    /// `--wait-timeout` of apply, seconds per phase.
    #[arg(long, default_value_t = 180)]
    wait_timeout: u64,
    /// `--namespace-wait` of apply: `fast` (kubesweep empties and finalizes
    /// the platform namespaces) or `controller` (the namespace controller does).
    #[arg(long, default_value = "fast", value_parser = ["fast", "controller"])]
    namespace_wait: String,
    /// Whether other work ran on the machine, for the report.
    #[arg(long, default_value = "no other work known")]
    note: String,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Cmd::Run(args) => runtime.block_on(run(*args)),
        Cmd::Floor {
            kubeconfig,
            plan,
            concurrency,
            timeout,
        } => runtime.block_on(async {
            let client =
                kubesweep_fixtures::client_from_kubeconfig(Some(&kubeconfig), None).await?;
            let plan: Plan = serde_json::from_slice(&std::fs::read(&plan)?)?;
            let r = floor::run(&client, &plan, concurrency, Duration::from_secs(timeout)).await?;
            println!("{}", r.requests);
            Ok(())
        }),
        Cmd::Report { out_dir, files } => report(&out_dir, &files),
    }
}

fn report(out_dir: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    let reports = files
        .iter()
        .map(|f| {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
            serde_json::from_str::<BenchReport>(&text)
                .with_context(|| format!("parse {}", f.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    std::fs::create_dir_all(out_dir)?;
    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_string_pretty(&reports)? + "\n",
    )?;
    let mut md = String::from(
        "# Benchmark results\n\nGenerated by `kubesweep-bench report` from the runs' JSON ([results.json](results.json)). \
         Plot: [time-vs-objects.svg](time-vs-objects.svg).\n\n![time against objects](time-vs-objects.svg)\n\n",
    );
    for r in &reports {
        md.push_str(&r.markdown());
    }
    std::fs::write(out_dir.join("results.md"), md)?;
    std::fs::write(out_dir.join("time-vs-objects.svg"), plot::svg(&reports)?)?;
    eprintln!(
        "wrote results.json, results.md, time-vs-objects.svg in {}",
        out_dir.display()
    );
    Ok(())
}

/// One contender of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Apply,
    NoBackup,
    Plan,
    Hook,
    Floor(usize),
}

fn contenders(args: &RunArgs) -> anyhow::Result<Vec<(Which, Contender)>> {
    let mut out = Vec::new();
    for name in &args.contenders {
        match name.as_str() {
            "apply" => out.push((
                Which::Apply,
                Contender::new("kubesweep apply --yes (backup included)", Kind::Kubesweep),
            )),
            "no-backup" => out.push((
                Which::NoBackup,
                Contender::new("kubesweep apply --yes --no-backup", Kind::Kubesweep),
            )),
            "plan" => out.push((
                Which::Plan,
                Contender::new("kubesweep plan (read-only)", Kind::Plan),
            )),
            "hook" => out.push((
                Which::Hook,
                Contender::new(
                    format!(
                        "KubeSphere's hook method (kubectl {})",
                        args.kubectl_version
                    ),
                    Kind::Hook,
                ),
            )),
            "floor" => {
                for c in &args.floor_concurrency {
                    out.push((
                        Which::Floor(*c),
                        Contender::new(format!("floor ({c} in flight)"), Kind::Floor),
                    ));
                }
            }
            other => bail!("unknown contender {other:?} (apply, no-backup, plan, floor, hook)"),
        }
    }
    if out.iter().any(|(w, _)| *w == Which::Plan) && !out.iter().any(|(w, _)| *w == Which::Apply) {
        bail!("the plan contender runs on apply's footprint: list apply too");
    }
    Ok(out)
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    measure::check_gnu_time()?;
    let mut list = contenders(&args)?;
    if list.iter().any(|(w, _)| *w == Which::Hook) {
        hook::check_version(&args.kubectl, &args.kubectl_version)?;
    }
    let kubesweep = match &args.kubesweep {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .with_file_name("kubesweep")
            .canonicalize()
            .context("no kubesweep binary next to kubesweep-bench: build it or pass --kubesweep")?,
    };
    let bench_exe = std::env::current_exe()?;
    let client = kubesweep_fixtures::client_from_kubeconfig(Some(&args.kubeconfig), None).await?;
    let opts = SeedOptions {
        profile: Profile::KubesphereV4,
        scale: args.scale,
        ..SeedOptions::default()
    };
    let footprint = kubesweep_fixtures::footprint(&opts);
    let work = tempfile::tempdir()?;
    let audit = args.audit_log.as_ref().map(|path| AuditLog {
        path: path.clone(),
        user: args.audit_user.clone(),
    });
    let ks = Kubesweep {
        binary: kubesweep,
        kubeconfig: args.kubeconfig.clone(),
        dir: work.path().to_path_buf(),
    };
    let machine = machine(&client, &args.note).await?;
    let mut scale_run = ScaleRun {
        scale: args.scale.to_string(),
        seeded_objects: footprint.objects.len(),
        plan_actions: 0,
        custom_resource_actions: 0,
        contenders: Vec::new(),
    };

    let mut plan_samples = Vec::new();
    let started = started_utc();
    for round in 1..=args.runs {
        for idx in 0..list.len() {
            let which = &list[idx].0.clone();
            let name = list[idx].1.name.clone();
            if *which == Which::Plan {
                continue; // measured on apply's footprint
            }
            eprintln!("run {round}/{}: {}", args.runs, name);
            kubesweep_fixtures::teardown(&client, &footprint, &opts).await?;
            let seeded = kubesweep_fixtures::seed(&client, &opts).await?;
            eprintln!(
                "  seeded {} objects in {:.1}s; settling {}s",
                seeded.footprint.objects.len(),
                seeded.elapsed.as_secs_f64(),
                args.settle
            );
            tokio::time::sleep(Duration::from_secs(args.settle)).await;
            let plan = ks.plan()?;
            scale_run.plan_actions = plan.total_actions();
            scale_run.custom_resource_actions = plan
                .phase(PhaseId::CustomResources)
                .map_or(0, |p| p.actions.len());
            let plan_file = work.path().join("plan.json");
            std::fs::write(&plan_file, serde_json::to_vec(&plan)?)?;

            let sample = match *which {
                Which::Apply | Which::NoBackup => {
                    let mut apply = vec!["apply".to_owned(), "--yes".to_owned()];
                    if *which == Which::NoBackup {
                        apply.push("--no-backup".into());
                    } else {
                        apply.extend([
                            "--backup-dir".into(),
                            work.path().join("backups").to_string_lossy().into_owned(),
                        ]);
                    }
                    apply.extend(["--wait-timeout".into(), args.wait_timeout.to_string()]);
                    apply.extend(["--namespace-wait".into(), args.namespace_wait.clone()]);
                    if args.allow_large {
                        apply.push("--allow-large".into());
                    }
                    if *which == Which::Apply {
                        // plan alone, on this same footprint, before apply.
                        let (mut s, _) = measured(
                            &audit,
                            &ks.binary,
                            &ks.args(&["plan", "-o", "json"]),
                            &ks.dir,
                        )
                        .await?;
                        s.verified = true; // read-only: nothing to verify
                        s.detail = "discovery and plan, read-only".into();
                        plan_samples.push(s);
                    }
                    let refs: Vec<&str> = apply.iter().map(String::as_str).collect();
                    let (mut s, _) = measured(&audit, &ks.binary, &ks.args(&refs), &ks.dir).await?;
                    s.detail = "discovery, plan, re-plan, execute, verify".into();
                    let _ = std::fs::remove_dir_all(work.path().join("backups"));
                    s
                }
                Which::Floor(c) => {
                    let floor_args: Vec<String> = vec![
                        "floor".into(),
                        "--kubeconfig".into(),
                        args.kubeconfig.to_string_lossy().into_owned(),
                        "--plan".into(),
                        plan_file.to_string_lossy().into_owned(),
                        "--concurrency".into(),
                        c.to_string(),
                    ];
                    let (mut s, stdout) =
                        measured(&audit, &bench_exe, &floor_args, &ks.dir).await?;
                    s.detail = format!("{} requests by the client's own count", stdout.trim());
                    s
                }
                Which::Hook => {
                    let kubectl = hook::Kubectl {
                        binary: args.kubectl.clone(),
                        kubeconfig: args.kubeconfig.clone(),
                        dir: work.path().to_path_buf(),
                    };
                    let r = hook::run(&kubectl, &plan, &client, audit.as_ref(), args.hook_sample)
                        .await?;
                    Sample {
                        seconds: r.seconds(),
                        requests: r.requests.clone(),
                        max_rss_kib: r.max_rss_kib,
                        verified: false,
                        extrapolated: r.extrapolation.clone(),
                        detail: format!("{} kubectl processes", r.processes),
                    }
                }
                Which::Plan => unreachable!("skipped above"),
            };
            let mut sample = sample;
            sample.verified = ks.verify()?;
            eprintln!(
                "  {:.1}s, {} requests, peak RSS {} MiB, verify {}",
                sample.seconds,
                sample
                    .requests
                    .as_ref()
                    .map_or("?".into(), |r| r.total().to_string()),
                sample.max_rss_kib / 1024,
                if sample.verified {
                    "clean"
                } else {
                    "LEFTOVERS"
                }
            );
            list[idx].1.samples.push(sample);
            // Written after every sample, so an interrupted run keeps what it measured.
            if let Some(path) = &args.json {
                let report = report_of(&list, &plan_samples, &scale_run, &machine, &started);
                std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
            }
        }
    }
    kubesweep_fixtures::teardown(&client, &footprint, &opts).await?;

    let report = report_of(&list, &plan_samples, &scale_run, &machine, &started);
    println!("{}", report.markdown());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
    }
    Ok(())
}

/// The report of what was measured so far. The plan's samples were kept
/// apart (they run on apply's footprint); they go where it is listed.
fn report_of(
    list: &[(Which, Contender)],
    plan_samples: &[Sample],
    scale_run: &ScaleRun,
    machine: &Machine,
    started: &str,
) -> BenchReport {
    let mut scale_run = scale_run.clone();
    scale_run.contenders = list
        .iter()
        .map(|(which, c)| {
            let mut c = c.clone();
            if *which == Which::Plan {
                c.samples = plan_samples.to_vec();
            }
            c
        })
        .collect();
    scale_run.summarise();
    BenchReport {
        machine: machine.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started: started.to_owned(),
        scales: vec![scale_run],
    }
}

/// Runs one contender's child process under GNU time and counts its
/// requests in the audit log; fails when it fails (its time would mean
/// nothing). Returns the sample (verified later) and its stdout.
async fn measured(
    audit: &Option<AuditLog>,
    program: &Path,
    args: &[String],
    dir: &Path,
) -> anyhow::Result<(Sample, String)> {
    let before = audit.as_ref().map(AuditLog::mark);
    let m = measure::run(program, args, dir, true)?;
    if !m.output.status.success() {
        bail!(
            "{} {} exited with {}: {}",
            program.display(),
            args.join(" "),
            m.output.status,
            String::from_utf8_lossy(&m.output.stderr).trim()
        );
    }
    let requests = match (audit, before) {
        (Some(log), Some(before)) => {
            // The server writes a request's audit line as it completes it;
            // give the last ones a moment to land.
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some(log.count(before, log.mark())?)
        }
        _ => None,
    };
    Ok((
        Sample {
            seconds: m.elapsed.as_secs_f64(),
            requests,
            max_rss_kib: m.max_rss_kib,
            verified: false,
            extrapolated: None,
            detail: String::new(),
        },
        String::from_utf8_lossy(&m.output.stdout).into_owned(),
    ))
}

/// The kubesweep binary against the bench cluster.
struct Kubesweep {
    binary: PathBuf,
    kubeconfig: PathBuf,
    dir: PathBuf,
}

impl Kubesweep {
    fn args(&self, args: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        out.push("--kubeconfig".into());
        out.push(self.kubeconfig.to_string_lossy().into_owned());
        out
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command.args(self.args(args)).current_dir(&self.dir);
        command
    }

    fn plan(&self) -> anyhow::Result<Plan> {
        let out = self.command(&["plan", "-o", "json"]).output()?;
        if !out.status.success() {
            bail!("kubesweep plan: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
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

async fn machine(client: &kube::Client, note: &str) -> anyhow::Result<Machine> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    Ok(Machine {
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        memory_gib: mem_kib / 1024.0 / 1024.0,
        kubernetes: client.apiserver_version().await?.git_version,
        load_average_at_start: load
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        note: note.to_owned(),
    })
}

fn started_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
